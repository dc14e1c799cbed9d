"""Photo collections decoded once into a memory-mapped cache, and a held-out test split for photo folders."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cifar_pl.data import ImageFolderDataModule, cache
from cifar_pl.data.tensor_dataset import stratified_split3

from .helpers import write_photo_folder


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
    with pytest.raises(cache.DamagedEntry, match="is not complete"):
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
    from .helpers import run_cli

    held = _dm(photos, tmp_path / "c", test_size=0.25)
    held.setup("fit")
    held.setup("test")
    assert 3 <= len(held.test_set) <= 15 and not held.test_is_validation  # a per-file share near 9 of 36
    rows = lambda d: set(d.rows.tolist())  # noqa: E731
    assert not rows(held.test_set) & (rows(held.train_set) | rows(held.val_set))
    assert len(rows(held.test_set) | rows(held.train_set) | rows(held.val_set)) == 36
    monkeypatch.chdir(tmp_path)
    base = "--model.net model_gap --data.image_size 16 --data.batch_size 8 --trainer.max_epochs 2 --data.augment none"
    with_test = run_cli("fit", "transfer/1_scratch", photos, f"{base} --data.test_size 0.25 --experiment t")
    assert "test/acc" in with_test.trainer.callback_metrics
    without = run_cli("fit", "transfer/1_scratch", photos, f"{base} --experiment v")
    assert (
        "test_on_val/acc" in without.trainer.callback_metrics
        and "test/acc" not in without.trainer.callback_metrics
    )
    with pytest.raises(ValueError, match="give test_size .* or test_dir .*, not both"):
        _dm(photos, tmp_path / "c", test_size=0.2, test_dir=str(photos))


# ---- integrity: edits, damage, space, eviction, folders that cannot be written ----
def test_an_edit_that_keeps_the_size_and_the_modification_time_makes_a_new_entry(photos, tmp_path):
    _dm(photos, tmp_path / "c").setup("fit")
    target, donor = photos / "dog" / "img_003.jpg", photos / "cat" / "img_000.jpg"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the picture: same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time put back
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    assert donor.exists()
    _dm(photos, tmp_path / "c").setup("fit")
    assert len(list((tmp_path / "c").glob("photos-16px-squash-*"))) == 2


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "no index"])
def test_a_damaged_entry_is_reported_removed_and_built_again(photos, tmp_path, damage):
    _dm(photos, tmp_path / "c").prepare_data()  # the entry, built; nothing of this process maps it
    clean = _dm(photos, tmp_path / "c", cache=False)
    clean.setup("fit")
    entry = next((tmp_path / "c").glob("photos-*"))
    images = entry / "images.u8"
    if damage == "zeroed":
        images.write_bytes(bytes(images.stat().st_size))
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:1000])
    else:
        (entry / "index.json").unlink()
    dm = _dm(photos, tmp_path / "c")
    with pytest.warns(
        UserWarning, match=f"decoded-image cache {entry} is damaged .*; removing it and decoding again"
    ):
        dm.setup("fit")
    assert (
        torch.equal(dm.train_set.images, clean.train_set.images) and dm.train_set.images.float().mean() > 10
    )
    assert cache.open_entry(entry).images.shape[0] == 36


def test_a_build_the_disk_cannot_hold_is_refused_before_decoding(photos, tmp_path, monkeypatch):
    calls = _decodes(monkeypatch)
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 << 20})())
    with pytest.raises(cache.DiskFull, match=r"the decoded-image cache needs 0\.00 GB in .*, which has 0\.01 GB "
                                             r"free; free space there, point --data.cache_dir"):  # fmt: skip
        _dm(photos, tmp_path / "c").setup("fit")
    assert calls == [] and list((tmp_path / "c").iterdir()) == []


def test_entries_nobody_uses_are_evicted(tmp_path, monkeypatch):
    def entry(name: str, mb: int, age_s: float) -> Path:
        e = tmp_path / name
        e.mkdir()
        (e / "images.u8").write_bytes(bytes(mb << 20))
        (e / "COMPLETE").write_text("x")
        os.utime(e, (time.time() - age_s, time.time() - age_s))
        return e

    old = [entry(f"photos-16px-squash-{i:020d}", 1, 7200 + i) for i in range(4)]  # one collection, 4 versions
    other = entry("flowers-32px-squash-00000000000000000000", 3, 9000)
    fresh = entry("flowers-64px-squash-00000000000000000000", 1, 5)  # just used: kept whatever the budget
    gone = cache.evict(tmp_path, budget=4 << 20)
    assert set(gone) == {old[2], old[3], other}  # the 2 least recently used versions, then the oldest entry
    assert fresh.exists() and old[0].exists() and old[1].exists()
    monkeypatch.setenv(cache.BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match="CIFAR_PL_CACHE_MAX_GB is 'lots'"):
        cache.evict(tmp_path)


def test_a_cache_folder_that_cannot_be_written_falls_back_to_memory(photos, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    dm = _dm(photos, blocker / "cache")  # unreachable: below a file
    with pytest.warns(UserWarning, match="the decoded-image cache folder .* cannot be written .*; decoding .* into "
                                         "memory for this run"):  # fmt: skip
        dm.setup("fit")
    plain = _dm(photos, tmp_path / "unused", cache=False)
    plain.setup("fit")
    assert torch.equal(dm.train_set.images, plain.train_set.images)


def test_a_read_only_cache_folder_falls_back_to_memory(photos, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits; an immutable folder stops it
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
    else:
        folder.chmod(0o555)
    try:
        with pytest.warns(UserWarning, match="cannot be written"):
            _dm(photos, folder).setup("fit")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def test_a_cache_folder_on_a_read_only_filesystem_says_read_only_and_falls_back_to_memory(photos, tmp_path):
    """A read-only mount was said as "needs 0.00 GB ... has 0.00 GB free" and stopped the run; it is said as
    read-only, and the photos are decoded into memory as for any folder that cannot be written."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                                           capture_output=True, timeout=30).returncode != 0:  # fmt: skip
        pytest.skip("mounting a read-only tmpfs needs root and mount")
    try:
        with pytest.warns(UserWarning) as said:
            dm = _dm(photos, folder)
            dm.setup("fit")
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
    lines = [str(w.message) for w in said if "decoded-image cache" in str(w.message)]
    assert len(lines) == 1 and "read-only filesystem" in lines[0] and "into memory for this run" in lines[0]
    assert "GB free" not in lines[0]
    plain = _dm(photos, tmp_path / "unused", cache=False)
    plain.setup("fit")
    assert torch.equal(dm.train_set.images, plain.train_set.images)


def test_the_cache_goes_to_cache_dir_else_the_environment_else_the_home_cache_and_never_beside_the_photos(
    photos, tmp_path, monkeypatch
):
    before = sorted(photos.rglob("*"))
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "cifar_pl"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "cifar_pl"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    ImageFolderDataModule(str(photos), image_size=16).setup("fit")
    _dm(photos, tmp_path / "given").setup("fit")
    assert any((tmp_path / "env").iterdir()) and any((tmp_path / "given").iterdir())
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()
    assert sorted(photos.rglob("*")) == before  # the photo folder is only read
