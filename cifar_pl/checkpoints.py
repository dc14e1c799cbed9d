"""The one way from a file to objects, used by every entry point (the CLI's ``--ckpt_path``, ``init.weights``,
predict, viz, sweeps).

The trust model: a checkpoint is data. It is loaded with ``torch.load(weights_only=True)`` (tensors and plain
containers; no object of the file's choosing is built), and whatever it names is looked up in this package's own
tables: the net in the net registry, the DataModule in the DataModule registry, every argument against the
signature of the class it is for. Nothing named in a file is imported or called, and arguments that would
fetch weights (``init.weights``, ``pretrained_path``, ``download``) are switched off, because the file carries its
own weights. An unknown name is a clear error naming the file and the key.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser

from .data import STATS, datamodule_class, resolve_stats
from .errors import BadFile, UserError
from .lit import ImageClassifier
from .models import get_cfg, is_model
from .renames import model_args as model_args_renamed
from .renames import renamed
from .weights_io import RUN_CONFIG_KEY, AtomicCheckpointIO, checkpoint_counters, load_file, read_state_dict

__all__ = [  # the file-level readers and the writer live in weights_io (basics); re-exported for entry points
    "AtomicCheckpointIO", "Checkpoint", "RUN_CONFIG_KEY", "checkpoint_counters", "load_file", "read_checkpoint",
    "read_state_dict",
]  # fmt: skip

# DataModule arguments that name a place to write (the decoded-image cache): reset to the DataModule's own default
# ($CIFAR_PL_CACHE) when a DataModule is rebuilt from a checkpoint. Folders it reads (data_dir, test_dir) are kept,
# read-only, unless the command overrides them (viz --data-dir).
WRITTEN_PATHS = ("cache_dir",)
MODEL_CLASS_PATHS = ("cifar_pl.lit.ImageClassifier", "cifar_pl.lit.classifier.ImageClassifier")


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


@functools.cache
def init_arguments(cls: type) -> frozenset[str]:
    """The arguments ``cls(...)`` accepts, resolved through ``**kwargs`` passed to parents the way the CLI
    resolves them (jsonargparse), so arguments a subclass fixes itself are not among them."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "init", fail_untyped=False)
    # a group of options (a dataclass, e.g. ImageClassifier's optim) shows as its dotted keys: keep its name
    return frozenset(k.split(".")[0] for k in parser.get_defaults().init.keys())


def _checked_args(source: str, key: str, args: Mapping[str, Any], cls: type) -> dict[str, Any]:
    args = {k: v for k, v in args.items() if k not in ("_class_path", "_instantiator")}
    bad = [k for k, v in args.items() if not _is_plain(v)]
    if bad:
        raise BadFile(f"{source}: {key} {bad} hold values that are not plain numbers, strings or lists")
    unknown = sorted(set(args) - init_arguments(cls))
    if unknown:
        raise BadFile(
            f"{source}: {key} has {unknown}, which {cls.__name__} does not take; was the file written by "
            f"another version of cifar_pl?"
        )
    return dict(args)


def _triple(value: Any) -> tuple[float, float, float] | None:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
    return tuple(float(v) for v in value) if ok else None


@dataclass
class Checkpoint:
    """What a checkpoint of ours holds, checked: the LightningModule's weights and arguments, the DataModule
    class (from our table) with its arguments and saved state, the counters, and the run's configuration."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    model_args: dict[str, Any]
    datamodule_class: type | None = None
    datamodule_args: dict[str, Any] = field(default_factory=dict)
    datamodule_state: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    global_step: int = 0
    epochs_done: int = 0  # whole epochs trained (the epoch in progress does not count)
    config: dict[str, Any] | None = None  # the whole run configuration (fit runs of the CLI record it)
    stage: dict[str, Any] = field(default_factory=dict)  # where this run's stage started (see cifar_pl.lit)

    @property
    def net(self) -> str:
        return self.model_args["net"]

    @property
    def class_names(self) -> list[str]:
        names = self.model_args.get("class_names")
        return list(names) if names else [str(i) for i in range(int(self.model_args.get("num_classes", 10)))]

    def build_model(self, device: str | torch.device = "cpu"):
        """The ImageClassifier with the checkpoint's weights, in eval mode on ``device``."""
        try:
            runtime = self.model_args.get("runtime")
            runtime = {**(runtime if isinstance(runtime, Mapping) else {}), "compile": False}
            model = ImageClassifier(**{**self.model_args, "runtime": runtime})
        except UserError as e:
            raise BadFile(f"{self.path}: its model arguments are refused: {e}") from None
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:300]
            raise BadFile(
                f"checkpoint '{self.path}' does not fit its own net '{self.net}': {first}"
            ) from None
        return model.eval().to(device)

    def build_datamodule(self, data_dir: str | None = None):
        """The DataModule the checkpoint was trained with (``data_dir`` where its data lives now)."""
        if self.datamodule_class is None:
            raise BadFile(f"{self.path} records no DataModule of cifar_pl; pass image files instead")
        args = dict(self.datamodule_args)
        if data_dir is not None:
            args["data_dir"] = data_dir
        for key in WRITTEN_PATHS:  # where things are written comes from this machine, never from the file
            if key in args:
                args[key] = None
        dm = self.datamodule_class(**args)
        if self.datamodule_state:
            dm.load_state_dict(self.datamodule_state)
        return dm

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The mean/std the model was trained with: the DataModule's saved state, else what its arguments name,
        else what the net's own config says, else CIFAR-10's (with a warning)."""
        mean, std = _triple(self.datamodule_state.get("mean")), _triple(self.datamodule_state.get("std"))
        if mean and std and min(std) > 0:
            return mean, std
        if self.datamodule_class is not None:
            a = self.datamodule_args
            given = resolve_stats(a.get("stats", "default"), a.get("mean"), a.get("std"),
                                  self.datamodule_class.default_stats)  # fmt: skip
            if given is not None:
                return given
        cfg = get_cfg(self.net, self.model_args.get("net_kwargs"))
        if cfg.mean is not None and cfg.std is not None:
            return cfg.mean, cfg.std

        warnings.warn(f"{self.path} records no input normalisation; using CIFAR-10's", stacklevel=2)
        return STATS["cifar10"]

    def image_size(self) -> int:
        """The side of the images the model was trained on: the model's own field (checkpoints since 2026-12);
        for older ones, what the DataModule kept, its arguments, its class default, or the net's design size."""
        for value in (
            self.model_args.get("image_size"),
            self.datamodule_state.get("image_size"),
            self.datamodule_args.get("image_size"),
            getattr(self.datamodule_class, "image_size", None) if self.datamodule_class else None,
        ):
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return get_cfg(self.net, self.model_args.get("net_kwargs")).input_size


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A Lightning checkpoint written by cifar_pl, checked as the module docstring says."""
    path = Path(path).expanduser()
    ckpt = load_file(path)
    source = str(path)
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("state_dict"), Mapping)
        or "hyper_parameters" not in ckpt
    ):
        raise BadFile(
            f"'{path}' is not a cifar_pl Lightning checkpoint (no state_dict/hyper_parameters); for a plain "
            f"weights file use model.init.weights in a config"
        )
    state_dict = dict(ckpt["state_dict"])
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise BadFile(f"{source}: state_dict holds something other than named tensors")
    broken = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise BadFile(
            f"{source}: its weights hold NaN or infinite values ({', '.join(broken[:3])}"
            f"{f', ... {len(broken)} tensors' if len(broken) > 3 else ''}), so every score would be meaningless; use "
            f"an earlier checkpoint of the run (training diverged before this one was written)"
        )
    hp = ckpt["hyper_parameters"]
    if not isinstance(hp, Mapping):
        raise BadFile(f"{source}: hyper_parameters is not a mapping")
    model_path = hp.get("_class_path")
    if model_path is not None and model_path not in MODEL_CLASS_PATHS:
        raise BadFile(
            f"{source}: hyper_parameters._class_path is {model_path!r}, not cifar_pl's ImageClassifier; nothing "
            f"named in a checkpoint is imported"
        )
    model_args = _checked_args(source, "hyper_parameters", model_args_renamed(hp), ImageClassifier)
    net = model_args.get("net", "model_g")
    if not isinstance(net, str) or not is_model(net):
        raise BadFile(
            f"{source}: hyper_parameters.net is {net!r}, not a registered net (cifar_pl.models.list_models())"
        )
    net_kwargs = model_args.get("net_kwargs") or {}
    if not isinstance(net_kwargs, Mapping):
        raise BadFile(f"{source}: hyper_parameters.net_kwargs is not a mapping")
    # The file carries its own weights: nothing it says may fetch others (a path, a download).
    weight_args = get_cfg(net, net_kwargs).weight_args or {}
    model_args["net_kwargs"] = {**net_kwargs, **{k: v for k, v in weight_args.items() if k in net_kwargs}}
    init = model_args.get("init")
    model_args["init"] = {**(init if isinstance(init, Mapping) else {}), "weights": None}

    dm_hp = ckpt.get("datamodule_hyper_parameters") or {}
    dm_cls, dm_args, dm_state = None, {}, {}
    if isinstance(dm_hp, Mapping) and dm_hp.get("_class_path") is not None:
        dm_cls = datamodule_class(dm_hp["_class_path"], source)
        dm_args = _checked_args(source, "datamodule_hyper_parameters", dm_hp, dm_cls)
        if "download" in dm_args:
            dm_args["download"] = False
        state = ckpt.get(dm_cls.__qualname__)
        dm_state = dict(state) if isinstance(state, Mapping) and _is_plain(dict(state)) else {}

    callbacks = ckpt.get("callbacks") if isinstance(ckpt.get("callbacks"), Mapping) else {}
    run = callbacks.get(RUN_CONFIG_KEY) if isinstance(callbacks.get(RUN_CONFIG_KEY), Mapping) else {}
    config = (
        run.get("config") if _is_plain(run.get("config")) and isinstance(run.get("config"), Mapping) else None
    )
    stage = ckpt.get("cifar_pl_stage") if isinstance(ckpt.get("cifar_pl_stage"), Mapping) else {}
    counters = {k: ckpt.get(k, 0) for k in ("epoch", "global_step")}
    try:  # Lightning counts an epoch as processed once its last batch is done (validation may follow)
        counters["epochs_done"] = ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
    except (KeyError, TypeError):
        counters["epochs_done"] = counters["epoch"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counters.values()):
        raise BadFile(f"{source}: epoch/global_step are not counts ({counters})")
    return Checkpoint(
        path, state_dict, model_args, dm_cls, dm_args, dm_state, counters["epoch"], counters["global_step"],
        counters["epochs_done"], renamed(dict(config)) if config else None, dict(stage) if _is_plain(dict(stage)) else {},
    )  # fmt: skip
