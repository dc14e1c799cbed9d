"""What the write-ups' experiments need: repeated sweeps with mean ± std, the test curve per epoch, activation
statistics, Keras' contrast, rescale-only inputs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_pl.callbacks.activations import FIELDS, HISTORY_FILE, nonlinearity_inputs
from cifar_pl.data import CIFAR10DataModule
from cifar_pl.data.transforms import Augmentation, batch_channel_contrast, resolve
from cifar_pl.errors import BadValue
from cifar_pl.sweep import group_finals, load_sweep, overlap_lines, summary_lines
from cifar_pl.viz.curves import compare_figure, final_bars_figure, read_scalars

from .conftest import CONFIGS, effective_config, run_cli


def _sweep(tmp_path, **spec):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"sweep": "s", "config": "a.yaml", **spec}))
    return load_sweep(path)


def test_seeds_make_groups_of_runs_that_differ_only_in_the_seed(tmp_path):
    spec = _sweep(tmp_path, grid={"model.lr": [0.1, 0.2]}, seeds=[7, 8])
    assert list(spec["groups"]) == ["lr=0.1", "lr=0.2"]
    assert spec["groups"]["lr=0.1"] == ["lr=0.1,seed=7", "lr=0.1,seed=8"]
    assert spec["runs"]["lr=0.2,seed=8"] == {"model.lr": 0.2, "seed_everything": 8}
    assert len(spec["runs"]) == 4
    assert _sweep(tmp_path, runs={"a": {}}, repeats=3)["groups"]["a"] == ["a,seed=0", "a,seed=1", "a,seed=2"]
    plain = _sweep(tmp_path, runs={"a": {}})
    assert plain["groups"] == {"a": ["a"]} and plain["seeds"] == [] and plain["runs"] == {"a": {}}
    for bad, says in (
        ({"seeds": [1, 1]}, "distinct"),
        ({"seeds": [0.5]}, "distinct whole numbers"),
        ({"seeds": []}, "distinct whole numbers"),
        ({"repeats": 0}, "1 to 100"),
        ({"repeats": True}, "1 to 100"),
        ({"seeds": [0], "repeats": 2}, "not both"),
        ({"seeds": [0], "args": {"seed_everything": 1}}, "`args:` sets seed_everything"),
        ({"seeds": [0], "runs": {"b": {"seed_everything": 1}}}, "run 'b' sets seed_everything"),
        ({"runs": {"b,seed=1": {}}}, "names the repeats"),
    ):
        spec = {"runs": {"a": {}}, **bad}
        with pytest.raises(BadValue, match=says):
            _sweep(tmp_path, **spec)


def _group(finals: list[float], metric: str = "test/acc") -> list[dict]:
    return [{metric: [(0, v - 0.1), (1, v)], "train/loss": [(0, 2.0), (1, 1.0)]} for v in finals]


def test_summary_gives_mean_and_std_and_says_which_intervals_overlap():
    groups = {
        "a": _group([0.50, 0.52, 0.54]),
        "b": _group([0.51, 0.53, 0.55]),
        "c": _group([0.70, 0.71, 0.72]),
    }
    finals = group_finals(groups, "test/acc")
    mean, std, n = finals["a"]
    assert (round(mean, 6), round(std, 6), n) == (0.52, 0.02, 3)  # sample std (n - 1)
    said = overlap_lines(finals, "test/acc")
    assert len(said) == 3
    assert said[0].startswith("- a and b: test/acc intervals overlap")
    assert said[1].startswith("- c above a on test/acc by 0.1900") and "do not overlap" in said[1]
    text = "\n".join(summary_lines(groups, repeated=True))
    assert "| a | 3 | 2 | 1.0000 ± 0.0000 | 0.5200 ± 0.0200 |" in text
    assert "Overlap of mean ± std intervals, test/acc:" in text
    # one run per group: plain values, no overlap statements
    single = "\n".join(summary_lines({"a": _group([0.5])}, repeated=False))
    assert "| a | 2 | 1.0000 | 0.5000 |" in single and "overlap" not in single


def test_repeated_runs_are_drawn_as_a_band_and_error_bars():
    groups = {"a": _group([0.50, 0.52, 0.54]), "b": _group([0.6])}
    ax = compare_figure(groups, "test/acc").axes[0]
    assert len(ax.collections) == 1  # one ±std band, for the repeated group only
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.54) and band[:, 1].min() == pytest.approx(0.40)
    assert "a (mean ± std, n=3)" in [t.get_text() for t in ax.get_legend().get_texts()]
    bars = final_bars_figure(groups, ("test/acc",)).axes[0]
    heights = [round(p.get_height(), 4) for p in bars.patches]
    assert heights == [0.52, 0.6]
    errorbars = [c for c in bars.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(errorbars) == 1  # the std as error bars


def test_a_seeded_sweep_runs_each_seed_and_summarises_groups(cifar10_root, tmp_path, monkeypatch, capsys):
    from cifar_pl.sweep import main as sweep_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "sweep": "rep", "config": str(CONFIGS / "model_a.yaml"), "runs": {"a": {}, "b": {}}, "seeds": [3, 4],
        "args": {"trainer.max_epochs": 1, "trainer.limit_train_batches": 2, "data.batch_size": 16},
    }))  # fmt: skip
    extra = ["--data.data_dir", str(cifar10_root), "--trainer.enable_progress_bar", "false"]
    assert sweep_main([str(tmp_path / "s.yaml"), "--only", "a", *extra]) == 0
    runs = tmp_path / "lightning_logs" / "rep"
    seeds = [yaml.safe_load((runs / f"a,seed={s}" / "version_0" / "config.yaml").read_text())["seed_everything"]
             for s in (3, 4)]  # fmt: skip
    assert seeds == [3, 4]
    summary = (runs / "plots" / "summary.md").read_text()
    assert "| a | 2 | 1 |" in summary and " ± " in summary
    assert "| b |" not in summary  # a group with no run yet is left out, not drawn empty
    # --only takes a group name for all its seeds: both are done, so both are skipped
    assert sweep_main([str(tmp_path / "s.yaml"), "--only", "a", *extra]) == 0
    assert capsys.readouterr().out.count("finished before, skipped") == 2


def _fit_weights(cifar10_root, tmp_path, name: str, callbacks: str = ""):
    cli = run_cli("fit", "model_a", cifar10_root,
                  f"--experiment {name} --trainer.max_epochs 2 --data.batch_size 32 --seed_everything 5 "
                  f"--model.scheduler constant {callbacks}", cwd=tmp_path)  # fmt: skip
    return cli, {k: v.clone() for k, v in cli.model.net.state_dict().items()}


def test_test_each_epoch_is_a_curve_that_changes_nothing_else(cifar10_root, tmp_path):
    _, plain = _fit_weights(cifar10_root, tmp_path, "plain")
    cli, watched = _fit_weights(
        cifar10_root, tmp_path, "watched",
        "--trainer.callbacks+=cifar_pl.callbacks.TestEachEpoch "
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


# ---- write-up 003, task 4: Oxford 17 Flowers in class folders, and every sweep's nets at their image size ----
def _flowers17_files(root, numbers, layout: str):
    """Tiny JPEGs ``image_NNNN.jpg`` coloured by their official class (label (NNNN - 1) // 80), in the published
    layout (``jpg/``) or in class folders (``00_daffodil/`` ...) like the copy in ../shared/data/flowers17."""
    from cifar_pl.data import FLOWERS17_CLASSES

    from .conftest import PHOTO_COLOURS, write_photo

    for n in numbers:
        label = (n - 1) // 80
        folder = root / "jpg" if layout == "published" else root / f"{label:02d}_{FLOWERS17_CLASSES[label]}"
        write_photo(folder / f"image_{n:04d}.jpg", PHOTO_COLOURS[label % 4], (12, 10), seed=n)
    return root


def test_flowers17_reads_class_folders_as_the_published_layout(tmp_path):
    from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule

    three = FLOWERS17_CLASSES[:3]  # images 1-240
    both = [
        Flowers17DataModule(str(_flowers17_files(tmp_path / layout, range(1, 241), layout)), image_size=8,
                            classes=three, cache=False)
        for layout in ("published", "folders")
    ]  # fmt: skip
    for dm in both:
        dm.setup("fit")
        dm.setup("test")
    published, folders = both
    assert folders.classes == three and folders.train_set.labels.bincount().tolist() == [40, 40, 40]
    for a, b in zip(
        (published.train_set, published.val_set, published.test_set),
        (folders.train_set, folders.val_set, folders.test_set),
        strict=True,
    ):
        assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    # snowdrops (images 81-160) are drawn green: the label follows the file, in the official order
    assert folders.train_set.images[folders.train_set.labels == 1].float()[:, 1].mean() > 150


def test_flowers17_class_folders_take_the_official_split(tmp_path):
    import numpy as np
    from scipy.io import savemat

    from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule

    root = _flowers17_files(tmp_path / "f", range(1, 161), "folders")
    rng = np.random.default_rng(0)
    perm = rng.permutation(np.arange(1, 1361))
    splits = {"trn1": perm[:680], "val1": perm[680:1020], "tst1": perm[1020:]}
    splits |= {f"{k[:3]}{s}": v for k, v in splits.items() for s in (2, 3)}
    savemat(root / "datasplits.mat", {k: v[None, :].astype(np.float64) for k, v in splits.items()})
    dm = Flowers17DataModule(str(root), image_size=8, classes=FLOWERS17_CLASSES[:2], cache=False)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.test_set) == sum(1 <= n <= 160 for n in splits["tst1"])
    assert len(dm.train_set) == sum(1 <= n <= 160 for n in splits["trn1"])


def test_flowers17_class_folder_errors_say_what_to_do(tmp_path):
    import shutil

    from cifar_pl.data import Flowers17DataModule

    root = _flowers17_files(tmp_path / "f", [1, 2, 81, 82], "folders")
    with pytest.raises(FileNotFoundError, match=r"no class folder for \['lily_valley'.*pass --data.classes"):
        Flowers17DataModule(str(root), image_size=8, cache=False).setup("fit")
    shutil.copy(root / "00_daffodil" / "image_0001.jpg", root / "01_snowdrop" / "image_0003.jpg")
    with pytest.raises(
        ValueError, match=r"image_0003.jpg' is in 01_snowdrop/, but image 3 is a 00_daffodil.*move"
    ):
        Flowers17DataModule(str(root), image_size=8, classes=["daffodil", "snowdrop"], cache=False).setup(
            "fit"
        )
    with pytest.raises(FileNotFoundError, match="no Oxford 17 Flowers layout.*class folders"):
        Flowers17DataModule(str(tmp_path)).setup("fit")


@pytest.mark.real_data
def test_real_flowers17_class_folders_read_with_official_labels(real_data):
    from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule
    from cifar_pl.images import read_image

    dm = Flowers17DataModule(str(real_data / "flowers17"), image_size=16)
    dm.setup("fit")
    dm.setup("test")
    parts = (dm.train_set, dm.val_set, dm.test_set)
    for part, per_class in zip(parts, (40, 20, 20), strict=True):
        assert part.labels.bincount().tolist() == [per_class] * 17
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([p.labels for p in parts])
    iris = real_data / "flowers17" / "05_iris" / "image_0407.jpg"
    hits = (images == torch.from_numpy(read_image(iris, 16)).permute(2, 0, 1)).flatten(1).all(1)
    assert labels[hits].tolist() == [FLOWERS17_CLASSES.index("iris")]


SEED_SWEEPS = sorted((CONFIGS / "seeds" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SEED_SWEEPS, ids=[p.stem for p in SEED_SWEEPS])
def test_every_seed_sweep_run_builds_its_net_for_its_image_size(path):
    """Each run's net, with its net_kwargs, takes the images its data gives (a fixed flatten head built for 32 px
    would fail on Flowers17's 64 px)."""
    from cifar_pl.models import create_model

    spec = load_sweep(path)
    base = yaml.safe_load((CONFIGS.parent / spec["configs"][0]).read_text())
    for members in spec["groups"].values():
        run = {**spec["args"], **spec["runs"][members[0]]}
        net = run.get("model.net", base["model"]["net"])
        kwargs = run.get("model.net_kwargs", base["model"].get("net_kwargs") or {})
        size = run.get("data.init_args.image_size", run.get("data.image_size", 32))
        model = create_model(net, num_classes=17, **kwargs).eval()
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


def test_a_derived_seed_config_keeps_its_base_recipe():
    gap, base = (effective_config(CONFIGS / "seeds" / f"{n}.yaml") for n in ("001_gap", "001_conv_blocks"))
    assert gap["model"]["net"] == "model_gap" and gap["trainer"]["max_epochs"] == 120
    for key in ("optimizer", "lr", "weight_decay", "scheduler"):
        assert gap["model"][key] == base["model"][key], key
