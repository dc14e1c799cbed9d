"""One rule for tensors that meet a module outside Lightning's own loop (reports, pictures, prediction):
inputs go to the module's device and floating dtype; what comes back for figures and tables is float32 on
the CPU. Lightning moves batches itself inside fit/validate/test; everything else calls these."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn


def device_of(module: nn.Module) -> torch.device:
    """Where ``module`` computes (its first parameter's or buffer's device; the CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def dtype_of(module: nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s weights (bf16 under ``bf16-true``; float32 under mixed precision)."""
    for t in module.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def to_module(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``x`` on ``module``'s device, floating ``x`` in its dtype."""
    dtype = dtype_of(module) if x.is_floating_point() else x.dtype
    return x.to(device=device_of(module), dtype=dtype, non_blocking=True)


def prepare_images(
    images: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor], module: nn.Module
) -> torch.Tensor:
    """uint8 images (C x H x W or N x C x H x W) -> the normalised batch ``module`` takes: moved while still
    uint8 (4x less to copy), normalised on the module's device, cast to its dtype."""
    x = images.unsqueeze(0) if images.dim() == 3 else images
    return to_module(normalize(x.to(device_of(module), non_blocking=True)), module)


def to_cpu(x: torch.Tensor) -> torch.Tensor:
    """A result for a figure or a table: float32 on the CPU."""
    return x.detach().to(device="cpu", dtype=torch.float32)
