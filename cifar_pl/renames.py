"""Names that changed, old -> new, so that a config, a run's recorded configuration or a checkpoint written before a
rename keeps working. Old names are replaced where a configuration enters (the YAML loader of the CLI, the
configuration read back from a checkpoint) and each replacement is logged once, with the new name to use.

The tables are ours: a name read from a file is only ever looked up here, never imported or called."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .errors import BadValue

log = logging.getLogger("cifar_pl")

#: class paths a config may name (``class_path: ...`` or a ``--trainer.callbacks+=`` value)
CLASS_PATHS: dict[str, str] = {
    # 2026-12: product callbacks no longer look like tests (pytest collected ``Test*`` classes imported by tests)
    "cifar_pl.callbacks.TestEachEpoch": "cifar_pl.callbacks.EvaluateEachEpoch",
    "cifar_pl.callbacks.test_each_epoch.TestEachEpoch": "cifar_pl.callbacks.EvaluateEachEpoch",
    "cifar_pl.callbacks.TestReport": "cifar_pl.callbacks.EndOfTestReport",
    "cifar_pl.callbacks.test_report.TestReport": "cifar_pl.callbacks.EndOfTestReport",
    "TestEachEpoch": "EvaluateEachEpoch",  # the short names jsonargparse resolves among the callbacks
    "TestReport": "EndOfTestReport",
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


def _class(value: str) -> str:
    new = CLASS_PATHS.get(value)
    if new is None:
        return value
    _note(value, new)
    return new


def model_args(args: Mapping[str, Any], where: str = "model") -> dict[str, Any]:
    """ImageClassifier's arguments with flat keys of before the grouping moved into their groups, said in one line
    for the whole mapping. Where an old key and its new key are both given, the new one is used, and the line
    says so; a group given as something other than a mapping is refused."""
    old_keys = [k for k in args if k in MODEL_KEYS]
    if not old_keys:
        return dict(args)
    out = {k: v for k, v in args.items() if k not in MODEL_KEYS}
    ignored = []
    for old in old_keys:
        group, name = MODEL_KEYS[old].split(".")
        current = out.get(group)
        if current is not None and not isinstance(current, Mapping):
            raise BadValue(
                f"{where}.{group} is {current!r}, not a mapping of its keys (e.g. {{{name}: ...}})"
            )
        merged = dict(current or {})
        if name in merged and merged[name] != args[old]:
            ignored.append(
                f"{where}.{old} {args[old]!r} (the file also gives {where}.{group}.{name} {merged[name]!r})"
            )
        merged.setdefault(name, args[old])
        out[group] = merged
    shown = ", ".join(f"{k} -> {MODEL_KEYS[k]}" for k in old_keys[:4])
    more = f", ... ({len(old_keys)} keys)" if len(old_keys) > 4 else ""
    log.warning(f"{where}: flat keys of before 2026-12 read as their groups ({shown}{more}); they still work, the "
                f"grouped keys are the ones to write")  # fmt: skip
    if ignored:
        log.warning(f"{where}: ignored {'; '.join(ignored)}: the grouped key is used")
    return out


def command_line(args: list[str]) -> list[str]:
    """``--model.<old key> ...`` (or ``--model.<old key>=...``) as ``--model.<group>.<field>``, and an old class
    name given as a value (``--trainer.callbacks+=TestEachEpoch``) as its new one."""
    out = []
    for arg in args:
        head, sep, value = arg.partition("=")
        if head.startswith("--model.") and head[len("--model.") :] in MODEL_KEYS:
            new = "--model." + MODEL_KEYS[head[len("--model.") :]]
            _note(head, new)
            arg = new + sep + value
        elif (
            sep and head.startswith("--trainer.callbacks") and value in CLASS_PATHS
        ):  # ...callbacks+=TestReport
            arg = head + sep + _class(value)
        elif (
            out and out[-1].startswith("--trainer.callbacks") and arg in CLASS_PATHS
        ):  # ...callbacks+ TestReport
            arg = _class(arg)
        out.append(arg)
    return out


def renamed(value: Any) -> Any:
    """``value`` (a loaded config, a part of one, or a single string) with every old class path replaced by its
    new one and ``model:``'s flat keys of before the grouping moved into their groups; anything else is returned
    as it is (the same object when nothing changed)."""
    if isinstance(value, str):
        # a full class path only: a bare word (a run name, a class of the data) is never taken for a class
        return _class(value) if value.startswith("cifar_pl.") else value
    if isinstance(value, list):
        out = [renamed(v) for v in value]
        return value if all(a is b for a, b in zip(out, value, strict=True)) else out
    if isinstance(value, Mapping):
        out = {k: renamed(v) if k == "class_path" or not isinstance(v, str) else v for k, v in value.items()}
        model = out.get("model")
        if isinstance(model, Mapping) and any(k in MODEL_KEYS for k in model):
            out["model"] = model_args(model)
        # dotted keys at the top of a config (``model.lr: 0.01`` after ``config: base.yaml``)
        dotted = [k for k in out if isinstance(k, str) and k.startswith("model.") and k[6:] in MODEL_KEYS]
        for key in dotted:
            new = "model." + MODEL_KEYS[key[6:]]
            _note(key, new)
            out = {(new if k == key else k): v for k, v in out.items()}
        changed = set(out) != set(value) or any(out[k] is not value[k] for k in value)
        return out if changed else value
    return value
