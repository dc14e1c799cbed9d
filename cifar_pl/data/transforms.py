"""Augmentation chosen in YAML: named steps, presets, and a batched uint8 path for the common ones.

A pipeline is a preset name or a list of steps, each ``{name: <step>, <param>: <value>, ...}``:

    augment: standard
    augment: [{name: random_crop, padding: 4}, {name: hflip}, {name: cutout, size: 16}]

Image steps run on uint8 C x H x W tensors (torchvision v2 where it has the transform). ``random_crop``,
``hflip``, ``vflip``, ``shift``, ``grayscale`` and ``cutout`` also have a batched implementation that augments a whole uint8
batch at once on the training device, with the same distribution per image; a pipeline made only of those runs
batched. Batch steps (``mixup``, ``cutmix``) mix normalised training batches and produce soft targets.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

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
    # DeVries & Taylor 2017 on top of Cubuk et al. 2019: crop + flip + AutoAugment (CIFAR-10 policy) + Cutout 16
    "autoaugment_cutout": [
        {"name": "random_crop", "padding": 4, "padding_mode": "reflect"},
        {"name": "hflip"},
        {"name": "autoaugment", "policy": "cifar10"},
        {"name": "cutout", "size": 16},
    ],
}


# ---- batched uint8 implementations ------------------------------------------------------------------


def batch_crop(x: torch.Tensor, padding: int, padding_mode: str = "reflect", fill: int = 0) -> torch.Tensor:
    """Random crop of every image of an N x C x H x W batch from its padded version; each of the
    (2p+1)^2 offsets is equally likely, drawn independently per image."""
    n, c, h, w = x.shape
    if padding <= 0:
        return x
    if padding_mode not in ("reflect", "constant"):
        raise ValueError(f"padding_mode must be 'reflect' or 'constant', got '{padding_mode}'")
    pad = (padding,) * 4
    xp = F.pad(x, pad, mode="reflect") if padding_mode == "reflect" else F.pad(x, pad, value=fill)
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


class Cutout(nn.Module):
    """Per-image Cutout on a uint8 C x H x W tensor (the batched version on a batch of one)."""

    def __init__(self, size: int = 16, count: int | Sequence[int] = 1, fill: Sequence[int] | int = 0):
        super().__init__()
        self.size, self.count, self.fill = size, count, fill

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return batch_cutout(img[None], self.size, self.count, self.fill)[0]


# ---- the registry of named steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A named augmentation step: ``image`` builds the per-image transform; ``batched`` (if any) returns a
    function of a uint8 batch; ``batch_level`` steps (MixUp, CutMix) act on normalised batches with labels."""

    image: Callable[..., Callable] | None = None
    batched: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None
    batch_level: Callable[..., Callable] | None = None


def _shift_pixels(fraction: float | Sequence[float], size: tuple[int, int]) -> tuple[int, int]:
    fy, fx = (fraction, fraction) if isinstance(fraction, (int, float)) else (fraction[1], fraction[0])
    return round(fy * size[0]), round(fx * size[1])


def _batched_shift(fraction=0.1, fill=0):
    def apply(x: torch.Tensor) -> torch.Tensor:
        py, px = _shift_pixels(fraction, x.shape[-2:])
        if py != px:
            raise ValueError("the batched shift needs the same pixel shift on both axes")
        return batch_crop(x, py, "constant", fill)

    return apply


def _image_shift(fraction=0.1, fill=0):
    fx, fy = (fraction, fraction) if isinstance(fraction, (int, float)) else fraction
    return v2.RandomAffine(degrees=0, translate=(fx, fy), fill=fill)


STEPS: dict[str, Step] = {
    "random_crop": Step(
        image=lambda size=None, padding=4, padding_mode="reflect", fill=0: v2.RandomCrop(
            size or 32, padding=padding, padding_mode=padding_mode, fill=fill),
        batched=lambda size=None, padding=4, padding_mode="reflect", fill=0: (
            lambda x: batch_crop(x, padding, padding_mode, fill)),
    ),
    "hflip": Step(image=lambda p=0.5: v2.RandomHorizontalFlip(p), batched=lambda p=0.5: (lambda x: batch_flip(x, p, 3))),
    "vflip": Step(image=lambda p=0.5: v2.RandomVerticalFlip(p), batched=lambda p=0.5: (lambda x: batch_flip(x, p, 2))),
    "shift": Step(image=_image_shift, batched=_batched_shift),
    "cutout": Step(
        image=lambda size=16, count=1, fill=0: Cutout(size, count, fill),
        batched=lambda size=16, count=1, fill=0: (lambda x: batch_cutout(x, size, count, fill)),
    ),
    "rotation": Step(image=lambda degrees=15, fill=0: v2.RandomRotation(degrees, fill=fill)),
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


def _range(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _policy(name: str) -> v2.AutoAugmentPolicy:
    policies = {p.value: p for p in v2.AutoAugmentPolicy}
    if name not in policies:
        raise ValueError(f"Unknown AutoAugment policy '{name}'; choose one of {', '.join(policies)}")
    return policies[name]


def resolve(augment: str | Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A preset name or a list of steps -> the list of steps, each checked against the registry."""
    if augment is None:
        return []
    if isinstance(augment, str):
        if augment not in PRESETS:
            raise ValueError(f"Unknown augmentation preset '{augment}'; presets: {', '.join(PRESETS)}")
        augment = PRESETS[augment]
    steps = []
    for step in augment:
        step = dict(step)
        name = step.get("name")
        if name not in STEPS:
            close = difflib.get_close_matches(str(name), STEPS, n=2)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"Unknown augmentation '{name}'.{hint} Valid names: {', '.join(STEPS)}")
        steps.append(step)
    return steps


def _build(step: dict[str, Any], kind: str, **extra):
    params = {k: v for k, v in step.items() if k != "name"}
    factory = getattr(STEPS[step["name"]], kind)
    try:
        return factory(**params, **extra)
    except TypeError as e:
        raise ValueError(f"augmentation '{step['name']}' got bad parameters {params}: {e}") from None


@dataclass
class Augmentation:
    """A resolved pipeline: the image steps (per image, or batched on the device) and the batch-level steps."""

    image_steps: list[dict[str, Any]]
    batch_steps: list[dict[str, Any]]
    batched: bool

    @classmethod
    def from_config(cls, augment, on_device: str | bool = "auto") -> Augmentation:
        steps = resolve(augment)
        image_steps = [s for s in steps if STEPS[s["name"]].batch_level is None]
        batch_steps = [s for s in steps if STEPS[s["name"]].batch_level is not None]
        can_batch = all(STEPS[s["name"]].batched is not None for s in image_steps)
        if on_device is True and not can_batch:
            slow = [s["name"] for s in image_steps if STEPS[s["name"]].batched is None]
            raise ValueError(
                f"augment_on_device: true, but {', '.join(slow)} has no batched version; "
                f"use augment_on_device: auto (per-image in the loader) or drop it"
            )
        if on_device not in (True, False, "auto"):
            raise ValueError(f"augment_on_device must be true, false or auto, got {on_device!r}")
        return cls(
            image_steps, batch_steps, batched=bool(image_steps) and can_batch and on_device is not False
        )

    def per_image(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The per-image transform for the loader (None when the batched path or nothing runs)."""
        if self.batched or not self.image_steps:
            return None
        return v2.Compose([_build(s, "image") for s in self.image_steps])

    def on_batch(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The batched uint8 transform for the device (None unless the pipeline runs batched)."""
        if not self.batched:
            return None
        fns = [_build(s, "batched") for s in self.image_steps]

        def apply(x: torch.Tensor) -> torch.Tensor:
            for fn in fns:
                x = fn(x)
            return x

        return apply

    def mixing(self, num_classes: int) -> Callable | None:
        """MixUp/CutMix on (normalised images, int labels) -> (images, soft labels); one chosen per batch."""
        if not self.batch_steps:
            return None
        ops = [_build(s, "batch_level", num_classes=num_classes) for s in self.batch_steps]
        return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
