"""Shake-Shake ResNets (Gastaldi 2017, "Shake-Shake regularization"), CIFAR variants 26 2x32d / 2x64d / 2x96d.

Layout as in the paper's reference implementation: a 3x3 conv (16 channels) + BN stem, three stages of
(depth - 2) / 6 blocks of widths w, 2w, 4w; each block adds two residual branches
(ReLU-conv3x3-BN-ReLU-conv3x3-BN) mixed by the shake function; where the shape changes the shortcut is
ReLU, then two 1x1 convs (each half the output channels) on the input and on the input shifted by one
pixel, both taken with the stride, concatenated and batch-normalised. Final ReLU, global average pooling, linear.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import ClassifierNet, GlobalAvgPoolHead
from ._registry import register_model


class ShakeFunction(torch.autograd.Function):
    """Forward: alpha * x1 + (1 - alpha) * x2. Backward: the gradient reaches x1 scaled by beta and x2 by 1 - beta,
    with beta drawn independently of alpha (or equal to it: "keep")."""

    @staticmethod
    def forward(
        ctx, x1: torch.Tensor, x2: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(beta)
        return x1 * alpha + x2 * (1 - alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (beta,) = ctx.saved_tensors
        return grad * beta, grad * (1 - beta), None, None


def shake(
    x1: torch.Tensor,
    x2: torch.Tensor,
    forward: str = "shake",
    backward: str = "shake",
    level: str = "image",
    training: bool = True,
) -> torch.Tensor:
    """Mix two branch outputs. ``forward``: ``shake`` (alpha ~ U(0, 1)) or ``even`` (0.5); ``backward``: ``shake``
    (beta ~ U(0, 1), independent), ``even`` (0.5) or ``keep`` (beta = alpha); ``level``: ``image`` (a coefficient
    per image) or ``batch`` (one per batch). Outside training both branches weigh 0.5."""
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0], 1, 1, 1) if level == "image" else (1, 1, 1, 1)

    def coefficient(mode: str) -> torch.Tensor:
        if mode == "shake":
            return torch.rand(shape, device=x1.device, dtype=x1.dtype)
        return torch.full(shape, 0.5, device=x1.device, dtype=x1.dtype)

    alpha = coefficient(forward)
    beta = alpha if backward == "keep" else coefficient(backward)
    return ShakeFunction.apply(x1, x2, alpha, beta)


class ResidualBranch(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__(
            nn.ReLU(inplace=False),  # the block input is also the shortcut's: never overwrite it
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )


class ShiftedShortcut(nn.Module):
    """ReLU, then [1x1 conv of x[::s, ::s], 1x1 conv of x shifted by one pixel, [::s, ::s]], concatenated, BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_ch, out_ch // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_ch, out_ch - out_ch // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        s = self.stride
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv1(x[:, :, ::s, ::s]), self.conv2(shifted[:, :, ::s, ::s])], dim=1))


class ShakeBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, forward: str, backward: str, level: str):
        super().__init__()
        self.branch1 = ResidualBranch(in_ch, out_ch, stride)
        self.branch2 = ResidualBranch(in_ch, out_ch, stride)
        self.shortcut = (
            ShiftedShortcut(in_ch, out_ch, stride) if (in_ch != out_ch or stride != 1) else nn.Identity()
        )
        self.modes = (forward, backward, level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = shake(self.branch1(x), self.branch2(x), *self.modes, training=self.training)
        return self.shortcut(x) + mixed


class ShakeShakeResNet(ClassifierNet):
    """Shake-Shake ResNet of depth 6n+2 with widths ``base_width`` x (1, 2, 4); any input size (GAP head)."""

    global_pool = True

    def __init__(
        self,
        depth: int = 26,
        base_width: int = 64,
        num_classes: int = 10,
        in_chans: int = 3,
        forward: Literal["shake", "even"] = "shake",
        backward: Literal["shake", "even", "keep"] = "shake",
        level: Literal["image", "batch"] = "image",
    ):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"Shake-Shake depth must be 6n+2 (26, 32, ...), got {depth}")
        for name, value, allowed in [("forward", forward, ("shake", "even")),
                                     ("backward", backward, ("shake", "even", "keep")),
                                     ("level", level, ("image", "batch"))]:  # fmt: skip
            if value not in allowed:
                raise ValueError(f"Shake-Shake {name} must be one of {', '.join(allowed)}, got '{value}'")
        n = (depth - 2) // 6
        layers: list[nn.Module] = [nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)]
        ch = 16
        for i, width in enumerate((base_width, 2 * base_width, 4 * base_width)):
            for j in range(n):
                layers.append(ShakeBlock(ch, width, 2 if (i > 0 and j == 0) else 1, forward, backward, level))
                ch = width
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.head = GlobalAvgPoolHead()
        self.num_features = ch
        self.classifier = nn.Linear(ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


def _preset(width: int):
    def build(num_classes: int = 10, **kwargs) -> ShakeShakeResNet:
        kwargs.setdefault("base_width", width)  # net_kwargs may shrink it (tests) or change the shake modes
        return ShakeShakeResNet(depth=kwargs.pop("depth", 26), num_classes=num_classes, **kwargs)

    build.__name__ = f"shake_shake_26_2x{width}d"
    build.__doc__ = (
        f"Shake-Shake ResNet-26 2x{width}d (Gastaldi 2017): widths {width}/{2 * width}/{4 * width}."
    )
    return register_model(build)


shake_shake_26_2x32d, shake_shake_26_2x64d, shake_shake_26_2x96d = (_preset(w) for w in (32, 64, 96))
