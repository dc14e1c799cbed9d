"""Nets are registered by name and created by name, so a YAML file can pick one. Each carries a small config
(the idea of timm's ``pretrained_cfg``): the input size it was designed for, the normalisation its own weights
expect, and which of its arguments fetch weights, so a checkpoint can be rebuilt without ever fetching any."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from ..errors import BadValue


@dataclass(frozen=True)
class NetCfg:
    """What a net says about itself.

    ``input_size``: side of the images it was designed for. ``sized``: its head is built for one image size (a
    flatten head): the constructor takes ``input_size`` and the built net's ``fixed_input_size`` says it;
    ImageClassifier passes the data's image size (``data.image_size``, linked by the CLI) to such a net. ``mean``/``std``: the normalisation its own pretrained
    weights expect (None: whatever the data uses). ``weight_args``: constructor arguments that load weights
    from a file or the network, with the values that turn them off.
    """

    input_size: int = 32
    sized: bool = False
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    weight_args: Mapping[str, Any] | None = None


SIZED = NetCfg(
    sized=True
)  # the config of a net with a flatten head, built for input_size x input_size images
_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, NetCfg | Callable[[dict[str, Any]], NetCfg]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, cfg=None):
    """Register a net constructor under its function name: ``@register_model`` or
    ``@register_model(cfg=NetCfg(...))`` (``cfg`` may also be a function of the net's keyword arguments)."""

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _MODELS:
            raise ValueError(f"a net named '{name}' is already registered (by {_MODELS[name].__module__})")
        _MODELS[name] = f
        _CFGS[name] = cfg or NetCfg()
        return f

    return add(fn) if fn is not None else add


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered nets, optionally only those containing ``pattern``."""
    names = sorted(_MODELS)
    return [n for n in names if pattern in n] if pattern else names


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered net."""
    return name in _MODELS


def _check_name(name: str) -> None:
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), _MODELS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BadValue(f"Unknown net '{name}'.{hint} Registered nets: {', '.join(list_models())}")


def get_cfg(name: str, net_kwargs: Mapping[str, Any] | None = None) -> NetCfg:
    """The config of the registered net ``name`` (built with ``net_kwargs``)."""
    _check_name(name)
    cfg = _CFGS[name]
    return cfg(dict(net_kwargs or {})) if callable(cfg) else cfg


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build the registered net ``name`` with a classifier for ``num_classes`` classes."""
    _check_name(name)
    try:
        return _MODELS[name](num_classes=num_classes, **kwargs)
    except TypeError as e:  # a key of model.net_kwargs the net does not take: the user's, named in one line
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unknown is None or unknown.group(1) not in kwargs:
            raise
        fn = _MODELS[name]
        raise BadValue(
            f"net {name} takes no argument {unknown.group(1)!r} (model.net_kwargs); drop it, or see what "
            f"{fn.__module__}.{fn.__name__} takes"
        ) from None
