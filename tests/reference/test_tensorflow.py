"""What TensorFlow and TF Keras 2, the libraries write-up 003's notebook ran, did with fixed inputs
(tf_fixtures.json, written by make_tf_fixtures.py where TensorFlow is installed: it is not a dependency), against
cifar_pl's versions of the same pieces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_pl.data.transforms import PRESETS, hsv_adjust_saturation, keras_adjust_contrast, keras_rotate

FIX = json.loads(Path(__file__).with_name("tf_fixtures.json").read_text())


def nchw(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32).permute(0, 3, 1, 2)


def test_fixtures_say_which_tensorflow_wrote_them():
    assert FIX["tensorflow"].startswith("2.") and FIX["tf_keras"].startswith("2.")


def test_rotation_equals_tf_keras_2():
    rot = FIX["rotation"]
    x = nchw(rot["images"])
    for turn, out in zip(rot["turns"], rot["outputs"], strict=True):
        ours = keras_rotate(x, torch.full((len(x),), turn * 360.0))
        assert (ours - nchw(out)).abs().max().item() < 1e-5  # the fixture keeps 6 decimals


def test_tf_keras_2_draws_one_contrast_factor_per_batch_in_0_2_to_2_2():
    c = FIX["contrast"]
    x, out = nchw(c["images"]), nchw(c["outputs"])
    mean = x.mean((2, 3), keepdim=True)
    moved = (x - mean).abs() > 0.05
    factors = ((out - mean) / (x - mean))[moved]
    # one factor for all 16 images (Keras 3 draws one per image): the author's run, and the preset, use one per batch
    assert factors.max() - factors.min() < 1e-3
    f = float(factors.median())
    assert 0.2 <= f <= 2.2
    ours = keras_adjust_contrast(x, torch.full((len(x),), f))
    assert (ours - out).abs().max().item() < 1e-4
    step = {s["name"]: s for s in PRESETS["keras_flip_rotate_contrast"]}["keras_contrast"]
    assert step["per"] == "batch" and step["factor"] == [0.8, 1.2]


def test_hsv_saturation_equals_tf_adjust_saturation():
    s = FIX["saturation"]
    pixels = torch.tensor(s["pixels"], dtype=torch.float32)  # P x 3, each pixel an image of one pixel
    x = pixels[:, :, None, None]
    for factor, out in zip(s["factors"], s["outputs"], strict=True):
        ours = hsv_adjust_saturation(x, torch.full((len(x),), factor))[:, :, 0, 0]
        assert (ours - torch.tensor(out)).abs().max().item() < 1e-5, factor
    # grey-blending (torchvision's ColorJitter saturation) is another operation: (1, 0, 0) at 0.5
    red = torch.tensor([[[[1.0]], [[0.0]], [[0.0]]]])
    assert hsv_adjust_saturation(red, torch.tensor([0.5]))[0, :, 0, 0].tolist() == pytest.approx(
        [1.0, 0.5, 0.5]
    )


def test_the_write_ups_saturation_layer_reused_one_factor_for_every_step():
    layer = FIX["saturation_layer"]
    assert layer["stateless_random_saturation_is_adjust_at_that_factor"]
    assert layer["preview_seeds"] == [1, 2, 3, 4, 5]  # the five eager preview calls of show_augmentation
    assert len(layer["fit_seeds"]) == 1 and layer["fit_steps"] > 1  # fit's graph: one seed, every step
    traced = layer["factor_of_seed"][str(layer["fit_seeds"][0])]
    (step,) = PRESETS["keras_saturation_traced"]
    assert step["factor"] == pytest.approx(traced, abs=1e-3)
    assert PRESETS["keras_saturation"] == [{"name": "hsv_saturation", "factor": [0.5, 2.0], "per": "batch"}]


def test_keras_compile_default_optimizer_is_rmsprop_with_kerass_epsilon():
    opt = FIX["saturation_layer"]["optimizer"]
    assert opt["name"] == "RMSprop" and opt["epsilon"] == 1e-7 and opt["rho"] == 0.9 and not opt["centered"]
    assert np.isclose(opt["learning_rate"], 1e-3)
