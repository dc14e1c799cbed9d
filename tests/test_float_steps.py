"""The float augmentation steps (Keras' and TensorFlow's layers) inside the pipeline: batched, unrounded, on the
device, normalised once, shown as pictures; their Keras/TF equivalence is in tests/reference/."""

from __future__ import annotations

import pytest
import torch

from cifar_pl.data import CIFAR10DataModule
from cifar_pl.data.transforms import Augmentation, batch_hsv_saturation, batch_keras_contrast
from cifar_pl.errors import BadValue


def test_keras_presets_run_batched_and_hand_on_floats(cifar10_root):
    dm = CIFAR10DataModule(
        str(cifar10_root), val_size=24, stats="rescale", augment="keras_flip_rotate_contrast"
    )
    dm.setup("fit")
    assert dm.augmentation.batched and dm._per_image is None  # no loader workers, the device does it
    x = dm.train_set.take(slice(0, 32))
    torch.manual_seed(0)
    out = dm.augment_batch(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out.max() > 1.0  # a contrast factor up to 2.2 is not clipped above, as in Keras
    assert out.min() >= 0.0  # ... and clipped below
    assert not torch.equal(out, out.round())  # not rounded back to whole pixel values
    torch.testing.assert_close(dm.normalize(out), out)  # stats rescale on [0, 1] floats: nothing more
    pictures = dm.augment_examples(x[:2], 3)
    assert pictures.dtype == torch.uint8 and pictures.shape == (2, 3, 3, 32, 32)


def test_float_steps_normalise_like_the_uint8_path():
    dm = CIFAR10DataModule(stats="cifar10")
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(dm.normalize(x.float() / 255), dm.normalize(x))


def test_per_batch_draws_one_factor_per_batch():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8) * 0.5 + 0.25
    mean = x.mean((2, 3), keepdim=True)
    for per, expect_one in (("batch", True), ("image", False)):
        out = batch_keras_contrast(x, (0.8, 1.2), per=per)
        f = ((out - mean) / (x - mean)).flatten(1).median(1).values
        assert (f.max() - f.min() < 1e-4) == expect_one
        assert f.min() >= 0.2 - 1e-4 and f.max() <= 2.2 + 1e-4
    sat = batch_hsv_saturation(torch.tensor([[[[1.0]], [[0.0]], [[0.0]]], [[[0.2]], [[0.6]], [[0.4]]]]), 0.5)
    hsv = torch.tensor([[1.0, 0.5, 0.5], [0.4, 0.6, 0.5]])  # HSV, not a blend with grey
    torch.testing.assert_close(sat[:, :, 0, 0], hsv)


@pytest.mark.parametrize(
    "augment, message",
    [
        (
            [{"name": "keras_rotation"}, {"name": "cutout", "size": 8}],
            "cutout works on uint8 pixels and cannot follow",
        ),
        ([{"name": "keras_rotation", "fill_mode": "mirror"}], "fill_mode: unknown value 'mirror'"),
        ([{"name": "keras_rotation", "factor": 0.7}], "factor"),
        ([{"name": "keras_contrast", "factor": [0.8, -1]}], "factor[1]"),
        ([{"name": "keras_contrast", "value_range": [1, 0]}], "value_range must be [low, high]"),
        ([{"name": "keras_contrast", "value_range": [0, "abc"]}], "value_range must be [low, high]"),
        ([{"name": "keras_contrast", "value_range": [0, float("nan")]}], "value_range must be [low, high]"),
        ([{"name": "hsv_saturation", "per": "epoch"}], "per: unknown value 'epoch'"),
        ([{"name": "autoaugment"}, {"name": "keras_contrast"}], "has only a batched version"),
    ],
)
def test_bad_float_pipelines_fail_when_built(augment, message):
    with pytest.raises(BadValue, match=message.replace("[", r"\[").replace("]", r"\]")):
        Augmentation.from_config(augment)


def test_flips_may_follow_float_steps():
    aug = Augmentation.from_config([{"name": "keras_rotation"}, {"name": "hflip"}])
    out = aug.on_batch()(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8))
    assert out.dtype == torch.float32
