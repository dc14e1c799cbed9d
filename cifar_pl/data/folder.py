"""Photos in class folders (a scraped collection) and the Oxford 17 Category Flowers, decoded once, resized and
held in memory as uint8 tensors like CIFAR, so augmentation and normalisation run batched on the device."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from .base import InMemoryImageDataModule
from .tensor_dataset import TensorImageDataset, stratified_split

FLOWERS17_CLASSES = [
    "daffodil", "snowdrop", "lily_valley", "bluebell", "crocus", "iris", "tigerlily", "tulip", "fritillary",
    "sunflower", "daisy", "colts_foot", "dandelion", "cowslip", "buttercup", "windflower", "pansy",
]  # fmt: skip
FLOWERS17_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/"


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image as RGB, upright: EXIF orientation applied, palette/grayscale/CMYK converted, transparency
    laid on white (a transparent background is usually white where the image is shown)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, (255, 255, 255))
        im.paste(rgba, mask=rgba.getchannel("A"))
    return im.convert("RGB")


def read_image(
    path: str | Path, size: int | None, resize: Literal["squash", "crop"] = "squash"
) -> torch.Tensor:
    """An image file -> 3 x size x size uint8 RGB (3 x H x W at its own size when ``size`` is None).

    Any mode Pillow reads becomes RGB: palette and grayscale are expanded, CMYK converted, transparency laid
    on white; EXIF orientation is applied. ``squash`` resizes to a square whatever the aspect ratio (what
    Keras' ``flow_from_directory`` does); ``crop`` resizes the short side and cuts the centre square.
    Raises ``OSError``/``ValueError`` (Pillow's) for a file that is no readable image.
    """
    with Image.open(path) as im:
        if size is not None:
            im.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale when that still covers `size`
        im = to_rgb(im)
        if size is not None:
            if resize == "crop":
                im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
            else:
                im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()


def read_images(
    paths: Sequence[Path], size: int, resize: Literal["squash", "crop"] = "squash"
) -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Decode ``paths`` in threads (Pillow releases the GIL) -> (N x 3 x size x size uint8 of the readable
    ones, their indices in ``paths``, and (path, reason) for each one that could not be read)."""

    def one(path: Path) -> torch.Tensor | str:
        try:
            return read_image(path, size, resize)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, paths))
    kept = [i for i, r in enumerate(results) if isinstance(r, torch.Tensor)]
    failed = [(paths[i], r) for i, r in enumerate(results) if not isinstance(r, torch.Tensor)]
    images = (
        torch.stack([results[i] for i in kept]) if kept else torch.empty(0, 3, size, size, dtype=torch.uint8)
    )
    return images, kept, failed


def _listing(paths: Sequence[tuple[Path, str]], limit: int = 20) -> str:
    shown = "; ".join(f"{p} ({why})" for p, why in paths[:limit])
    return shown + (f"; ... {len(paths) - limit} more" if len(paths) > limit else "")


class ImageFolderDataModule(InMemoryImageDataModule):
    """Photos in ``data_dir/<class>/...``: one folder per class, class names from the folder names.

    Every image is decoded once at ``setup``, converted to RGB and resized to ``image_size`` (``resize``:
    ``squash`` or ``crop``, see ``read_image``); files that are no readable image are skipped with one warning
    that names them, so nothing can fail mid-epoch.

    Args:
        data_dir: the root holding one folder per class.
        classes: use only these class folders, in this order (default: every folder, sorted).
        max_per_class: keep at most this many images per class (a seeded random sample).
        image_size: side of the square the images are resized to (32 for CIFAR nets, 256 for Xception).
        resize: ``squash`` (whole image, aspect ratio lost) or ``crop`` (centre square).
        val_size: share (or count) of each class kept for validation, stratified and seeded by ``split_seed``.
        test_dir: a separate root with the same class folders for ``test``; without it, ``test`` scores the
            validation split.
        stats: normalisation: ``dataset`` (the training split's own mean/std, the default), or ``imagenet``
            for ImageNet-pretrained backbones, ``cifar10``/``cifar100`` for nets trained on CIFAR.
        Other arguments: see ``InMemoryImageDataModule``.
    """

    def __init__(
        self,
        data_dir: str = "data/photos",
        classes: list[str] | None = None,
        max_per_class: int | None = None,
        image_size: int = 32,
        resize: Literal["squash", "crop"] = "squash",
        val_size: float | int = 0.2,
        split_seed: int = 0,
        test_dir: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        stats: Literal["default", "dataset", "cifar10", "cifar100", "imagenet", "inception"] = "default",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: str | list[dict[str, Any]] | None = "none",
        augment_on_device: bool | Literal["auto"] = "auto",
    ):
        super().__init__(
            data_dir, val_size, split_seed, batch_size, eval_batch_size, num_workers, pin_memory,
            stats, mean, std, augment, augment_on_device,
        )  # fmt: skip
        self.save_hyperparameters()
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"max_per_class must be positive (or null for all), got {max_per_class}")
        self.class_subset = list(classes) if classes else None
        self.max_per_class = max_per_class
        self.image_size = image_size
        self.resize = resize
        self.test_dir = Path(test_dir).expanduser() if test_dir else None
        self._classes: list[str] | None = None
        self.skipped: list[tuple[Path, str]] = []  # (file, why) of every file that could not be read

    # ---- classes and files ----
    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = self._class_names(self.data_dir)
        return list(self._classes)

    def _class_names(self, root: Path) -> list[str]:
        if not root.is_dir():
            raise FileNotFoundError(
                f"image folder '{root}' does not exist; pass --data.data_dir with a folder holding one "
                f"sub-folder of images per class (e.g. {root}/cat/0001.jpg)"
            )
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise ValueError(
                f"'{root}' holds no class folders; put the images of each class in a sub-folder named after "
                f"the class (e.g. {root}/cat/0001.jpg)"
            )
        if self.class_subset is None:
            return found
        unknown = [c for c in self.class_subset if c not in found]
        if unknown:
            raise ValueError(f"no class folder {unknown} in '{root}'; the folders there are {found}")
        return self.class_subset

    def _scan(self, root: Path) -> tuple[list[Path], torch.Tensor]:
        """Files and labels under ``root`` for ``self.classes``, after the ``max_per_class`` sample."""
        paths: list[Path] = []
        labels: list[int] = []
        gen = torch.Generator().manual_seed(self.split_seed)
        for label, name in enumerate(self.classes):
            folder = root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"'{root}' has no folder for class '{name}' (it has {self.classes})")
            files = sorted(
                p
                for p in folder.rglob("*")
                if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)
            )
            if not files:
                raise ValueError(f"class folder '{folder}' is empty; add images or leave the class out")
            if self.max_per_class is not None and len(files) > self.max_per_class:
                pick = torch.randperm(len(files), generator=gen)[: self.max_per_class].sort().values
                files = [files[i] for i in pick]
            paths += files
            labels += [label] * len(files)
        return paths, torch.tensor(labels, dtype=torch.long)

    def _decode(
        self, paths: list[Path], labels: torch.Tensor, what: str
    ) -> tuple[TensorImageDataset, list[int]]:
        """The readable images of ``paths`` as a dataset, and their indices in ``paths``."""
        rank_zero_info(f"{what}: decoding {len(paths)} files at {self.image_size}px ...")
        images, kept, failed = read_images(paths, self.image_size, self.resize)
        if failed:
            self.skipped += failed
            rank_zero_warn(f"skipped {len(failed)} unreadable file(s) in {what}: {_listing(failed)}")
        labels = labels[kept]
        empty = [self.classes[c] for c in range(len(self.classes)) if not (labels == c).any()]
        if empty:
            raise ValueError(
                f"no readable image for class(es) {empty} in {what}; add images or drop the class"
            )
        rank_zero_info(f"{what}: {len(kept)} images in {len(self.classes)} classes at {self.image_size}px")
        return TensorImageDataset(images, labels), kept

    # ---- splits ----
    def _load_fit(self) -> tuple[TensorImageDataset, TensorImageDataset]:
        full, _ = self._decode(*self._scan(self.data_dir), what=str(self.data_dir))
        train_idx, val_idx = stratified_split(full.labels, self.val_size, self.split_seed)
        return full.subset(train_idx), full.subset(val_idx)

    def _load_test(self) -> TensorImageDataset:
        if self.test_dir is None:
            if self.val_set is None:
                self.train_set, self.val_set = self._load_fit()
                self.train_set.transform = self._per_image
            rank_zero_info("no test_dir: `test` scores the validation split")
            return self.val_set
        return self._decode(*self._scan(self.test_dir), what=str(self.test_dir))[0]


class Flowers17DataModule(ImageFolderDataModule):
    """Oxford 17 Category Flowers (Nilsback & Zisserman 2006) in its published layout: ``data_dir/jpg/
    image_0001.jpg`` ... ``image_1360.jpg`` (also found under ``data_dir/17flowers/jpg`` or directly in
    ``data_dir``), 80 images per class in index order.

    With ``datasplits.mat`` beside the images (or in ``data_dir``), the official split ``split`` (1, 2 or 3:
    40 train / 20 val / 20 test per class) is used; without it, a stratified split seeded by ``split_seed``
    with the same shares. ``download``: fetch ``17flowers.tgz`` and ``datasplits.mat`` from the VGG site.
    The other arguments are those of ``ImageFolderDataModule`` (``classes`` takes the names of
    ``FLOWERS17_CLASSES``).
    """

    def __init__(
        self,
        data_dir: str = "data/flowers17",
        download: bool = False,
        split: Literal[1, 2, 3] = 1,
        classes: list[str] | None = None,
        max_per_class: int | None = None,
        image_size: int = 32,
        resize: Literal["squash", "crop"] = "squash",
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        stats: Literal["default", "dataset", "cifar10", "cifar100", "imagenet", "inception"] = "default",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: str | list[dict[str, Any]] | None = "none",
        augment_on_device: bool | Literal["auto"] = "auto",
    ):
        super().__init__(
            data_dir, classes, max_per_class, image_size, resize, 0.25, split_seed, None, batch_size,
            eval_batch_size, num_workers, pin_memory, stats, mean, std, augment, augment_on_device,
        )  # fmt: skip
        self.save_hyperparameters()
        self.download = download
        self.split = split
        self._splits: dict[str, torch.Tensor] | None = None

    def _class_names(self, root: Path) -> list[str]:
        if self.class_subset is None:
            return list(FLOWERS17_CLASSES)
        unknown = [c for c in self.class_subset if c not in FLOWERS17_CLASSES]
        if unknown:
            raise ValueError(f"no Flowers17 class {unknown}; the classes are {FLOWERS17_CLASSES}")
        return self.class_subset

    def _image_dir(self) -> Path | None:
        for d in (self.data_dir / "jpg", self.data_dir / "17flowers" / "jpg", self.data_dir):
            if (d / "image_0001.jpg").is_file():
                return d
        return None

    def prepare_data(self) -> None:
        if self._image_dir() is not None:
            return
        if not self.download:
            raise FileNotFoundError(
                f"'{self.data_dir}' holds no Oxford 17 Flowers layout (jpg/image_0001.jpg ...); pass "
                f"--data.data_dir with the folder that contains jpg/, or --data.download true (needs internet). "
                f"A copy in class folders reads with ImageFolderDataModule instead"
            )
        from torchvision.datasets.utils import download_and_extract_archive, download_url

        try:
            download_and_extract_archive(FLOWERS17_URL + "17flowers.tgz", str(self.data_dir))
            download_url(FLOWERS17_URL + "datasplits.mat", str(self.data_dir))
        except OSError as e:
            raise RuntimeError(
                f"could not download Oxford 17 Flowers into '{self.data_dir}' ({e}); with no internet, copy its "
                f"jpg/ folder there by hand"
            ) from None

    def _scan(self, root: Path) -> tuple[list[Path], torch.Tensor]:
        self.prepare_data()
        image_dir = self._image_dir()
        assert image_dir is not None
        numbers = sorted(
            int(m.group(1)) for p in image_dir.iterdir() if (m := re.fullmatch(r"image_(\d{4})\.jpg", p.name))
        )
        if numbers[-1] > 1360:
            raise ValueError(f"'{image_dir}' has image_{numbers[-1]:04d}.jpg; Oxford 17 Flowers ends at 1360")
        wanted = {FLOWERS17_CLASSES.index(c): i for i, c in enumerate(self.classes)}
        numbers = [n for n in numbers if (n - 1) // 80 in wanted]
        self._numbers = torch.tensor(numbers)
        labels = torch.tensor([wanted[(n - 1) // 80] for n in numbers], dtype=torch.long)
        return [image_dir / f"image_{n:04d}.jpg" for n in numbers], labels

    def _official_splits(self) -> dict[str, torch.Tensor] | None:
        image_dir = self._image_dir()
        candidates = [self.data_dir / "datasplits.mat"] + (
            [image_dir.parent / "datasplits.mat"] if image_dir else []
        )
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        from scipy.io import loadmat

        mat = loadmat(path)
        return {
            part: torch.from_numpy(np.asarray(mat[f"{key}{self.split}"]).astype(np.int64).ravel())
            for part, key in (("train", "trn"), ("val", "val"), ("test", "tst"))
        }

    def _load_all(self) -> None:
        """Decode once and cut train/val/test: official split or seeded 50/25/25 per class."""
        full, kept = self._decode(*self._scan(self.data_dir), what=f"Oxford 17 Flowers in {self.data_dir}")
        numbers = self._numbers[kept]
        official = self._official_splits()
        if official is not None:
            parts = {k: torch.isin(numbers, v).nonzero().flatten() for k, v in official.items()}
            rank_zero_info(f"Oxford 17 Flowers: official split {self.split}")
        else:
            rest, test = stratified_split(full.labels, 0.25, self.split_seed)
            train, val = stratified_split(full.labels[rest], 1 / 3, self.split_seed + 1)
            parts = {"train": rest[train], "val": rest[val], "test": test}
        self.train_set, self.val_set = full.subset(parts["train"]), full.subset(parts["val"])
        self.train_set.transform = self._per_image
        self.test_set = full.subset(parts["test"])

    def _load_fit(self) -> tuple[TensorImageDataset, TensorImageDataset]:
        self._load_all()
        return self.train_set, self.val_set

    def _load_test(self) -> TensorImageDataset:
        if self.test_set is None:
            self._load_all()
        return self.test_set
