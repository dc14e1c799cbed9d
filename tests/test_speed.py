"""The speed preset's parts: the whitened first layer, weight averaging (EMA / lookahead), test-time augmentation,
the training set resident on the device with alternating flips, the linear schedule, bias LR and step syncs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from cifar_pl.callbacks import WhitenFromData
from cifar_pl.checkpoints import read_checkpoint
from cifar_pl.data import CIFAR10DataModule
from cifar_pl.data.transforms import alternating_flip
from cifar_pl.errors import BadValue
from cifar_pl.lit import ImageClassifier
from cifar_pl.lit.average import WeightAverage
from cifar_pl.lit.schedule import LRMultiplier
from cifar_pl.lit.tta import tta_logits
from cifar_pl.models import create_model

from .helpers import CONFIGS, effective_config, run_cli
from .helpers.fake_cuda import PretendCuda

FAST = "--trainer.max_epochs 2 --model.net_kwargs.width 0.25 --data.val_size 24 --data.batch_size 32"


# ---- the net and its whitening ----
def test_whitening_filters_decorrelate_the_patches():
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.5, 0.4], [0.0, 0.0, 0.3]])
    images = torch.einsum("ij,njhw->nihw", mix, torch.randn(200, 3, 16, 16)) + 0.5
    net = create_model("speednet", num_classes=10, width=0.25)
    assert not net.whitened
    net.init_whitening(images, eps=1e-6)
    assert net.whitened and not net.whiten.weight.requires_grad
    out = nn.functional.conv2d(images, net.whiten.weight[:12])  # the 12 filters (then their negatives)
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    cov = flat @ flat.T / flat.shape[1]  # second moments, as the patch covariance was taken
    torch.testing.assert_close(cov, torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(net.whiten.weight[12:], -net.whiten.weight[:12])


def test_speednet_has_the_net_face_and_a_width():
    small, full = (create_model("speednet", num_classes=7, width=w) for w in (0.25, 1.0))
    assert sum(p.numel() for p in full.parameters()) == 1_972_024  # 1,972,792 with 10 classes
    x = torch.randn(2, 3, 32, 32)
    assert small.forward_features(x).shape == (2, 64, 3, 3) and small(x).shape == (2, 7)
    small.reset_classifier(3)
    assert small(x).shape == (2, 3)
    with pytest.raises(BadValue, match="width"):
        create_model("speednet", width=0)


def test_whiten_from_data_sets_the_filters_once(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "speed/speednet_cpu", cifar10_root, FAST)
    net = cli.model.net
    assert net.whitened and net.whiten.bias.requires_grad  # bias_epochs 3: still training at epoch 1
    first = net.whiten.weight.clone()
    assert first.abs().sum() > 0
    assert net.whiten.weight.is_contiguous(memory_format=torch.channels_last)
    # a new stage from those weights keeps the filters (they are not computed again from other images)
    last = next(tmp_path.glob("lightning_logs/speed/speednet_cpu/version_0/checkpoints/last.ckpt"))
    cli2 = run_cli("fit", "speed/speednet_cpu", cifar10_root,
                   f"{FAST} --model.init.weights {last} --data.split_seed 3 --experiment again")  # fmt: skip
    torch.testing.assert_close(cli2.model.net.whiten.weight, first)
    # the whitening bias trains for bias_epochs epochs only
    cb = WhitenFromData(bias_epochs=1)
    trainer = SimpleNamespace(current_epoch=1)
    cb.on_train_epoch_start(trainer, cli2.model)
    assert not cli2.model.net.whiten.bias.requires_grad
    with pytest.raises(BadValue, match="speednet"):
        WhitenFromData().on_fit_start(trainer, ImageClassifier(net="model_a"))


# ---- weight averaging ----
def test_weight_average_is_an_exponential_average_that_starts_at_the_net():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(net)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    avg.update(net, 0.9)  # the first update takes the net as it is
    torch.testing.assert_close(avg.module[0].weight, net[0].weight)
    start = avg.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.fill_(3.0)
        net[1].running_mean.fill_(2.0)
        net[1].num_batches_tracked.fill_(7)
    avg.update(net, 0.75)
    torch.testing.assert_close(avg.module[0].weight, 0.75 * start + 0.25 * 3.0)
    torch.testing.assert_close(avg.module[1].running_mean, torch.full((2,), 0.5))  # statistics averaged too
    assert int(avg.module[1].num_batches_tracked) == 7
    avg.copy_to(net)
    torch.testing.assert_close(net[0].weight, avg.module[0].weight)
    torch.testing.assert_close(net[1].running_mean, avg.module[1].running_mean)


def test_ema_evaluates_with_the_average_and_lookahead_pulls_the_net_back(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = "--trainer.max_epochs 2 --model.optim.lr 0.05 --model.average.decay 0.9 --model.average.every 2 --data.val_size 24 --data.batch_size 20"
    cli = run_cli("fit", "quickstart", cifar10_root, args)
    model = cli.model.eval()
    assert model.ema is not None and bool(model.ema.started)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.ema.module(x))  # evaluation uses the average
        assert not torch.allclose(model(x), model.net(x))
    # the average travels in the checkpoint and predict builds the model with it
    ckpt = read_checkpoint(tmp_path / "lightning_logs/quickstart/best.ckpt")
    assert any(k.startswith("ema.module.") for k in ckpt.state_dict)
    # lookahead: after an update step the trained weights are the average's
    cli = run_cli("fit", "quickstart", cifar10_root, f"{args} --model.average.lookahead true --experiment la")
    net, avg = cli.model.net, cli.model.ema.module
    for a, b in zip(net.parameters(), avg.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # 12 steps: the last one (step 12) updated
    with pytest.raises(BadValue, match="model.average.decay"):
        ImageClassifier(net="model_a", average={"decay": 1.5})
    with pytest.raises(BadValue, match="model.average.every"):
        ImageClassifier(net="model_a", average={"decay": 0.9, "every": 0})


# ---- test-time augmentation ----
class _Probe(nn.Module):
    """Logits = the mean of each quarter of the image: views are told apart."""

    def forward(self, x):
        h, w = x.shape[-2:]
        return torch.stack([x[..., : h // 2, : w // 2].mean((1, 2, 3)), x[..., : h // 2, w // 2 :].mean((1, 2, 3)),
                            x[..., h // 2 :, : w // 2].mean((1, 2, 3))], 1)  # fmt: skip


def test_tta_averages_the_views_with_the_recipes_weights():
    net, x = _Probe(), torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(tta_logits(net, x, "none"), net(x))
    flip = 0.5 * (net(x) + net(x.flip(-1)))
    torch.testing.assert_close(tta_logits(net, x, "flip"), flip)
    p = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up, down = p[..., :8, :8], p[..., 2:, 2:]
    shifted = 0.25 * (net(up) + net(up.flip(-1)) + net(down) + net(down.flip(-1)))
    torch.testing.assert_close(tta_logits(net, x, "flip_translate"), 0.5 * flip + 0.5 * shifted)


def test_the_classifier_uses_tta_in_evaluation_only():
    torch.manual_seed(0)
    model = ImageClassifier(net="model_gap", num_classes=10, evaluation={"tta": "flip"})
    x = torch.randn(3, 3, 32, 32)
    model.train()
    torch.manual_seed(1)
    trained = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(trained, model.net(x))  # one view (dropout draws alike)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), 0.5 * (model.net(x) + model.net(x.flip(-1))))
        torch.testing.assert_close(model(x, tta=False), model.net(x))  # validation: one view
        seen = []
        model.net.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
        model.validation_step((x, torch.zeros(3, dtype=torch.long)), 0)
        model.test_step((x, torch.zeros(3, dtype=torch.long)), 0)
        assert seen == [3, 3, 3]  # one view in validation, two in test
    with pytest.raises(BadValue, match="model.evaluation.tta"):
        ImageClassifier(net="model_a", evaluation={"tta": "mirror"})


# ---- resident data and alternating flips ----
def test_alternating_flip_mirrors_each_image_every_other_epoch():
    x = torch.arange(2000 * 4, dtype=torch.uint8).view(2000, 1, 2, 2).expand(2000, 1, 2, 2).clone()
    index = torch.arange(2000)
    torch.manual_seed(0)
    flipped = [(alternating_flip(x, index, e) != x).flatten(1).any(1) for e in range(4)]
    assert 900 < int(flipped[0].sum()) < 1100  # about half at epoch 0
    assert torch.equal(flipped[0], ~flipped[1]) and torch.equal(flipped[0], flipped[2])
    assert torch.equal(flipped[1], flipped[3])
    assert not torch.equal(flipped[0], (alternating_flip(x, index, 0, seed=1) != x).flatten(1).any(1))
    # which half starts mirrored is drawn per run (airbench flips a random half once per run), from the run's seed
    torch.manual_seed(1)
    other_run = (alternating_flip(x, index, 0) != x).flatten(1).any(1)
    assert 800 < int((other_run == flipped[0]).sum()) < 1200  # about half agree: unrelated halves
    torch.manual_seed(1)
    assert torch.equal(other_run, (alternating_flip(x, index, 0) != x).flatten(1).any(1))  # and repeatable


def _batches(dm, epoch=0):
    dm.trainer = SimpleNamespace(training=True, current_epoch=epoch)
    return [dm.on_after_batch_transfer(b, 0) for b in dm.train_dataloader()]


def test_resident_batches_are_the_loaders_batches(cifar10_root):
    common = dict(val_size=24, batch_size=32, augment="none")
    loaded, resident = (
        CIFAR10DataModule(str(cifar10_root), **common),
        CIFAR10DataModule(str(cifar10_root), resident=True, **common),
    )
    for dm in (loaded, resident):
        dm.setup("fit")
    raw = next(iter(resident.train_dataloader()))[0]
    assert raw.dtype == torch.long and raw.dim() == 1  # the loader hands out indices only
    for (xa, ya), (xb, yb) in zip(_batches(loaded, 1), _batches(resident, 1), strict=True):
        torch.testing.assert_close(xa, xb)
        assert torch.equal(ya, yb)


def test_resident_set_moves_to_the_device_once_and_batches_stay_there(cifar10_root):
    dm = CIFAR10DataModule(str(cifar10_root), val_size=24, batch_size=32, resident=True,
                           augment=[{"name": "random_crop", "padding": 2}, {"name": "alternating_flip"}])  # fmt: skip
    dm.setup("fit")
    idx, y = next(iter(dm.train_dataloader()))
    with PretendCuda():
        dm.trainer = SimpleNamespace(training=True, current_epoch=0)
        x, y2 = dm.on_after_batch_transfer((idx.to("cuda"), y.to("cuda")), 0)
        assert x.device.type == "cuda" and x.dtype == torch.float32 and x.shape == (32, 3, 32, 32)
        stored = dm._resident_on[torch.device("cuda", 0)]
        dm.on_after_batch_transfer((idx.to("cuda"), y.to("cuda")), 0)
        assert dm._resident_on[torch.device("cuda", 0)] is stored and len(dm._resident_on) == 1
    shown = dm.augment_examples(dm.train_set.images[:3], draws=2)  # the preview shows two successive epochs
    assert shown.shape == (3, 2, 3, 32, 32)


def test_resident_refuses_what_it_cannot_do(cifar10_root):
    with pytest.raises(BadValue, match="rotation runs per image"):
        CIFAR10DataModule(str(cifar10_root), resident=True, augment=[{"name": "rotation"}])
    with pytest.raises(BadValue, match="alternating_flip needs resident: true"):
        CIFAR10DataModule(str(cifar10_root), augment=[{"name": "alternating_flip"}])
    with pytest.raises(BadValue, match="only a batched version"):
        CIFAR10DataModule(
            str(cifar10_root), resident=True, augment=[{"name": "alternating_flip"}, {"name": "rotation"}]
        )


# ---- the optimiser's recipe ----
def test_linear_schedule_warms_up_from_a_factor_and_falls_in_a_line():
    f = LRMultiplier("linear", total_steps=110, warmup_steps=10, warmup_factor=0.2, min_factor=0.07)
    assert f(0) == pytest.approx(0.2 + 0.8 / 11) and f(10) == pytest.approx(
        1.0
    )  # warmup rises from the factor
    assert f(60) == pytest.approx((1 + 0.07) / 2) and f(110) == pytest.approx(0.07)


def test_bias_lr_factor_keeps_the_decay_per_step():
    model = ImageClassifier(
        net="speednet",
        net_kwargs={"width": 0.25},
        optim={"lr": 0.4, "weight_decay": 0.005, "bias_lr_factor": 64},
    )
    groups = {g["name"]: g for g in model._param_groups()}
    assert set(groups) == {"all", "all_norm"}
    assert groups["all_norm"]["lr"] == pytest.approx(0.4 * 64)
    assert groups["all_norm"]["lr"] * groups["all_norm"]["weight_decay"] == pytest.approx(0.4 * 0.005)
    bn = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in groups["all_norm"]["params"]} == {id(p) for m in bn for p in m.parameters()}
    # airbench puts only BatchNorm's parameters in the fast group: the whitening bias trains at the base LR, from 0
    whiten_bias = model.net.whiten.bias
    assert any(p is whiten_bias for p in groups["all"]["params"]) and float(whiten_bias.abs().max()) == 0
    ids = {id(p) for g in groups.values() for p in g["params"]}
    assert ids == {id(p) for p in model.net.parameters()}  # the average's copy is not trained


def test_sync_every_zero_takes_no_per_step_wait(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ONE = "--trainer.max_epochs 1 --trainer.limit_val_batches 0 --data.val_size 24 --data.batch_size 40"
    seen = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: seen.append(1) or real(t))
    run_cli("fit", "quickstart", cifar10_root, f"{ONE} --model.runtime.sync_every 0")
    assert not seen
    run_cli("fit", "quickstart", cifar10_root, f"{ONE} --model.runtime.sync_every 2 --experiment two")
    assert len(seen) == 2  # 3 steps: 0 and 2


def test_drop_last_keeps_every_training_batch_full_and_validation_whole(cifar10_root):
    dm = CIFAR10DataModule(str(cifar10_root), val_size=24, batch_size=32, drop_last=True)
    dm.setup("fit")
    n = len(dm.train_set)  # 120: three full batches and a partial one of 24
    sizes = [len(b[0]) for b in dm.train_dataloader()]
    assert sizes == [32] * (n // 32)
    assert sum(len(b[0]) for b in dm.val_dataloader()) == 24  # only training drops its remainder
    with pytest.raises(BadValue, match="drop_last must be true or false"):
        CIFAR10DataModule(str(cifar10_root), drop_last="yes")


def test_val_size_zero_trains_on_every_image(cifar10_root):
    dm = CIFAR10DataModule(str(cifar10_root), val_size=0)
    dm.setup("fit")
    assert len(dm.train_set) == 144 and len(dm.val_set) == 0  # every training row of the fixture


def test_speed_presets_are_the_recipe():
    # airbench94: nothing held out, every batch full, decay per example (so the CPU preset at a quarter of the
    # batch and LR keeps the coefficient: a quarter of the decay per step), BatchNorm alone in the fast group

    for name in ("speednet", "speednet_cpu"):
        cfg = effective_config(CONFIGS / "speed" / f"{name}.yaml")
        assert cfg["data"]["init_args"]["val_size"] == 0 and cfg["data"]["init_args"]["drop_last"] is True
        assert cfg["checkpoint"]["monitor"] is None
        assert cfg["model"]["optim"]["weight_decay"] == pytest.approx(1.33e-3)
        assert (
            cfg["model"]["runtime"]["channels_last"] is True
        )  # the recipe's memory format (NCHW: 1.6x a step)
        per_image_lr = cfg["model"]["optim"]["lr"] / cfg["data"]["init_args"]["batch_size"]
        assert per_image_lr == pytest.approx(1.5 / 1024)


def test_the_weight_average_is_torchs_ema_update_by_update():
    """WeightAverage against torch.optim.swa_utils.AveragedModel + get_ema_multi_avg_fn (the reference) on the
    same net and updates: every floating parameter and BatchNorm statistic equal after each update; integer buffers
    are copied here (torch averages them)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from cifar_pl.lit.average import WeightAverage
    from cifar_pl.models import create_model

    torch.manual_seed(0)
    net = create_model("speednet", width=0.25)
    ours = WeightAverage(net)
    theirs = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        loss = (
            net(torch.randn(8, 3, 32, 32)).logsumexp(1).mean()
        )  # a training step moves weights and BN stats
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.update(net, 0.8)
        theirs.update_parameters(net)
        a = dict(ours.module.state_dict())
        for key, value in theirs.module.state_dict().items():
            if value.is_floating_point():
                torch.testing.assert_close(a[key], value, rtol=0, atol=1e-6, msg=key)
            else:
                assert torch.equal(a[key], dict(net.state_dict())[key]), key


def test_the_preset_runs_at_any_length_with_the_recipes_warmup_share(cifar10_root, tmp_path):
    """`warmup_share: 0.23` is the recipe's warmup at any max_epochs: the preset shortened to 2 epochs runs (it used
    to stop: 2.3 warmup epochs were as long as the run), and its warmup is int(0.23 x steps) as upstream counts."""
    from cifar_pl.lit.schedule import PlannedLR

    cli = run_cli("fit", "speed/speednet_cpu", cifar10_root,
                  "--trainer.max_epochs 2 --data.batch_size 16 --trainer.limit_test_batches 1", cwd=tmp_path)  # fmt: skip
    steps = cli.trainer.global_step
    assert cli.trainer.current_epoch == 2 and steps == 2 * (144 // 16)
    (config,) = cli.trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, PlannedLR) and config.scheduler.multiplier.warmup_steps == int(
        0.23 * steps
    )
    from cifar_pl.errors import BadValue
    from cifar_pl.lit import ImageClassifier

    with pytest.raises(BadValue, match="warmup_share .* or model.schedule.warmup_epochs, not both"):
        ImageClassifier(net="model_a", schedule={"warmup_share": 0.2, "warmup_epochs": 1})
    with pytest.raises(BadValue, match="model.schedule.warmup_share must be in"):
        ImageClassifier(net="model_a", schedule={"warmup_share": 1.0})
