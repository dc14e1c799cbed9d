"""Nets are registered by name and created by name, so a YAML file can pick one."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a net constructor under its function name (``@register_model def resnet20(...)``)."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"a net named '{name}' is already registered (by {_MODELS[name].__module__})")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered nets, optionally only those containing ``pattern``."""
    names = sorted(_MODELS)
    return [n for n in names if pattern in n] if pattern else names


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered net."""
    return name in _MODELS


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build the registered net ``name`` with a classifier for ``num_classes`` classes."""
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown net '{name}'.{hint} Registered nets: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, **kwargs)
