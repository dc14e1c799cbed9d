"""Oxford 17 Category Flowers (Nilsback & Zisserman 2006), in its published layout or in class folders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info

from ..checks import check_class_names
from ..errors import BadFile, BadValue, MissingFile
from ._registry import register_datamodule
from .folder import ImageFolderDataModule
from .tensor_dataset import TensorImageDataset, stratified_split

FLOWERS17_CLASSES = [
    "daffodil", "snowdrop", "lily_valley", "bluebell", "crocus", "iris", "tigerlily", "tulip", "fritillary",
    "sunflower", "daisy", "colts_foot", "dandelion", "cowslip", "buttercup", "windflower", "pansy",
]  # fmt: skip
FLOWERS17_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/"


def _numbered(folder: Path) -> list[tuple[Path, int]]:
    """The ``image_NNNN.jpg`` files in ``folder`` with their numbers (other files are not the dataset's)."""
    found = []
    for p in folder.iterdir():
        if m := re.fullmatch(r"image_(\d{4})\.jpg", p.name):
            n = int(m.group(1))
            if not 1 <= n <= 1360:
                raise BadFile(f"'{p}': Oxford 17 Flowers numbers its images image_0001 to image_1360")
            found.append((p, n))
    return found


@register_datamodule
class Flowers17DataModule(ImageFolderDataModule):
    """Oxford 17 Category Flowers (Nilsback & Zisserman 2006): 1,360 photos, 80 per class in index order, so
    the official label of ``image_NNNN.jpg`` is (NNNN - 1) // 80 in either layout it reads:

    * published: ``data_dir/jpg/image_0001.jpg`` ... ``image_1360.jpg`` (also under ``data_dir/17flowers/jpg``
      or directly in ``data_dir``);
    * class folders: ``data_dir/NN_name/image_NNNN.jpg`` with ``NN_name`` = ``00_daffodil`` ... ``16_pansy``
      (the copy in ``../shared/data/flowers17``); every file must sit in the folder of its official label.

    With ``datasplits.mat`` beside the images (or in ``data_dir``), the official split ``split`` (1, 2 or 3:
    40 train / 20 val / 20 test per class) is used; without it, a stratified split seeded by ``split_seed``
    with the same shares. ``download``: fetch ``17flowers.tgz`` and ``datasplits.mat`` from the VGG site.
    The other arguments are those of ``ImageFolderDataModule`` (``classes`` takes the names of
    ``FLOWERS17_CLASSES``).
    """

    def __init__(
        self,
        data_dir: str = "data/flowers17",
        *,
        download: bool = False,
        split: Literal[1, 2, 3] = 1,
        **kwargs,
    ):
        # The split is the dataset's own (official, or seeded 50/25/25): no val_size, no test_dir.
        super().__init__(data_dir=data_dir, val_size=0.25, test_dir=None, test_size=None, **kwargs)
        if split not in (1, 2, 3):
            raise BadValue(f"split must be 1, 2 or 3 (the official splits of datasplits.mat), got {split!r}")
        self.download = download
        self.split = split
        self._splits: dict[str, torch.Tensor] | None = None

    def _class_names(self, root: Path) -> list[str]:
        if self.class_subset is None:
            return list(FLOWERS17_CLASSES)
        unknown = [c for c in self.class_subset if c not in FLOWERS17_CLASSES]
        if unknown:
            raise BadValue(f"no Flowers17 class {unknown}; the classes are {FLOWERS17_CLASSES}")
        return check_class_names("classes", self.class_subset)

    def _image_dir(self) -> Path | None:
        for d in (self.data_dir / "jpg", self.data_dir / "17flowers" / "jpg", self.data_dir):
            if (d / "image_0001.jpg").is_file():
                return d
        return None

    def _class_dirs(self) -> dict[int, Path]:
        """Official label -> its folder in the class-folder layout (``00_daffodil`` ...); empty if none."""
        folders = {f"{i:02d}_{name}": i for i, name in enumerate(FLOWERS17_CLASSES)}
        if not self.data_dir.is_dir():
            return {}
        return {folders[d.name]: d for d in self.data_dir.iterdir() if d.name in folders and d.is_dir()}

    def prepare_data(self) -> None:
        self._ensure_layout()
        super().prepare_data()  # the decoded-image cache

    def _ensure_layout(self) -> None:
        if self._image_dir() is not None or self._class_dirs():
            return
        if not self.download:
            raise MissingFile(
                f"'{self.data_dir}' holds no Oxford 17 Flowers layout (jpg/image_0001.jpg ..., or class folders "
                f"00_daffodil/ ... 16_pansy/); pass --data.data_dir with the folder that contains them, or "
                f"--data.download true (needs internet)"
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
        self._ensure_layout()
        files = self._files()
        if not files:
            raise BadFile(f"'{self.data_dir}' holds no image_NNNN.jpg files of Oxford 17 Flowers")
        wanted = {FLOWERS17_CLASSES.index(c): i for i, c in enumerate(self.classes)}
        numbers = sorted(n for n in files if (n - 1) // 80 in wanted)
        self._numbers = torch.tensor(numbers)
        labels = torch.tensor([wanted[(n - 1) // 80] for n in numbers], dtype=torch.long)
        return [files[n] for n in numbers], labels

    def _files(self) -> dict[int, Path]:
        """Image number -> file, from the published layout, else from the class folders. The label is the
        number's either way: a file in another class's folder is refused, not relabelled."""
        image_dir = self._image_dir()
        if image_dir is not None:
            return {n: p for p, n in _numbered(image_dir)}
        folders = self._class_dirs()
        missing = [c for c in self.classes if FLOWERS17_CLASSES.index(c) not in folders]
        if missing:
            raise MissingFile(
                f"'{self.data_dir}' has no class folder for {missing} (named NN_class, e.g. 00_daffodil); add "
                f"it, or pass --data.classes with the classes it has"
            )
        files: dict[int, Path] = {}
        for label, folder in folders.items():
            for p, n in _numbered(folder):
                if (n - 1) // 80 != label:
                    official = f"{(n - 1) // 80:02d}_{FLOWERS17_CLASSES[(n - 1) // 80]}"
                    raise BadFile(
                        f"'{p}' is in {folder.name}/, but image {n} is a {official} in the official order "
                        f"(label = (number - 1) // 80); move it to {official}/"
                    )
                files[n] = p
        return files

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
        full, kept = self._decode(self.data_dir, f"Oxford 17 Flowers in {self.data_dir}")
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

    @property
    def test_is_validation(self) -> bool:
        return False  # the official (or seeded) test split is its own

    def _load_fit(self) -> tuple[TensorImageDataset, TensorImageDataset]:
        self._load_all()
        return self.train_set, self.val_set

    def _load_test(self) -> TensorImageDataset:
        if self.test_set is None:
            self._load_all()
        return self.test_set
