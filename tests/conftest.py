"""Shared fixtures: small CIFAR folders written in the original pickle layout, and the real data."""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .helpers import CIFAR10_ROWS, REPO, tmpfs_mount, write_cifar_batch, write_photo_folder

# Decoded photo caches of this test session (and of the commands it starts) go to a folder of its own.
# Removed when the session ends (each session used to leave a few MB behind in the temp folder).
os.environ["CIFAR_PL_CACHE"] = tempfile.mkdtemp(prefix="cifar_pl_cache_")
atexit.register(shutil.rmtree, os.environ["CIFAR_PL_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """A data_dir holding a small cifar-10-batches-py/ (144 train rows, 30 test rows)."""
    root = tmp_path_factory.mktemp("c10data")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i, (name, rows) in enumerate(CIFAR10_ROWS.items()):
        write_cifar_batch(folder / name, rows, rows + 100, 10, seed=i)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory) -> Path:
    """A data_dir holding a small cifar-100-python/ (120 train rows, 40 test rows), fine and coarse labels."""
    root = tmp_path_factory.mktemp("c100data")
    folder = root / "cifar-100-python"
    folder.mkdir()
    for i, (name, rows) in enumerate({"train": 120, "test": 40}.items()):
        rng = np.random.default_rng(100 + i)
        fine = rng.integers(0, 100, rows)
        d = {
            b"filenames": [b"x.png"] * rows,
            b"batch_label": b"b",
            b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) // 5 for v in fine],
            b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return root


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder ($CIFAR_PL_DATA, default ../shared/data); skips the test where it is absent."""
    path = Path(os.environ.get("CIFAR_PL_DATA", REPO.parent / "shared" / "data")).expanduser()
    if not (path / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real data not found at {path} (set CIFAR_PL_DATA)")
    return path


@pytest.fixture(scope="session")
def photo_root(tmp_path_factory) -> Path:
    """A small scraped-photo collection: 3 classes x 20 JPEGs of varied sizes."""
    return write_photo_folder(tmp_path_factory.mktemp("photos"), ["cat", "dog", "owl"], 20)


@pytest.fixture()
def second_filesystem(tmp_path) -> Iterator[Path]:
    """A folder on another filesystem than the system temp folder: a tmpfs mounted for the test where the machine
    allows it, else a folder in /dev/shm when that is a filesystem of its own; skips where neither is."""
    with tmpfs_mount(tmp_path / "other_fs", "256m") as mounted:
        if mounted:
            yield tmp_path / "other_fs"
            return
    shm = Path("/dev/shm")
    temp_dev = os.stat(tempfile.gettempdir()).st_dev
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != temp_dev:
        folder = Path(tempfile.mkdtemp(prefix="cifar_pl_", dir=shm))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    pytest.skip("no second filesystem here (no tmpfs mount allowed, no separate /dev/shm)")
