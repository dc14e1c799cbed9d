"""Weight initialisation schemes a write-up's library used, applied to a freshly built net."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

WeightInit = Literal["default", "keras"]


@torch.no_grad()
def init_weights(net: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise ``net`` in place. ``default`` keeps what the net's constructor set (torch's layer defaults
    and the net's own choices). ``keras``: every convolution and linear layer as Keras' Conv2D and Dense start,
    Glorot-uniform kernels (limit sqrt(6 / (fan_in + fan_out)), the fans counting the kernel's spatial size)
    and zero biases; normalisation layers keep torch's start, which is Keras' (scale 1, shift 0)."""
    if scheme == "default":
        return net
    if scheme != "keras":
        raise ValueError(f"unknown model.init.scheme {scheme!r}")
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net
