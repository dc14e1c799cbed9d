"""The corruptions of Zhang et al. 2017, "Understanding deep learning requires rethinking generalization":
random labels, one fixed pixel permutation, a fresh permutation per image, and Gaussian images (Zhang's: noise
with the dataset's per-channel mean and variance; ``gaussian_per_image``: each image's own, as write-up 000 did it,
which keeps some class information in each image's colour statistics). Each is a pure
function of the data and a seeded generator, so the same seed gives the same corruption every epoch and run."""

from __future__ import annotations

from typing import Literal

import torch

from ..checks import check_choice, check_number

Corruption = Literal["none", "labels", "shuffled_pixels", "random_pixels", "gaussian", "gaussian_per_image"]


def corrupt_labels(labels: torch.Tensor, p: float, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Each label replaced, with probability ``p``, by a class drawn uniformly from all ``num_classes`` (so about
    ``p * (K - 1) / K`` of them change)."""
    check_number("corrupt_prob", p, 0, 1)
    replace = torch.rand(len(labels), generator=gen) < p
    drawn = torch.randint(0, num_classes, (len(labels),), generator=gen)
    return torch.where(replace, drawn, labels)


def pixel_permutation(height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """One random permutation of the ``height * width`` pixel positions."""
    return torch.randperm(height * width, generator=gen)


def permute_pixels(images: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Move every pixel (all its channels together) of every image by the same permutation ``perm``."""
    n, c, h, w = images.shape
    return images.flatten(2)[:, :, perm].reshape(n, c, h, w)


def random_pixels(images: torch.Tensor, gen: torch.Generator, chunk: int = 4096) -> torch.Tensor:
    """Each image's pixels moved by a permutation of its own."""
    n, c, h, w = images.shape
    out = torch.empty_like(images)
    for i in range(0, n, chunk):
        part = images[i : i + chunk].flatten(2)
        perms = torch.rand(len(part), h * w, generator=gen).argsort(dim=1)
        out[i : i + chunk] = part.gather(2, perms[:, None, :].expand(-1, c, -1)).view(-1, c, h, w)
    return out


def channel_stats_255(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (0-255 units) over every pixel of every image of a uint8 set."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk].double()
        total += part.sum((0, 2, 3))
        squares += part.square().sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    return mean.float(), (squares / count - mean.square()).clamp_min(0).sqrt().float()


def gaussian_images(
    images: torch.Tensor,
    gen: torch.Generator,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunk: int = 4096,
) -> torch.Tensor:
    """Each image replaced by i.i.d. Gaussian pixels with the per-channel mean and standard deviation ``stats``
    (Zhang et al.: the dataset's; by default those of ``images``), rounded and clipped to uint8."""
    mean, std = stats if stats is not None else channel_stats_255(images)
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    out = torch.empty_like(images)
    for i in range(0, len(images), chunk):
        noise = torch.randn(images[i : i + chunk].shape, generator=gen)
        out[i : i + chunk] = (mean + std * noise).round_().clamp_(0, 255).to(torch.uint8)
    return out


def gaussian_per_image(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image replaced by Gaussian noise with that image's own per-channel mean and standard deviation
    (write-up 000's variant; rounded and clipped to uint8)."""
    x = images.float()
    mean = x.mean((2, 3), keepdim=True)
    std = x.std((2, 3), keepdim=True)
    noise = torch.randn(x.shape, generator=gen)
    return (mean + std * noise).round_().clamp_(0, 255).to(torch.uint8)


def apply_corruption(
    kind: Corruption,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    p: float,
    num_classes: int,
    seed: int,
    perm: torch.Tensor | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``kind`` applied to uint8 images and labels with a generator seeded by ``seed``; ``perm`` is the fixed
    permutation of ``shuffled_pixels`` (shared by every split), ``stats`` the dataset's per-channel mean and std
    for ``gaussian`` (shared by every split; by default those of ``images``)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "none":
        return images, labels
    if kind == "labels":
        return images, corrupt_labels(labels, p, num_classes, gen)
    if kind == "shuffled_pixels":
        if perm is None:
            raise ValueError("shuffled_pixels needs the fixed permutation")
        return permute_pixels(images, perm), labels
    if kind == "random_pixels":
        return random_pixels(images, gen), labels
    if kind == "gaussian":
        return gaussian_images(images, gen, stats), labels
    if kind == "gaussian_per_image":
        return gaussian_per_image(images, gen), labels
    check_choice("corrupt", kind, Corruption)
    raise AssertionError(kind)
