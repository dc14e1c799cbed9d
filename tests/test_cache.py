"""Photo collections decoded once into a memory-mapped cache, and a held-out test split for photo folders."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import torch

from cifar_pl.data import ImageFolderDataModule, cache
from cifar_pl.data.tensor_dataset import stratified_split3

from .conftest import write_photo_folder


@pytest.fixture()
def photos(tmp_path):
    return write_photo_folder(tmp_path / "photos", ["cat", "dog", "owl"], 12)


def _dm(root, cache_dir, **kw):
    return ImageFolderDataModule(str(root), image_size=16, cache_dir=str(cache_dir), stats="dataset", **kw)


def _decodes(monkeypatch) -> list[int]:
    """Counts the images decoded from then on."""
    calls = []
    real = cache.read_images

    def counting(paths, *a, **k):
        for item in real(paths, *a, **k):
            calls.append(1)
            yield item

    monkeypatch.setattr(cache, "read_images", counting)
    return calls


def test_decoded_once_then_mapped_with_the_same_images_splits_and_stats(photos, tmp_path, monkeypatch):
    calls = _decodes(monkeypatch)
    first = _dm(photos, tmp_path / "c")
    first.setup("fit")
    assert len(calls) == 36
    second = _dm(photos, tmp_path / "c")
    second.setup("fit")
    assert len(calls) == 36  # nothing decoded again
    plain = _dm(photos, tmp_path / "c", cache=False)
    plain.setup("fit")
    for a, b in ((second.train_set, plain.train_set), (second.val_set, plain.val_set)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert second.mean == pytest.approx(plain.mean, abs=1e-12) and second.std == pytest.approx(
        plain.std, abs=1e-12
    )
    # the splits are rows of the map, read a batch at a time: nothing holds a copy of the collection
    assert (
        second.train_set.rows is not None
        and second.train_set._images.data_ptr() == second.val_set._images.data_ptr()
    )
    x, y = next(iter(second.train_dataloader()))
    assert x.shape == (len(second.train_set), 3, 16, 16) and x.dtype == torch.uint8


def test_a_changed_file_makes_a_new_entry(photos, tmp_path, monkeypatch):
    _dm(photos, tmp_path / "c").setup("fit")
    target = photos / "dog" / "img_003.jpg"
    target.write_bytes((photos / "cat" / "img_000.jpg").read_bytes())  # the same name, other pixels
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    calls = _decodes(monkeypatch)
    dm = _dm(photos, tmp_path / "c")
    dm.setup("fit")
    assert len(calls) == 36 and len(list((tmp_path / "c").glob("photos-16px-squash-*"))) == 2


def test_a_build_killed_half_way_is_never_read_and_is_rebuilt(photos, tmp_path):
    clean = _dm(photos, tmp_path / "clean")
    clean.setup("fit")
    entry = next((tmp_path / "clean").glob("photos-*"))
    # what a SIGKILL mid-build leaves: a half-written temporary folder of a process that is gone, no COMPLETE marker
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "c" / f".{entry.name}.building-{socket.gethostname()}-{dead.pid}-abcdef"
    stale.mkdir(parents=True)
    (stale / "images.u8").write_bytes((entry / "images.u8").read_bytes()[:5000])
    live = tmp_path / "c" / f".{entry.name}.building-{socket.gethostname()}-{os.getpid()}-abcdef"
    live.mkdir()  # a build in progress in a running process is left alone
    assert not cache.is_complete(tmp_path / "c" / entry.name)
    dm = _dm(photos, tmp_path / "c")
    dm.setup("fit")
    assert not stale.exists() and live.exists() and cache.is_complete(tmp_path / "c" / entry.name)
    assert torch.equal(dm.train_set.images, clean.train_set.images)
    assert torch.equal(dm.train_set.labels, clean.train_set.labels)
    # an entry whose marker is missing is refused, never read
    (tmp_path / "c" / entry.name / "COMPLETE").unlink()
    with pytest.raises(ValueError, match="is not complete"):
        cache.open_entry(tmp_path / "c" / entry.name)


def test_unreadable_files_are_remembered_by_the_cache(photos, tmp_path):
    (photos / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    for _ in range(2):
        dm = _dm(photos, tmp_path / "c")
        with pytest.warns(UserWarning, match="skipped 1 unreadable file"):
            dm.setup("fit")
        assert [p.name for p, _ in dm.skipped] == ["broken.jpg"]


def test_three_way_split_is_stratified_seeded_and_disjoint():
    labels = torch.arange(3).repeat_interleave(torch.tensor([50, 30, 20]))
    train, val, test = stratified_split3(labels, 0.2, 0.2, seed=1)
    assert len(set(train.tolist()) | set(val.tolist()) | set(test.tolist())) == 100
    assert not (set(train.tolist()) & set(test.tolist())) and not (set(val.tolist()) & set(test.tolist()))
    for c, n in ((0, 50), (1, 30), (2, 20)):
        assert (labels[test] == c).sum() == round(0.2 * n) and (labels[val] == c).sum() == round(0.2 * n)
    again = stratified_split3(labels, 0.2, 0.2, seed=1)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    with pytest.raises(ValueError, match="leave no training images"):
        stratified_split3(labels, 0.5, 0.5, seed=1)


def test_test_size_holds_images_out_and_without_it_test_says_it_is_validation(photos, tmp_path, monkeypatch):
    from .conftest import run_cli

    held = _dm(photos, tmp_path / "c", test_size=0.25)
    held.setup("fit")
    held.setup("test")
    assert len(held.test_set) == 9 and not held.test_is_validation
    rows = lambda d: set(d.rows.tolist())  # noqa: E731
    assert not rows(held.test_set) & (rows(held.train_set) | rows(held.val_set))
    monkeypatch.chdir(tmp_path)
    base = "--data.image_size 16 --data.batch_size 8 --trainer.max_epochs 2 --data.augment none"
    with_test = run_cli("fit", "transfer/1_scratch", photos, f"{base} --data.test_size 0.25 --experiment t")
    assert "test/acc" in with_test.trainer.callback_metrics
    without = run_cli("fit", "transfer/1_scratch", photos, f"{base} --experiment v")
    assert (
        "test_on_val/acc" in without.trainer.callback_metrics
        and "test/acc" not in without.trainer.callback_metrics
    )
    with pytest.raises(ValueError, match="give test_size .* or test_dir .*, not both"):
        _dm(photos, tmp_path / "c", test_size=0.2, test_dir=str(photos))
