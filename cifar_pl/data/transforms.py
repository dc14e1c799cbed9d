"""Augmentation chosen in YAML: named steps, presets, and a batched uint8 path for the common ones.

A pipeline is a preset name or a list of steps, each ``{name: <step>, <param>: <value>, ...}``:

    augment: standard
    augment: [{name: random_crop, padding: 4}, {name: hflip}, {name: cutout, size: 16}]

Image steps run on uint8 C x H x W tensors (torchvision v2 where it has the transform). ``random_crop``,
``hflip``, ``vflip``, ``shift``, ``grayscale`` and ``cutout`` also have a batched implementation that augments a whole uint8
batch at once on the training device, with the same distribution per image; a pipeline made only of those runs
batched. ``alternating_flip`` is batched only and needs ``resident: true`` (it knows each image by its index):
a random half of the images (new each run) is mirrored in even epochs, the other half in odd ones,
so every image is seen both ways every two epochs (the speed recipes' flip). Batch steps (``mixup``,
``cutmix``) mix normalised training batches and produce soft targets.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..checks import check_choice, check_number
from ..errors import BadValue

PRESETS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    # reflect-padded random crop + horizontal flip: the classic CIFAR recipe
    "standard": [{"name": "random_crop", "padding": 4, "padding_mode": "reflect"}, {"name": "hflip"}],
    # contrast +-20%, saturation 50-200%, rotation +-15 degrees, flip
    "color_rotate_flip": [
        {"name": "color_jitter", "contrast": 0.2, "saturation": [0.5, 2.0]},
        {"name": "rotation", "degrees": 15},
        {"name": "hflip"},
    ],
    # shifts of up to 10% of width/height, grayscale with p = 0.5, flip
    "shift_gray": [{"name": "shift", "fraction": 0.1}, {"name": "grayscale", "p": 0.5}, {"name": "hflip"}],
    # write-up 000: 4 px mirror padding (edge pixels repeated, "symmetric"), random 32x32 crop, flip
    "mirror_crop_flip": [
        {"name": "random_crop", "padding": 4, "padding_mode": "symmetric"},
        {"name": "hflip"},
    ],
    # write-up 002: torchvision RandomCrop(32, padding=4) (zero padding), flip, RandomRotation(15)
    "crop_flip_rotate15": [
        {"name": "random_crop", "padding": 4, "padding_mode": "constant"},
        {"name": "hflip"},
        {"name": "rotation", "degrees": 15},
    ],
    # write-up 003, augmentation 1, as its code ran: Keras' RandomFlip("horizontal"), RandomRotation(0.05) (a
    # 0.05 turn = +-18 degrees, reflection fill, bilinear) and RandomContrast((0.8, 1.2)), whose factor Keras
    # draws in [1 - 0.8, 1 + 1.2] = [0.2, 2.2] and clips only below 0 on images in [0, 1]; the author's TF Keras 2
    # draws one factor per batch (Keras 3: per image). tests/reference/ runs both Kerases on the same images.
    "keras_flip_rotate_contrast": [
        {"name": "hflip"},
        {"name": "keras_rotation", "factor": 0.05},
        {"name": "keras_contrast", "factor": [0.8, 1.2], "per": "batch"},
    ],
    # the same as the author's comment meant it ("contrast +-20%"): factor in [0.8, 1.2]
    "flip_rotate_contrast20": [
        {"name": "hflip"},
        {"name": "keras_rotation", "factor": 0.05},
        {"name": "keras_contrast", "factor": [0.2, 0.2], "per": "batch"},
    ],
    # write-up 003, augmentation 2, as the text means it: HSV saturation x U(0.5, 2), a new factor for every batch
    # (tf.image.stateless_random_saturation draws one factor per call, for the whole batch)
    "keras_saturation": [{"name": "hsv_saturation", "factor": [0.5, 2.0], "per": "batch"}],
    # ... and as its code ran: the layer's seed is a Python counter that moves only while TensorFlow traces the
    # training graph, so every step reuses one factor (TF 2.21 + tf_keras 2.21, the notebook's calls: seed
    # (8, 8), factor 1.797; tests/reference/tf_fixtures.json, "saturation_layer")
    "keras_saturation_traced": [{"name": "hsv_saturation", "factor": 1.797}],
    # DeVries & Taylor 2017 on top of Cubuk et al. 2019: crop + flip + AutoAugment (CIFAR-10 policy) + Cutout 16
    "autoaugment_cutout": [
        {"name": "random_crop", "padding": 4, "padding_mode": "reflect"},
        {"name": "hflip"},
        {"name": "autoaugment", "policy": "cifar10"},
        {"name": "cutout", "size": 16},
    ],
}


# ---- batched uint8 implementations ------------------------------------------------------------------


PaddingMode = Literal["reflect", "constant", "edge", "symmetric"]


def _pad_index(n: int, padding: int, mode: str) -> torch.Tensor:
    """Source index of each of the ``n + 2 * padding`` padded positions along one axis."""
    i = torch.arange(-padding, n + padding)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...
        return (n - 1) - ((n - 1) - i.abs()).abs()
    return torch.where(i < 0, -i - 1, torch.where(i >= n, 2 * n - 1 - i, i))  # symmetric: ... 1 0 | 0 1 ...


def _pad(x: torch.Tensor, padding: int, padding_mode: str, fill: int) -> torch.Tensor:
    """Pad the last two dims by ``padding`` on every side, with torchvision's RandomCrop mode names. The
    non-constant modes are one gather of precomputed indices: any dtype (uint8 here) on any device."""
    if padding_mode == "constant":
        return F.pad(x, (padding,) * 4, value=fill)
    h, w = x.shape[-2:]
    rows = _pad_index(h, padding, padding_mode).to(x.device)
    cols = _pad_index(w, padding, padding_mode).to(x.device)
    return x[..., rows[:, None], cols[None, :]]


def batch_crop(
    x: torch.Tensor, padding: int, padding_mode: PaddingMode = "reflect", fill: int = 0
) -> torch.Tensor:
    """Random crop of every image of an N x C x H x W batch from its padded version; each of the
    (2p+1)^2 offsets is equally likely, drawn independently per image."""
    n, c, h, w = x.shape
    if padding <= 0:
        return x
    check_choice("padding_mode", padding_mode, PaddingMode)
    xp = _pad(x, padding, padding_mode, fill)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    # Every h x w window of the padded images as a view (N, C, 2p+1, 2p+1, h, w); one indexed read picks
    # each image's window: ten times faster on the CPU than gathering with per-pixel index tensors.
    windows = xp.unfold(2, h, 1).unfold(3, w, 1)
    return windows[torch.arange(n, device=x.device), :, dy, dx]


def batch_flip(x: torch.Tensor, p: float = 0.5, dim: int = 3) -> torch.Tensor:
    """Flip each image along ``dim`` (3: horizontal, 2: vertical) with probability ``p``."""
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(dim), x)


def batch_grayscale(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Turn each image gray (3 equal channels, torchvision's luma weights) with probability ``p``."""
    gray = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(gray[:, None, None, None], TF.rgb_to_grayscale(x, num_output_channels=3), x)


def batch_cutout(
    x: torch.Tensor, size: int, count: int | Sequence[int] = 1, fill: Sequence[int] | int = 0
) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): ``count`` squares of side ``size`` per image (a [min, max] range draws
    the count per image), centred anywhere in the image, so a square may fall partly outside it."""
    n, c, h, w = x.shape
    lo, hi = (count, count) if isinstance(count, int) else tuple(count)
    counts = torch.randint(lo, hi + 1, (n,), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    mask = torch.zeros(n, h, w, dtype=torch.bool, device=x.device)
    for k in range(hi):
        cy = torch.randint(0, h, (n, 1, 1), device=x.device)
        cx = torch.randint(0, w, (n, 1, 1), device=x.device)
        top, left = cy - size // 2, cx - size // 2
        square = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
        mask |= square & (k < counts)[:, None, None]
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1).expand(1, c, 1, 1)
    return torch.where(mask[:, None], fill_t, x)


def batch_channel_contrast(x: torch.Tensor, factor: Sequence[float] = (0.8, 1.2)) -> torch.Tensor:
    """Keras' RandomContrast on a uint8 batch: per image a factor f ~ U(low, high), and each pixel of each
    channel moved to ``(v - mean) * f + mean`` around that channel's mean in that image, rounded and clipped."""
    n, c = x.shape[:2]
    low, high = float(factor[0]), float(factor[1])
    f = torch.empty(n, 1, 1, 1, device=x.device).uniform_(low, high)
    xf = x.float()
    mean = xf.mean((2, 3), keepdim=True)
    return ((xf - mean) * f + mean).round_().clamp_(0, 255).to(torch.uint8)


class ChannelContrast(nn.Module):
    """Per-image ``batch_channel_contrast`` on a uint8 C x H x W tensor."""

    def __init__(self, factor: Sequence[float] = (0.8, 1.2)):
        super().__init__()
        self.factor = tuple(factor)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return batch_channel_contrast(img[None], self.factor)[0]


class Cutout(nn.Module):
    """Per-image Cutout on a uint8 C x H x W tensor (the batched version on a batch of one)."""

    def __init__(self, size: int = 16, count: int | Sequence[int] = 1, fill: Sequence[int] | int = 0):
        super().__init__()
        self.size, self.count, self.fill = size, count, fill

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return batch_cutout(img[None], self.size, self.count, self.fill)[0]


# ---- float steps: Keras' and TensorFlow's image layers ---------------------------------------------------
# They see images in [0, 1] (as a Keras layer after Rescaling(1/255) does) and hand on floats, neither rounded
# nor clipped to [0, 1] unless the layer clips: a pipeline turns its uint8 batch into floats at the first of
# them, and normalisation takes the floats as they are.


def unit_float(x: torch.Tensor) -> torch.Tensor:
    """A uint8 batch as floats in [0, 1]; a float batch (already in those units) as it is."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def _keras_index(index: torch.Tensor, size: int, fill_mode: str) -> torch.Tensor:
    """Where an out-of-range pixel index reads from, as Keras' map_coordinates fixes it."""
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a (about the edge of the last pixel)
        s = 2 * size
        return ((((2 * index + 1) + s) % (2 * s) - s).abs() - 1).div(2, rounding_mode="floor")
    if fill_mode == "wrap":
        return index % size
    return index.clamp(
        0, size - 1
    )  # nearest, and constant (whose outside pixels are then replaced by the fill)


KerasFill = Literal["reflect", "constant", "nearest", "wrap"]
KerasInterpolation = Literal["bilinear", "nearest"]


def keras_rotate(
    x: torch.Tensor,
    degrees: torch.Tensor,
    fill_mode: KerasFill = "reflect",
    interpolation: KerasInterpolation = "bilinear",
    fill_value: float = 0.0,
) -> torch.Tensor:
    """Rotate each image of a float N x C x H x W batch by its angle (degrees) about the image centre, sampling
    as Keras 3's RandomRotation does: output pixel (x, y) reads the input at the rotated point, whose neighbours
    out of range are fixed by ``fill_mode`` (``constant``: ``fill_value``), then ``interpolation``."""
    n, c, h, w = x.shape
    theta = degrees.to(x.device, torch.float32) * (math.pi / 180)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=torch.float32),
        torch.arange(w, device=x.device, dtype=torch.float32),
        indexing="ij",
    )
    src_x = cos * (xs - cx) - sin * (ys - cy) + cx
    src_y = sin * (xs - cx) + cos * (ys - cy) + cy
    if interpolation == "nearest":
        one = torch.ones_like(src_x)
        nodes_x, nodes_y = [(src_x.round(), one)], [(src_y.round(), one)]
    else:
        fx, fy = src_x.floor(), src_y.floor()
        nodes_x = [(fx, 1 - (src_x - fx)), (fx + 1, src_x - fx)]
        nodes_y = [(fy, 1 - (src_y - fy)), (fy + 1, src_y - fy)]
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(x)
    for iy, wy in nodes_y:
        for ix, wx in nodes_x:
            iy_l, ix_l = iy.long(), ix.long()
            idx = _keras_index(iy_l, h, fill_mode) * w + _keras_index(ix_l, w, fill_mode)
            vals = flat.gather(2, idx.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
            if fill_mode == "constant":
                inside = (iy_l >= 0) & (iy_l < h) & (ix_l >= 0) & (ix_l < w)
                vals = torch.where(inside[:, None], vals, torch.full_like(vals, fill_value))
            out += (wy * wx)[:, None] * vals
    return out


def _keras_pair(factor) -> tuple[float, float]:
    """Keras' factor of a rotation: ``f`` for [-f, f], or [low, high] (fractions of a full turn)."""
    return (
        (-abs(float(factor)), abs(float(factor)))
        if isinstance(factor, (int, float))
        else tuple(map(float, factor))
    )


def batch_keras_rotation(
    x: torch.Tensor,
    factor=0.05,
    fill_mode: KerasFill = "reflect",
    interpolation: KerasInterpolation = "bilinear",
    fill_value: float = 0.0,
) -> torch.Tensor:
    """Keras' RandomRotation: per image an angle ~ U(low, high) x 360 degrees (``factor``: a fraction of a
    turn, ``f`` for [-f, f]), Keras' defaults: reflection fill, bilinear interpolation."""
    x = unit_float(x)
    return keras_rotate(x, keras_angles(x.shape[0], factor, x.device), fill_mode, interpolation, fill_value)


def keras_angles(n: int, factor, device: torch.device) -> torch.Tensor:
    """``n`` angles in degrees as Keras' RandomRotation draws them: U(low, high) x 360."""
    low, high = _keras_pair(factor)
    return torch.empty(n, device=device).uniform_(low * 360, high * 360)


def keras_contrast_range(factor) -> tuple[float, float]:
    """The range Keras' RandomContrast draws its factor from: [1 - lower, 1 + upper] for ``factor`` [lower,
    upper] (so (0.8, 1.2) is [0.2, 2.2]), [1 - f, 1 + f] for a number ``f`` (Keras 2's reading)."""
    lower, upper = (factor, factor) if isinstance(factor, (int, float)) else factor
    return 1.0 - float(lower), 1.0 + float(upper)


def keras_adjust_contrast(
    x: torch.Tensor, factor: torch.Tensor, value_range: Sequence[float] = (0, 255)
) -> torch.Tensor:
    """Each channel of each image moved to ``(v - mean) * factor + mean`` about its mean over the image, then
    clipped to ``value_range`` (Keras' default (0, 255): on images in [0, 1] only values below 0 are cut)."""
    mean = x.mean((2, 3), keepdim=True)
    out = (x - mean) * factor.view(-1, 1, 1, 1).to(x) + mean
    return out.clamp(float(value_range[0]), float(value_range[1]))


def batch_keras_contrast(
    x: torch.Tensor,
    factor=(0.8, 1.2),
    value_range: Sequence[float] = (0, 255),
    per: Literal["image", "batch"] = "image",
) -> torch.Tensor:
    """Keras' RandomContrast on images in [0, 1]: a factor ~ U(``keras_contrast_range(factor)``) per image
    (Keras 3) or one for the whole batch (TF Keras 2, whose layer calls ``tf.image.random_contrast``)."""
    low, high = keras_contrast_range(factor)
    x = unit_float(x)
    n = x.shape[0]
    f = torch.empty(n if per == "image" else 1, device=x.device).uniform_(low, high).expand(n)
    return keras_adjust_contrast(x, f, value_range)


def hsv_adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``tf.image.adjust_saturation`` on images in [0, 1]: in HSV, saturation times ``factor``
    (one per image) clipped to [0, 1], hue and value kept. In closed form, with v the largest channel and m
    the smallest: each channel c goes to ``v - (v - c) * min(factor, v / (v - m))``."""
    v = x.amax(1, keepdim=True)
    m = x.amin(1, keepdim=True)
    span = v - m
    ratio = torch.minimum(factor.view(-1, 1, 1, 1).to(x), v / span.clamp_min(1e-12))
    return torch.where(span > 0, v - (v - x) * ratio, x).clamp_(min=0)  # saturation <= 1: no channel below 0


def batch_hsv_saturation(
    x: torch.Tensor, factor=(0.5, 2.0), per: Literal["image", "batch"] = "image"
) -> torch.Tensor:
    """HSV saturation scaled by a factor ~ U(low, high) drawn per image or once per batch (what
    ``tf.image.stateless_random_saturation`` does with a batch); a number is one fixed factor."""
    x = unit_float(x)
    n = x.shape[0]
    if isinstance(factor, (int, float)):
        f = torch.full((n,), float(factor), device=x.device)
    else:
        f = torch.empty(n if per == "image" else 1, device=x.device).uniform_(
            float(factor[0]), float(factor[1])
        )
        f = f.expand(n)
    return hsv_adjust_saturation(x, f)


# ---- the registry of named steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A named augmentation step: ``image`` builds the per-image transform; ``batched`` (if any) returns a
    function of a uint8 batch; ``batch_level`` steps (MixUp, CutMix) act on normalised batches with labels."""

    image: Callable[..., Callable] | None = None
    batched: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None
    batch_level: Callable[..., Callable] | None = None
    float_out: bool = False  # hands on floats in [0, 1] (Keras/TF layers); batched only
    indexed: bool = False  # needs each image's dataset index and the epoch (alternating_flip)


def _shift_pixels(fraction: float | Sequence[float], size: tuple[int, int]) -> tuple[int, int]:
    fy, fx = (fraction, fraction) if isinstance(fraction, (int, float)) else (fraction[1], fraction[0])
    return round(fy * size[0]), round(fx * size[1])


def _batched_shift(fraction=0.1, fill=0):
    def apply(x: torch.Tensor) -> torch.Tensor:
        py, _ = _shift_pixels(
            fraction, x.shape[-2:]
        )  # equal on both axes: `_batchable` sends the rest per image
        return batch_crop(x, py, "constant", fill)

    return apply


def alternating_flip(x: torch.Tensor, index: torch.Tensor, epoch: int, seed: int = 0) -> torch.Tensor:
    """Mirror image ``index[i]`` in epoch ``epoch`` when its flip bit differs from the epoch's parity: each image
    is mirrored every other epoch, a random half of them from epoch 0 (as airbench's loader pre-flips a random
    half once per run). The bit is a hash of the index, ``seed`` and the run's seed (``torch.initial_seed()``, the
    one the loaders' order comes from): new for every run, the same on every device and after a resume."""
    run = (torch.initial_seed() + seed * 1_000_003) % 2**31
    h = (index.long() + run * 40503) & 0xFFFFFFFF
    for _ in range(2):  # a 32-bit integer hash (two multiply-xorshift rounds); int64 never overflows here
        h = (((h >> 16) ^ h) * 0x45D9F3B) & 0xFFFFFFFF
    bit = (((h >> 16) ^ h) & 1).bool()
    flip = bit ^ bool(epoch % 2)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class _Indexed:
    """A batched step that also needs each image's index in the dataset and the epoch."""

    needs_index = True

    def __init__(self, fn: Callable[..., torch.Tensor], **params):
        self.fn, self.params = fn, params

    def __call__(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.fn(x, index, epoch, **self.params)


def needs_index(fn: Callable) -> bool:
    return getattr(fn, "needs_index", False)


def _image_shift(fraction=0.1, fill=0):
    fx, fy = (fraction, fraction) if isinstance(fraction, (int, float)) else fraction
    return v2.RandomAffine(degrees=0, translate=(fx, fy), fill=fill)


STEPS: dict[str, Step] = {
    "random_crop": Step(
        # `side` is the DataModule's image size, passed in by the pipeline (not a YAML parameter)
        image=lambda size=None, padding=4, padding_mode="reflect", fill=0, side=32: v2.RandomCrop(
            size or side, padding=padding, padding_mode=padding_mode, fill=fill),
        batched=lambda size=None, padding=4, padding_mode="reflect", fill=0: (
            lambda x: batch_crop(x, padding, padding_mode, fill)),
    ),
    "hflip": Step(image=lambda p=0.5: v2.RandomHorizontalFlip(p), batched=lambda p=0.5: (lambda x: batch_flip(x, p, 3))),
    "alternating_flip": Step(batched=lambda seed=0: _Indexed(alternating_flip, seed=seed), indexed=True),
    "vflip": Step(image=lambda p=0.5: v2.RandomVerticalFlip(p), batched=lambda p=0.5: (lambda x: batch_flip(x, p, 2))),
    "shift": Step(image=_image_shift, batched=_batched_shift),
    "cutout": Step(
        image=lambda size=16, count=1, fill=0: Cutout(size, count, fill),
        batched=lambda size=16, count=1, fill=0: (lambda x: batch_cutout(x, size, count, fill)),
    ),
    "rotation": Step(image=lambda degrees=15, fill=0: v2.RandomRotation(degrees, fill=fill)),
    "keras_rotation": Step(
        batched=lambda factor=0.05, fill_mode="reflect", interpolation="bilinear", fill_value=0.0: (
            lambda x: batch_keras_rotation(x, factor, fill_mode, interpolation, fill_value)),
        float_out=True,
    ),
    "keras_contrast": Step(
        batched=lambda factor=(0.8, 1.2), value_range=(0, 255), per="image": (
            lambda x: batch_keras_contrast(x, factor, value_range, per)),
        float_out=True,
    ),
    "hsv_saturation": Step(
        batched=lambda factor=(0.5, 2.0), per="image": (lambda x: batch_hsv_saturation(x, factor, per)),
        float_out=True,
    ),
    "channel_contrast": Step(
        image=lambda factor=(0.8, 1.2): ChannelContrast(_factor_range(factor)),
        batched=lambda factor=(0.8, 1.2): (lambda x: batch_channel_contrast(x, _factor_range(factor))),
    ),
    "color_jitter": Step(image=lambda brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0: v2.ColorJitter(
        brightness=_range(brightness), contrast=_range(contrast), saturation=_range(saturation), hue=_range(hue))),
    "grayscale": Step(image=lambda p=0.5: v2.RandomGrayscale(p), batched=lambda p=0.5: (lambda x: batch_grayscale(x, p))),
    "autoaugment": Step(image=lambda policy="cifar10": v2.AutoAugment(_policy(policy))),
    "randaugment": Step(image=lambda num_ops=2, magnitude=9: v2.RandAugment(num_ops=num_ops, magnitude=magnitude)),
    "trivialaugment": Step(image=lambda: v2.TrivialAugmentWide()),
    "random_erasing": Step(image=lambda p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0: v2.RandomErasing(
        p=p, scale=tuple(scale), ratio=tuple(ratio), value=value)),
    "mixup": Step(batch_level=lambda alpha=0.2, num_classes=10: v2.MixUp(alpha=alpha, num_classes=num_classes)),
    "cutmix": Step(batch_level=lambda alpha=1.0, num_classes=10: v2.CutMix(alpha=alpha, num_classes=num_classes)),
}  # fmt: skip


def _factor_range(v) -> tuple[float, float]:
    """A contrast factor: ``[low, high]``, or ``f`` for ``[1 - f, 1 + f]`` (Keras' convention)."""
    return (float(v[0]), float(v[1])) if isinstance(v, (list, tuple)) else (max(0.0, 1 - v), 1 + v)


def _range(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _policy(name: str) -> v2.AutoAugmentPolicy:
    policies = {p.value: p for p in v2.AutoAugmentPolicy}
    check_choice("autoaugment policy", name, tuple(policies))
    return policies[name]


def _check_params(name: str, params: dict[str, Any], side: int) -> None:
    """Each parameter of a step in its range for images of ``side`` pixels, named in the message: a bad value
    fails when the DataModule is built, not at the first batch (or never, training on blank images)."""
    where = f"augment step '{name}'"

    def num(key, lo=None, hi=None, *, integer=False, lo_open=False, hint=""):
        if key in params:
            check_number(f"{where}: {key}", params[key], lo, hi, integer=integer, lo_open=lo_open, hint=hint)

    def num_or_pair(key, lo, hi, pair_lo=None):
        value = params.get(key)
        if isinstance(value, (list, tuple)):
            a, b = (
                (value + [None, None])[:2] if isinstance(value, list) else (tuple(value) + (None, None))[:2]
            )
            if len(value) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                raise BadValue(f"{where}: {key} must be a number or a [low, high] pair, got {value!r}")
            check_number(f"{where}: {key}[0]", a, pair_lo if pair_lo is not None else lo, hi)
            check_number(f"{where}: {key}[1]", b, a, hi, hint="the pair is [low, high]")
        else:
            num(key, lo, hi)

    num("fill", 0, 255, integer=True)
    if name == "random_crop":
        num("padding", 0, side // 2, integer=True,
            hint=f"a {side}-px image takes at most {side // 2} (4 is the CIFAR recipe)")  # fmt: skip
        if "padding_mode" in params:
            check_choice(f"{where}: padding_mode", params["padding_mode"], PaddingMode)
        num("size", 1, side + 2 * params.get("padding", 4), integer=True)
    elif name == "alternating_flip":
        num("seed", 0, 2**31 - 1, integer=True)
    elif name in ("hflip", "vflip", "grayscale"):
        num("p", 0, 1)
    elif name == "shift":
        num_or_pair("fraction", 0, 0.5)
        if isinstance(params.get("fraction"), (list, tuple)):  # [x, y], not a range
            check_number(f"{where}: fraction[0]", params["fraction"][0], 0, 0.5)
    elif name == "cutout":
        num("size", 1, side - 1, integer=True,
            hint=f"a square as large as the image blanks it; DeVries & Taylor use half the side ({side // 2} px)")  # fmt: skip
        count = params.get("count", 1)
        if isinstance(count, (list, tuple)):
            num_or_pair("count", 0, 64)
            if count[1] < 1:
                raise BadValue(f"{where}: count [low, high] needs high >= 1, got {count}")
        else:
            num("count", 1, 64, integer=True)
    elif name == "rotation":
        num_or_pair("degrees", 0, 180, pair_lo=-180)
    elif name == "channel_contrast":
        num_or_pair("factor", 0, None)
    elif name == "keras_rotation":
        num_or_pair("factor", 0, 0.5, pair_lo=-0.5)
        if "fill_mode" in params:
            check_choice(f"{where}: fill_mode", params["fill_mode"], KerasFill)
        if "interpolation" in params:
            check_choice(f"{where}: interpolation", params["interpolation"], KerasInterpolation)
        num("fill_value", None, None)
    elif name == "keras_contrast":  # Keras' [lower, upper] (or f): factors in [1 - lower, 1 + upper]
        factor = params.get("factor", (0.8, 1.2))
        pair = list(factor) if isinstance(factor, (list, tuple)) else [factor, factor]
        if len(pair) != 2:
            raise BadValue(f"{where}: factor must be a number or Keras' [lower, upper], got {factor!r}")
        check_number(
            f"{where}: factor[0]", pair[0], 0, 1, hint="factors start at 1 - lower, which must be >= 0"
        )
        check_number(f"{where}: factor[1]", pair[1], 0, None, hint="factors end at 1 + upper")
        value_range = params.get("value_range", (0, 255))
        if not (
            isinstance(value_range, (list, tuple))
            and len(value_range) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
            and math.isfinite(value_range[0])
            and math.isfinite(value_range[1])
            and value_range[0] < value_range[1]
        ):
            raise BadValue(f"{where}: value_range must be [low, high] with low < high, got {value_range!r}")
    elif name == "hsv_saturation":
        num_or_pair("factor", 0, None)
    if name in ("hsv_saturation", "keras_contrast"):
        if "per" in params:
            check_choice(f"{where}: per", params["per"], ("image", "batch"))
    elif name == "color_jitter":
        for key in ("brightness", "contrast", "saturation"):
            num_or_pair(key, 0, None)
        num_or_pair("hue", 0, 0.5, pair_lo=-0.5)
    elif name == "autoaugment":
        _policy(params.get("policy", "cifar10"))
    elif name == "randaugment":
        num("num_ops", 0, 14, integer=True)
        num("magnitude", 0, 30, integer=True)
    elif name == "random_erasing":
        num("p", 0, 1)
        num_or_pair("scale", 0, 1)
        num_or_pair("ratio", 0, None)
        num("value", 0, 255)
    elif name in ("mixup", "cutmix"):
        num("alpha", 0, None, lo_open=True)


def _factory_params(name: str) -> set[str]:
    step = STEPS[name]
    params: set[str] = set()
    for factory in (step.image, step.batched, step.batch_level):
        if factory is not None:
            params |= set(inspect.signature(factory).parameters)
    return params - {"side", "num_classes"}  # given by the pipeline, not by YAML


def resolve(augment: str | Sequence[dict[str, Any]] | None, image_size: int = 32) -> list[dict[str, Any]]:
    """A preset name or a list of steps -> the list of steps, each checked against the registry and its
    parameters against their ranges for images of ``image_size`` pixels."""
    if augment is None:
        return []
    if isinstance(augment, str):
        check_choice("augment preset", augment, tuple(PRESETS), hint="or give a list of steps")
        augment = PRESETS[augment]
    steps = []
    for step in augment:
        if not isinstance(step, dict):
            raise BadValue(f"augment: each step is a mapping such as {{name: hflip}}, got {step!r}")
        step = dict(step)
        name = step.get("name")
        if name not in STEPS:
            close = difflib.get_close_matches(str(name), STEPS, n=2)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise BadValue(f"Unknown augmentation '{name}'.{hint} Valid names: {', '.join(STEPS)}")
        params = {k: v for k, v in step.items() if k != "name"}
        unknown = sorted(set(params) - _factory_params(name))
        if unknown:
            raise BadValue(
                f"augment step '{name}' has no parameter {', '.join(unknown)}; its parameters: "
                f"{', '.join(sorted(_factory_params(name))) or 'none'}"
            )
        _check_params(name, params, image_size)
        steps.append(step)
    return steps


def _batchable(step: dict[str, Any]) -> bool:
    if STEPS[step["name"]].batched is None:
        return False
    fraction = step.get("fraction")  # the batched shift moves both axes by the same number of pixels
    return not (
        step["name"] == "shift" and isinstance(fraction, (list, tuple)) and fraction[0] != fraction[1]
    )


def _build(step: dict[str, Any], kind: str, **extra):
    factory = getattr(STEPS[step["name"]], kind)
    params = {k: v for k, v in step.items() if k != "name"}
    accepted = inspect.signature(factory).parameters
    return factory(**params, **{k: v for k, v in extra.items() if k in accepted})


@dataclass
class Augmentation:
    """A resolved pipeline: the image steps (per image, or batched on the device) and the batch-level steps."""

    image_steps: list[dict[str, Any]]
    batch_steps: list[dict[str, Any]]
    batched: bool
    image_size: int = 32

    @classmethod
    def from_config(cls, augment, on_device: str | bool = "auto", image_size: int = 32) -> Augmentation:
        if on_device not in (True, False, "auto"):
            raise BadValue(f"augment_on_device must be true, false or auto, got {on_device!r}")
        steps = resolve(augment, image_size)
        image_steps = [s for s in steps if STEPS[s["name"]].batch_level is None]
        batch_steps = [s for s in steps if STEPS[s["name"]].batch_level is not None]
        can_batch = all(_batchable(s) for s in image_steps)
        indexed = [s["name"] for s in image_steps if STEPS[s["name"]].image is None]
        floats = [i for i, s in enumerate(image_steps) if STEPS[s["name"]].float_out]
        after = (
            [s["name"] for s in image_steps[floats[0] :] if not STEPS[s["name"]].float_out] if floats else []
        )
        if [a for a in after if a not in ("hflip", "vflip", "alternating_flip")]:
            raise BadValue(
                f"augment: {', '.join(after)} works on uint8 pixels and cannot follow "
                f"{image_steps[floats[0]]['name']} (which hands on floats); put it first"
            )
        if indexed and (not can_batch or on_device is False):
            why = (
                "augment_on_device is false"
                if can_batch
                else (f"{', '.join(s['name'] for s in image_steps if not _batchable(s))} runs per image")
            )
            raise BadValue(f"{', '.join(indexed)} has only a batched version, and {why}; drop one of them")
        if on_device is True and not can_batch:
            slow = [s["name"] for s in image_steps if not _batchable(s)]
            raise BadValue(
                f"augment_on_device: true, but {', '.join(slow)} has no batched version; "
                f"use augment_on_device: auto (per-image in the loader) or drop it"
            )
        batched = bool(image_steps) and can_batch and on_device is not False
        return cls(image_steps, batch_steps, batched, image_size)

    def per_image(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The per-image transform for the loader (None when the batched path or nothing runs)."""
        if self.batched or not self.image_steps:
            return None
        return v2.Compose([_build(s, "image", side=self.image_size) for s in self.image_steps])

    @property
    def needs_index(self) -> bool:
        """Whether a step needs each image's dataset index and the epoch (``alternating_flip``)."""
        return any(STEPS[s["name"]].indexed for s in self.image_steps)

    def on_batch(self) -> Callable[..., torch.Tensor] | None:
        """The batched uint8 transform for the device, ``apply(x, index=None, epoch=0)`` (None unless the pipeline
        runs batched); ``index`` (each image's position in the training set) is needed by ``alternating_flip``."""
        if not self.batched:
            return None
        fns = [_build(s, "batched", side=self.image_size) for s in self.image_steps]

        def apply(x: torch.Tensor, index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
            for fn in fns:
                if not needs_index(fn):
                    x = fn(x)
                elif index is None:
                    raise ValueError("this pipeline needs the images' dataset indices (alternating_flip)")
                else:
                    x = fn(x, index, epoch)
            return x

        return apply

    def mixing(self, num_classes: int) -> Callable | None:
        """MixUp/CutMix on (normalised images, int labels) -> (images, soft labels); one chosen per batch."""
        if not self.batch_steps:
            return None
        ops = [_build(s, "batch_level", num_classes=num_classes) for s in self.batch_steps]
        return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
