"""Augmentation from YAML: every step and preset builds, the batched path draws what the per-image path draws,
validation and test data are never augmented, MixUp/CutMix give soft targets the loss accepts."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from cifar_pl.data import CIFAR10DataModule
from cifar_pl.data.transforms import (
    PRESETS,
    STEPS,
    Augmentation,
    batch_crop,
    batch_cutout,
    batch_flip,
    resolve,
)
from cifar_pl.lit import ImageClassifier

from .helpers import CONFIGS, run_cli

IMAGE_STEPS = [n for n, s in STEPS.items() if s.batch_level is None]


def _images(n=16, seed=0):
    return torch.randint(
        0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize(
    "name, path",
    [(n, "per_image") for n in IMAGE_STEPS if STEPS[n].image is not None]
    + [(n, "batched") for n in IMAGE_STEPS if STEPS[n].batched is not None],
)
def test_each_step_keeps_shape_dtype_and_range(name, path):
    aug = Augmentation.from_config([{"name": name}], on_device=path == "batched")
    x = _images()
    index = torch.arange(len(x))  # only alternating_flip reads it (tests/test_speed.py tests that step)
    out = (
        aug.on_batch()(x, index, 0) if path == "batched" else torch.stack([aug.per_image()(img) for img in x])
    )
    assert out.shape == x.shape
    if STEPS[
        name
    ].float_out:  # Keras/TF steps hand on unrounded floats in [0, 1] units (contrast: above 1 too)
        assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 255 / 255 * 2.2 + 1e-6
        out = out.mul(255).round().clamp(0, 255).to(torch.uint8)
    assert out.dtype == torch.uint8
    assert not torch.equal(out, x) or name in ("grayscale", "random_erasing")  # p < 1 may leave a batch alone


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_build_and_keep_shape(preset):
    aug = Augmentation.from_config(preset)
    x = _images()
    fn = aug.on_batch() or aug.per_image() or (lambda t: t)
    out = fn(x) if aug.batched or not aug.image_steps else torch.stack([fn(img) for img in x])
    floats = any(STEPS[st["name"]].float_out for st in aug.image_steps)
    assert out.shape == x.shape and out.dtype == (torch.float32 if floats else torch.uint8)
    keras = (
        "keras_flip_rotate_contrast",
        "flip_rotate_contrast20",
        "keras_saturation",
        "keras_saturation_traced",
    )
    assert aug.batched == (preset in ("standard", "shift_gray", "mirror_crop_flip", *keras))


def test_steps_with_parameters_from_yaml():
    steps = [
        {"name": "random_crop", "padding": 2, "padding_mode": "constant"},
        {"name": "rotation", "degrees": 30},
        {"name": "color_jitter", "contrast": 0.2, "saturation": [0.5, 2.0]},
        {"name": "grayscale", "p": 0.5},
        {"name": "cutout", "size": 8, "count": [1, 3]},
        {"name": "randaugment", "num_ops": 1, "magnitude": 5},
    ]
    out = Augmentation.from_config(steps).per_image()(_images(1)[0])
    assert out.shape == (3, 32, 32)


def test_unknown_step_lists_the_valid_names():
    with pytest.raises(ValueError) as e:
        resolve([{"name": "cutuot"}])
    msg = str(e.value)
    assert "Did you mean 'cutout'" in msg and all(n in msg for n in ["random_crop", "autoaugment", "mixup"])
    with pytest.raises(
        ValueError, match="augment preset: unknown value 'strong'. Choose one of none, standard"
    ):
        resolve("strong")
    with pytest.raises(ValueError, match="augment step 'hflip' has no parameter prob; its parameters: p"):
        Augmentation.from_config([{"name": "hflip", "prob": 0.5}]).on_batch()
    with pytest.raises(ValueError, match="autoaugment has no batched version"):
        Augmentation.from_config("autoaugment_cutout", on_device=True)


def test_bad_augmentation_fails_when_the_datamodule_is_built():
    with pytest.raises(ValueError, match="Unknown augmentation 'flip'"):
        CIFAR10DataModule(augment=[{"name": "flip"}])


def test_batched_crop_reaches_every_offset_with_equal_frequency():
    # Image whose pixel value is its position: the crop offset can be read back from the corner pixel.
    pos = torch.arange(32 * 32).reshape(1, 1, 32, 32)
    torch.manual_seed(0)
    n = 81 * 400
    out = batch_crop(pos.expand(n, 1, 32, 32), padding=4, padding_mode="constant", fill=-1)
    # The top-left output pixel shows where the crop started: (dy - 4, dx - 4) when inside the image.
    centre = out[:, 0, 15, 15]  # always inside the image: position (11 + dy, 11 + dx)
    dy, dx = centre // 32 - 11, centre % 32 - 11
    counts = torch.bincount((dy * 9 + dx).long(), minlength=81)
    assert (counts > 0).all() and len(counts) == 81  # all 9 x 9 offsets reached
    assert counts.float().std() / counts.float().mean() < 0.15  # uniform: each about n / 81 = 400
    # Same draws as the per-image version: every offset is one of the (2p+1)^2 windows of the padded image.
    padded = F.pad(pos, (4, 4, 4, 4), value=-1)[0, 0]
    for i in range(20):
        window = padded[dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        assert torch.equal(out[i, 0], window)


def test_reflect_padding_matches_torchvision():
    x = _images(1)
    torch.manual_seed(3)
    out = batch_crop(x, 4, "reflect")
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="reflect").to(torch.uint8)[0]
    windows = [padded[:, i : i + 32, j : j + 32] for i, j in itertools.product(range(9), range(9))]
    assert any(torch.equal(out[0], w) for w in windows)


def test_batched_flip_frequency_and_fresh_draws():
    torch.manual_seed(0)
    x = _images(4000)
    a, b = batch_flip(x, 0.5), batch_flip(x, 0.5)
    flipped_a = (a == x.flip(3)).flatten(1).all(1)
    assert 0.47 < flipped_a.float().mean() < 0.53  # p = 0.5 per image
    assert ((a == x).flatten(1).all(1) | flipped_a).all()  # each image is either itself or its mirror
    assert not torch.equal(a, b)  # a new epoch draws anew


def test_cutout_square_may_fall_outside_the_image():
    torch.manual_seed(0)
    x = torch.full((2000, 1, 32, 32), 255, dtype=torch.uint8)
    out = batch_cutout(x, 16, count=1, fill=0)
    holes = (out == 0).flatten(1).sum(1)
    assert holes.max() == 256 and holes.min() < 256  # whole squares inside, clipped ones at the border
    assert (holes >= 64).all()  # the centre is always inside: at least a quarter of the square stays
    counts = (batch_cutout(x[:200], 4, count=[0, 2], fill=0) == 0).flatten(1).sum(1)
    assert (counts == 0).any() and (counts > 16).any()  # random count per image


def test_validation_and_test_data_are_never_augmented(cifar10_root):
    for augment in ["standard", "autoaugment_cutout"]:
        dm = CIFAR10DataModule(data_dir=str(cifar10_root), augment=augment, val_size=20, batch_size=20)
        dm.setup()
        assert dm.val_set.transform is None and dm.test_set.transform is None

        class NotTraining:
            training = False

        dm.trainer = NotTraining()
        for loader, ds in [(dm.val_dataloader(), dm.val_set), (dm.test_dataloader(), dm.test_set)]:
            x, y = dm.on_after_batch_transfer(next(iter(loader)), 0)
            torch.testing.assert_close(x, dm.normalize(ds.images[: len(x)]))


def test_training_batches_are_augmented_on_the_device_path(cifar10_root):
    dm = CIFAR10DataModule(data_dir=str(cifar10_root), augment="standard", batch_size=64)
    dm.setup("fit")
    assert dm.augmentation.batched and dm.train_set.transform is None and dm.num_workers == 0

    class Training:
        training = True

    dm.trainer = Training()
    x, y = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    a, _ = dm.on_after_batch_transfer((x, y), 0)
    b, _ = dm.on_after_batch_transfer((x, y), 0)
    assert a.dtype == torch.float32 and not torch.equal(a, b)


@pytest.mark.parametrize("step", ["mixup", "cutmix"])
def test_mixup_cutmix_soft_targets_sum_to_one_and_train(step, cifar10_root):
    dm = CIFAR10DataModule(data_dir=str(cifar10_root), augment=[{"name": step, "alpha": 1.0}], batch_size=32)
    dm.setup("fit")

    class Training:
        training = True

    dm.trainer = Training()
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert y.shape == (32, 10) and torch.allclose(y.sum(1), torch.ones(32))
    assert (y.max(1).values < 1).any()  # mixed
    model = ImageClassifier(net="model_a")
    loss = model._shared_step((x, y), "val")
    assert torch.isfinite(loss)
    loss.backward()


def test_augment_examples_shape(cifar10_root):
    for augment in ["standard", "color_rotate_flip"]:
        dm = CIFAR10DataModule(data_dir=str(cifar10_root), augment=augment)
        dm.setup("fit")
        out = dm.augment_examples(dm.train_set.images[:3], draws=4)
        assert out.shape == (3, 4, 3, 32, 32) and out.dtype == torch.uint8
        assert not torch.equal(out[0, 0], out[0, 1]) or not torch.equal(out[0, 1], out[0, 2])


def test_preview_command_writes_pngs(cifar10_root, tmp_path, monkeypatch):
    from PIL import Image

    from cifar_pl.viz.__main__ import run

    monkeypatch.chdir(tmp_path)
    written = run(
        [
            "augment",
            "--out",
            str(tmp_path / "prev"),
            "--draws",
            "3",
            "--config",
            str(CONFIGS / "quickstart.yaml"),
            "--data.data_dir",
            str(cifar10_root),
            "--data.augment",
            "autoaugment_cutout",
        ]
    )
    assert sorted(p.name for p in written) == ["augmentations.png", "samples.png"]
    for p in written:
        with Image.open(p) as im:
            im.verify()
            assert im.size[0] > 300


def test_fit_logs_the_preview_to_tensorboard(cifar10_root, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    run_cli(
        "fit",
        "quickstart",
        cifar10_root,
        "--trainer.max_epochs 1 --data.augment standard --experiment prev --test_after_fit false",
    )
    events = EventAccumulator(str(tmp_path / "lightning_logs" / "prev" / "version_0"))
    events.Reload()
    assert {"data/samples", "data/augmentations"} <= set(events.Tags()["images"])


@pytest.mark.parametrize("size", [64, 128])
def test_a_per_image_crop_keeps_the_images_size(size, tmp_path):
    # AutoAugment runs per image, so the whole pipeline does, random_crop included: it used to crop to 32 px
    from cifar_pl.data import ImageFolderDataModule

    from .helpers import write_photo_folder

    root = write_photo_folder(tmp_path / "p", ["a", "b"], 4)
    dm = ImageFolderDataModule(str(root), image_size=size, augment="autoaugment_cutout", batch_size=4)
    assert dm.augmentation.batched is False
    dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, size, size)
    assert dm.augment_examples(dm.train_set.images[:2], 2).shape[2:] == (3, size, size)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge"])
def test_batched_padding_modes_are_numpys(mode):
    # every padding_mode the config accepts runs on the batched path (symmetric once failed at the first batch)
    import numpy as np

    from cifar_pl.data.transforms import _pad

    x = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3), (3, 3)), mode=mode)
    assert np.array_equal(_pad(x, 3, mode, 0).numpy(), expected)
    aug = Augmentation.from_config([{"name": "random_crop", "padding": 3, "padding_mode": mode}])
    assert aug.batched and aug.on_batch()(x).shape == x.shape
