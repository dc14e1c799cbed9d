"""A checkpoint knows its data: class names, a digest of the source and of the split travel in it; resuming or
starting a stage on other data is refused in one line unless asked for (--new_data), and the photo split is stable
per file, so adding or removing photos moves no other photo between training and validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cifar_pl.data import CIFAR10DataModule, ImageFolderDataModule
from cifar_pl.data.identity import differences
from cifar_pl.data.tensor_dataset import hashed_split3, stratified_split3

from .helpers import PHOTO_COLOURS, run_cli, write_cifar_batch, write_photo, write_photo_folder


def _parts(root: Path, cache: Path, **kw) -> dict[str, str]:
    """Each photo's part (train, val, test), by its path below the root."""
    dm = ImageFolderDataModule(
        str(root), image_size=16, cache_dir=str(cache), val_size=0.2, test_size=0.1, **kw
    )
    dm.setup("fit")
    dm.setup("test")
    return {dm.files[row].relative_to(root).as_posix(): part
            for part, data in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set))
            for row in data.rows.tolist()}  # fmt: skip


def test_adding_or_removing_a_photo_moves_no_other_photo_between_parts(tmp_path):
    photos = write_photo_folder(tmp_path / "photos", ["cat", "dog", "owl"], 40)
    before = _parts(photos, tmp_path / "c")
    write_photo(photos / "cat" / "new_one.jpg", PHOTO_COLOURS[0], seed=999)
    after = _parts(photos, tmp_path / "c")
    moved = [k for k in before if after[k] != before[k]]
    assert moved == [] and set(after) == set(before) | {"cat/new_one.jpg"}
    (photos / "dog" / "img_007.jpg").unlink()
    removed = _parts(photos, tmp_path / "c")
    assert [k for k in removed if removed[k] != after[k]] == []
    shares = {p: sum(v == p for v in after.values()) / len(after) for p in ("train", "val", "test")}
    assert 0.1 < shares["val"] < 0.3 and 0.03 < shares["test"] < 0.2  # near 0.2 and 0.1 of 121 photos
    # what a permutation of the file list did (the split before): one photo more reshuffles validation
    labels = torch.arange(3).repeat_interleave(40)
    old = set(stratified_split3(labels, 0.2, 0.1, 0)[1].tolist())
    grown = torch.cat([torch.zeros(1, dtype=torch.long), labels])  # the new photo sorts first in its class
    new = {i - 1 for i in stratified_split3(grown, 0.2, 0.1, 0)[1].tolist() if i > 0}
    print(
        f"one photo added to 120: {len(old - new)} of {len(old)} validation photos moved with the permutation, "
        f"{len(moved)} with the per-file split"
    )
    assert len(old - new) > 0


def test_the_per_file_split_keeps_every_class_in_training_and_validation():
    keys = [f"c{c}/{i}.jpg" for c in range(3) for i in range(3)]
    labels = torch.arange(3).repeat_interleave(3)
    for seed in range(20):
        train, val, _ = hashed_split3(keys, labels, 0.2, None, seed)
        assert set(labels[train].tolist()) == set(labels[val].tolist()) == {0, 1, 2}


def test_the_identity_names_the_data_not_where_it_lies(cifar10_root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(cifar10_root, copy)
    a = CIFAR10DataModule(str(cifar10_root), val_size=20).data_identity()
    assert CIFAR10DataModule(str(copy), val_size=20).data_identity() == a  # moved data is the same data
    assert differences(a, CIFAR10DataModule(str(copy), val_size=30).data_identity()) == [
        "the train/validation split differs (sizes {'train': 124, 'val': 20} then, {'train': 114, 'val': 30} now)"
    ]
    write_cifar_batch(copy / "cifar-10-batches-py" / "data_batch_2", 24, 124, 10, seed=99)  # other images
    assert differences(a, CIFAR10DataModule(str(copy), val_size=20).data_identity()) == ["the images differ"]


@pytest.fixture()
def trained(tmp_path, monkeypatch):
    """A run fitted for one epoch on a photo folder; returns the folder and the run's arguments."""
    photos = write_photo_folder(tmp_path / "photos", ["cat", "dog"], 12)
    monkeypatch.chdir(tmp_path)
    args = (f"--model.net model_gap --data.image_size 16 --data.batch_size 8 --data.cache_dir {tmp_path / 'c'} "
            f"--test_after_fit false --experiment photos")  # fmt: skip
    run_cli("fit", "transfer/1_scratch", photos, f"{args} --trainer.max_epochs 1")
    ckpt = torch.load(tmp_path / "lightning_logs/photos/version_0/checkpoints/last.ckpt", weights_only=True)
    recorded = ckpt["ImageFolderDataModule"]["data"]
    assert recorded["classes"] == ["cat", "dog"] and recorded["images"] == 24
    return tmp_path, photos, args


def _record(work: Path, version: int = 0) -> dict:
    return json.loads((work / f"lightning_logs/photos/version_{version}/run.json").read_text())


def test_resuming_with_a_photo_more_is_refused_and_new_data_makes_it_a_stage(trained):
    work, photos, args = trained
    write_photo(photos / "cat" / "extra.jpg", PHOTO_COLOURS[0], seed=77)
    with pytest.raises(ValueError, match=r"last.ckpt was trained on other data: the images differ \(24 images then, "
                                         r"25 now\)\. Pass the data it was trained on \(--data.data_dir\), or go on "
                                         r"with this data as a new stage with --new_data true"):  # fmt: skip
        run_cli("fit", "transfer/1_scratch", photos, f"{args} --trainer.max_epochs 2 --ckpt_path last")
    assert _record(work)["status"] == "complete"  # refused before the run's record was touched
    run_cli(
        "fit", "transfer/1_scratch", photos, f"{args} --trainer.max_epochs 2 --ckpt_path last --new_data true"
    )
    stage = json.loads((work / "lightning_logs/photos/version_1/stage.json").read_text())
    assert stage["changes"][0]["key"] == "data (--new_data)" and stage["start_epoch"] == 1
    assert _record(work, 1)["status"] == "complete"


def test_resuming_on_another_collection_is_refused_naming_the_classes(trained):
    work, _, args = trained
    other = write_photo_folder(work / "other", ["ant", "bee"], 12)
    with pytest.raises(
        ValueError, match=r"trained on other data: classes \[cat, dog\] \(2\) then, \[ant, bee\] \(2\) now"
    ):
        run_cli("fit", "transfer/1_scratch", other, f"{args} --trainer.max_epochs 2 --ckpt_path last")


def test_scoring_a_checkpoint_on_data_with_other_class_names_is_refused(trained):
    work, _, args = trained
    other = write_photo_folder(work / "other", ["ant", "bee"], 6)
    with pytest.raises(
        ValueError, match=r"was trained on the classes \['cat', 'dog'\], the data has \['ant', 'bee'\]"
    ):
        run_cli(
            "test",
            "transfer/1_scratch",
            other,
            f"{args.replace('--test_after_fit false ', '')} --ckpt_path last",
        )
