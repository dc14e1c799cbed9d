"""The one face every net shows: features -> head (pooling, hidden layers) -> classifier."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn


class ClassifierNet(nn.Module):
    """Base for the nets of this package.

    A subclass builds three parts and sets two attributes:

    * ``features``: image -> unpooled NCHW feature map (what CAM and feature grids look at);
    * ``head``: feature map -> pre-logits vector (global average pooling, or flatten + hidden layers);
    * ``classifier``: the final ``nn.Linear`` (the only part ``reset_classifier`` replaces);
    * ``num_features``: width of the vector the classifier reads;
    * ``global_pool``: True when ``head`` is global average pooling (plus dropout) only, so the
      classifier's weights give class-activation maps and any input size is accepted;
      nets with a flatten head also set ``fixed_input_size`` to the (H, W) they need.
    """

    features: nn.Module
    head: nn.Module
    classifier: nn.Module
    num_features: int
    global_pool: bool = False
    fixed_input_size: tuple[int, int] | None = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled last feature map, N x C x H x W."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (or flatten) the feature map and classify it; ``pre_logits`` stops before the classifier."""
        x = self.head(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.classifier

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features if isinstance(self.classifier, nn.Linear) else 0

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a fresh one for ``num_classes`` (0: identity, pre-logits out)."""
        ref = next(self.parameters())
        self.classifier = (
            nn.Linear(self.num_features, num_classes).to(device=ref.device, dtype=ref.dtype)
            if num_classes > 0
            else nn.Identity()
        )

    @classmethod
    def filter_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a state dict saved by another implementation of this net onto our names (default: as is)."""
        return dict(state_dict)


def split_parameters(net: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(body, classifier) parameters of a net: the final classifier's (``net.get_classifier()``) and the rest."""
    head = {id(p) for p in net.get_classifier().parameters()} if hasattr(net, "get_classifier") else set()
    params = list(net.parameters())
    return [p for p in params if id(p) not in head], [p for p in params if id(p) in head]


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def norm_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters of the net's normalisation layers (BatchNorm, GroupNorm, LayerNorm: scales and shifts)."""
    return [p for m in net.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)]


class GlobalAvgPoolHead(nn.Sequential):
    """Global average pooling, flatten, optional dropout: the head that makes a net CAM-ready."""

    def __init__(self, drop_rate: float = 0.0):
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        if drop_rate > 0:
            layers.append(nn.Dropout(drop_rate))
        super().__init__(*layers)
