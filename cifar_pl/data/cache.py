"""Photos decoded once into a file on disk, then memory-mapped by every run and every process.

A cache entry is a folder ``<cache_dir>/<name>-<fingerprint>/`` holding ``images.u8`` (N x 3 x S x S uint8, rows
in file order), ``index.json`` (the files kept, their labels, the files that could not be read and why) and
``sums.npy`` (each image's per-channel sum and sum of squares, so the dataset's mean and std never need a pass
over the pixels). The fingerprint covers every file's path, size and modification time, the size and the resize
mode: any change makes a new entry. An entry is built in a temporary folder, streamed one decoded image at a time
(peak memory is the images in flight, not the set), and renamed into place only when complete, so a build killed
half-way is never read; its leftovers are removed by the next build.

Reading maps ``images.u8`` with ``torch.from_file`` (a private mapping, paged in on use): N processes mapping the
same entry share its pages through the OS page cache instead of holding N copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info

from ..errors import BadValue
from ..images import ResizeMode, read_images

CACHE_ENV = "CIFAR_PL_CACHE"
FORMAT = 1  # bumped when the layout of an entry changes


def default_cache_dir() -> Path:
    """``$CIFAR_PL_CACHE``, else ``$XDG_CACHE_HOME/cifar_pl`` (``~/.cache/cifar_pl``): the data folder itself may be
    read-only or shared."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cifar_pl"


def fingerprint(root: Path, paths: Sequence[Path], labels: Sequence[int], size: int, resize: str) -> str:
    """A digest of what the entry holds: every file (path below ``root``, size, mtime) with its label, the size
    and the resize mode."""
    h = hashlib.sha256(f"cifar_pl-cache {FORMAT} {size} {resize}\n".encode())
    for path, label in zip(paths, labels, strict=True):
        st = path.stat()
        rel = os.path.relpath(path, root)
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{label}\n".encode())
    return h.hexdigest()[:20]


@dataclass
class Decoded:
    """An entry, mapped: ``images`` (N x 3 x S x S uint8, backed by the file), ``labels``, ``kept`` (indices of the
    readable files in the list asked for), ``failed`` ((path, reason) of the others) and ``sums`` (N x 2 x 3
    float64: per-channel sum and sum of squares of each image, in [0, 1] units)."""

    images: torch.Tensor
    labels: torch.Tensor
    kept: list[int]
    failed: list[tuple[Path, str]]
    sums: np.ndarray
    path: Path


def entry_dir(cache_dir: Path, name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[-60:] or "images"
    return cache_dir / f"{safe}-{key}"


def is_complete(entry: Path) -> bool:
    return (entry / "COMPLETE").is_file()


def _builder_is_gone(leftover: Path) -> bool:
    """Whether the process that was building into ``leftover`` is no longer running: its PID is gone on this host,
    or the folder is an hour old (a build on another machine sharing the cache folder)."""
    try:
        host, pid = leftover.name.rsplit(".building-", 1)[1].rsplit("-", 2)[:2]
        if host == socket.gethostname():
            os.kill(int(pid), 0)
            return False
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OSError):
        pass
    return time.time() - leftover.stat().st_mtime > 3600


def build(
    entry: Path, paths: Sequence[Path], labels: Sequence[int], size: int, resize: ResizeMode, what: str
) -> None:
    """Decode ``paths`` into ``entry`` (see the module docstring); nothing if it is complete already."""
    if is_complete(entry):
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    for leftover in entry.parent.glob(f".{entry.name}.building-*"):
        if _builder_is_gone(leftover):  # a build that was killed: never read, removed here
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = entry.parent / f".{entry.name}.building-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        kept, failed, sums = [], [], []
        start = last = time.perf_counter()
        with open(tmp / "images.u8", "wb") as f:
            for i, img in read_images(paths, size, resize):
                if isinstance(img, str):
                    failed.append([str(paths[i]), img])
                    continue
                chw = np.ascontiguousarray(img.transpose(2, 0, 1))
                f.write(chw.tobytes())
                x = chw.reshape(3, -1).astype(np.float64) / 255
                sums.append(np.stack([x.sum(1), np.square(x).sum(1)]))
                kept.append(i)
                now = time.perf_counter()
                if now - last > 10:
                    done = len(kept) + len(failed)
                    rank_zero_info(
                        f"{what}: decoded {done}/{len(paths)} ({done / (now - start):.0f} images/s)"
                    )
                    last = now
            f.flush()
            os.fsync(f.fileno())
        np.save(tmp / "sums.npy", np.asarray(sums, dtype=np.float64).reshape(len(kept), 2, 3))
        index = {"format": FORMAT, "size": size, "resize": resize, "count": len(kept), "kept": kept,
                 "labels": [int(labels[i]) for i in kept], "failed": failed}  # fmt: skip
        (tmp / "index.json").write_text(json.dumps(index))
        (tmp / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        try:
            os.rename(tmp, entry)  # atomic: readers see a whole entry or none
        except OSError:
            if not is_complete(entry):  # another process finished first: use theirs
                raise
        rank_zero_info(f"{what}: {len(kept)} images cached in {entry} ({time.perf_counter() - start:.1f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_entry(entry: Path) -> Decoded:
    """Map a complete entry."""
    if not is_complete(entry):
        raise BadValue(f"decoded-image cache {entry} is not complete; it is rebuilt by prepare_data or setup")
    index = json.loads((entry / "index.json").read_text())
    n, size = index["count"], index["size"]
    if n == 0:
        images = torch.empty(0, 3, size, size, dtype=torch.uint8)
    else:
        images = torch.from_file(
            str(entry / "images.u8"), shared=False, size=n * 3 * size * size, dtype=torch.uint8
        )
        images = images.view(n, 3, size, size)
    failed = [(Path(p), why) for p, why in index["failed"]]
    sums = np.load(entry / "sums.npy")
    return Decoded(
        images, torch.tensor(index["labels"], dtype=torch.long), list(index["kept"]), failed, sums, entry
    )
