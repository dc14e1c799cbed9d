"""The CIFAR DataModules read the pickle layout whatever each file holds, split by seed, and fail clearly."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

from cifar_pl.data import CIFAR10DataModule, CIFAR100DataModule, read_cifar_batch, seeded_split
from cifar_pl.data.cifar import CIFAR10_CLASSES

from .helpers import CIFAR10_ROWS, write_cifar_batch


def test_reads_partial_layout_with_any_rows_per_file(cifar10_root):
    dm = CIFAR10DataModule(data_dir=str(cifar10_root), val_size=0.25)
    dm.setup()
    n_train = sum(v for k, v in CIFAR10_ROWS.items() if k != "test_batch")
    assert len(dm.train_set) + len(dm.val_set) == n_train
    assert len(dm.val_set) == round(0.25 * n_train)
    assert len(dm.test_set) == CIFAR10_ROWS["test_batch"]
    assert dm.train_set.images.dtype == torch.uint8 and dm.train_set.images.shape[1:] == (3, 32, 32)
    assert dm.num_classes == 10 and dm.classes == CIFAR10_CLASSES


def test_pixels_and_labels_keep_the_file_layout(tmp_path):
    # R, G, B planes of 32x32 in row-major order; only the first N labels belong to the N rows.
    folder = tmp_path / "b"
    folder.mkdir()
    labels = write_cifar_batch(folder / "x", n_rows=3, n_labels=10, num_classes=10, seed=3)
    with open(folder / "x", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]
    images, read_labels = read_cifar_batch(folder / "x", "labels")
    assert read_labels.tolist() == labels.tolist() and len(read_labels) == 3
    assert images[1, 0, 2, 5] == raw[1, 0 * 1024 + 2 * 32 + 5]  # red plane, row 2, column 5
    assert images[2, 2, 31, 0] == raw[2, 2 * 1024 + 31 * 32 + 0]  # blue plane, last row


def test_split_is_deterministic_for_a_seed_and_disjoint(cifar10_root):
    def split(seed):
        dm = CIFAR10DataModule(data_dir=str(cifar10_root), val_size=20, split_seed=seed)
        dm.setup("fit")
        return dm

    a, b, c = split(0), split(0), split(1)
    assert torch.equal(a.val_set.images, b.val_set.images) and torch.equal(
        a.train_set.labels, b.train_set.labels
    )
    assert not torch.equal(a.val_set.images, c.val_set.images)
    assert len(a.val_set) == 20
    train_idx, val_idx = seeded_split(144, 20, 0)
    assert len(set(train_idx.tolist()) | set(val_idx.tolist())) == 144
    assert not set(train_idx.tolist()) & set(val_idx.tolist())


def test_validation_never_comes_from_the_test_set(cifar10_root):
    dm = CIFAR10DataModule(data_dir=str(cifar10_root), val_size=20)
    dm.setup()
    test_rows = {bytes(img.numpy()) for img in dm.test_set.images}
    assert not any(bytes(img.numpy()) in test_rows for img in dm.val_set.images)


def test_val_size_that_leaves_nothing_is_refused(cifar10_root):
    with pytest.raises(ValueError, match="val_size=144 takes all 144 images"):
        CIFAR10DataModule(data_dir=str(cifar10_root), val_size=144).setup("fit")
    with pytest.raises(ValueError, match=r"val_size must be in \(0, 1\), got 1.5"):
        CIFAR10DataModule(data_dir=str(cifar10_root), val_size=1.5)  # refused before any file is read
    with pytest.raises(ValueError, match="val_size=0.001 leaves 144 training and 0 validation rows"):
        CIFAR10DataModule(data_dir=str(cifar10_root), val_size=0.001).setup("fit")


def test_loader_hands_out_uint8_batches_normalised_on_the_device(cifar10_root):
    dm = CIFAR10DataModule(
        data_dir=str(cifar10_root), batch_size=16, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]
    )
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    xn, yn = dm.on_after_batch_transfer((x, y), 0)
    torch.testing.assert_close(xn, (x.float() / 255 - 0.5) / 0.25)
    assert yn is y
    example = torch.zeros(2, 3, 32, 32)  # float input (model summary) passes through untouched
    assert dm.on_after_batch_transfer(example, 0) is example


def test_data_dir_may_be_the_batches_folder_itself(cifar10_root):
    dm = CIFAR10DataModule(data_dir=str(cifar10_root / "cifar-10-batches-py"))
    dm.setup("test")
    assert len(dm.test_set) == CIFAR10_ROWS["test_batch"]


def test_missing_folder_says_both_ways_out(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as e:
        dm.setup("fit")
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "--data.data_dir" in msg and "--data.download true" in msg


def test_missing_batch_file_is_named(cifar10_root, tmp_path):
    shutil.copytree(cifar10_root, tmp_path / "c")
    (tmp_path / "c" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        CIFAR10DataModule(data_dir=str(tmp_path / "c")).setup("fit")


def test_download_without_network_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(CIFAR10DataModule, "_torchvision_download", offline)
    with pytest.raises(RuntimeError, match="copy the cifar-10-batches-py/ folder there by hand"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=True).prepare_data()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_keys", "wrong_width"])
def test_corrupt_batch_file_fails_clearly(cifar10_root, tmp_path, damage):
    shutil.copytree(cifar10_root, tmp_path / "c")
    bad = tmp_path / "c" / "cifar-10-batches-py" / "data_batch_2"
    if damage == "truncate":
        bad.write_bytes(bad.read_bytes()[:5000])
    elif damage == "garbage":
        bad.write_bytes(b"\x00not a pickle" * 50)
    elif damage == "wrong_keys":
        bad.write_bytes(pickle.dumps({b"pixels": np.zeros((2, 3072), np.uint8)}, protocol=2))
    else:
        bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError) as e:
        CIFAR10DataModule(data_dir=str(tmp_path / "c")).setup("fit")
    assert "data_batch_2" in str(e.value) and "download" in str(e.value)


def test_batch_file_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins)\.print"):
        read_cifar_batch(path, "labels")


@pytest.mark.parametrize("label_type, n", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_and_coarse_labels(cifar100_root, label_type, n):
    dm = CIFAR100DataModule(data_dir=str(cifar100_root), label_type=label_type, val_size=0.1)
    dm.setup()
    assert dm.num_classes == n and len(dm.classes) == n
    assert len(dm.train_set) == 108 and len(dm.val_set) == 12 and len(dm.test_set) == 40
    assert int(dm.test_set.labels.max()) < n
    if label_type == "coarse":
        fine = CIFAR100DataModule(data_dir=str(cifar100_root), label_type="fine")
        fine.setup("test")
        assert torch.equal(dm.test_set.labels, fine.test_set.labels // 5)  # as the fixture wrote them


@pytest.mark.real_data
def test_real_cifar10_subset(real_data):
    dm = CIFAR10DataModule(data_dir=str(real_data), val_size=0.1)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 8336 and len(dm.test_set) == 1017
    # Per-class counts of the 1,017 test rows, as ../shared/data/README.md lists them.
    assert torch.bincount(dm.test_set.labels).tolist() == [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
    mean = dm.test_set.images.float().div(255).mean((0, 2, 3))
    torch.testing.assert_close(mean, torch.tensor(dm.mean), atol=0.02, rtol=0)


@pytest.mark.real_data
def test_real_cifar100_subset(real_data):
    dm = CIFAR100DataModule(data_dir=str(real_data), val_size=0.1)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 1117 and len(dm.test_set) == 916
    assert len(torch.unique(dm.test_set.labels)) == 100
    with open(real_data / "cifar-100-python" / "meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert dm.classes == meta["fine_label_names"]
    assert CIFAR100DataModule(label_type="coarse").classes == meta["coarse_label_names"]


def test_num_workers_defaults_to_0_for_batched_augmentation_and_up_to_8_for_per_image(cifar10_root):
    import os

    assert CIFAR10DataModule(str(cifar10_root), augment="standard").num_workers == 0
    assert CIFAR10DataModule(str(cifar10_root), augment="none").num_workers == 0
    per_image = CIFAR10DataModule(str(cifar10_root), augment=[{"name": "autoaugment"}])
    assert per_image.num_workers == min(8, os.cpu_count() or 1)
    assert (
        CIFAR10DataModule(str(cifar10_root), augment=[{"name": "autoaugment"}], num_workers=0).num_workers
        == 0
    )
