"""The corruptions of Zhang et al. 2017, "Understanding deep learning requires rethinking generalization":
random labels, one fixed pixel permutation, a fresh permutation per image, and Gaussian images. Each is a pure
function of the data and a seeded generator, so the same seed gives the same corruption every epoch and run."""

from __future__ import annotations

from typing import Literal

import torch

from ..checks import check_choice, check_number, choices

Corruption = Literal["none", "labels", "shuffled_pixels", "random_pixels", "gaussian"]
CORRUPTIONS = choices(Corruption)


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


def gaussian_images(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image replaced by Gaussian noise with that image's per-channel mean and standard deviation
    (rounded and clipped to uint8, which moves the statistics of very dark or bright images slightly)."""
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """``kind`` applied to uint8 images and labels with a generator seeded by ``seed``; ``perm`` is the fixed
    permutation of ``shuffled_pixels`` (shared by every split)."""
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
        return gaussian_images(images, gen), labels
    check_choice("corrupt", kind, Corruption)
    raise AssertionError(kind)
