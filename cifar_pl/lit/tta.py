"""Test-time augmentation: the logits of an image averaged over a few views of it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _mirrored(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (net(x) + net(x.flip(-1)))


def tta_logits(net: nn.Module, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """``none``: ``net(x)``; ``flip``: the mean over the image and its mirror; ``flip_translate``: half that, half
    the same for the image shifted one pixel up-left and one down-right (reflect-padded): 6 views, the weighting
    of the speed recipes (the shifted views are half as likely as the unshifted one)."""
    if mode == "none":
        return net(x)
    logits = _mirrored(net, x)
    if mode == "flip":
        return logits
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = torch.stack([_mirrored(net, padded[..., :h, :w]), _mirrored(net, padded[..., 2:, 2:])]).mean(0)
    return 0.5 * logits + 0.5 * shifted
