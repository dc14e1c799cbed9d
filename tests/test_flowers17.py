"""The Oxford 17-flowers DataModule: the published layout (jpg/ + the official split) and class folders, read
with the official labels; clear errors for folders that are neither."""

from __future__ import annotations

import pytest
import torch


def _flowers17_files(root, numbers, layout: str):
    """Tiny JPEGs ``image_NNNN.jpg`` coloured by their official class (label (NNNN - 1) // 80), in the published
    layout (``jpg/``) or in class folders (``00_daffodil/`` ...) like the copy in ../shared/data/flowers17."""
    from cifar_pl.data import FLOWERS17_CLASSES

    from .helpers import PHOTO_COLOURS, write_photo

    for n in numbers:
        label = (n - 1) // 80
        folder = root / "jpg" if layout == "published" else root / f"{label:02d}_{FLOWERS17_CLASSES[label]}"
        write_photo(folder / f"image_{n:04d}.jpg", PHOTO_COLOURS[label % 4], (12, 10), seed=n)
    return root


def test_flowers17_reads_class_folders_as_the_published_layout(tmp_path):
    from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule

    three = FLOWERS17_CLASSES[:3]  # images 1-240
    both = [
        Flowers17DataModule(str(_flowers17_files(tmp_path / layout, range(1, 241), layout)), image_size=8,
                            classes=three, cache=False)
        for layout in ("published", "folders")
    ]  # fmt: skip
    for dm in both:
        dm.setup("fit")
        dm.setup("test")
    published, folders = both
    assert folders.classes == three and folders.train_set.labels.bincount().tolist() == [40, 40, 40]
    for a, b in zip(
        (published.train_set, published.val_set, published.test_set),
        (folders.train_set, folders.val_set, folders.test_set),
        strict=True,
    ):
        assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    # snowdrops (images 81-160) are drawn green: the label follows the file, in the official order
    assert folders.train_set.images[folders.train_set.labels == 1].float()[:, 1].mean() > 150


def test_flowers17_class_folders_take_the_official_split(tmp_path):
    import numpy as np
    from scipy.io import savemat

    from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule

    root = _flowers17_files(tmp_path / "f", range(1, 161), "folders")
    rng = np.random.default_rng(0)
    perm = rng.permutation(np.arange(1, 1361))
    splits = {"trn1": perm[:680], "val1": perm[680:1020], "tst1": perm[1020:]}
    splits |= {f"{k[:3]}{s}": v for k, v in splits.items() for s in (2, 3)}
    savemat(root / "datasplits.mat", {k: v[None, :].astype(np.float64) for k, v in splits.items()})
    dm = Flowers17DataModule(str(root), image_size=8, classes=FLOWERS17_CLASSES[:2], cache=False)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.test_set) == sum(1 <= n <= 160 for n in splits["tst1"])
    assert len(dm.train_set) == sum(1 <= n <= 160 for n in splits["trn1"])


def test_flowers17_class_folder_errors_say_what_to_do(tmp_path):
    import shutil

    from cifar_pl.data import Flowers17DataModule

    root = _flowers17_files(tmp_path / "f", [1, 2, 81, 82], "folders")
    with pytest.raises(FileNotFoundError, match=r"no class folder for \['lily_valley'.*pass --data.classes"):
        Flowers17DataModule(str(root), image_size=8, cache=False).setup("fit")
    shutil.copy(root / "00_daffodil" / "image_0001.jpg", root / "01_snowdrop" / "image_0003.jpg")
    with pytest.raises(
        ValueError, match=r"image_0003.jpg' is in 01_snowdrop/, but image 3 is a 00_daffodil.*move"
    ):
        Flowers17DataModule(str(root), image_size=8, classes=["daffodil", "snowdrop"], cache=False).setup(
            "fit"
        )
    with pytest.raises(FileNotFoundError, match="no Oxford 17 Flowers layout.*class folders"):
        Flowers17DataModule(str(tmp_path)).setup("fit")


@pytest.mark.real_data
def test_real_flowers17_class_folders_read_with_official_labels(real_data):
    from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule
    from cifar_pl.images import read_image

    dm = Flowers17DataModule(str(real_data / "flowers17"), image_size=16)
    dm.setup("fit")
    dm.setup("test")
    parts = (dm.train_set, dm.val_set, dm.test_set)
    for part, per_class in zip(parts, (40, 20, 20), strict=True):
        assert part.labels.bincount().tolist() == [per_class] * 17
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([p.labels for p in parts])
    iris = real_data / "flowers17" / "05_iris" / "image_0407.jpg"
    hits = (images == torch.from_numpy(read_image(iris, 16)).permute(2, 0, 1)).flatten(1).all(1)
    assert labels[hits].tolist() == [FLOWERS17_CLASSES.index("iris")]
