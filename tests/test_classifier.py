"""The LightningModule's optimiser, schedule, loss and weight loading."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cifar_pl.lit import ImageClassifier
from cifar_pl.lit.optim import KerasRMSprop
from cifar_pl.lit.schedule import LRMultiplier, PlannedLR
from cifar_pl.models import create_model, load_weights, read_state_dict


def test_cosine_with_warmup():
    f = LRMultiplier("cosine", total_steps=110, warmup_steps=10, min_factor=0.1)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))


def test_multistep_per_epoch_with_warmup_per_step():
    # 10 steps an epoch, milestones at epochs 3 and 6, warmup over the first epoch rising every step
    f = LRMultiplier("multistep", total_steps=1000, steps_per_epoch=10, per_epoch=True, warmup_steps=10,
                     milestones=(30, 60), gammas=(0.1, 0.1))  # fmt: skip
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 11 for s in range(10)])
    assert [f(s) for s in (10, 29, 30, 59, 60, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_per_epoch_holds_within_an_epoch():
    f = LRMultiplier("cosine", total_steps=100, steps_per_epoch=10, per_epoch=True)
    assert len({f(s) for s in range(10, 20)}) == 1 and f(10) > f(20) > f(90) > 0


def test_constant_warmup_then_a_factor_per_milestone():
    # He et al.'s ResNet-110: 0.01 (factor 0.1 of 0.1) while warming up; seed 002's 0.01 -> 0.005 -> 0.0025 -> 0.001
    f = LRMultiplier("multistep", total_steps=400, warmup_steps=4, warmup_mode="constant", warmup_factor=0.1,
                     milestones=(100, 200, 300), gammas=(0.5, 0.5, 0.4))  # fmt: skip
    assert [f(s) for s in (0, 3)] == pytest.approx([0.1, 0.1])
    assert [f(s) for s in (4, 99, 100, 200, 300, 399)] == pytest.approx([1, 1, 0.5, 0.25, 0.1, 0.1])


def test_constant_and_unknown_schedule():
    assert LRMultiplier("constant", total_steps=10)(7) == 1.0
    with pytest.raises(ValueError, match="unknown schedule 'triangle'"):
        LRMultiplier("triangle", total_steps=10)(3)
    with pytest.raises(ValueError, match="model.schedule.name: unknown value 'triangle'"):
        ImageClassifier(net="model_a", schedule={"name": "triangle"})


def test_onecycle_is_torchs_curve_and_cycles_momentum_only_when_asked():
    for total, pct in ((100, 0.3), (37, 0.25)):
        for cycle in (None, (0.85, 0.95)):
            p = torch.nn.Parameter(torch.zeros(1))
            ref_opt = torch.optim.SGD([p], lr=0.2, momentum=0.9)
            ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.2, total_steps=total, pct_start=pct)
            opt = torch.optim.SGD([p], lr=0.2, momentum=0.9)
            ours = PlannedLR(opt, LRMultiplier("onecycle", total, pct_start=pct), momentum=cycle)
            for s in range(total):
                assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], abs=1e-15)
                if cycle is None:
                    assert opt.param_groups[0]["momentum"] == 0.9  # the configured momentum, untouched
                else:
                    assert opt.param_groups[0]["momentum"] == pytest.approx(
                        ref_opt.param_groups[0]["momentum"]
                    )
                opt.step()
                ours.step()
                ref_opt.step()
                if s < total - 1:
                    ref.step()


def test_the_plan_comes_from_the_config_and_only_the_position_from_a_checkpoint():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    short = PlannedLR(opt, LRMultiplier("cosine", total_steps=50))
    for _ in range(50):
        opt.step()
        short.step()
    state = short.state_dict()
    assert set(state) == {"last_epoch", "_step_count"}  # no horizon travels in the checkpoint
    longer = PlannedLR(opt, LRMultiplier("cosine", total_steps=100))  # max_epochs doubled, then resumed
    longer.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5) == pytest.approx(LRMultiplier("cosine", 100)(50))


def _configure(model, epochs=10, batches=10):
    class FakeTrainer:
        num_training_batches = batches
        accumulate_grad_batches = 1
        max_epochs = epochs
        max_steps = -1
        fast_dev_run = False
        estimated_stepping_batches = epochs * batches

    model._trainer = FakeTrainer()
    return model.configure_optimizers()


def test_weight_decay_can_spare_bn_and_biases():
    model = ImageClassifier(net="model_f", optim={"weight_decay": 5e-4, "no_decay_bn_bias": True})
    opt = _configure(model)["optimizer"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n_params = sum(1 for _ in model.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == n_params


@pytest.mark.parametrize(
    "name, cls",
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_optimizers(name, cls):
    out = _configure(
        ImageClassifier(net="model_a", optim={"name": name, "lr": 0.01}, schedule={"name": "constant"})
    )
    assert isinstance(out["optimizer"], cls) and out["optimizer"].param_groups[0]["lr"] == 0.01


def test_onecycle_peaks_at_lr():
    out = _configure(
        ImageClassifier(net="model_a", optim={"lr": 0.2}, schedule={"name": "onecycle", "warmup_epochs": 3}),
        10,
        10,
    )
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(99):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(0.2, rel=1e-3) and lrs.index(max(lrs)) in (28, 29)
    assert lrs[-1] < 1e-3


def test_warmup_as_long_as_the_run_is_refused():
    with pytest.raises(ValueError, match=r"warmup_epochs 10 \(100 steps\) is as long as the run"):
        _configure(ImageClassifier(net="model_a", schedule={"warmup_epochs": 10}), 10, 10)


def test_soft_targets_give_the_same_loss_as_one_hot():
    model = ImageClassifier(net="model_a")
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    torch.manual_seed(0)
    model.eval()
    hard = model._shared_step((x, y), "val")
    soft = model._shared_step((x, torch.nn.functional.one_hot(y, 10).float()), "val")
    torch.testing.assert_close(hard, soft)


def test_class_names_must_fit_num_classes():
    with pytest.raises(ValueError, match="3 class_names for num_classes=10"):
        ImageClassifier(net="model_a", class_names=["a", "b", "c"])


def test_init_from_a_foreign_state_dict_with_prefixes(tmp_path):
    # Saved the way DataParallel scripts do: {'state_dict': {'module.<name>': ...}}, head called 'linear'.
    src = create_model("resnet20")
    sd = {
        f"module.{k}".replace("module.classifier.", "module.linear."): v
        for k, v in src.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save({"best_prec1": 91.0, "state_dict": sd}, tmp_path / "w.th")
    dst = create_model("resnet20")
    report = load_weights(dst, tmp_path / "w.th")
    assert not report.skipped
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(src.eval()(x), dst.eval()(x))


def test_init_from_another_net_is_refused(tmp_path):
    torch.save(create_model("model_a").state_dict(), tmp_path / "a.pt")
    with pytest.raises(ValueError, match="do not fit CifarResNet"):
        load_weights(create_model("resnet20"), tmp_path / "a.pt")
    with pytest.raises(ValueError, match="no tensor .* fits the body"):
        load_weights(create_model("resnet20"), tmp_path / "a.pt", strict=False)


def test_files_that_are_not_weights(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        read_state_dict(tmp_path / "notes.txt")
    torch.save({"epoch": 3}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="holds no state dict"):
        read_state_dict(tmp_path / "meta.pt")
    with pytest.raises(FileNotFoundError, match="weights file .* does not exist"):
        read_state_dict(tmp_path / "missing.pt")


def test_untrusted_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (math.sqrt, (4.0,))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        read_state_dict(tmp_path / "evil.pt")


def test_non_finite_loss_stops_with_the_step_and_what_to_try(cifar10_root, tmp_path, monkeypatch):
    from .helpers import run_cli

    monkeypatch.chdir(tmp_path)
    # An absurd learning rate on a net without BatchNorm: the first update blows the weights up, the second
    # step's loss is not finite. last.ckpt is written after every step, so a good one exists when it fails.
    with pytest.raises(FloatingPointError) as e:
        run_cli(
            "fit", "model_e", cifar10_root,
            "--model.optim.lr 1e30 --model.schedule.name constant --trainer.max_epochs 1 --data.batch_size 16 "
            "--last_checkpoint.every_n_train_steps 1",
        )  # fmt: skip
    msg = str(e.value)
    assert "training loss is nan" in msg or "training loss is inf" in msg
    assert "epoch 0, step " in msg and "--trainer.gradient_clip_val" in msg and "--model.optim.lr" in msg
    last = next(tmp_path.glob("lightning_logs/model_e/version_0/checkpoints/last.ckpt"))
    assert f"the last good checkpoint is {last.relative_to(tmp_path)}" in msg
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] >= 1


@pytest.mark.parametrize(
    "name, cls, denominator",
    [
        ("rmsprop", torch.optim.RMSprop, lambda v: math.sqrt(v) + 1e-8),  # torch: eps outside the root
        ("rmsprop_keras", KerasRMSprop, lambda v: math.sqrt(v + 1e-7)),  # Keras: eps inside
    ],
)
def test_rmsprop_variants_step_by_their_own_formula(name, cls, denominator):
    # v = rho v + (1 - rho) g^2 with rho 0.9; one step of lr g / denominator(v). Keras' own RMSprop is run on
    # the same gradients in tests/reference/test_keras.py.
    from types import SimpleNamespace

    model = ImageClassifier(net="model_a", optim={"name": name, "lr": 1e-3, "weight_decay": 0.0})
    model._trainer = SimpleNamespace(num_training_batches=float("inf"))  # the provisional plan: LR factor 1
    opt = model.configure_optimizers()["optimizer"]
    assert type(opt) is cls
    p = next(model.net.parameters())
    before = p.detach().clone()
    p.grad = torch.full_like(p, 1e-4)  # small gradients: where the two places of eps differ most
    opt.step()
    torch.testing.assert_close(p.detach(), before - 1e-3 * 1e-4 / denominator(0.1 * 1e-8))
    with pytest.raises(ValueError, match="model.optim.rho"):
        ImageClassifier(net="model_a", optim={"name": name, "rho": 1.0})


def test_keras_weight_init_is_glorot_uniform_with_zero_biases():
    torch.manual_seed(0)
    net = ImageClassifier(net="base_cnn", init={"scheme": "keras"}).net
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert {type(m) for m in layers} == {torch.nn.Conv2d, torch.nn.Linear}
    for m in layers:  # e.g. the first conv, 3 -> 32, 3x3: fans 27 and 288
        receptive = m.weight[0, 0].numel()
        limit = math.sqrt(6 / ((m.weight.shape[0] + m.weight.shape[1]) * receptive))
        w = m.weight.detach()
        assert w.abs().max() <= limit and w.abs().max() > 0.9 * limit, m
        assert abs(w.std().item() - limit / math.sqrt(3)) < 0.1 * limit, m  # uniform(-l, l) has std l/sqrt 3
    assert all(
        float(m.bias.abs().max()) == 0
        for m in net.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    )
    default = ImageClassifier(net="base_cnn").net.features[0]
    assert float(default.bias.abs().max()) > 0  # torch's default start differs: it is a real choice
    with pytest.raises(ValueError, match="model.init.scheme"):
        ImageClassifier(net="base_cnn", init={"scheme": "he"})


def test_keras_init_and_a_weights_file_are_refused_together(cifar10_root, tmp_path, monkeypatch, capsys):
    # the file's weights would overwrite the Keras start without a word: one of them, said where init enters
    from cifar_pl.__main__ import main
    from cifar_pl.errors import BadValue

    from .helpers import CONFIGS

    weights = tmp_path / "w.pt"
    torch.save(ImageClassifier(net="base_cnn").net.state_dict(), weights)
    with pytest.raises(BadValue, match=rf"model.init.scheme keras and model.init.weights {re.escape(str(weights))} both say where "
                                       r"the net starts \(the weights would overwrite the keras start\); give one "
                                       r"of them"):  # fmt: skip
        ImageClassifier(net="base_cnn", init={"scheme": "keras", "weights": str(weights)})
    assert ImageClassifier(net="base_cnn", init={"scheme": "keras"}).init.weights is None  # each alone starts
    assert ImageClassifier(net="base_cnn", init={"weights": str(weights)}).init.scheme == "default"
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--config", str(CONFIGS / "writeups" / "003_base_cnn.yaml"),
                 "--data.data_dir", str(cifar10_root), "--trainer.accelerator", "cpu",
                 "--trainer.fast_dev_run", "true", "--model.init.weights", str(weights)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: model.init.scheme keras and model.init.weights {weights} both say where the net starts (the "
        f"weights would overwrite the keras start); give one of them"
    ]
    assert not (tmp_path / "lightning_logs").exists()  # refused before a run folder was made


def test_best_validation_accuracy_is_logged_and_survives_a_resume(cifar10_root, tmp_path, monkeypatch):
    from .helpers import run_cli

    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "quickstart", cifar10_root, "--trainer.max_epochs 3 --test_after_fit false")
    model = cli.model
    accs = [float(v) for v in _scalars(cli.trainer.log_dir, "val/acc")]
    assert _scalars(cli.trainer.log_dir, "val/acc_best")[-1] == pytest.approx(max(accs))
    assert model.best_val_acc == pytest.approx(max(accs))
    ckpt = torch.load(
        tmp_path / "lightning_logs/quickstart/version_0/checkpoints/last.ckpt", weights_only=True
    )
    assert ckpt["cifar_pl_best_val_acc"] == pytest.approx(max(accs))
    fresh = ImageClassifier(net="model_gap")
    fresh.on_load_checkpoint(ckpt)
    assert fresh.best_val_acc == pytest.approx(max(accs))


def _scalars(log_dir, tag):
    from cifar_pl.viz.curves import read_scalars

    return [value for _, value in read_scalars(log_dir).get(tag, [])]


def test_top5_accuracy_only_above_five_classes():
    # with 5 classes or fewer every label is among the top 5: the metric would always read 1.0
    assert set(ImageClassifier(net="model_a", num_classes=3).val_metrics.keys()) == {"val/acc"}
    assert set(ImageClassifier(net="model_a", num_classes=5).val_metrics.keys()) == {"val/acc"}
    assert set(ImageClassifier(net="model_a", num_classes=10).val_metrics.keys()) == {"val/acc", "val/acc5"}


def test_a_checkpoint_of_a_net_started_from_weights_loads_without_that_file(tmp_path):
    import pytorch_lightning as pl

    start = tmp_path / "start.pt"
    torch.save(ImageClassifier(net="model_gap", num_classes=10).net.state_dict(), start)
    model = ImageClassifier(net="model_gap", num_classes=10, init={"weights": str(start)})
    model.setup("fit")
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)  # fmt: skip
    start.unlink()
    loaded = ImageClassifier.load_from_checkpoint(ckpt, weights_only=True)
    assert loaded.hparams.init["weights"] == str(start)  # named, but not read again
    after, before = loaded.state_dict(), model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
