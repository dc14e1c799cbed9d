"""Photos in class folders (a scraped collection), decoded once, resized and held in memory as uint8 tensors like
CIFAR, so augmentation and normalisation run batched on the device."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from ..checks import check_choice, check_class_names, check_number, check_size_or_fraction
from ..errors import BadValue, MissingFile
from ..images import ResizeMode, read_images
from ._registry import register_datamodule
from .base import InMemoryImageDataModule
from .cache import default_cache_dir, entry_dir, fingerprint, open_or_build
from .identity import digest
from .tensor_dataset import TensorImageDataset, hashed_split3, stable_key


def decode_images(
    paths: Sequence[Path], size: int, resize: ResizeMode = "squash"
) -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Decode ``paths`` (in threads) straight into one N x 3 x size x size uint8 tensor -> (the readable images,
    their indices in ``paths``, (path, reason) of each file that could not be read). Peak memory is the tensor
    plus the few images in flight, never a list of every image beside the stacked copy."""
    images = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    kept: list[int] = []
    failed: list[tuple[Path, str]] = []
    for i, img in read_images(paths, size, resize):
        if isinstance(img, str):
            failed.append((Path(paths[i]), img))
            continue
        images[len(kept)] = torch.from_numpy(img).permute(2, 0, 1)
        kept.append(i)
    return images[: len(kept)], kept, failed


def _listing(paths: Sequence[tuple[Path, str]], limit: int = 20) -> str:
    shown = "; ".join(f"{p} ({why})" for p, why in paths[:limit])
    return shown + (f"; ... {len(paths) - limit} more" if len(paths) > limit else "")


@register_datamodule
class ImageFolderDataModule(InMemoryImageDataModule):
    """Photos in ``data_dir/<class>/...``: one folder per class, class names from the folder names.

    Every image is decoded once, converted to RGB and resized to ``image_size`` (``resize``: ``squash`` or
    ``crop``, see ``cifar_pl.images``); files that are no readable image are skipped with one warning that names
    them, so nothing can fail mid-epoch. With ``cache`` (the default) the decoded images go to a file under
    ``cache_dir`` the first time (``prepare_data``: once per machine, even under DDP) and every later run, and
    every process, memory-maps that file (``cifar_pl.data.cache``: checked, rebuilt when damaged, evicted when
    unused): start-up takes seconds and memory does not grow with the collection or the number of processes. A
    cache folder that cannot be written is reported and the photos are decoded into memory.

    The split is per file: a photo's part (train, validation, test) comes from a hash of its path below
    ``data_dir`` and ``split_seed`` (``hashed_split3``), so adding or removing photos moves no other photo between
    parts, and the shares are close to ``val_size``/``test_size`` rather than exact.

    Args:
        data_dir: the root holding one folder per class.
        classes: use only these class folders, in this order (default: every folder, sorted).
        max_per_class: keep at most this many images per class (a sample by a per-file hash of its own, drawn
            independently of the split's, so a new photo displaces at most one other and the split's shares hold).
        image_size: side of the square the images are resized to (32 for CIFAR nets, 256 for Xception).
        resize: ``squash`` (whole image, aspect ratio lost) or ``crop`` (centre square).
        val_size: share (or count) of the images kept for validation, stratified and seeded by ``split_seed``.
        test_size: share (or count) held out for ``test`` the same way, so the test figure comes from images no
            checkpoint was chosen on.
        test_dir: a separate root with the same class folders for ``test`` (instead of ``test_size``). With
            neither, ``test`` scores the validation split and logs it as ``test_on_val/...``.
        cache: decode once into a memory-mapped file (true), or into memory at every setup (false).
        cache_dir: where the decoded files go (default ``$CIFAR_PL_CACHE``, else ``~/.cache/cifar_pl``).
        stats: normalisation: ``dataset`` (the training split's own mean/std, the default), or ``imagenet``
            for ImageNet-pretrained backbones, ``cifar10``/``cifar100`` for nets trained on CIFAR.
        Other arguments: see ``InMemoryImageDataModule``.
    """

    def __init__(
        self,
        data_dir: str = "data/photos",
        *,
        classes: list[str] | None = None,
        max_per_class: int | None = None,
        image_size: int = 32,
        resize: Literal["squash", "crop"] = "squash",
        test_dir: str | None = None,
        val_size: int | float = 0.2,
        test_size: int | float | None = None,
        batch_size: int = 64,
        cache: bool = True,
        cache_dir: str | None = None,
        **kwargs,
    ):
        self.image_size = check_number(
            "image_size", image_size, 8, 4096, integer=True
        )  # the augmentation needs it
        super().__init__(data_dir=data_dir, val_size=val_size, batch_size=batch_size, **kwargs)
        if max_per_class is not None:
            check_number("max_per_class", max_per_class, 1, integer=True, hint="or null for all")
        self.class_subset = check_class_names("classes", classes) if classes else None
        self.max_per_class = max_per_class
        self.resize = check_choice("resize", resize, ("squash", "crop"))
        self.test_dir = Path(test_dir).expanduser() if test_dir else None
        if test_size is not None:
            check_size_or_fraction("test_size", test_size)
            if self.test_dir is not None:
                raise BadValue(
                    "give test_size (a share held out of data_dir) or test_dir (another root), not both"
                )
        self.test_size = test_size
        self.cache = cache
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._held_out: TensorImageDataset | None = None
        self._classes: list[str] | None = None
        self.skipped: list[tuple[Path, str]] = []  # (file, why) of every file that could not be read
        self.files: list[Path] = []  # after setup: the file of each row of data_dir's decoded images

    # ---- classes and files ----
    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = self._class_names(self.data_dir)
        return list(self._classes)

    def _class_names(self, root: Path) -> list[str]:
        if not root.is_dir():
            raise MissingFile(
                f"image folder '{root}' does not exist; pass --data.data_dir with a folder holding one "
                f"sub-folder of images per class (e.g. {root}/cat/0001.jpg)"
            )
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise BadValue(
                f"'{root}' holds no class folders; put the images of each class in a sub-folder named after "
                f"the class (e.g. {root}/cat/0001.jpg)"
            )
        if self.class_subset is None:
            return check_class_names(f"the class folders of '{root}'", found)
        unknown = [c for c in self.class_subset if c not in found]
        if unknown:
            raise BadValue(f"no class folder {unknown} in '{root}'; the folders there are {found}")
        return self.class_subset

    def _scan(self, root: Path) -> tuple[list[Path], torch.Tensor]:
        """Files and labels under ``root`` for ``self.classes``, after the ``max_per_class`` sample."""
        paths: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            folder = root / name
            if not folder.is_dir():
                raise MissingFile(f"'{root}' has no folder for class '{name}' (it has {self.classes})")
            files = sorted(
                p
                for p in folder.rglob("*")
                if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)
            )
            if not files:
                raise BadValue(f"class folder '{folder}' is empty; add images or leave the class out")
            if self.max_per_class is not None and len(files) > self.max_per_class:
                ranked = sorted(
                    files, key=lambda p: stable_key(self.split_seed, "sample:" + self._key(p, root))
                )
                files = sorted(ranked[: self.max_per_class])
            paths += files
            labels += [label] * len(files)
        return paths, torch.tensor(labels, dtype=torch.long)

    @staticmethod
    def _key(path: Path, root: Path) -> str:
        """A photo's name for the split: its path below the collection's root, with '/' between parts."""
        return path.relative_to(root).as_posix()

    def _roots(self) -> list[Path]:
        return [self.data_dir] + ([self.test_dir] if self.test_dir is not None else [])

    def _entry(self, root: Path) -> tuple[list[Path], torch.Tensor, Path]:
        paths, labels = self._scan(root)
        key = fingerprint(root, paths, labels.tolist(), self.image_size, self.resize)
        return paths, labels, entry_dir(self.cache_dir, f"{root.name}-{self.image_size}px-{self.resize}", key)

    def prepare_data(self) -> None:
        # Lightning calls this once per machine (local rank 0) before every process's setup: the one decode.
        if self.cache:
            for root in self._roots():
                paths, labels, entry = self._entry(root)
                open_or_build(entry, paths, labels.tolist(), self.image_size, self.resize, str(root))

    def _decode(self, root: Path, what: str) -> tuple[TensorImageDataset, list[int]]:
        """The readable images under ``root`` as a dataset and their indices in the scanned file list (kept, with
        its labels, as ``self._scanned[root]``).
        From the cache (built here outside Lightning, where no prepare_data ran), or decoded into memory."""
        decoded = None
        if self.cache:
            paths, labels, entry = self._entry(root)
            decoded = open_or_build(entry, paths, labels.tolist(), self.image_size, self.resize, what)
        if decoded is not None:
            data = TensorImageDataset(decoded.images, decoded.labels, sums=decoded.sums)
            kept, failed = decoded.kept, decoded.failed
        else:
            paths, labels = self._scan(root)
            rank_zero_info(f"{what}: decoding {len(paths)} files at {self.image_size}px ...")
            images, kept, failed = decode_images(paths, self.image_size, self.resize)
            data = TensorImageDataset(images, labels[kept])
        if failed:
            self.skipped += failed
            rank_zero_warn(f"skipped {len(failed)} unreadable file(s) in {what}: {_listing(failed)}")
        empty = [self.classes[c] for c in range(len(self.classes)) if not (data.labels == c).any()]
        if empty:
            raise BadValue(f"no readable image for class(es) {empty} in {what}; add images or drop the class")
        rank_zero_info(f"{what}: {len(kept)} images in {len(self.classes)} classes at {self.image_size}px")
        self._scanned = {**getattr(self, "_scanned", {}), root: (paths, labels)}
        return data, kept

    # ---- splits ----
    @property
    def test_is_validation(self) -> bool:
        """``test`` scores the validation split (no test_size, no test_dir): its figure is selection-biased."""
        return self.test_dir is None and self.test_size is None

    def _load_fit(self) -> tuple[TensorImageDataset, TensorImageDataset]:
        full, kept = self._decode(self.data_dir, str(self.data_dir))
        paths, labels = self._scanned[self.data_dir]
        self.files = [paths[i] for i in kept]  # the file of each row of the decoded set
        keys = [self._key(p, self.data_dir) for p in self.files]
        parts = hashed_split3(keys, full.labels, self.val_size, self.test_size, self.split_seed)
        train_idx, val_idx, test_idx = parts
        self._held_out = full.subset(test_idx) if self.test_size is not None else None
        listing = [
            (self._key(p, self.data_dir), p.stat().st_size, int(y))
            for p, y in zip(paths, labels, strict=True)
        ]
        self._source_and_split_ids = {
            "source": digest(*(f"{k}\t{size}\t{y}" for k, size, y in listing)), "images": len(paths),
            "split": digest(*(sorted(keys[i] for i in part.tolist()) for part in parts)),
        }  # fmt: skip
        return full.subset(train_idx), full.subset(val_idx)

    def _source_and_split(self) -> dict:
        """The files (path below ``data_dir``, size, label) and which of them each part holds (``data_identity``)."""
        ids = getattr(self, "_source_and_split_ids", None)
        return dict(ids) if ids else super()._source_and_split()  # a subclass with its own split: the content

    def _load_test(self) -> TensorImageDataset:
        if self.test_dir is not None:
            return self._decode(self.test_dir, str(self.test_dir))[0]
        if self.val_set is None:
            self.train_set, self.val_set = self._load_fit()
            self.train_set.transform = self._per_image
        if self._held_out is not None:
            return self._held_out
        rank_zero_info(
            "no test split (test_size or test_dir): `test` scores the validation split that chose the best "
            "checkpoint; its metrics are logged as test_on_val/..."
        )
        return self.val_set
