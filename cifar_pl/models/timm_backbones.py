"""Any timm model as a backbone with our face: its unpooled feature map, then global average pooling and a
new linear classifier. The documented default is Xception (Chollet 2017), which timm 1.0 keeps as
``legacy_xception`` (2048 x 8 x 8 features at 256 x 256)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ._base import ClassifierNet, GlobalAvgPoolHead
from ._registry import register_model
from ._weights import read_state_dict


class TimmFeatures(nn.Module):
    """A timm model without its classifier, run up to (and excluding) its global pooling."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class TimmBackbone(ClassifierNet):
    """``model_name`` from timm as the feature extractor; GAP (+ dropout) and ``nn.Linear`` as our head.

    Args:
        model_name: any timm model with a convolutional feature map (``timm.list_models()``).
        pretrained_path: a local weights file in timm's naming (e.g. timm's ``legacy_xception`` ImageNet
            weights), loaded with ``torch.load(weights_only=True)``; its classifier is dropped.
        pretrained: download timm's pretrained weights (needs internet; ignored with ``pretrained_path``).
        drop_rate: dropout before the classifier.
        **timm_kwargs: passed to ``timm.create_model`` (``in_chans``, ``drop_path_rate``, ...).

    Normalise inputs the way the weights were trained: ``stats: inception`` (0.5/0.5) for Xception,
    ``stats: imagenet`` for most others (``timm`` says so in ``backbone.pretrained_cfg``).
    """

    global_pool = True

    def __init__(
        self,
        model_name: str = "legacy_xception",
        num_classes: int = 10,
        pretrained_path: str | None = None,
        pretrained: bool = False,
        drop_rate: float = 0.0,
        **timm_kwargs,
    ):
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            close = timm.list_models(f"*{model_name.split('_')[-1]}*")[:8]
            raise ValueError(
                f"Unknown timm model '{model_name}'; similar names: {close or 'none'} (see timm.list_models())"
            )
        model = timm.create_model(
            model_name,
            pretrained=pretrained and pretrained_path is None,
            num_classes=0,
            global_pool="",
            **timm_kwargs,
        )
        self.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        if pretrained_path is not None:
            load_timm_weights(model, pretrained_path, self.pretrained_cfg.get("classifier"))
        self.features = TimmFeatures(model)
        self.num_features = model.num_features
        self.head = GlobalAvgPoolHead(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def load_timm_weights(model: nn.Module, path: str | Path, classifier: str | tuple[str, ...] | None) -> None:
    """Load a timm-named weights file into ``model`` (created with ``num_classes=0``), dropping the file's
    classifier; every other tensor must fit."""
    sd = read_state_dict(path)
    prefixes = tuple(f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier or ()))
    sd = {k: v for k, v in sd.items() if not k.startswith(prefixes)}
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"pretrained_path '{path}' does not fit timm's {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, shapes differ for {mismatched[:5]} "
            f"({len(missing)}/{len(unexpected)}/{len(mismatched)} in all); is it the weights of model_name?"
        )
    model.load_state_dict(sd, strict=False)


@register_model
def timm_backbone(num_classes: int = 10, model_name: str = "legacy_xception", **kwargs) -> TimmBackbone:
    """Any timm model by ``model_name`` (default Xception), with GAP and a new linear head."""
    return TimmBackbone(model_name, num_classes, **kwargs)


@register_model
def xception(num_classes: int = 10, **kwargs) -> TimmBackbone:
    """Xception (timm ``legacy_xception``, 20.8 M parameters without its head): 2048 x 8 x 8 at 256 x 256."""
    return TimmBackbone("legacy_xception", num_classes, **kwargs)
