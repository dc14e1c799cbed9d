"""CIFAR-10 and CIFAR-100 DataModules over the original pickle layout, held as uint8 tensors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .tensor_dataset import TensorImageDataset, collate_batch, normalize_uint8, seeded_split
from .transforms import Augmentation

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


def read_cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> (N x 3 x 32 x 32 uint8, N int64), for any row count N.

    Cut-down copies keep every label but only the first N pixel rows, so labels are cut to the rows.
    """
    hint = "restore the file, or delete the folder and fetch it again with --data.download true"
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(
            f"{path} is not a readable CIFAR batch file ({type(e).__name__}: {e}); {hint}"
        ) from None
    if not isinstance(d, dict) or b"data" not in d or label_key.encode() not in d:
        keys = (
            sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d) if isinstance(d, dict) else []
        )
        raise ValueError(f"{path} lacks the CIFAR keys 'data' and '{label_key}' (found {keys}); {hint}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key.encode()], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) < len(data):
        raise ValueError(
            f"{path}: 'data' is {data.dtype} {data.shape} with {len(labels)} labels; expected uint8 N x 3072 "
            f"with at least N labels; {hint}"
        )
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels[: len(data)].copy())


class CIFARDataModule(pl.LightningDataModule):
    """Shared machinery of the CIFAR DataModules; use ``CIFAR10DataModule`` or ``CIFAR100DataModule``.

    The training set is split into train and validation by ``val_size`` (a count, or a fraction
    below 1) with ``split_seed``; the official test set is used for ``test`` and ``predict`` only.
    Batches leave the loader as uint8 and are normalised on the training device
    (``on_after_batch_transfer``), by ``mean``/``std`` (defaults: the dataset's own statistics).

    ``augment`` (training data only): a preset name (``none``, ``standard``, ``color_rotate_flip``,
    ``shift_gray``, ``autoaugment_cutout``) or a list of steps (see ``cifar_pl.data.transforms``).
    ``augment_on_device``: ``auto`` runs a pipeline of crop/flip/shift/grayscale/cutout batched on the training device
    and anything else per image in the loader; ``false`` forces per-image; ``true`` insists on batched.
    ``num_workers``: None picks 0 when no per-image augmentation runs (a batch is one tensor index, workers
    would only add copies) and up to 8 loader processes otherwise.
    """

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    default_mean: tuple[float, float, float]
    default_std: tuple[float, float, float]

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: float | int = 0.1,
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: str | list[dict[str, Any]] | None = "none",
        augment_on_device: bool | Literal["auto"] = "auto",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.augmentation = Augmentation.from_config(augment, augment_on_device)  # bad names fail here
        self._batch_augment = self.augmentation.on_batch()
        self._per_image = self.augmentation.per_image()
        self._mixing = None  # built in setup, once num_classes is certain
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = (
            num_workers
            if num_workers is not None
            else (min(8, os.cpu_count() or 1) if self._per_image else 0)
        )
        self.pin_memory = pin_memory
        self.mean = tuple(mean) if mean is not None else self.default_mean
        self.std = tuple(std) if std is not None else self.default_std
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0); got mean={mean}, std={std}")
        self._mean_t = torch.tensor(self.mean)
        self._std_t = torch.tensor(self.std)
        self.train_set: TensorImageDataset | None = None
        self.val_set: TensorImageDataset | None = None
        self.test_set: TensorImageDataset | None = None

    # ---- what the model and the CLI need to know ----
    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

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
            raise FileNotFoundError(
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
        root = self._root()
        parts = [read_cifar_batch(root / f, self.label_key) for f in files]
        return TensorImageDataset(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def setup(self, stage: str | None = None) -> None:
        if self._missing():
            self.prepare_data()  # raises the helpful error (prepare_data is not called outside a Trainer)
        if stage in (None, "fit", "validate") and self.train_set is None:
            full = self._read(self.train_files)
            train_idx, val_idx = seeded_split(len(full), self.val_size, self.split_seed)
            self.train_set, self.val_set = full.subset(train_idx), full.subset(val_idx)
            self.train_set.transform = self._per_image  # validation data is never augmented
            self._mixing = self.augmentation.mixing(self.num_classes)
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self._read(self.test_files)

    # ---- loaders ----
    def _loader(self, dataset: TensorImageDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    # ---- on the device ----
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the float, standardised tensors the net expects."""
        if self._mean_t.device != x.device:
            self._mean_t, self._std_t = self._mean_t.to(x.device), self._std_t.to(x.device)
        return normalize_uint8(x, self._mean_t, self._std_t)

    def augment_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The batched training augmentation of a uint8 batch (identity when the pipeline runs per image)."""
        return self._batch_augment(x) if self._batch_augment is not None else x

    def augment_examples(self, images: torch.Tensor, draws: int) -> torch.Tensor:
        """``draws`` augmented versions of each uint8 image (n x C x H x W -> n x draws x C x H x W), drawn as
        training would draw them; batch-level steps (MixUp, CutMix) are not shown."""
        if self._per_image is not None:
            return torch.stack([torch.stack([self._per_image(img) for _ in range(draws)]) for img in images])
        return self.augment_batch(images.repeat_interleave(draws, 0)).view(
            len(images), draws, *images.shape[1:]
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Only uint8 image batches are ours to normalise (the model summary also sends a float example through).
        if isinstance(batch, torch.Tensor):
            return self.normalize(batch) if batch.dtype == torch.uint8 else batch
        x, *rest = batch
        if x.dtype != torch.uint8:
            return batch
        training = self.trainer is not None and self.trainer.training
        x = self.normalize(self.augment_batch(x) if training else x)
        if training and self._mixing is not None:
            x, y = self._mixing(x, rest[0])
            rest = [y, *rest[1:]]
        return (x, *rest)


class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10 from ``data_dir/cifar-10-batches-py`` (any number of rows per batch file)."""

    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    default_mean = (0.4914, 0.4822, 0.4465)
    default_std = (0.2470, 0.2435, 0.2616)

    @property
    def classes(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    @property
    def label_key(self) -> str:
        return "labels"

    def _torchvision_download(self) -> None:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(self.data_dir), train=True, download=True)


class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100 from ``data_dir/cifar-100-python``, with the 100 fine or the 20 coarse labels."""

    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    default_mean = (0.5071, 0.4865, 0.4409)
    default_std = (0.2673, 0.2564, 0.2762)

    def __init__(self, *args, label_type: Literal["fine", "coarse"] = "fine", **kwargs):
        super().__init__(*args, **kwargs)
        self.label_type = label_type

    @property
    def classes(self) -> list[str]:
        return list(CIFAR100_FINE_CLASSES if self.label_type == "fine" else CIFAR100_COARSE_CLASSES)

    @property
    def label_key(self) -> str:
        return f"{self.label_type}_labels"

    def _torchvision_download(self) -> None:
        from torchvision.datasets import CIFAR100

        CIFAR100(str(self.data_dir), train=True, download=True)
