"""What a run was trained on, as plain values that travel in every checkpoint, and the comparison that refuses to
continue a run on other data.

A DataModule's identity (``InMemoryImageDataModule.data_identity``) holds its class names, a digest of its source
(CIFAR: the decoded training arrays; photo folders: every file's path below the root, size and label), the split
(seed, the size of each part, a digest of which images are in each part) and how many images each part holds.
``fit --ckpt_path`` compares the checkpoint's identity with the data it is given now: another collection behind the
same ``data_dir``, a photo added or removed, other class names or another split is refused with one line (a new
stage onto new data is possible, explicitly, with ``--new_data true``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

IDENTITY_KEY = "data"  # where a DataModule's state_dict keeps its identity


def digest(*parts: Any) -> str:
    """A sha256 digest (20 hex digits) of tensors, arrays, strings and numbers, in order; memory is not copied."""
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()[:20]


def _feed(h, part: Any) -> None:
    if isinstance(part, torch.Tensor):
        part = part.detach().cpu().contiguous().numpy()
    if isinstance(part, np.ndarray):
        part = np.ascontiguousarray(part)
        h.update(f"{part.dtype}{part.shape}".encode())
        h.update(memoryview(part).cast("B"))
    elif isinstance(part, (str, int, float)):
        h.update(f"{type(part).__name__}:{part}\0".encode())
    elif isinstance(part, Iterable):
        for p in part:
            _feed(h, p)
        h.update(b"\1")
    else:
        raise TypeError(f"cannot digest {type(part).__name__}")


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a checkpoint's data identity and the current one, each as a short phrase."""
    out = []
    old_cls, new_cls = list(recorded.get("classes") or []), list(current.get("classes") or [])
    if old_cls and new_cls and old_cls != new_cls:
        out.append(f"classes {_short(old_cls)} then, {_short(new_cls)} now")
    if recorded.get("datamodule") and recorded.get("datamodule") != current.get("datamodule"):
        out.append(f"{recorded['datamodule']} then, {current.get('datamodule')} now")
    if recorded.get("source") and recorded.get("source") != current.get("source"):
        then, now = recorded.get("images"), current.get("images")
        count = (
            f" ({then} images then, {now} now)"
            if then is not None and now is not None and then != now
            else ""
        )
        out.append(f"the images differ{count}")
    elif recorded.get("split") and recorded.get("split") != current.get("split"):
        sizes = f" (sizes {recorded.get('sizes')} then, {current.get('sizes')} now)"
        out.append(
            "the train/validation split differs"
            + (sizes if recorded.get("sizes") != current.get("sizes") else "")
        )
    return out


def describe(identity: Mapping[str, Any]) -> str:
    """The data an identity names, in a few words (``CIFAR10DataModule, 144 images of 10 classes``)."""
    classes = list(identity.get("classes") or [])
    words = [str(identity["datamodule"])] if identity.get("datamodule") else []
    images = identity.get("images")
    words.append(f"{images if images is not None else 'its'} images of {len(classes)} classes")
    return ", ".join(words)


def _short(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"
