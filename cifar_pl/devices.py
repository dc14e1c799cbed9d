"""One rule for tensors that meet a module outside Lightning's own loop (reports, pictures, prediction):
inputs go to the module's device and floating dtype; what comes back for figures and tables is float32 on
the CPU. Lightning moves batches itself inside fit/validate/test; everything else calls these."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .errors import BadValue


def parse_device(name: str, flag: str = "--device") -> torch.device:
    """A device named on the command line (``cpu``, ``cuda``, ``cuda:1``, ``mps``) that exists here; one line
    naming ``flag`` otherwise, before a checkpoint is read."""
    try:
        device = torch.device(str(name))
    except (RuntimeError, TypeError, ValueError):
        raise BadValue(f"{flag} {name!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise BadValue(f"{flag} {name}: this machine has {count} CUDA device(s); use cpu" +
                           (f" or cuda:0..cuda:{count - 1}" if count else ""))  # fmt: skip
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise BadValue(f"{flag} mps: no Apple GPU here; use cpu")
    elif device.type != "cpu":
        raise BadValue(f"{flag} {name!r}: use cpu, cuda, cuda:N or mps")
    return device


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
