"""The CIFAR ResNets of He et al. 2016 (section 4.2): 6n+2 layers, 16/32/64 channels, option-A shortcuts.

Module names follow the widely used implementation of these nets (akamaster/pytorch_resnet_cifar10),
so its pretrained weights load with ``model.init.weights`` after ``filter_state_dict`` renames ``linear``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import ClassifierNet, GlobalAvgPoolHead
from ._registry import register_model


class ShortcutA(nn.Module):
    """Option A: strided identity with the new channels zero-padded; no parameters."""

    def __init__(self, out_channels: int, in_channels: int):
        super().__init__()
        self.pad = (out_channels - in_channels) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ShortcutA(planes, in_planes) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ClassifierNet):
    """ResNet-(6n+2) for 32x32 images; global average pooling, so any input size works."""

    global_pool = True

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, widths=(16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        stages = []
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, width, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.head = GlobalAvgPoolHead()
        self.num_features = in_planes
        self.classifier = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    @classmethod
    def filter_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the reference implementation's ``linear.*`` to our ``classifier.*``."""
        return {
            ("classifier." + k[len("linear.") :] if k.startswith("linear.") else k): v
            for k, v in state_dict.items()
        }


def _resnet(depth: int):
    def build(num_classes: int = 10, **kwargs) -> CifarResNet:
        return CifarResNet(depth, num_classes, **kwargs)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (n={(depth - 2) // 6} basic blocks per stage, option-A shortcuts)."
    return register_model(build)


resnet20, resnet32, resnet44, resnet56, resnet110 = (_resnet(d) for d in (20, 32, 44, 56, 110))
