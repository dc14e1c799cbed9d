"""The small, fast net of the CIFAR-10 speed records (Keller Jordan's airbench, after tysam-code's hlb-CIFAR10 and
Page's myrtle.ai ResNet): a 2x2 convolution whose filters whiten the image patches, then three groups of
conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU, global max pooling and a linear classifier whose logits are
scaled down. Written here from the published description, in this package's net face.

The whitening filters come from the training images: ``init_whitening(images)`` sets them to the eigenvectors of
the covariance of 2x2 patches, scaled by 1/sqrt(eigenvalue) (each with its negative, so GELU keeps both signs).
The ``WhitenFromData`` callback calls it once, at the start of a run's first fit, with normalised training images;
the filters are then frozen, and the buffer ``whitened`` (saved with the weights) keeps a resumed run from
computing them again.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..checks import check_number
from ._base import ClassifierNet
from ._registry import NetCfg, register_model


class _Conv(nn.Conv2d):
    """3x3 'same' convolution without bias whose first filters start as the identity (dirac): a deep stack of
    them starts close to passing its input through."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding="same", bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(cin, cout)])


class _Norm(nn.BatchNorm2d):
    """BatchNorm with a fixed scale (only the shift learns) and fast-moving statistics, as the speed recipes use."""

    def __init__(self, channels: int, momentum: float = 0.4):
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


class _Group(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn_momentum: float):
        super().__init__(
            _Conv(cin, cout), nn.MaxPool2d(2), _Norm(cout, bn_momentum), nn.GELU(),
            _Conv(cout, cout), _Norm(cout, bn_momentum), nn.GELU(),
        )  # fmt: skip


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class SpeedNet(ClassifierNet):
    """Whitening 2x2 conv (24 filters) + GELU, three conv groups of widths ``widths`` x ``width``, global max
    pooling, pre-logits scaled by ``logit_scale``, a linear classifier without bias.

    Args:
        width: multiplies every group's width (1.0: 64/256/256, the 94 % record net; 0.25: 16/64/64 for a CPU).
        widths: the three groups' widths at ``width`` 1.
        bn_momentum: BatchNorm's running-statistics momentum (torch's convention; the recipe's 0.6 is 0.4 here).
        logit_scale: multiplies the pre-logits (1/9 in the recipe: small logits early in training).
        whitening: false makes the first layer an ordinary trained convolution (the ablation of the whitening).
    """

    global_pool = False  # max pooling: not the average pooling class-activation maps need

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        widths: tuple[int, int, int] = (64, 256, 256),
        bn_momentum: float = 0.4,
        logit_scale: float = 1 / 9,
        whitening: bool = True,
    ):
        super().__init__()
        check_number("net_kwargs.width", width, 0.05, 8)
        check_number("net_kwargs.bn_momentum", bn_momentum, 0, 1, lo_open=True)
        w = [max(8, round(c * width)) for c in widths]
        whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        whiten.weight.requires_grad_(not whitening)  # set from the data, never trained
        nn.init.zeros_(whiten.bias)  # the recipe's bias starts at zero (it trains for the first epochs only)
        self.whitening = whitening
        self.register_buffer("whitened", torch.tensor(False))
        self.features = nn.Sequential(
            whiten, nn.GELU(), _Group(24, w[0], bn_momentum), _Group(w[0], w[1], bn_momentum),
            _Group(w[1], w[2], bn_momentum),
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(1), _Scale(logit_scale))
        self.num_features = w[2]
        self.classifier = nn.Linear(w[2], num_classes, bias=False)

    @property
    def whiten(self) -> nn.Conv2d:
        """The 2x2 whitening convolution (the first layer)."""
        return self.features[0]

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images (N x 3 x H x W, a few thousand)."""
        k = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, 3 * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, 3, k, k).flip(0)
        weight = torch.cat([filters, -filters])  # the strongest directions first, then their negatives
        self.whiten.weight.copy_(weight.to(self.whiten.weight))
        self.whitened.fill_(True)


@register_model(cfg=NetCfg(input_size=32))
def speednet(num_classes: int = 10, **kwargs) -> SpeedNet:
    """The airbench94-style speed net (width 1: 64/256/256); ``net_kwargs: {width: 0.25}`` for a CPU."""
    return SpeedNet(num_classes=num_classes, **kwargs)
