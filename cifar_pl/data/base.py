"""What every DataModule of this package shares: images held in memory as uint8 tensors, handed out a
batch at a time, augmented and normalised on the training device."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..checks import check_choice, check_number, check_size_or_fraction, choices
from ..errors import BadValue
from .identity import IDENTITY_KEY, digest
from .tensor_dataset import (
    EpochProgress,
    EpochShuffleSampler,
    IndexDataset,
    ResumableLoader,
    TensorImageDataset,
    collate_batch,
    normalize_uint8,
)
from .transforms import Augmentation

Stats = Literal["default", "dataset", "cifar10", "cifar100", "imagenet", "inception", "rescale"]
# Per-channel mean and std of images in [0, 1], by the name a config can give as ``stats``.
STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # Xception, Inception: inputs scaled to [-1, 1]
    "rescale": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # pixels / 255 only (Keras' Rescaling(1/255), ToTensor)
}
assert set(choices(Stats)) == {"default", "dataset", *STATS}


def resolve_stats(
    stats: str, mean: Sequence[float] | None, std: Sequence[float] | None, default_stats: str
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The normalisation a DataModule's arguments ask for: explicit ``mean``/``std``, else the named ``stats``
    (``default``: the DataModule's own); None for ``dataset`` (the training split's own statistics)."""
    check_choice("stats", stats, Stats)
    if (mean is None) != (std is None):
        raise BadValue("give both mean and std, or neither (then `stats` decides)")
    if mean is not None:
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise BadValue(f"mean and std need 3 values each (std > 0); got mean={mean}, std={std}")
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    name = default_stats if stats == "default" else stats
    return STATS.get(name)


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1]) of N x C x H x W uint8 images, in chunks to bound memory."""
    return TensorImageDataset(images, torch.zeros(len(images))).channel_stats(chunk)


class InMemoryImageDataModule(pl.LightningDataModule):
    """Base of the DataModules: a subclass says what the classes are and how to read its splits
    (``_load_fit`` -> train and validation sets, ``_load_test`` -> test set), all as ``TensorImageDataset``.

    Batches leave the loader as uint8 and are augmented (training only) and normalised on the training device
    in ``on_after_batch_transfer``, by ``mean``/``std`` if given, else by the named ``stats`` (``dataset``:
    the training split's own per-channel statistics, computed once and kept in the checkpoint).

    Args:
        data_dir: where the data is.
        val_size: validation share of the training data: a fraction in (0, 1) or a count of images; 0 trains on
            every image and validates on none (CIFAR; set ``checkpoint.monitor: null``, nothing is validated).
        split_seed: seed of the train/validation split.
        batch_size: training batch size (per device).
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        num_workers: loader processes; None picks 0 when no per-image augmentation runs (a batch is one tensor
            index, workers would only add copies) and up to 8 otherwise.
        pin_memory: pin batches in page-locked memory when a GPU is used.
        stats: named normalisation (``default``: the DataModule's own; ``dataset``: computed from the training
            split).
        mean, std: explicit normalisation (both or neither), in [0, 1] units.
        augment: training augmentation, a preset name (``none``, ``standard``, ``color_rotate_flip``,
            ``shift_gray``, ``autoaugment_cutout``) or a list of steps (see ``cifar_pl.data.transforms``).
        augment_on_device: ``auto`` runs a pipeline of crop/flip/shift/grayscale/cutout batched on the training
            device and anything else per image in the loader; ``false`` forces per-image; ``true`` insists on
            batched.
        resident: move the uint8 training set to the training device once, at the first batch, and gather each
            batch there by index (the loader hands out indices only: no per-batch copy from the host). Needs a
            batched augmentation (per-image steps run in the loader, which then never sees an image). On a CPU
            the images already are where training runs: batches are gathered from them in place.
        drop_last: leave out each epoch's last, smaller training batch (as the speed recipes do: every step has
            the same size).
    """

    default_stats: str = "dataset"
    image_size: int = 32  # side of the square images handed out; a subclass may set it before __init__

    def __init__(
        self,
        data_dir: str = "data",
        val_size: int | float = 0.1,
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        stats: Stats = "default",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: str | list[dict[str, Any]] | None = "none",
        augment_on_device: bool | Literal["auto"] = "auto",
        resident: bool = False,
        drop_last: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()  # also collects a subclass's own arguments
        check_number("batch_size", batch_size, 1, integer=True)
        if eval_batch_size is not None:
            check_number("eval_batch_size", eval_batch_size, 1, integer=True)
        if num_workers is not None:
            check_number("num_workers", num_workers, 0, integer=True)
        check_number("split_seed", split_seed, integer=True)
        if val_size != 0:  # 0: train on every image and validate on none
            check_size_or_fraction("val_size", val_size)
        if not isinstance(drop_last, bool):
            raise BadValue(f"drop_last must be true or false, got {drop_last!r}")
        self.drop_last = drop_last
        self.augmentation = Augmentation.from_config(
            augment, augment_on_device, self.image_size
        )  # bad values fail here
        self._batch_augment = self.augmentation.on_batch()
        self._per_image = self.augmentation.per_image()
        if not isinstance(resident, bool):
            raise BadValue(f"resident must be true or false, got {resident!r}")
        if resident and self._per_image is not None:
            slow = [s["name"] for s in self.augmentation.image_steps]
            raise BadValue(
                f"resident: true gathers batches on the device, where only batched augmentation runs, but "
                f"{', '.join(slow)} runs per image in the loader; use batched steps only or resident: false"
            )
        if self.augmentation.needs_index and not resident:
            raise BadValue(
                "augment step alternating_flip needs resident: true (it knows images by their index)"
            )
        self.resident = resident
        self._resident_on: dict[torch.device, torch.Tensor] = {}
        self._mixing = None  # built in setup, once num_classes is certain
        self.data_dir = Path(data_dir).expanduser()
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
        self.stats = self.default_stats if stats == "default" else stats
        given = resolve_stats(stats, mean, std, self.default_stats)
        self._mean_t, self._std_t = (
            (torch.tensor(given[0]), torch.tensor(given[1])) if given else (None, None)
        )
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._progress = EpochProgress()
        self.train_set: TensorImageDataset | None = None
        self.val_set: TensorImageDataset | None = None
        self.test_set: TensorImageDataset | None = None

    # ---- what a subclass provides ----
    @property
    def classes(self) -> list[str]:
        """Class names in label order (the CLI links them into the model, so they land in the checkpoint)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _load_fit(self) -> tuple[TensorImageDataset, TensorImageDataset]:
        raise NotImplementedError

    def _load_test(self) -> TensorImageDataset:
        raise NotImplementedError

    # ---- splits ----
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            self.train_set, self.val_set = self._load_fit()
            self.train_set.transform = self._per_image  # validation data is never augmented
            self._mixing = self.augmentation.mixing(self.num_classes)
        if stage in (None, "fit"):
            self._check_steps()
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self._load_test()

    def _check_steps(self) -> None:
        """drop_last with a batch larger than a process's share of the training split leaves no step: the run
        would train nothing, record itself complete and test the untrained net."""
        processes = max(int(getattr(self.trainer, "world_size", 1) or 1), 1)
        rows = len(self.train_set) // processes
        if self.drop_last and rows < self.batch_size:
            raise BadValue(
                f"data.drop_last true with data.batch_size {self.batch_size} leaves no training step: the training "
                f"split has {rows} images{' per process' if processes > 1 else ''}; lower data.batch_size to at "
                f"most {rows} or set data.drop_last false"
            )

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self._stats()[0].tolist())

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self._stats()[1].tolist())

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._mean_t is None:  # stats: dataset, and no checkpoint gave them: from the training split
            if self.train_set is None:
                self.train_set, self.val_set = self._load_fit()
                self.train_set.transform = self._per_image
            mean, std = self.train_set.channel_stats()
            self._mean_t, self._std_t = torch.tensor(mean), torch.tensor(std)
        return self._mean_t, self._std_t

    def state_dict(self) -> dict[str, Any]:
        # The normalisation a model was trained with, and what it was trained on, travel in its checkpoint.
        mean, std = self._stats()
        state = {"mean": mean.tolist(), "std": std.tolist(), "image_size": self.image_size}
        if self.train_set is not None:
            state[IDENTITY_KEY] = self.data_identity()
        return state

    def data_identity(self) -> dict[str, Any]:
        """What this DataModule trains on, as plain values (``cifar_pl.data.identity``): class names, a digest of
        the source data, the split seed, each part's size and a digest of which images each part holds. Computed
        once; loads the splits if they are not yet."""
        if getattr(self, "_identity", None) is None:
            if self.train_set is None:
                self.setup("fit")
            self._identity = {
                "datamodule": type(self).__name__, "classes": self.classes, "split_seed": self.split_seed,
                "sizes": {"train": len(self.train_set), "val": len(self.val_set)}, **self._source_and_split(),
            }  # fmt: skip
        return self._identity

    def _source_and_split(self) -> dict[str, Any]:
        """``source`` (a digest of the data the parts are drawn from), ``images`` (how many) and ``split`` (a digest
        of which images each part holds). Here: the content of the parts themselves; a DataModule that knows its
        files or rows says it independently of preprocessing."""
        parts = (self.train_set, self.val_set)
        content = digest(*(p.take(slice(i, i + 4096)) for p in parts for i in range(0, len(p), 4096)),
                         *(p.labels for p in parts))  # fmt: skip
        return {"source": content, "images": sum(len(p) for p in parts), "split": content}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "mean" in state_dict and "std" in state_dict:
            self._mean_t, self._std_t = torch.tensor(state_dict["mean"]), torch.tensor(state_dict["std"])
            self._on_device.clear()

    # ---- loaders ----
    def _loader(self, dataset: TensorImageDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        # Training order from (seed, epoch) alone, and a generator of the loader's own for its worker seeds: the
        # global generator (dropout, augmentation) is never touched by the loaders, so a resumed run repeats.
        seed = torch.initial_seed() % 2**31
        common = dict(
            batch_size=self.batch_size if train else self.eval_batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_batch,
            generator=torch.Generator().manual_seed(seed),
        )
        if not train:
            return DataLoader(dataset, **common)
        if self.resident:  # indices and labels only; the images are gathered on the device
            dataset = IndexDataset(dataset.labels)
            common.update(num_workers=0, persistent_workers=False, pin_memory=False)
        self._progress = EpochProgress()
        return ResumableLoader(dataset, sampler=EpochShuffleSampler(len(dataset), seed), progress=self._progress,
                               drop_last=self.drop_last, **common)  # fmt: skip

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
        """uint8 images -> the float, standardised tensors the net expects, on ``x``'s device."""
        if x.device not in self._on_device:  # a few bytes per device; never moved back and forth per batch
            mean, std = self._stats()
            self._on_device[x.device] = (mean.to(x.device), std.to(x.device))
        return normalize_uint8(x, *self._on_device[x.device])

    def augment_batch(
        self, x: torch.Tensor, index: torch.Tensor | None = None, epoch: int = 0
    ) -> torch.Tensor:
        """The batched training augmentation of a uint8 batch (identity when the pipeline runs per image);
        ``index``: the images' positions in the training set (needed by ``alternating_flip``)."""
        return self._batch_augment(x, index, epoch) if self._batch_augment is not None else x

    def resident_images(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 training images at ``index``, gathered on ``index``'s device (the whole training set is moved
        there once, at the first call; on the CPU it is read in place)."""
        device = index.device
        if device.type == "cpu":
            return self.train_set.take(index)
        if device not in self._resident_on:
            self._resident_on[device] = self.train_set.images.to(device)
        return self._resident_on[device][index]

    def augment_examples(self, images: torch.Tensor, draws: int) -> torch.Tensor:
        """``draws`` augmented versions of each uint8 image (n x C x H x W -> n x draws x C x H x W, uint8), drawn
        as training would draw them; batch-level steps (MixUp, CutMix) are not shown, and float steps' output is
        shown clipped to [0, 255]."""
        if self._per_image is not None:
            return torch.stack([torch.stack([self._per_image(img) for _ in range(draws)]) for img in images])
        # an index-keyed step (alternating_flip) shows each image in ``draws`` successive epochs
        index = torch.arange(len(images), device=images.device)
        if self.augmentation.needs_index:
            x = torch.stack([self.augment_batch(images, index, epoch) for epoch in range(draws)], 1)
        else:
            x = self.augment_batch(images.repeat_interleave(draws, 0), index.repeat_interleave(draws))
            x = x.view(len(images), draws, *images.shape[1:])
        return x if x.dtype == torch.uint8 else x.mul(255).round_().clamp_(0, 255).to(torch.uint8)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Only uint8 image batches are ours to normalise (the model summary also sends a float example through).
        if isinstance(batch, torch.Tensor):
            return self.normalize(batch) if batch.dtype == torch.uint8 else batch
        x, *rest = batch
        training = self.trainer is not None and self.trainer.training
        index = None
        if self.resident and training and x.dim() == 1:  # indices into the resident training set
            index, x = x, self.resident_images(x)
        if x.dtype != torch.uint8:
            return batch
        epoch = getattr(self.trainer, "current_epoch", 0) if training else 0
        if training:  # the place in the epoch that a checkpoint written after this step records
            self._progress.advance(epoch)
        x = self.normalize(self.augment_batch(x, index, epoch) if training else x)
        if training and self._mixing is not None:
            x, y = self._mixing(x, rest[0])
            rest = [y, *rest[1:]]
        return (x, *rest)
