"""What the write-ups' experiments need (configs/writeups/): the test curve per epoch, activation statistics, Keras'
contrast, rescale-only inputs, the write-ups' presets and sweeps as their authors ran them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_pl.callbacks.activations import nonlinearity_inputs
from cifar_pl.data import CIFAR10DataModule
from cifar_pl.data.transforms import Augmentation, batch_channel_contrast, resolve
from cifar_pl.runs import ACTIVATION_FIELDS as FIELDS
from cifar_pl.runs import ACTIVATION_STATS as HISTORY_FILE
from cifar_pl.sweeps.spec import load_sweep
from cifar_pl.viz.curves import read_scalars

from .helpers import CONFIGS, effective_config, run_cli


def _fit_weights(cifar10_root, tmp_path, name: str, callbacks: str = ""):
    cli = run_cli("fit", "model_a", cifar10_root,
                  f"--experiment {name} --trainer.max_epochs 2 --data.batch_size 32 --seed_everything 5 "
                  f"--model.schedule.name constant {callbacks}", cwd=tmp_path)  # fmt: skip
    return cli, {k: v.clone() for k, v in cli.model.net.state_dict().items()}


def test_evaluate_each_epoch_is_a_curve_that_changes_nothing_else(cifar10_root, tmp_path):
    _, plain = _fit_weights(cifar10_root, tmp_path, "plain")
    cli, watched = _fit_weights(
        cifar10_root, tmp_path, "watched",
        "--trainer.callbacks+=cifar_pl.callbacks.EvaluateEachEpoch "
        "--trainer.callbacks+=cifar_pl.callbacks.ActivationStats --trainer.callbacks.every_n_steps 2",
    )  # fmt: skip
    # the same training: neither callback draws a random number or changes a weight
    assert all(torch.equal(plain[k], watched[k]) for k in plain)
    curve = read_scalars(tmp_path / "lightning_logs" / "watched")
    assert [e for e, _ in curve["clean_test/acc"]] == [0, 1]
    # the last point is the test split scored with the final weights, as a direct evaluation gives it
    dm, model = cli.datamodule, cli.model.eval()
    with torch.no_grad():
        logits = model.net(dm.normalize(dm.test_set.take(slice(0, len(dm.test_set)))))
    direct = float((logits.argmax(1) == dm.test_set.labels).float().mean())
    assert curve["clean_test/acc"][-1][1] == pytest.approx(direct, abs=1e-6)
    # no checkpoint is chosen by it
    assert all(cb.monitor != "clean_test/acc" for cb in cli.trainer.checkpoint_callbacks)


def test_activation_statistics_are_logged_kept_and_drawn(cifar10_root, tmp_path):
    from cifar_pl.viz.__main__ import main as viz_main

    cli, _ = _fit_weights(cifar10_root, tmp_path, "acts",
                          "--trainer.callbacks+=cifar_pl.callbacks.ActivationStats --trainer.callbacks.every_n_steps 2 "
                          "--trainer.callbacks.max_layers 2")  # fmt: skip
    run = tmp_path / "lightning_logs" / "acts" / "version_0"
    data = json.loads((run / HISTORY_FILE).read_text())
    layers = [name for name, _ in nonlinearity_inputs(cli.model.net, 2)]
    assert data["fields"] == list(FIELDS) and list(data["layers"]) == layers and len(layers) == 2
    steps_per_epoch = cli.trainer.num_training_batches
    rows = data["layers"][layers[0]]
    assert [r[0] for r in rows] == list(range(0, 2 * steps_per_epoch, 2))
    for _, _mean, std, p15, p50, p85 in rows:
        assert p15 <= p50 <= p85 and std > 0
    events = EventAccumulator(str(run), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    assert f"activations/{layers[0]}" in events.Tags()["histograms"]
    assert f"activations/{layers[1]}/p85" in events.Tags()["scalars"]
    # the history travels in checkpoints, so a resumed run draws the whole run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    kept = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ActivationStats"))
    assert kept["history"][layers[0]] == rows
    assert viz_main(["activations", str(run.parent), "--out", str(tmp_path / "viz")]) == 0
    assert (tmp_path / "viz" / "activations_acts.png").stat().st_size > 10_000


def test_first_step_statistics_are_those_of_the_layer_input(tmp_path):
    from cifar_pl.callbacks import ActivationStats

    net = torch.nn.Sequential(torch.nn.Linear(4, 300), torch.nn.ReLU(inplace=True), torch.nn.Linear(300, 2))
    cb = ActivationStats(sample=100)
    handle = net[1].register_forward_pre_hook(cb._hook("1"))
    x = torch.randn(8, 4)
    pre = net[0](x).flatten()[:: (8 * 300) // 100][:100]
    cb._recording = True
    net(x)  # in place ReLU: the hook must see the input before it is overwritten
    handle.remove()
    stats, values = cb._batch["1"]
    torch.testing.assert_close(values, pre)
    want = torch.stack([pre.mean(), pre.std(), *torch.quantile(pre, torch.tensor([0.15, 0.5, 0.85]))])
    torch.testing.assert_close(stats, want)


def test_keras_contrast_keeps_each_channels_mean():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(40, 200, (6, 3, 8, 8), generator=gen, dtype=torch.uint8)
    out = batch_channel_contrast(x, (1.5, 1.5))
    xf = x.float()
    mean = xf.mean((2, 3), keepdim=True)
    torch.testing.assert_close(out, ((xf - mean) * 1.5 + mean).round().clamp(0, 255).to(torch.uint8))
    torch.manual_seed(0)
    varied = batch_channel_contrast(x, (0.8, 1.2)).float()
    ratio = (varied - mean).std((1, 2, 3)) / (xf - mean).std((1, 2, 3))
    assert ((ratio > 0.78) & (ratio < 1.22)).all() and ratio.std() > 0.01  # one factor per image
    per_image = Augmentation.from_config(
        [{"name": "channel_contrast", "factor": [1.5, 1.5]}], on_device=False
    )
    torch.testing.assert_close(per_image.per_image()(x[0]), out[0])
    assert resolve([{"name": "channel_contrast", "factor": 0.2}])[0]["factor"] == 0.2


def test_write_up_presets_are_the_recipes():
    steps = {name: resolve(name) for name in ("mirror_crop_flip", "crop_flip_rotate15", "keras_flip_rotate_contrast", "keras_saturation")}  # fmt: skip
    assert steps["mirror_crop_flip"][0]["padding_mode"] == "symmetric"
    assert Augmentation.from_config("mirror_crop_flip").batched  # runs on the device
    assert [s["name"] for s in steps["crop_flip_rotate15"]] == ["random_crop", "hflip", "rotation"]
    assert (
        steps["crop_flip_rotate15"][0]["padding_mode"] == "constant"
        and steps["crop_flip_rotate15"][2]["degrees"] == 15
    )
    # Keras' own layers run on the same inputs in tests/reference/
    assert [s["name"] for s in steps["keras_flip_rotate_contrast"]] == [
        "hflip",
        "keras_rotation",
        "keras_contrast",
    ]
    assert steps["keras_flip_rotate_contrast"][1]["factor"] == 0.05  # RandomRotation(0.05): 0.05 turn
    assert steps["keras_saturation"][0]["name"] == "hsv_saturation"


def test_rescale_only_inputs(cifar10_root):
    dm = CIFAR10DataModule(str(cifar10_root), val_size=24, stats="rescale")
    dm.setup("fit")
    x = dm.train_set.take(slice(0, 4))
    torch.testing.assert_close(dm.normalize(x), x.float() / 255)


# ---- every write-up sweep's nets at their image size (write-up 003, task 4: Oxford 17 Flowers at 64 px) ----
WRITEUP_SWEEPS = sorted((CONFIGS / "writeups" / "sweeps").glob("*.yaml"))


def _resolved(path: Path) -> dict:
    """A config file as dotted keys, its ``config:`` includes applied first (as LightningCLI composes them)."""
    raw = yaml.safe_load(path.read_text()) or {}
    out = {}
    for inc in [raw.pop("config")] if "config" in raw else []:
        out.update(_resolved(path.parent / inc))

    def flat(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict) and k in (
                "trainer",
                "model",
                "data",
                "init_args",
                "checkpoint",
                "optim",
                "schedule",
            ):
                flat(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    flat(raw)
    return out


@pytest.mark.parametrize("path", WRITEUP_SWEEPS, ids=[p.stem for p in WRITEUP_SWEEPS])
def test_every_writeup_sweep_run_builds_its_net_for_its_image_size(path):
    """Each run's net, with its net_kwargs, takes the images its data gives (a flatten head is built for the
    data's image size, which the CLI links into the model: Flowers17's 64 px)."""
    from cifar_pl.lit import ImageClassifier

    spec = load_sweep(path)
    base = _resolved(CONFIGS.parent / spec["configs"][0])
    for members in spec["groups"].values():
        run = {**spec["args"], **spec["runs"][members[0]]}
        net = run.get("model.net", base["model.net"])
        kwargs = run.get("model.net_kwargs", base.get("model.net_kwargs") or {})
        size = run.get(
            "data.init_args.image_size", run.get("data.image_size", base.get("data.init_args.image_size", 32))
        )
        model = ImageClassifier(net=net, num_classes=17, net_kwargs=kwargs, image_size=size).net.eval()
        with torch.no_grad():
            assert model(torch.zeros(2, 3, size, size)).shape == (2, 17), f"{members[0]}: {net} at {size} px"


INCLUDING = [p for p in sorted(CONFIGS.rglob("*.yaml")) if "config" in (yaml.safe_load(p.read_text()) or {})]


@pytest.mark.parametrize("path", INCLUDING, ids=[p.relative_to(CONFIGS).as_posix() for p in INCLUDING])
def test_a_config_that_includes_another_changes_it_with_dotted_keys(path):
    """``config: base.yaml`` then ``model: {net: x}`` replaces the base's whole ``model`` block (its optimiser,
    LR and schedule fall back to the defaults); ``model.net: x`` changes that one value."""
    cfg = yaml.safe_load(path.read_text())
    blocks = [k for k in ("trainer", "model", "data", "checkpoint") if isinstance(cfg.get(k), dict)]
    assert not blocks, (
        f"{path}: {blocks} as whole blocks would replace the included config's; use dotted keys"
    )


def test_a_derived_writeup_config_keeps_its_base_recipe():
    gap, base = (effective_config(CONFIGS / "writeups" / f"{n}.yaml") for n in ("001_gap", "001_conv_blocks"))
    assert gap["model"]["net"] == "model_gap" and gap["trainer"]["max_epochs"] == 120
    for group in ("optim", "schedule"):
        assert gap["model"][group] == base["model"][group], group


def test_evaluate_each_epoch_on_photos_without_a_test_split_says_it_scores_validation(
    photo_root, tmp_path, caplog
):
    """A photo folder with no test/ has no test split: the per-epoch curve is the validation split's, logged as
    clean_test_on_val/..., said once; never clean_test/acc (which a reader takes for held-out test accuracy)."""
    import logging

    with caplog.at_level(logging.INFO):
        run_cli("fit", "transfer/1_scratch", photo_root,
                "--experiment photos --trainer.max_epochs 2 --data.batch_size 16 --test_after_fit false "
                "--trainer.callbacks+=cifar_pl.callbacks.EvaluateEachEpoch", cwd=tmp_path)  # fmt: skip
    curve = read_scalars(tmp_path / "lightning_logs" / "photos")
    assert "clean_test/acc" not in curve
    assert [e for e, _ in curve["clean_test_on_val/acc"]] == [0, 1]
    # it is the validation accuracy of the same epoch
    assert [round(v, 6) for _, v in curve["clean_test_on_val/acc"]] == [
        round(v, 6) for _, v in curve["val/acc"]
    ]
    said = [r.getMessage() for r in caplog.records if "no test split of its own" in r.getMessage()]
    assert len(said) == 1
