"""VGG-like nets for CIFAR, as in the BatchNorm study of Santurkar et al. 2018
("How Does Batch Normalization Help Optimization?"): without BN, with BN before every
non-linearity, and with BN followed by injected noise that shifts and rescales each activation
(or each channel)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ._base import ClassifierNet
from ._registry import SIZED, register_model

# Conv widths per depth; "M" is a 2x2 max-pool. 32x32 inputs end as 512x1x1.
VGG_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class NoisyBatchNorm(nn.Module):
    """BatchNorm followed by injected noise during training (off in eval mode): the "internal covariate shift"
    Santurkar et al. 2018 add on purpose.

    ``noise_mode="activation"`` (their experiment): every activation of every sample gets its own noise,
    ``y = x * a + b`` with ``a ~ N(mu_a, sd_a^2)`` and ``b ~ N(mu_b, sd_b^2)`` i.i.d., and the distribution
    itself changes at every step: ``mu_b ~ U(-noise_mean, noise_mean)``, ``mu_a ~ U(1, noise_scale)``,
    ``sd_a, sd_b ~ U(0, noise_std)`` drawn afresh per layer and step. (The paper's own ranges are in its
    appendix, not in write-up 000; these defaults are our choice.)
    ``noise_mode="channel"``: one shift ``U(-noise_mean, noise_mean)`` and scale ``U(1, noise_scale)`` per
    channel, shared by the batch and redrawn each step: a gentler variant."""

    def __init__(
        self,
        bn: nn.Module,
        noise_mean: float = 0.5,
        noise_scale: float = 2.0,
        noise_std: float = 0.5,
        noise_mode: str = "activation",
    ):
        super().__init__()
        if noise_scale < 1:
            raise ValueError(f"noise_scale is the upper end of U(1, noise_scale); got {noise_scale} < 1")
        if noise_mean < 0 or noise_std < 0:
            raise ValueError(f"noise_mean and noise_std are >= 0; got {noise_mean}, {noise_std}")
        if noise_mode not in ("activation", "channel"):
            raise ValueError(f"noise_mode must be 'activation' or 'channel', got '{noise_mode}'")
        self.bn = bn
        self.noise_mean, self.noise_scale, self.noise_std, self.noise_mode = (
            noise_mean,
            noise_scale,
            noise_std,
            noise_mode,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(x)
        if not self.training:
            return x
        if self.noise_mode == "channel":
            shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
            shift = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * self.noise_mean
            scale = 1 + torch.rand(shape, device=x.device, dtype=x.dtype) * (self.noise_scale - 1)
            return x * scale + shift
        # this step's noise distribution: four scalars
        u = torch.rand(4, device=x.device, dtype=x.dtype)
        mu_b, mu_a = (u[0] * 2 - 1) * self.noise_mean, 1 + u[1] * (self.noise_scale - 1)
        sd_a, sd_b = u[2] * self.noise_std, u[3] * self.noise_std
        a = mu_a + sd_a * torch.randn_like(x)
        b = mu_b + sd_b * torch.randn_like(x)
        return x * a + b


class VGGLike(ClassifierNet):
    """VGG conv stacks (3x3, pad 1) with max-pools, two hidden FC layers and a final linear layer.

    ``norm``: ``"none"``, ``"bn"`` (BN between every conv/FC and its ReLU, except the last linear)
    or ``"bn_noise"`` (BN then injected noise, ``noise_mode`` ``activation`` as Santurkar et al. or
    ``channel``). ``width`` multiplies every conv and hidden FC width (0.25: a sixteenth of the compute, for
    CPU budgets).
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
        noise_std: float = 0.5,
        noise_mode: str = "activation",
        width: float = 1.0,
        input_size: int = 32,
    ):
        super().__init__()
        if not 0 < width <= 4:
            raise ValueError(f"width multiplies every layer's channels, 0 < width <= 4; got {width}")
        if depth not in VGG_CFGS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CFGS)}, got {depth}")
        if norm not in ("none", "bn", "bn_noise"):
            raise ValueError(f"norm must be 'none', 'bn' or 'bn_noise', got '{norm}'")

        def normed(layer: nn.Module, width: int, bn_cls: type[nn.Module]) -> list[nn.Module]:
            if norm == "none":
                return [layer, nn.ReLU(inplace=True)]
            bn: nn.Module = bn_cls(width)
            if norm == "bn_noise":
                bn = NoisyBatchNorm(bn, noise_mean, noise_scale, noise_std, noise_mode)
            return [layer, bn, nn.ReLU(inplace=True)]

        layers: list[nn.Module] = []
        ch = in_chans
        for v in VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                v = max(1, round(v * width))
                layers += normed(nn.Conv2d(ch, v, 3, padding=1, bias=norm == "none"), v, nn.BatchNorm2d)
                ch = v
        self.features = nn.Sequential(*layers)
        side = input_size // 32  # five pools
        self.fixed_input_size = (input_size, input_size)
        flat = ch * side * side
        fc_width = max(1, round(fc_width * width))
        self.head = nn.Sequential(
            nn.Flatten(1),
            *normed(nn.Linear(flat, fc_width, bias=norm == "none"), fc_width, nn.BatchNorm1d),
            *normed(nn.Linear(fc_width, fc_width, bias=norm == "none"), fc_width, nn.BatchNorm1d),
        )
        self.num_features = fc_width
        self.classifier = nn.Linear(fc_width, num_classes)


@register_model(cfg=SIZED)
def vgg_like(num_classes: int = 10, **kwargs) -> VGGLike:
    """VGG-11-style net without BatchNorm."""
    return VGGLike(num_classes=num_classes, norm="none", **kwargs)


@register_model(cfg=SIZED)
def vgg_like_bn(num_classes: int = 10, **kwargs) -> VGGLike:
    """VGG-11-style net with BatchNorm before every non-linearity."""
    return VGGLike(num_classes=num_classes, norm="bn", **kwargs)


@register_model(cfg=SIZED)
def vgg_like_bn_noise(num_classes: int = 10, **kwargs) -> VGGLike:
    """vgg_like_bn with noise injected after every BN during training (per activation and sample, its
    distribution redrawn each step, as Santurkar et al.; ``noise_mode: channel`` for one draw per channel)."""
    return VGGLike(num_classes=num_classes, norm="bn_noise", **kwargs)
