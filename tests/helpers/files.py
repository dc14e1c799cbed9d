"""Filesystems for the tests of writes: a tmpfs of a given size where the machine allows mounting one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tmpfs_mount(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` (e.g. ``64m``) at ``path`` for the block, where the machine allows it (root and a
    working ``mount``); yields whether it did."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") and shutil.which("umount"):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=30)  # fmt: skip
        mounted = done.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
