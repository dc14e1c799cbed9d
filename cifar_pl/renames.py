"""Names that changed, old -> new, so that a config, a run's recorded configuration or a checkpoint written before a
rename keeps working. Old names are replaced where a configuration enters (the YAML loader of the CLI, the
configuration read back from a checkpoint) and each replacement is logged once, with the new name to use.

The tables are ours: a name read from a file is only ever looked up here, never imported or called."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("cifar_pl")

#: class paths a config may name (``class_path: ...`` or a ``--trainer.callbacks+=`` value)
CLASS_PATHS: dict[str, str] = {
    # 2026-12: product callbacks no longer look like tests (pytest collected ``Test*`` classes imported by tests)
    "cifar_pl.callbacks.TestEachEpoch": "cifar_pl.callbacks.EvaluateEachEpoch",
    "cifar_pl.callbacks.test_each_epoch.TestEachEpoch": "cifar_pl.callbacks.EvaluateEachEpoch",
    "cifar_pl.callbacks.TestReport": "cifar_pl.callbacks.EndOfTestReport",
    "cifar_pl.callbacks.test_report.TestReport": "cifar_pl.callbacks.EndOfTestReport",
}

#: ImageClassifier's flat keys before its options were grouped (2026-12) -> ``<group>.<field>``
MODEL_KEYS: dict[str, str] = {
    "optimizer": "optim.name", "lr": "optim.lr", "momentum": "optim.momentum", "nesterov": "optim.nesterov",
    "betas": "optim.betas", "rho": "optim.rho", "rmsprop_momentum": "optim.rmsprop_momentum",
    "weight_decay": "optim.weight_decay", "no_decay_bn_bias": "optim.no_decay_bn_bias",
    "body_lr_factor": "optim.body_lr_factor", "bias_lr_factor": "optim.bias_lr_factor",
    "scheduler": "schedule.name", "interval": "schedule.interval", "warmup_epochs": "schedule.warmup_epochs",
    "warmup_mode": "schedule.warmup_mode", "warmup_factor": "schedule.warmup_factor",
    "milestones": "schedule.milestones", "gamma": "schedule.gamma", "min_lr": "schedule.min_lr",
    "cycle_momentum": "schedule.cycle_momentum",
    "ema_decay": "average.decay", "ema_every": "average.every", "ema_ramp": "average.ramp",
    "ema_lookahead": "average.lookahead",
    "tta": "evaluation.tta",
    "sync_every": "runtime.sync_every", "channels_last": "runtime.channels_last", "compile": "runtime.compile",
    "compile_mode": "runtime.compile_mode",
    "weight_init": "init.scheme", "init_from": "init.weights", "init_strict": "init.strict",
}  # fmt: skip

_logged: set[str] = set()


def _note(old: str, new: str) -> None:
    if old not in _logged:
        _logged.add(old)
        log.warning(f"{old} is now {new}; the old name still works, use the new one in new configs")


def model_args(args: Mapping[str, Any], where: str = "model") -> dict[str, Any]:
    """ImageClassifier's arguments with flat keys of before the grouping moved into their groups (a value
    already given under the new key wins)."""
    if not any(k in MODEL_KEYS for k in args):
        return dict(args)
    out = {k: v for k, v in args.items() if k not in MODEL_KEYS}
    for old, value in args.items():
        if old not in MODEL_KEYS:
            continue
        group, name = MODEL_KEYS[old].split(".")
        _note(f"{where}.{old}", f"{where}.{group}.{name}")
        current = out.get(group)
        merged = dict(current) if isinstance(current, Mapping) else {}
        merged.setdefault(name, value)
        out[group] = merged
    return out


def command_line(args: list[str]) -> list[str]:
    """``--model.<old key> ...`` (or ``--model.<old key>=...``) as ``--model.<group>.<field>``."""
    out = []
    for arg in args:
        head, sep, value = arg.partition("=")
        if head.startswith("--model.") and head[len("--model.") :] in MODEL_KEYS:
            new = "--model." + MODEL_KEYS[head[len("--model.") :]]
            _note(head, new)
            arg = new + sep + value
        out.append(arg)
    return out


def renamed(value: Any) -> Any:
    """``value`` (a loaded config, a part of one, or a single string) with every old class path replaced by its
    new one and ``model:``'s flat keys of before the grouping moved into their groups; anything else is returned
    as it is (the same object when nothing changed)."""
    if isinstance(value, str):
        new = CLASS_PATHS.get(value)
        if new is None:
            return value
        _note(value, new)
        return new
    if isinstance(value, list):
        out = [renamed(v) for v in value]
        return value if all(a is b for a, b in zip(out, value, strict=True)) else out
    if isinstance(value, Mapping):
        out = {k: renamed(v) if k == "class_path" or not isinstance(v, str) else v for k, v in value.items()}
        model = out.get("model")
        if isinstance(model, Mapping) and any(k in MODEL_KEYS for k in model):
            out["model"] = model_args(model)
        return value if all(out[k] is value[k] for k in value) else out
    return value
