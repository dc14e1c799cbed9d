"""Transfer learning: timm backbones, freezing with BatchNorm in eval, fine-tuning, staged runs and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from cifar_pl.callbacks import BatchNormEval, FreezeBackbone, batchnorm_layers, body_parameters
from cifar_pl.lit import ImageClassifier
from cifar_pl.models import create_model

from .helpers import CONFIGS, run_cli

TRANSFER_CONFIGS = sorted((CONFIGS / "transfer").glob("*.yaml"))


# ---- timm backbones ----
def test_xception_gives_2048x8x8_features_at_256():
    torch.manual_seed(0)
    net = create_model("xception", num_classes=5).eval()  # random init: nothing is downloaded
    assert sum(p.numel() for p in net.features.parameters()) == 20_806_952
    with torch.no_grad():
        feats = net.forward_features(torch.randn(1, 3, 256, 256))
        assert feats.shape == (1, 2048, 8, 8)
        assert net.forward_head(feats).shape == (1, 5) and net.global_pool
    assert net.get_classifier().in_features == 2048


def test_timm_backbone_by_name_with_local_pretrained_weights(tmp_path):
    torch.manual_seed(0)
    donor = create_model("timm_backbone", model_name="test_resnet", num_classes=1000)
    # a timm-named file with its own 1000-class classifier, as timm publishes them
    sd = {
        **donor.features.model.state_dict(),
        "fc.weight": torch.randn(1000, 96),
        "fc.bias": torch.zeros(1000),
    }
    torch.save(sd, tmp_path / "w.pth")
    net = create_model(
        "timm_backbone", model_name="test_resnet", num_classes=3, pretrained_path=str(tmp_path / "w.pth")
    )
    for (k, a), b in zip(
        donor.features.state_dict().items(), net.features.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    assert net(torch.randn(2, 3, 40, 24)).shape == (2, 3)  # any input size
    other = create_model("timm_backbone", model_name="test_efficientnet", num_classes=3).features.model
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit timm's .* is it the weights of model_name"):
        create_model("timm_backbone", model_name="test_resnet", pretrained_path=str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match="Unknown timm model 'xceptoin'"):
        create_model("timm_backbone", model_name="xceptoin")


# ---- callbacks, in a real Trainer on a small photo folder ----
class _Probe(pl.Callback):
    """Records whether every BatchNorm is in eval mode when each training epoch ends (after validation)."""

    def __init__(self):
        self.bn_eval_after_val: list[bool] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.bn_eval_after_val.append(all(not bn.training for bn in batchnorm_layers(pl_module.net)))


def _fit(photo_root, callbacks, epochs=2, net="model_gap", body_lr_factor=1.0):
    from cifar_pl.data import ImageFolderDataModule

    pl.seed_everything(0)
    dm = ImageFolderDataModule(str(photo_root), image_size=16, batch_size=16)
    model = ImageClassifier(net=net, num_classes=3, optim={"lr": 0.05, "weight_decay": 5e-4,
                                                           "body_lr_factor": body_lr_factor})  # fmt: skip
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(model, dm)
    return model, before, trainer


def test_frozen_body_is_bitwise_unchanged_while_the_head_learns(photo_root):
    probe = _Probe()
    model, before, _ = _fit(photo_root, [FreezeBackbone(), probe])
    after = model.net.state_dict()
    for k, v in after.items():
        if k.startswith("classifier."):
            assert not torch.equal(v, before[k]), f"the head did not learn: {k}"
        else:  # weights, BN affine and BN running statistics alike
            assert torch.equal(v, before[k]), f"frozen {k} changed"
    assert probe.bn_eval_after_val == [True, True]
    assert all(not p.requires_grad for p in body_parameters(model.net))


def test_unfreeze_at_epoch_trains_the_body_with_its_lr_factor(photo_root):
    freeze = FreezeBackbone(unfreeze_at_epoch=1)
    probe = _Probe()
    model, before, trainer = _fit(photo_root, [freeze, probe], epochs=2, body_lr_factor=0.1)
    assert not freeze.frozen
    after = model.net.state_dict()
    conv = next(k for k in after if k.endswith("weight") and after[k].dim() == 4)
    assert not torch.equal(after[conv], before[conv])  # the body trained in epoch 1
    bn = next(k for k in after if k.endswith("running_mean"))
    assert torch.equal(after[bn], before[bn])  # BN statistics stay fixed after unfreezing too
    lrs = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert lrs["body"] == pytest.approx(0.1 * lrs["classifier"])


def test_bn_eval_fine_tuning_keeps_running_stats_while_weights_change(photo_root):
    probe = _Probe()
    model, before, _ = _fit(photo_root, [BatchNormEval(), probe], epochs=2)
    after = model.net.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    affine = [k.replace("running_mean", "weight") for k in stats if k.endswith("running_mean")]
    convs = [k for k in after if k.endswith("weight") and after[k].dim() == 4]
    assert stats and affine and convs
    assert all(torch.equal(after[k], before[k]) for k in stats)
    assert all(not torch.equal(after[k], before[k]) for k in convs)
    assert any(not torch.equal(after[k], before[k]) for k in affine)  # BN's affine weights still learn
    assert probe.bn_eval_after_val == [True, True]


def test_without_the_callback_bn_statistics_do_move(photo_root):
    # the control for the two tests above: the same run without BN in eval changes the running statistics
    model, before, _ = _fit(photo_root, [], epochs=1)
    bn = next(k for k in before if k.endswith("running_mean"))
    assert not torch.equal(model.net.state_dict()[bn], before[bn])


# ---- staged runs through the CLI ----
@pytest.fixture(scope="module")
def cifar_stage(photo_root, tmp_path_factory):
    """A first stage (base_cnn on 3 classes, 2 epochs) run from tmp/, leaving lightning_logs/stage1/best.ckpt."""
    cwd = tmp_path_factory.mktemp("stages")
    run_cli(
        "fit", "transfer/1_scratch", photo_root,
        "--experiment stage1 --trainer.max_epochs 2 --data.batch_size 16", cwd=cwd,
    )  # fmt: skip
    return cwd


def test_init_from_another_class_count_loads_the_body_and_a_new_head(cifar_stage, photo_root):
    best = cifar_stage / "lightning_logs" / "stage1" / "best.ckpt"
    assert best.is_symlink() and best.resolve().is_file()
    saved = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert saved["net.classifier.weight"].shape == (3, 64)
    model = ImageClassifier(net="base_cnn", num_classes=2, init={"weights": str(best), "strict": False})
    with pytest.warns(UserWarning, match=r"skipped classifier.weight \(shape \(3, 64\) vs \(2, 64\)\)"):
        model.setup("fit")
    for k, v in model.net.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(v, saved[f"net.{k}"]), k
    assert model.net.classifier.weight.shape == (2, 64)
    with pytest.raises(
        ValueError, match="trained for another number of classes; set model.init.strict: false"
    ):
        ImageClassifier(net="base_cnn", num_classes=2, init={"weights": str(best)}).setup("fit")


def test_frozen_stage_resumes_with_ckpt_path_frozen_and_from_its_epoch(cifar_stage, photo_root, monkeypatch):
    monkeypatch.chdir(cifar_stage)
    best = cifar_stage / "lightning_logs" / "stage1" / "best.ckpt"
    common = (
        f"--experiment stage2 --data.batch_size 16 --data.classes [cat,owl] "
        f"--model.init.weights {best} --test_after_fit false"
    )
    first = run_cli("fit", "transfer/2_cifar_frozen", photo_root, common + " --trainer.max_epochs 2")
    assert first.trainer.current_epoch == 2
    body = {k: v.clone() for k, v in first.model.net.state_dict().items() if not k.startswith("classifier.")}
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["datamodule_hyper_parameters"]["classes"] == ["cat", "owl"]
    resumed = run_cli(
        "fit", "transfer/2_cifar_frozen", photo_root, common + f" --trainer.max_epochs 4 --ckpt_path {last}"
    )
    assert resumed.trainer.current_epoch == 4 and resumed.trainer.global_step == 2 * first.trainer.global_step
    for k, v in resumed.model.net.state_dict().items():  # still frozen after the resume
        if not k.startswith("classifier."):
            assert torch.equal(v, body[k]), k
    assert resumed.model.class_names == ["cat", "owl"]


@pytest.mark.parametrize("config", TRANSFER_CONFIGS, ids=[c.stem for c in TRANSFER_CONFIGS])
def test_every_transfer_config_fast_dev_run(config, photo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    extra = "--trainer.fast_dev_run true --data.batch_size 4 --data.image_size 32"
    if (cfg["model"].get("init") or {}).get(
        "weights"
    ):  # an earlier stage's weights: a 10-class net of the same kind
        path = tmp_path / "earlier.pt"
        torch.save(create_model(cfg["model"]["net"], num_classes=10).state_dict(), path)
        extra += f" --model.init.weights {path} --model.init.strict false"
    cli = run_cli("fit", config, photo_root, extra)
    assert cli.model.class_names == ["cat", "dog", "owl"]
    # no test_size or test_dir: test scores the validation split, and its metrics say so
    assert cli.trainer.state.finished and "test_on_val/acc" in cli.trainer.callback_metrics
    names = {type(cb).__name__ for cb in cli.trainer.callbacks}
    assert ("FreezeBackbone" in names) == ("frozen" in config.stem)
    assert ("BatchNormEval" in names) == ("finetune" in config.stem)
