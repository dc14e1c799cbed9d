"""Checkpoint and weights files at the level of bytes and tensors: the crash-consistent writer every run saves
through, the ``weights_only`` reader, a checkpoint's counters, and a state dict out of any weights file. Nothing
here builds a model or a DataModule from a file: that is ``cifar_pl.checkpoints`` (an entry point's job), which
reads through these."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from .errors import BadFile, MissingFile
from .files import atomic_write

RUN_CONFIG_KEY = "RunConfig"  # the callback state that holds a run's whole configuration
# Prefixes that wrappers add in front of a net's own parameter names: DataParallel/DDP ("module."),
# our LightningModule ("net."), and many training scripts ("model.").
_WRAPPER_PREFIXES = ("module.", "net.", "model.")


class AtomicCheckpointIO(TorchCheckpointIO):
    """The one checkpoint writer of every run: ``torch.save`` streamed into a temporary file in the checkpoint's
    own folder, fsynced, renamed over the old file, the folder fsynced (``cifar_pl.files.atomic_write``). Lightning's
    own writer goes through the system temp folder and a move, which across filesystems is a copy over the old
    checkpoint: a SIGKILL or a full disk during it leaves ``last.ckpt`` truncated. Here the previous checkpoint
    stays whole until the new one is complete. Remote paths (``s3://...``) are left to Lightning."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(path, lambda f: torch.save(checkpoint, f),
                     hint="or move lightning_logs to a larger disk; then resume with --ckpt_path last")  # fmt: skip
        return None


def load_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear error for a missing or foreign file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFile(f"{what} '{path}' does not exist; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as e:  # torch.load raises many types on garbage (UnpicklingError, KeyError, RuntimeError, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BadFile(
            f"'{path}' is not a readable PyTorch weights file or checkpoint ({first}). Only tensors and plain "
            f"values are loaded; if it is a file you trust that needs full unpickling, convert it once with "
            f"torch.save(torch.load(f, weights_only=False)['state_dict'], 'clean.pt')"
        ) from None


def checkpoint_counters(path: str | Path) -> dict[str, int] | None:
    """The epoch and global step a checkpoint holds (its tensors are mapped, not read), or None if unreadable."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
        return {"epoch": int(ckpt["epoch"]), "global_step": int(ckpt["global_step"])}
    except Exception:  # a missing or foreign file: the caller says nothing was saved
        return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (a Lightning checkpoint, a ``{'state_dict': ...}`` dict or a bare state dict)
    with wrapper prefixes (``module.``, ``net.``, ``model.``) removed: what ``model.init.weights`` loads."""
    obj = load_file(path, "weights file")
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BadFile(f"'{path}' holds no state dict (a mapping of names to tensors)")
    sd = dict(sd)
    if isinstance(obj, Mapping) and "pytorch-lightning_version" in obj:
        sd = {k: v for k, v in sd.items() if k.startswith("net.")} or sd  # our nets live in `net`
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd
