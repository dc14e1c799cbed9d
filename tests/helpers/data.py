"""Small data written by the tests themselves: CIFAR batch files in the original pickle layout, photo folders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


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
