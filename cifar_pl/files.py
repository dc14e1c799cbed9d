"""Files a later run depends on (checkpoints, run records, cache indexes, result tables) are written whole or not at
all: into a temporary file in the target's own folder, flushed and fsynced, renamed over the target
(``os.replace``), and the folder fsynced so the rename itself survives a power cut.

The temporary file lives beside the target on purpose: the system temp folder may be another filesystem (a local
/tmp beside a scratch or NFS run folder), where a "move" is a copy over the old file, and a SIGKILL or a full disk
during that copy destroys the file the next run needs. Here a crash, a SIGKILL or a full disk at any byte leaves
the previous file exactly as it was; the leftover temporary file of a writer that died is removed by the next
write of the same file.
"""

from __future__ import annotations

import errno
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import BadValue, UserError, error_in

_TMP = ".tmp-"  # .<name>.tmp-<host>-<pid>-<random>
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(UserError, OSError):
    """The filesystem of a file being written filled up (or a quota was reached); the previous file is intact."""


class FileSizeLimit(UserError, OSError):
    """The process's file-size limit (``ulimit -f``) stopped a write (EFBIG); the previous file is intact."""


def writer_is_gone(leftover: Path, marker: str = _TMP, stale_after_s: float = 3600) -> bool:
    """Whether the process that was writing ``leftover`` (named ``...<marker><host>-<pid>-<random>``) is no longer
    running: its PID is gone on this host, or the leftover is ``stale_after_s`` old (a writer on another machine
    sharing the folder)."""
    try:
        host, pid = leftover.name.rsplit(marker, 1)[1].rsplit("-", 2)[:2]
        if host == socket.gethostname():
            os.kill(int(pid), 0)
            return False
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, PermissionError, OSError):
        pass
    try:
        return time.time() - leftover.stat().st_mtime > stale_after_s
    except OSError:
        return False


def temp_name(name: str, marker: str = _TMP) -> str:
    """A name for a temporary sibling of ``name`` that says which process writes it (see ``writer_is_gone``)."""
    return f".{name}{marker}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fsync_dir(folder: Path) -> None:
    """Make a rename (or a new file) in ``folder`` durable; a no-op where the filesystem cannot sync folders."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temp(folder: Path, name: str) -> tuple[Path, BinaryIO]:
    """A new temporary file beside ``folder/name``, open for writing (mode 0666 less the umask, like the target)."""
    tmp = folder / temp_name(name)
    return tmp, open(tmp, "xb")  # noqa: SIM115 (closed by atomic_write)


def remove_leftovers(folder: Path, name: str) -> None:
    """Remove the temporary files of writers of ``folder/name`` that died mid-write."""
    for leftover in folder.glob(f".{name}{_TMP}*"):
        if writer_is_gone(leftover):
            leftover.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], hint: str = "") -> None:
    """Write ``path`` through ``write(f)`` (``f`` a binary file) so that readers, and the next run, see the old file
    or the whole new one, never part of one. A full disk raises ``DiskFull`` (one line: what, where, ``hint``)
    with the old file intact, and so does the file-size limit of the process (``FileSizeLimit``); any other error
    or signal removes the temporary file and propagates."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp, f = _open_temp(folder, path.name)
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        cause = _os_error_in(
            e
        )  # torch.save reports a failed write as its own RuntimeError, the OSError inside
        # the target is untouched: it is the previous file if there was one
        kept = (f"the previous {path.name} is intact" if path.exists() else
                f"nothing was written (there was no {path.name} before)")  # fmt: skip
        if cause is not None and cause.errno in _NO_SPACE:
            raise DiskFull(
                f"no space left on the filesystem of {folder} while writing {path.name}; {kept}. Free space "
                f"there{f' ({hint})' if hint else ''}"
            ) from None
        if cause is not None and cause.errno == errno.EFBIG:
            raise FileSizeLimit(
                f"the file-size limit of this process (ulimit -f) stopped writing {path.name} in {folder}; {kept}. "
                f"Raise the limit (ulimit -f unlimited) and run again"
            ) from None
        if cause is not None and cause is not e and isinstance(e, Exception):
            raise cause from None
        raise
    fsync_dir(folder)
    remove_leftovers(folder, path.name)


def _os_error_in(exc: BaseException) -> OSError | None:
    return error_in(exc, OSError)


def write_bytes_atomic(path: str | Path, data: bytes, hint: str = "") -> None:
    atomic_write(path, lambda f: f.write(data), hint)


def write_text_atomic(path: str | Path, text: str, hint: str = "") -> None:
    atomic_write(path, lambda f: f.write(text.encode()), hint)


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """``folder`` can take new files, or be made: its nearest existing ancestor is a folder in which a file can be
    created (probed by creating and removing one, since permission bits say nothing for root, read-only mounts or
    immutable folders). Nothing is left behind; one ``UserError`` line naming ``what`` if not."""
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadValue(
            f"{what}: '{existing}' is {'a file' if existing.exists() else 'a broken link'}, not a folder; "
            f"move it away or choose another path"
        )
    try:
        tmp, f = _open_temp(existing, "write-probe")
        f.close()
        tmp.unlink()
    except OSError as e:
        raise BadValue(
            f"{what}: cannot write in '{existing}' ({e.strerror or e}); make it writable or choose another folder"
        ) from None
    return folder


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value for a CSV cell a spreadsheet will not run: text that starts like a formula (``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return; a class name from a checkpoint, a file name) gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value
