"""``fit --ckpt_path X``: an exact resume or a new stage, by a rule a user can predict.

* **Exact resume**: the configuration equals X's run configuration except for values that do not change what
  is trained (``trainer.max_epochs``, where the data lives, devices, logging, checkpointing). Lightning restores
  everything (weights, optimiser, schedule position, counters, random generators, the place in the epoch); the
  schedule is planned over the current ``max_epochs``, so raising it trains longer on the schedule planned over
  the new horizon. Same version folder when X lies in this experiment's.
* **New stage**: anything else differs (model, optimiser, schedule, callbacks, data, seed). The weights come from
  X; optimiser and schedule are built fresh from the new configuration; the epoch and step counters continue
  from X (``--stage_counters restart`` starts them at 0); the run gets a new version folder whose ``stage.json``
  names its parent and every change.
* ``--new_data true`` on a configuration that would resume exactly: a new stage whose one change is the data
  (``NEW_DATA``). The CLI checks the claim once the data is read: the checkpoint's own data is refused, since
  nothing would differ but the note.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .checkpoints import Checkpoint
from .data.base import InMemoryImageDataModule
from .lit import ImageClassifier
from .lit.options import resume_neutral_keys
from .renames import renamed

# Values that can differ between a run and its exact resume: they say where things are and how the run is
# watched, not what is trained.
RESUME_NEUTRAL = (
    "ckpt_path", "config", "experiment", "test_after_fit", "stage_counters", "new_data", "seed_everything", "ddp_timeout",
    "trainer.max_epochs", "trainer.max_time", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
    "trainer.logger", "trainer.default_root_dir", "trainer.deterministic", "trainer.benchmark",
    "trainer.limit_val_batches", "trainer.limit_test_batches", "trainer.num_sanity_val_steps",
    "data.init_args.data_dir", "data.init_args.test_dir", "data.init_args.num_workers", "data.init_args.pin_memory",
    "data.init_args.eval_batch_size", "data.init_args.download", "data.init_args.resident",
    "checkpoint", "last_checkpoint",
    *resume_neutral_keys(),  # each option group says which of its fields these are (cifar_pl.lit.options)
)  # fmt: skip
# The change a new stage lists when --new_data alone makes it one.
NEW_DATA = ("data (--new_data)", "the checkpoint's", "the data given now")
# Linked from the data at instantiation; compared through the data.
_LINKED = ("model.num_classes", "model.class_names", "model.image_size")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys; lists and other values stay whole."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _neutral(key: str) -> bool:
    return any(key == n or key.startswith(f"{n}.") for n in RESUME_NEUTRAL + _LINKED)


def _as_config(ckpt: Checkpoint) -> dict[str, Any]:
    """A checkpoint without a recorded configuration (written before cifar_pl recorded it): what its
    hyperparameters say of the model and the data."""
    data = {"init_args": ckpt.datamodule_args}
    if ckpt.datamodule_class is not None:
        data["class_path"] = f"{ckpt.datamodule_class.__module__}.{ckpt.datamodule_class.__name__}"
    return {"model": dict(ckpt.model_args), "data": data}


def _defaults() -> dict[str, Any]:
    """The default of every model and (base) DataModule argument, as dotted config keys: a checkpoint written
    before an argument existed trained with its default, so a config that holds the default changes nothing."""
    out: dict[str, Any] = {}
    for prefix, cls in (("model.", ImageClassifier), ("data.init_args.", InMemoryImageDataModule)):
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if param.default is inspect.Parameter.empty:
                continue
            if dataclasses.is_dataclass(param.default):  # a group of options: each field's default
                for key, value in param.default.plain().items():
                    out[f"{prefix}{name}.{key}"] = value
            else:
                out[prefix + name] = param.default
    return out


def differences(
    old: Mapping[str, Any], new: Mapping[str, Any], only_common: bool = False
) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every training-relevant value that differs, sorted by key."""
    a, b = flatten(renamed(old)), flatten(renamed(new))  # keys of before a rename compare as the new ones
    for flat in (
        a,
        b,
    ):  # a flatten head's input_size given as the data's image size is what the link now gives
        given = flat.get("model.net_kwargs.input_size")
        if given is not None and given == flat.get("data.init_args.image_size"):
            del flat["model.net_kwargs.input_size"]
    keys = (a.keys() & b.keys()) if only_common else (a.keys() | b.keys())
    missing = object()
    defaults = _defaults()
    out = []
    for key in sorted(keys):
        if _neutral(key):
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va is missing or vb is missing:
            # a key only one side has is a change unless it holds nothing, or the argument's default (a
            # checkpoint from before the argument existed)
            present = va if vb is missing else vb
            if present in (None, [], {}) or _canon(present) == _canon(defaults.get(key, missing)):
                continue
        if _canon(va) != _canon(vb):
            out.append((key, None if va is missing else va, None if vb is missing else vb))
    return out


def _canon(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def describe(changes: list[tuple[str, Any, Any]], limit: int = 12) -> str:
    shown = ", ".join(f"changed {k} {_short(a)} -> {_short(b)}" for k, a, b in changes[:limit])
    return shown + (f", ... ({len(changes)} changes in all)" if len(changes) > limit else "")


def _short(value: Any) -> str:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, Mapping) and "class_path" in v for v in value)
    ):
        # callbacks and the like: their class names, not a cut-off dict of their settings
        return "[" + ", ".join(str(v["class_path"]).rsplit(".", 1)[-1] for v in value) + "]"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Continuation:
    """What ``fit --ckpt_path`` does with a checkpoint."""

    kind: Literal["resume", "stage"]
    checkpoint: Checkpoint
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    run_dir: Path | None = None  # X's version folder, when it is one of this experiment's
    start_epoch: int = 0
    start_step: int = 0

    @property
    def only_new_data(self) -> bool:
        """A stage only because ``--new_data`` said the data changed."""
        return self.kind == "stage" and self.changes == [NEW_DATA]

    def summary(self) -> str:
        if self.kind == "resume":
            where = f"in {self.run_dir}" if self.run_dir else "in a new version folder"
            return f"resuming {self.checkpoint.path} {where} (epoch {self.checkpoint.epoch}, step {self.checkpoint.global_step})"
        counters = (f"counters continue at epoch {self.start_epoch}, step {self.start_step}"
                    if self.start_epoch or self.start_step else "counters start at 0")  # fmt: skip
        if (self.start_epoch or self.start_step) and Path(self.checkpoint.path).resolve().name != "last.ckpt":
            # best.ckpt (or an epoch's checkpoint) holds the epoch it was saved at, not the run's last
            counters += (
                f" (where {Path(self.checkpoint.path).name} was saved; the run may have trained longer)"
            )
        return f"new stage from {self.checkpoint.path}: {describe(self.changes)}; {counters}"


def plan_continuation(
    ckpt: Checkpoint,
    config: Mapping[str, Any],
    run_dir: Path | None,
    counters: str = "continue",
    new_data: bool = False,
) -> Continuation:
    """Exact resume or new stage (see the module's docstring) for running ``config`` from ``ckpt``; ``new_data``:
    the data is said to be other than the checkpoint's (``--new_data true``)."""
    if ckpt.config is not None:
        changes = differences(ckpt.config, config)
    else:
        changes = differences(_as_config(ckpt), config, only_common=True)
    if not changes and new_data:
        changes = [NEW_DATA]
    if not changes:
        return Continuation("resume", ckpt, [], run_dir)
    start = (ckpt.epochs_done, ckpt.global_step) if counters == "continue" else (0, 0)
    return Continuation("stage", ckpt, changes, None, *start)
