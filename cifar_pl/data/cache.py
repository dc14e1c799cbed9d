"""Photos decoded once into a file on disk, then memory-mapped by every run and every process.

A cache entry is a folder ``<cache_dir>/<name>-<fingerprint>/`` holding ``images.u8`` (N x 3 x S x S uint8, rows
in file order), ``index.json`` (the files kept, their labels, the files that could not be read and why, and the
sha256 of ``images.u8``) and ``sums.npy`` (each image's per-channel sum and sum of squares, so the dataset's mean
and std never need a pass over the pixels). The fingerprint covers every file's path, size, modification time and
change time (an edit that keeps the size and puts the modification time back still changes the change time), the
size and the resize mode: any change makes a new entry.

An entry is built in a temporary folder, streamed one decoded image at a time (peak memory is the images in
flight, not the set), after checking that the disk has room for it, and renamed into place only when complete, so
a build killed half-way is never read; its leftovers are removed by the next build. Opening an entry checks its
files (sizes, index) and, once per process, the checksum of its images: a truncated, zeroed or otherwise damaged
entry is reported in one line, removed and built again. Each open marks the entry as used; entries superseded by
a newer one of the same collection (an edit adds an entry) and, over a size budget (``$CIFAR_PL_CACHE_MAX_GB``,
20 GB), the least recently used ones are removed. A cache folder that cannot be written is reported in one line
and the photos are decoded into memory instead (``ImageFolderDataModule``).

Reading maps ``images.u8`` with ``torch.from_file`` (a private mapping, paged in on use): N processes mapping the
same entry share its pages through the OS page cache instead of holding N copies.
"""

from __future__ import annotations

import errno
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
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from ..errors import BadFile
from ..files import DiskFull, fsync_dir, writer_is_gone
from ..images import ResizeMode, read_images

CACHE_ENV = "CIFAR_PL_CACHE"
BUDGET_ENV = "CIFAR_PL_CACHE_MAX_GB"
FORMAT = 2  # bumped when the layout of an entry changes (2: checksum in the index, change times in the key)
KEEP_PER_NAME = 2  # entries kept of one collection at one size (the newest and the one before)
IN_USE_S = 600  # an entry used this recently is never evicted (another process may be about to map it)
_BUILDING = ".building-"
_CHUNK = 1 << 22
_verified: set[tuple] = set()  # entries whose checksum this process has checked


def default_cache_dir() -> Path:
    """``$CIFAR_PL_CACHE``, else ``$XDG_CACHE_HOME/cifar_pl`` (``~/.cache/cifar_pl``): the data folder itself may be
    read-only or shared."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cifar_pl"


def budget_bytes() -> int:
    """The size budget of the cache folder: ``$CIFAR_PL_CACHE_MAX_GB`` (default 20) gigabytes."""
    raw = os.environ.get(BUDGET_ENV, "20")
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise BadFile(f"${BUDGET_ENV} is {raw!r}; give the cache's size budget in gigabytes, e.g. 20")
    return int(gb * 1e9)


def fingerprint(root: Path, paths: Sequence[Path], labels: Sequence[int], size: int, resize: str) -> str:
    """A digest of what the entry holds: every file (path below ``root``, size, mtime, ctime) with its label, the
    size and the resize mode."""
    h = hashlib.sha256(f"cifar_pl-cache {FORMAT} {size} {resize}\n".encode())
    for path, label in zip(paths, labels, strict=True):
        st = path.stat()
        rel = os.path.relpath(path, root)
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{label}\n".encode())
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


class DamagedEntry(Exception):
    """A complete-looking entry whose files do not hold what its index says (truncated, zeroed, edited)."""


def entry_dir(cache_dir: Path, name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[-60:] or "images"
    return cache_dir / f"{safe}-{key}"


def is_complete(entry: Path) -> bool:
    return (entry / "COMPLETE").is_file()


def entry_bytes(count: int, size: int) -> int:
    """The disk space an entry of ``count`` images of ``size`` px takes (images, sums, a generous index)."""
    return count * 3 * size * size + count * 48 + count * 200 + 4096


def check_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start a build the disk cannot hold: one line with the numbers and the ways out. A read-only
    filesystem is said as such (an OSError: the caller decodes into memory), not as a disk without space."""
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
        raise OSError(errno.EROFS, "it is on a read-only filesystem", str(folder))
    free = shutil.disk_usage(folder).free
    if free < needed + (64 << 20):
        raise DiskFull(
            f"{what}: the decoded-image cache needs {needed / 1e9:.2f} GB in {folder}, which has "
            f"{free / 1e9:.2f} GB free; free space there, point --data.cache_dir (or ${CACHE_ENV}) at a larger "
            f"disk, or pass --data.cache false to decode into memory"
        )


def build(
    entry: Path, paths: Sequence[Path], labels: Sequence[int], size: int, resize: ResizeMode, what: str
) -> None:
    """Decode ``paths`` into ``entry`` (see the module docstring); nothing if it is complete already. Raises
    ``DiskFull`` before decoding when the disk cannot hold the entry, or when it fills up during the build; any
    error or signal removes the half-built folder."""
    if is_complete(entry):
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    for leftover in entry.parent.glob(f".{entry.name}{_BUILDING}*"):
        if writer_is_gone(leftover, _BUILDING):  # a build that was killed: never read, removed here
            shutil.rmtree(leftover, ignore_errors=True)
    check_space(entry.parent, entry_bytes(len(paths), size), what)
    tmp = (
        entry.parent / f".{entry.name}{_BUILDING}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    tmp.mkdir()
    try:
        kept, failed, sums = [], [], []
        checksum = hashlib.sha256()
        start = last = time.perf_counter()
        with open(tmp / "images.u8", "wb") as f:
            for i, img in read_images(paths, size, resize):
                if isinstance(img, str):
                    failed.append([str(paths[i]), img])
                    continue
                chw = np.ascontiguousarray(img.transpose(2, 0, 1))
                f.write(chw.tobytes())
                checksum.update(memoryview(chw).cast("B"))
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
                 "labels": [int(labels[i]) for i in kept], "failed": failed,
                 "sha256": checksum.hexdigest()}  # fmt: skip
        (tmp / "index.json").write_text(json.dumps(index))
        (tmp / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        fsync_dir(tmp)
        try:
            os.rename(tmp, entry)  # atomic: readers see a whole entry or none
        except OSError:
            if not is_complete(entry):  # another process finished first: use theirs
                raise
        fsync_dir(entry.parent)
        rank_zero_info(f"{what}: {len(kept)} images cached in {entry} ({time.perf_counter() - start:.1f} s)")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk filled up after all
            raise DiskFull(
                f"{what}: the disk of {entry.parent} filled up while decoding into the cache (nothing of it is "
                f"kept); free space there, point --data.cache_dir (or ${CACHE_ENV}) at a larger disk, or pass "
                f"--data.cache false"
            ) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evict(entry.parent, keep=entry)


def _check_files(entry: Path) -> dict:
    """The entry's index, after checking that its files are there and have the sizes it says."""
    try:
        index = json.loads((entry / "index.json").read_text())
        n, size = int(index["count"]), int(index["size"])
        index["kept"], index["labels"], index["failed"]  # noqa: B018 (present)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedEntry(f"its index cannot be read ({type(e).__name__}: {e})") from None
    if index.get("format") != FORMAT:
        raise DamagedEntry(f"it is of format {index.get('format')}, this version reads {FORMAT}")
    try:
        have = (entry / "images.u8").stat().st_size
        sums = np.load(entry / "sums.npy")
    except (OSError, ValueError) as e:
        raise DamagedEntry(f"{type(e).__name__}: {e}") from None
    if have != n * 3 * size * size:
        raise DamagedEntry(f"images.u8 holds {have} bytes, its index says {n * 3 * size * size}")
    if sums.shape != (n, 2, 3) or len(index["labels"]) != n:
        raise DamagedEntry(f"sums.npy or the labels do not hold {n} images")
    index["sums"] = sums
    return index


def _verify_checksum(entry: Path, expected: str) -> None:
    """Once per process and file version: the sha256 of ``images.u8`` is the one written when it was built."""
    st = (entry / "images.u8").stat()
    key = (str(entry.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _verified:
        return
    h = hashlib.sha256()
    with open(entry / "images.u8", "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise DamagedEntry("the checksum of images.u8 differs from the one written when it was built")
    _verified.add(key)


def open_entry(entry: Path) -> Decoded:
    """Map a complete entry, after checking it (``DamagedEntry`` says what is wrong) and marking it used."""
    if not is_complete(entry):
        raise DamagedEntry("it is not complete (no COMPLETE marker)")
    index = _check_files(entry)
    _verify_checksum(entry, index.get("sha256", ""))
    n, size = index["count"], index["size"]
    if n == 0:
        images = torch.empty(0, 3, size, size, dtype=torch.uint8)
    else:
        images = torch.from_file(
            str(entry / "images.u8"), shared=False, size=n * 3 * size * size, dtype=torch.uint8
        )
        images = images.view(n, 3, size, size)
    try:
        os.utime(entry)  # the entry's last use, for eviction
    except OSError:
        pass  # a read-only cache folder: nothing is evicted from it either
    failed = [(Path(p), why) for p, why in index["failed"]]
    return Decoded(
        images,
        torch.tensor(index["labels"], dtype=torch.long),
        list(index["kept"]),
        failed,
        index["sums"],
        entry,
    )


def remove_entry(entry: Path) -> None:
    """Take a damaged entry out of use at once (a rename), then delete it."""
    aside = entry.parent / f".{entry.name}.removed-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        os.rename(entry, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def evict(cache_dir: Path, keep: Path | None = None, budget: int | None = None) -> list[Path]:
    """Remove the entries nobody needs: of each collection (the entry name without its fingerprint), all but the
    ``KEEP_PER_NAME`` most recently used; then the least recently used while the folder is over ``budget``
    (``$CIFAR_PL_CACHE_MAX_GB``). ``keep`` and entries used in the last ``IN_USE_S`` seconds stay. Returns the
    entries removed."""
    budget = budget_bytes() if budget is None else budget
    try:
        entries = [
            e for e in cache_dir.iterdir() if e.is_dir() and not e.name.startswith(".") and is_complete(e)
        ]
        used = {e: e.stat().st_mtime for e in entries}
    except OSError:
        return []
    now = time.time()
    removable = lambda e: e != keep and now - used[e] > IN_USE_S  # noqa: E731
    gone: list[Path] = []
    by_name: dict[str, list[Path]] = {}
    for e in entries:
        by_name.setdefault(e.name.rsplit("-", 1)[0], []).append(e)
    for group in by_name.values():
        for e in sorted(group, key=used.get, reverse=True)[KEEP_PER_NAME:]:
            if removable(e):
                gone.append(e)
    left = sorted((e for e in entries if e not in gone), key=used.get)
    total = sum(_size_of(e) for e in left)
    for e in left:
        if total <= budget:
            break
        if removable(e):
            total -= _size_of(e)
            gone.append(e)
    for e in gone:
        remove_entry(e)
    if gone:
        rank_zero_info(
            f"decoded-image cache {cache_dir}: removed {len(gone)} unused entr{'y' if len(gone) == 1 else 'ies'}"
        )
    return gone


def open_or_build(
    entry: Path, paths: Sequence[Path], labels: Sequence[int], size: int, resize: ResizeMode, what: str
) -> Decoded | None:
    """The entry for ``paths``, built if needed and rebuilt once if it is damaged; None when the cache folder cannot
    be written (the caller decodes into memory; one line says so)."""
    for attempt in range(2):
        try:
            if not is_complete(entry):
                rank_zero_info(f"{what}: decoding {len(paths)} files at {size}px into {entry} ...")
                build(entry, paths, labels, size, resize, what)
            return open_entry(entry)
        except DamagedEntry as e:
            if attempt:
                raise BadFile(f"decoded-image cache {entry} is damaged again after a rebuild ({e})") from None
            rank_zero_warn(f"decoded-image cache {entry} is damaged ({e}); removing it and decoding again")
            remove_entry(entry)
        except DiskFull:
            raise
        except OSError as e:
            if is_complete(entry):
                raise
            rank_zero_warn(
                f"the decoded-image cache folder {entry.parent} cannot be written ({e.strerror or e}); decoding "
                f"{what} into memory for this run (set --data.cache_dir or ${CACHE_ENV} to a writable folder to "
                f"decode once)"
            )
            return None
    return None
