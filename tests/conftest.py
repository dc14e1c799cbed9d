"""Shared fixtures: small CIFAR folders written in the original pickle layout, and the real data."""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# Decoded photo caches of this test session (and of the commands it starts) go to a folder of its own.
# Removed when the session ends (each session used to leave a few MB behind in the temp folder).
os.environ["CIFAR_PL_CACHE"] = tempfile.mkdtemp(prefix="cifar_pl_cache_")
atexit.register(shutil.rmtree, os.environ["CIFAR_PL_CACHE"], ignore_errors=True)


def write_cifar_batch(
    path: Path, n_rows: int, n_labels: int, num_classes: int, seed: int, label_keys=("labels",)
) -> np.ndarray:
    """One batch file as the originals are written (protocol 2, bytes keys), holding ``n_labels`` labels but
    only ``n_rows`` pixel rows, like the cut-down copies. Returns the labels of the rows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n_labels)
    d = {b"batch_label": b"testing batch", b"data": rng.integers(0, 256, (n_rows, 3072), dtype=np.uint8)}
    for key in label_keys:
        d[key.encode()] = [int(v) for v in labels]
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return labels[:n_rows]


# Row counts differ per file on purpose: the loader must accept whatever each file holds.
CIFAR10_ROWS = {
    "data_batch_1": 40,
    "data_batch_2": 24,
    "data_batch_3": 24,
    "data_batch_4": 32,
    "data_batch_5": 24,
    "test_batch": 30,
}


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


def effective_config(path: Path, *extra: str) -> dict:
    """What a config file (with the files it includes) amounts to, as ``--print_config`` shows it."""
    import contextlib
    import io

    import yaml

    from cifar_pl.__main__ import cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli_main(["fit", "--config", str(path), *extra, "--print_config"])
    return yaml.safe_load(out.getvalue())


def largest_difference(a: dict, b: dict) -> tuple[str, float]:
    """The floating tensor of two state dicts that differs most, and by how much (max absolute difference)."""
    diffs = [(k, (a[k].double() - b[k].double()).abs().max().item()) for k in a if a[k].is_floating_point()]
    return max(diffs, key=lambda kv: kv[1])


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder ($CIFAR_PL_DATA, default ../shared/data); skips the test where it is absent."""
    path = Path(os.environ.get("CIFAR_PL_DATA", REPO.parent / "shared" / "data")).expanduser()
    if not (path / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real data not found at {path} (set CIFAR_PL_DATA)")
    return path


def run_cli(
    subcommand: str,
    config: str | Path,
    data_dir: Path | None = None,
    extra: str = "",
    cwd: Path | None = None,
):
    """Run ``python -m cifar_pl <subcommand> --config configs/<config>.yaml`` in-process on the CPU without a
    progress bar; ``extra`` holds further command-line arguments, space-separated; ``cwd``: run from there (for
    module-scoped fixtures, which cannot use ``monkeypatch.chdir``)."""
    from cifar_pl.__main__ import cli_main

    path = config if isinstance(config, Path) else CONFIGS / f"{config}.yaml"
    args = [
        subcommand,
        "--config",
        str(path),
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    ]
    if data_dir is not None:
        args += ["--data.data_dir", str(data_dir)]
    if cwd is None:
        return cli_main(args + extra.split())
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return cli_main(args + extra.split())
    finally:
        os.chdir(old)


# Class i of a test photo folder is dominated by this colour, so a net can learn it in a few steps.
PHOTO_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230), (230, 210, 40)]


def write_photo(path: Path, colour, size=(40, 30), seed: int = 0, mode: str = "RGB") -> Path:
    """A noisy image of ``colour`` saved in ``mode`` (RGB, RGBA, P, L, CMYK) with the format of the suffix."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    img = img.convert(mode) if mode != "P" else img.quantize(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_photo_folder(root: Path, classes: list[str], per_class: int, seed: int = 0) -> Path:
    """``root/<class>/img_NNN.jpg`` for each class, ``per_class`` photos of varied sizes."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            size = (24 + 7 * (i % 5), 20 + 5 * (i % 3))
            write_photo(root / name / f"img_{i:03d}.jpg", PHOTO_COLOURS[c % 4], size, seed=seed + 100 * c + i)
    return root


@pytest.fixture(scope="session")
def photo_root(tmp_path_factory) -> Path:
    """A small scraped-photo collection: 3 classes x 20 JPEGs of varied sizes."""
    return write_photo_folder(tmp_path_factory.mktemp("photos"), ["cat", "dog", "owl"], 20)


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
