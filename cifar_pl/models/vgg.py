"""VGG-like nets for CIFAR, as in the BatchNorm study of Santurkar et al. 2018
("How Does Batch Normalization Help Optimization?"): without BN, with BN before every
non-linearity, and with BN followed by injected noise that shifts and rescales each channel."""

from __future__ import annotations

import torch
import torch.nn as nn

from ._base import ClassifierNet
from ._registry import register_model

# Conv widths per depth; "M" is a 2x2 max-pool. 32x32 inputs end as 512x1x1.
VGG_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class NoisyBatchNorm(nn.Module):
    """BatchNorm whose output is shifted and rescaled per channel by random amounts drawn afresh at
    every training step (mean ~ U(-noise_mean, noise_mean), scale ~ U(1, noise_scale)): the injected
    "internal covariate shift" of Santurkar et al. 2018. Off in eval mode."""

    def __init__(self, bn: nn.Module, noise_mean: float = 0.5, noise_scale: float = 2.0):
        super().__init__()
        if noise_scale < 1:
            raise ValueError(f"noise_scale is the upper end of U(1, noise_scale); got {noise_scale} < 1")
        self.bn = bn
        self.noise_mean = noise_mean
        self.noise_scale = noise_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(x)
        if not self.training:
            return x
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        shift = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * self.noise_mean
        scale = 1 + torch.rand(shape, device=x.device, dtype=x.dtype) * (self.noise_scale - 1)
        return x * scale + shift


class VGGLike(ClassifierNet):
    """VGG conv stacks (3x3, pad 1) with max-pools, two hidden FC layers and a final linear layer.

    ``norm``: ``"none"``, ``"bn"`` (BN between every conv/FC and its ReLU, except the last linear)
    or ``"bn_noise"`` (BN then injected noise).
    """

    def __init__(
        self,
        depth: int = 11,
        num_classes: int = 10,
        in_chans: int = 3,
        norm: str = "none",
        fc_width: int = 512,
        noise_mean: float = 0.5,
        noise_scale: float = 2.0,
        input_size: int = 32,
    ):
        super().__init__()
        if depth not in VGG_CFGS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CFGS)}, got {depth}")
        if norm not in ("none", "bn", "bn_noise"):
            raise ValueError(f"norm must be 'none', 'bn' or 'bn_noise', got '{norm}'")

        def normed(layer: nn.Module, width: int, bn_cls: type[nn.Module]) -> list[nn.Module]:
            if norm == "none":
                return [layer, nn.ReLU(inplace=True)]
            bn: nn.Module = bn_cls(width)
            if norm == "bn_noise":
                bn = NoisyBatchNorm(bn, noise_mean, noise_scale)
            return [layer, bn, nn.ReLU(inplace=True)]

        layers: list[nn.Module] = []
        ch = in_chans
        for v in VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += normed(nn.Conv2d(ch, v, 3, padding=1, bias=norm == "none"), v, nn.BatchNorm2d)
                ch = v
        self.features = nn.Sequential(*layers)
        side = input_size // 32  # five pools
        self.fixed_input_size = (input_size, input_size)
        flat = ch * side * side
        self.head = nn.Sequential(
            nn.Flatten(1),
            *normed(nn.Linear(flat, fc_width, bias=norm == "none"), fc_width, nn.BatchNorm1d),
            *normed(nn.Linear(fc_width, fc_width, bias=norm == "none"), fc_width, nn.BatchNorm1d),
        )
        self.num_features = fc_width
        self.classifier = nn.Linear(fc_width, num_classes)


@register_model
def vgg_like(num_classes: int = 10, **kwargs) -> VGGLike:
    """VGG-11-style net without BatchNorm."""
    return VGGLike(num_classes=num_classes, norm="none", **kwargs)


@register_model
def vgg_like_bn(num_classes: int = 10, **kwargs) -> VGGLike:
    """VGG-11-style net with BatchNorm before every non-linearity."""
    return VGGLike(num_classes=num_classes, norm="bn", **kwargs)


@register_model
def vgg_like_bn_noise(num_classes: int = 10, **kwargs) -> VGGLike:
    """vgg_like_bn with random per-channel shift and scale injected after every BN during training."""
    return VGGLike(num_classes=num_classes, norm="bn_noise", **kwargs)
