"""CIFAR-10 and CIFAR-100 DataModules over the original pickle layout, held as uint8 tensors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..checks import check_choice, check_number
from ..errors import BadFile, MissingFile
from ._registry import register_datamodule
from .base import InMemoryImageDataModule
from .corrupt import Corruption, apply_corruption, channel_stats_255, pixel_permutation
from .identity import digest
from .tensor_dataset import TensorImageDataset, seeded_split

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_FINE_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip
CIFAR100_COARSE_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]  # fmt: skip


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch file can run no code."""

    _ALLOWED = {
        ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol 2 (files re-saved under Python 3)
    }  # fmt: skip

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays")
        if module == "numpy.core.multiarray":  # files written under numpy 1; numpy 2 moved it
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_cifar_batch(
    path: Path, label_key: str, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> (N x 3 x 32 x 32 uint8, N int64), for any row count N; with ``num_classes``, every
    label must be one of them (a wrong label would otherwise fail deep inside the loss, naming no file).

    Cut-down copies keep every label but only the first N pixel rows, so labels are cut to the rows.
    """
    hint = "restore the file, or delete the folder and fetch it again with --data.download true"
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise BadFile(
            f"{path} is not a readable CIFAR batch file ({type(e).__name__}: {e}); {hint}"
        ) from None
    if not isinstance(d, dict) or b"data" not in d or label_key.encode() not in d:
        keys = (
            sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d) if isinstance(d, dict) else []
        )
        raise BadFile(f"{path} lacks the CIFAR keys 'data' and '{label_key}' (found {keys}); {hint}")
    data = np.asarray(d[b"data"])
    try:
        labels = np.asarray(d[label_key.encode()], dtype=np.int64)
    except (TypeError, ValueError):
        raise BadFile(f"{path}: '{label_key}' is not a list of whole numbers; {hint}") from None
    if (
        data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or labels.ndim != 1
        or len(labels) < len(data)
    ):
        raise BadFile(
            f"{path}: 'data' is {data.dtype} {data.shape} with {len(labels)} labels; expected uint8 N x 3072 "
            f"with at least N labels; {hint}"
        )
    labels = labels[: len(data)]
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        row = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise BadFile(
            f"{path}: '{label_key}' of row {row} is {labels[row]}, outside 0..{num_classes - 1} "
            f"({num_classes} classes); {hint}"
        )
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.copy())


class CIFARDataModule(InMemoryImageDataModule):
    """Shared machinery of the CIFAR DataModules; use ``CIFAR10DataModule`` or ``CIFAR100DataModule``.

    The training set is split into train and validation by ``val_size`` (a count, or a fraction
    below 1) with ``split_seed``; the official test set is used for ``test`` and ``predict`` only.
    ``download``: fetch the dataset through torchvision when ``data_dir`` lacks it (needs internet).
    ``train_size``: keep only this many training images (a seeded subset of the training split), e.g. for
    memorisation experiments on a budget.

    ``corrupt`` (Zhang et al. 2017, see ``cifar_pl.data.corrupt``), fixed by ``corrupt_seed``:
    ``labels`` (each training label replaced with probability ``corrupt_prob`` by a uniformly drawn class),
    ``shuffled_pixels`` (one pixel permutation for train, validation and test alike), ``random_pixels`` (a fresh
    permutation per training image), ``gaussian`` (each training image replaced by i.i.d. Gaussian pixels with
    the training split's per-channel mean and std, as Zhang et al. did), ``gaussian_per_image`` (noise with each
    image's own per-channel mean and std, as write-up 000 did). The test set stays clean except under ``shuffled_pixels``; the validation split is corrupted
    like training when ``corrupt_val`` (the default), clean otherwise.
    Normalisation defaults to the dataset's published statistics; the other arguments are those of
    ``InMemoryImageDataModule`` (batch sizes, loader workers, ``augment``, ``stats``/``mean``/``std``).
    """

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]

    def __init__(
        self,
        data_dir: str = "data",
        *,
        download: bool = False,
        train_size: int | None = None,
        corrupt: Corruption = "none",
        corrupt_prob: float = 1.0,
        corrupt_seed: int = 0,
        corrupt_val: bool = True,
        **kwargs,
    ):
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download
        check_choice("corrupt", corrupt, Corruption)
        check_number("corrupt_prob", corrupt_prob, 0, 1)
        check_number("corrupt_seed", corrupt_seed, integer=True)
        if train_size is not None:
            check_number("train_size", train_size, 1, integer=True, hint="or null for all training images")
        self.train_size = train_size
        self.corrupt, self.corrupt_prob, self.corrupt_seed, self.corrupt_val = (
            corrupt, corrupt_prob, corrupt_seed, corrupt_val,
        )  # fmt: skip
        self._gauss_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def label_key(self) -> str:
        raise NotImplementedError

    # ---- locating and reading the files ----
    def _root(self) -> Path:
        """The folder holding the batch files: ``data_dir/<folder>``, or ``data_dir`` itself."""
        for root in (self.data_dir / self.folder, self.data_dir):
            if all((root / f).is_file() for f in self.train_files + self.test_files):
                return root
        return self.data_dir / self.folder

    def _missing(self) -> list[str]:
        root = self._root()
        return [f for f in self.train_files + self.test_files if not (root / f).is_file()]

    def _torchvision_download(self) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        missing = self._missing()
        if not missing:
            return
        if not self.download:
            raise MissingFile(
                f"data_dir '{self.data_dir}' holds no complete {self.folder}/ (missing: {', '.join(missing)}); "
                f"pass --data.data_dir with the folder that contains {self.folder}/, "
                f"or --data.download true to fetch it (needs internet)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._torchvision_download()
        except OSError as e:  # URLError is an OSError
            raise RuntimeError(
                f"could not download {self.folder} into '{self.data_dir}' ({e}); with no internet, copy the "
                f"{self.folder}/ folder there by hand and pass --data.data_dir"
            ) from None

    def _read(self, files: tuple[str, ...]) -> TensorImageDataset:
        if self._missing():
            self.prepare_data()  # raises the helpful error (prepare_data is not called outside a Trainer)
        root = self._root()
        parts = [read_cifar_batch(root / f, self.label_key, self.num_classes) for f in files]
        return TensorImageDataset(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def _load_fit(self) -> tuple[TensorImageDataset, TensorImageDataset]:
        full = self._read(self.train_files)
        train_idx, val_idx = seeded_split(len(full), self.val_size, self.split_seed)
        if self.train_size is not None and self.train_size < len(train_idx):
            keep = torch.randperm(
                len(train_idx), generator=torch.Generator().manual_seed(self.split_seed + 1)
            )
            train_idx = train_idx[keep[: self.train_size].sort().values]
        # the batch files' rows as read and which of them each part holds, before any corruption (a config value)
        self._source_and_split_ids = {"source": digest(full.images, full.labels), "images": len(full),
                                      "split": digest(train_idx, val_idx)}  # fmt: skip
        train = full.subset(train_idx)
        # Zhang's Gaussian images match the clean training split's statistics, in every corrupted split.
        self._gauss_stats = channel_stats_255(train.images) if self.corrupt == "gaussian" else None
        train = self._corrupted(train, self.corrupt_seed)
        val = full.subset(val_idx)
        return train, (self._corrupted(val, self.corrupt_seed + 1) if self.corrupt_val else val)

    def _source_and_split(self) -> dict:
        ids = getattr(self, "_source_and_split_ids", None)
        return dict(ids) if ids else super()._source_and_split()

    def _load_test(self) -> TensorImageDataset:
        test = self._read(self.test_files)
        return self._corrupted(test, self.corrupt_seed + 2) if self.corrupt == "shuffled_pixels" else test

    def _corrupted(self, data: TensorImageDataset, seed: int) -> TensorImageDataset:
        if self.corrupt == "none":
            return data
        # One permutation for every split: drawn from corrupt_seed alone.
        perm = pixel_permutation(*data.images.shape[2:], torch.Generator().manual_seed(self.corrupt_seed))
        images, labels = apply_corruption(
            self.corrupt, data.images, data.labels, p=self.corrupt_prob, num_classes=self.num_classes,
            seed=seed, perm=perm, stats=self._gauss_stats,
        )  # fmt: skip
        return TensorImageDataset(images, labels)


@register_datamodule
class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10 from ``data_dir/cifar-10-batches-py`` (any number of rows per batch file)."""

    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    default_stats = "cifar10"

    @property
    def classes(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    @property
    def label_key(self) -> str:
        return "labels"

    def _torchvision_download(self) -> None:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(self.data_dir), train=True, download=True)


@register_datamodule
class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100 from ``data_dir/cifar-100-python``, with the 100 fine or the 20 coarse labels."""

    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    default_stats = "cifar100"

    def __init__(self, data_dir: str = "data", *, label_type: Literal["fine", "coarse"] = "fine", **kwargs):
        self.label_type = check_choice("label_type", label_type, ("fine", "coarse"))  # classes depend on it
        super().__init__(data_dir, **kwargs)

    @property
    def classes(self) -> list[str]:
        return list(CIFAR100_FINE_CLASSES if self.label_type == "fine" else CIFAR100_COARSE_CLASSES)

    @property
    def label_key(self) -> str:
        return f"{self.label_type}_labels"

    def _torchvision_download(self) -> None:
        from torchvision.datasets import CIFAR100

        CIFAR100(str(self.data_dir), train=True, download=True)
