"""Any timm model as a backbone with our face: its unpooled feature map, then global average pooling and a
new linear classifier. The documented default is Xception (Chollet 2017), which timm 1.0 keeps as
``legacy_xception`` (2048 x 8 x 8 features at 256 x 256)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import BadFile, BadValue, MissingFile
from ._base import ClassifierNet, GlobalAvgPoolHead
from ._registry import NetCfg, register_model

# A checkpoint carries its own weights: these arguments are switched off when one is rebuilt.
_WEIGHT_ARGS = {"pretrained_path": None, "pretrained": False}


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
            raise BadValue(
                f"Unknown timm model '{model_name}'; similar names: {close or 'none'} (see timm.list_models())"
            )
        model = _create(model_name, pretrained, pretrained_path, num_classes=0, global_pool="", **timm_kwargs)
        self.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        self.features = TimmFeatures(model)
        self.num_features = model.num_features
        self.head = GlobalAvgPoolHead(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def _create(model_name: str, pretrained: bool, pretrained_path: str | None, **kwargs) -> nn.Module:
    """timm's own builder; a local ``pretrained_path`` goes through timm's loader (``weights_only`` loading, the
    file's classifier dropped because we ask for none), and a file that does not fit says so."""
    import timm

    if pretrained_path is None:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    path = Path(pretrained_path).expanduser()
    if not path.is_file():
        raise MissingFile(f"pretrained_path '{path}' does not exist")
    try:
        return timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except (RuntimeError, KeyError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BadFile(
            f"pretrained_path '{path}' does not fit timm's {model_name} ({first}); is it the weights of model_name?"
        ) from None


def _timm_cfg(net_kwargs: dict[str, Any], default: str = "legacy_xception") -> NetCfg:
    """timm's own pretrained_cfg for the model: its input size and the normalisation its weights expect."""
    import timm

    name = net_kwargs.get("model_name", default)
    cfg = timm.get_pretrained_cfg(name) if timm.is_model(name) else None
    cfg = cfg.to_dict() if cfg is not None else {}
    mean, std = cfg.get("mean"), cfg.get("std")
    return NetCfg(
        input_size=int((cfg.get("input_size") or (3, 224, 224))[-1]),
        mean=tuple(mean) if mean and len(mean) == 3 else None,
        std=tuple(std) if std and len(std) == 3 else None,
        weight_args=_WEIGHT_ARGS,
    )


@register_model(cfg=_timm_cfg)
def timm_backbone(num_classes: int = 10, model_name: str = "legacy_xception", **kwargs) -> TimmBackbone:
    """Any timm model by ``model_name`` (default Xception), with GAP and a new linear head."""
    return TimmBackbone(model_name, num_classes, **kwargs)


@register_model(cfg=lambda kw: _timm_cfg(kw, "legacy_xception"))
def xception(num_classes: int = 10, **kwargs) -> TimmBackbone:
    """Xception (timm ``legacy_xception``, 20.8 M parameters without its head): 2048 x 8 x 8 at 256 x 256."""
    return TimmBackbone("legacy_xception", num_classes, **kwargs)
