"""Photos in class folders and Oxford 17 Flowers: decoding, splits, bad files, the standard layout."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_pl.data import FLOWERS17_CLASSES, Flowers17DataModule, ImageFolderDataModule
from cifar_pl.images import read_image as read_array

from .helpers import PHOTO_COLOURS, write_photo, write_photo_folder


def read_image(path, size, resize="squash") -> torch.Tensor:
    """The image as the DataModules hold it: 3 x H x W uint8."""
    return torch.from_numpy(read_array(path, size, resize)).permute(2, 0, 1)


@pytest.mark.parametrize("mode,suffix", [("RGB", ".jpg"), ("P", ".png"), ("RGBA", ".png"), ("L", ".png"),
                                         ("CMYK", ".jpg"), ("RGB", ".bmp")])  # fmt: skip
def test_any_image_mode_becomes_rgb_at_the_size_asked(tmp_path, mode, suffix):
    path = write_photo(tmp_path / f"x{suffix}", PHOTO_COLOURS[0], size=(50, 20), mode=mode)
    for resize in ("squash", "crop"):
        img = read_image(path, 16, resize)
        assert img.dtype == torch.uint8 and img.shape == (3, 16, 16)
    native = read_image(path, None)
    assert native.shape == (3, 20, 50)
    if mode in ("RGB", "RGBA", "P", "CMYK"):  # reddish stays reddish
        assert native[0].float().mean() > native[2].float().mean() + 60


def test_transparency_is_laid_on_white(tmp_path):
    from PIL import Image

    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (read_image(tmp_path / "clear.png", 8) == 255).all()


def test_folder_classes_split_and_stats(photo_root):
    dm = ImageFolderDataModule(str(photo_root), image_size=16, val_size=0.2, split_seed=3)
    assert dm.classes == ["cat", "dog", "owl"] and dm.num_classes == 3
    dm.setup("fit")
    assert dm.train_set.images.shape[1:] == (3, 16, 16)
    # a per-file split: every class gives validation a share near 20 % of its 20 photos, and never none
    val = dm.val_set.labels.bincount(minlength=3)
    assert (dm.train_set.labels.bincount() + val).tolist() == [20, 20, 20] and all(
        1 <= v <= 8 for v in val.tolist()
    )
    again = ImageFolderDataModule(str(photo_root), image_size=16, split_seed=3)
    again.setup("fit")
    assert torch.equal(again.val_set.images, dm.val_set.images)
    other = ImageFolderDataModule(str(photo_root), image_size=16, split_seed=4)
    other.setup("fit")
    assert not torch.equal(other.val_set.images, dm.val_set.images)
    # `stats: dataset` normalises by the training split's own statistics, kept in the checkpoint
    x = dm.normalize(dm.train_set.images)
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(3), atol=1e-2, rtol=0)
    fresh = ImageFolderDataModule(str(photo_root), image_size=16)
    fresh.load_state_dict(dm.state_dict())
    assert fresh.mean == dm.mean and fresh.train_set is None  # restored without decoding anything
    # without a test_dir, `test` scores the validation split
    dm.setup("test")
    assert dm.test_set is dm.val_set


def test_class_subset_cap_and_test_dir(photo_root, tmp_path):
    test_root = write_photo_folder(tmp_path / "test", ["cat", "dog", "owl"], 3, seed=999)
    dm = ImageFolderDataModule(
        str(photo_root), classes=["owl", "cat"], max_per_class=10, image_size=8, test_dir=str(test_root)
    )
    assert dm.classes == ["owl", "cat"]
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) + len(dm.val_set) == 20
    assert dm.test_set.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # label 0 is the owl folder (blue), label 1 the cat folder (red)
    owl = dm.test_set.images[dm.test_set.labels == 0].float()
    assert owl[:, 2].mean() > owl[:, 0].mean() + 60


def test_unreadable_files_are_skipped_with_one_warning_naming_them(tmp_path):
    root = write_photo_folder(tmp_path / "p", ["a", "b"], 6)
    (root / "a" / "notes.txt").write_text("not an image")
    good = (root / "b" / "img_000.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "a" / ".DS_Store").write_bytes(b"\0\0")  # hidden files are not candidates at all
    dm = ImageFolderDataModule(str(root), image_size=8, val_size=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    msgs = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(msgs) == 1 and msgs[0].startswith("skipped 3 unreadable file(s)")
    for name in ("notes.txt", "truncated.jpg", "empty.png"):
        assert name in msgs[0]
    assert sorted(p.name for p, _ in dm.skipped) == ["empty.png", "notes.txt", "truncated.jpg"]
    assert len(dm.train_set) + len(dm.val_set) == 12


def test_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; pass --data.data_dir"):
        _ = ImageFolderDataModule(str(tmp_path / "nowhere")).classes
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="holds no class folders"):
        ImageFolderDataModule(str(tmp_path / "flat")).setup("fit")
    root = write_photo_folder(tmp_path / "p", ["a"], 3)
    (root / "empty_class").mkdir()
    with pytest.raises(ValueError, match="class folder .*empty_class' is empty"):
        ImageFolderDataModule(str(root)).setup("fit")
    (root / "empty_class" / "junk.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"no readable image for class\(es\) \['empty_class'\]"):
        ImageFolderDataModule(str(root)).setup("fit")
    with pytest.raises(ValueError, match=r"no class folder \['zebra'\].*the folders there are"):
        _ = ImageFolderDataModule(str(root), classes=["a", "zebra"]).classes


# ---- Oxford 17 Flowers ----
def _standard_layout(root: Path, source=None) -> Path:
    """``root/jpg/image_0001.jpg ... image_1360.jpg``: tiny generated JPEGs, or links to real ones."""
    jpg = root / "jpg"
    jpg.mkdir(parents=True)
    for n in range(1, 1361):
        if source is not None:
            (jpg / f"image_{n:04d}.jpg").symlink_to(source[n])
        else:
            write_photo(jpg / f"image_{n:04d}.jpg", PHOTO_COLOURS[((n - 1) // 80) % 4], (12, 10), seed=n)
    return root


@pytest.fixture(scope="module")
def flowers17_layout(tmp_path_factory) -> Path:
    return _standard_layout(tmp_path_factory.mktemp("f17"))


def test_flowers17_labels_from_file_numbers_and_seeded_split(flowers17_layout):
    dm = Flowers17DataModule(str(flowers17_layout), image_size=8)
    assert dm.classes == FLOWERS17_CLASSES
    dm.setup("fit")
    dm.setup("test")
    for part, per_class in ((dm.train_set, 40), (dm.val_set, 20), (dm.test_set, 20)):
        assert part.labels.bincount().tolist() == [per_class] * 17
    # image_0081 .. image_0160 are snowdrops (label 1), drawn green here
    assert dm.train_set.images[dm.train_set.labels == 1].float()[:, 1].mean() > 150


def test_flowers17_official_splits_from_datasplits_mat(flowers17_layout, tmp_path):
    from scipy.io import savemat

    root = tmp_path / "f17"
    shutil.copytree(flowers17_layout, root, symlinks=True)
    rng = np.random.default_rng(0)
    splits = {}
    for k in (1, 2, 3):
        perm = rng.permutation(np.arange(1, 1361))
        splits[f"trn{k}"], splits[f"val{k}"], splits[f"tst{k}"] = perm[:680], perm[680:1020], perm[1020:]
    savemat(root / "datasplits.mat", {k: v[None, :].astype(np.float64) for k, v in splits.items()})
    dm = Flowers17DataModule(str(root), image_size=8, split=2, classes=["daisy", "pansy"])
    dm.setup("fit")
    dm.setup("test")
    numbers = {n for n in range(1, 1361) if FLOWERS17_CLASSES[(n - 1) // 80] in ("daisy", "pansy")}
    expected_test = sorted(n for n in splits["tst2"] if n in numbers)
    assert len(dm.test_set) == len(expected_test)
    assert len(dm.train_set) == sum(n in numbers for n in splits["trn2"])
    # each test image is its file's image (file n has seed n)
    first = read_image(root / "jpg" / f"image_{expected_test[0]:04d}.jpg", 8)
    assert torch.equal(dm.test_set.images[0], first)


def test_flowers17_missing_layout_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Oxford 17 Flowers layout.*--data.download true"):
        Flowers17DataModule(str(tmp_path)).setup("fit")


@pytest.mark.real_data
def test_real_flowers17_as_folder_and_as_standard_layout(real_data, tmp_path):
    folders = real_data / "flowers17"
    source = {int(p.stem.split("_")[1]): p for p in folders.glob("*/image_*.jpg")}
    assert len(source) == 1360
    as_folder = ImageFolderDataModule(str(folders), image_size=16)
    assert [c.split("_", 1)[1] for c in as_folder.classes] == FLOWERS17_CLASSES
    standard = Flowers17DataModule(str(_standard_layout(tmp_path, source)), image_size=16)
    standard.setup("fit")
    standard.setup("test")
    assert sum(len(s) for s in (standard.train_set, standard.val_set, standard.test_set)) == 1360
    # the same file gives the same label and pixels both ways
    images = torch.cat([s.images for s in (standard.train_set, standard.val_set, standard.test_set)])
    labels = torch.cat([s.labels for s in (standard.train_set, standard.val_set, standard.test_set)])
    n = 5 * 80 + 7  # image_0407: an iris
    assert source[n].parent.name == "05_iris"
    hits = (images == read_image(source[n], 16)).flatten(1).all(1)
    assert labels[hits].tolist() == [FLOWERS17_CLASSES.index("iris")]


def test_a_sample_per_class_keeps_the_splits_shares(tmp_path):
    # max_per_class samples by a hash of its own: were it the split's hash, the kept photos would be the ones the
    # split sends to validation first (a sample of the 30 lowest of 120 with val_size 0.25 was almost all validation)
    root = write_photo_folder(tmp_path / "photos", ["a", "b"], 120)
    dm = ImageFolderDataModule(str(root), max_per_class=30, val_size=0.25, image_size=8)
    dm.setup("fit")
    n_val, n = len(dm.val_set), len(dm.train_set) + len(dm.val_set)
    assert n == 60
    assert 5 <= n_val <= 25  # 15 expected; binomial spread, far from the 40+ of a correlated sample
