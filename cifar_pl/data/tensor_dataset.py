"""Images kept as one uint8 tensor in memory, handed out a whole batch at a time."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..checks import check_size_or_fraction
from ..errors import BadValue


class TensorImageDataset(Dataset):
    """``images`` N x C x H x W uint8 and ``labels``, indexed a batch at a time.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one tensor index instead of
    stacking 128 single images: uint8 stays uint8 (4x less to move than float) and conversion to
    float and normalisation happen on the training device, once per batch.

    ``rows``: the dataset is these rows of ``images`` (a split of a memory-mapped cache: nothing is copied until a
    batch is read); ``labels`` then has one label per row. ``sums``: each image's per-channel sum and sum of
    squares (N x 2 x 3, from the cache), so ``channel_stats`` needs no pass over the pixels.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        rows: torch.Tensor | None = None,
        sums: np.ndarray | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be an N x C x H x W uint8 tensor, got {images.dtype} {tuple(images.shape)}"
            )
        n = len(rows) if rows is not None else len(images)
        if n != len(labels):
            raise ValueError(f"{n} images but {len(labels)} labels")
        self._images = images
        self.rows = rows
        self.sums = sums
        self.labels = labels.long()
        self.transform = transform  # per-image (uint8 C x H x W -> uint8 C x H x W), in the loader

    @property
    def images(self) -> torch.Tensor:
        """Every image of the dataset (a view of an in-memory set; for rows of a cache, a copy: use ``take``)."""
        return self._images if self.rows is None else self._images[self.rows]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._images.shape[1:])

    def take(self, index) -> torch.Tensor:
        """The uint8 images at ``index`` (positions in this dataset: an int, a slice, a list or a tensor)."""
        if self.rows is None:
            return self._images[index]
        rows = self.rows[index]
        return self._images[rows] if rows.dim() else self._images[int(rows)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.take(index)
        return (self.transform(img) if self.transform else img), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = self.take(idx)
        if self.transform is not None:
            images = torch.stack([self.transform(img) for img in images])
        return images, self.labels[idx]

    def subset(self, indices: torch.Tensor) -> TensorImageDataset:
        """A new dataset holding the rows ``indices``: for an in-memory set a copy (the split owns its rows); for
        rows of a cache, the row numbers only."""
        if self.rows is None and self.sums is None:
            return TensorImageDataset(self._images[indices], self.labels[indices])
        base = self.rows if self.rows is not None else torch.arange(len(self._images))
        return TensorImageDataset(self._images, self.labels[indices], rows=base[indices], sums=self.sums)

    def channel_stats(self, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std (in [0, 1]) of the dataset's images: from the cache's per-image sums when
        there are some, else in chunks of the pixels (to bound memory)."""
        c, h, w = self.image_shape
        if self.sums is not None:
            rows = self.rows.numpy() if self.rows is not None else slice(None)
            total = torch.from_numpy(self.sums[rows].sum(0))  # 2 x C
            s, sq = total[0], total[1]
        else:
            s = torch.zeros(c, dtype=torch.float64)
            sq = torch.zeros_like(s)
            for i in range(0, len(self), chunk):
                x = self.take(slice(i, i + chunk)).to(torch.float64).div_(255)
                s += x.sum(dim=(0, 2, 3))
                sq += x.square().sum(dim=(0, 2, 3))
        n = len(self) * h * w
        mean = s / n
        std = (sq / n - mean.square()).clamp_min(1e-12).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())


class IndexDataset(Dataset):
    """Positions 0..N-1 with their labels: the loader of a device-resident training set hands out only these, and
    the images are gathered where they live (``InMemoryImageDataModule(resident=True)``)."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(index), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return idx, self.labels[idx]


def collate_batch(batch):
    """Collate for ``TensorImageDataset``: ``__getitems__`` already returned the stacked batch."""
    return batch


def _n_val(n: int, val_size: int | float) -> int:
    size = check_size_or_fraction("val_size", val_size, total=n)
    return round(size * n) if isinstance(size, float) else size


def seeded_split(n: int, val_size: int | float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a train/val split of ``n`` rows: ``val_size`` as a count or a fraction, same for a seed."""
    if val_size == 0:  # every row trains
        return torch.arange(n), torch.zeros(0, dtype=torch.long)
    n_val = _n_val(n, val_size)
    if not 0 < n_val < n:
        raise BadValue(f"val_size={val_size} leaves {n - n_val} training and {n_val} validation rows out of {n}; "
                       f"choose a val_size that leaves both sides non-empty")  # fmt: skip
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def normalize_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W in [0, 255] -> float, standardised per channel (mean/std given for [0, 1]). A float
    batch is taken as already in [0, 1] units (what the float augmentation steps hand on, unrounded)."""
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def stratified_split(
    labels: torch.Tensor, val_size: int | float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like ``seeded_split``, but every class gives the same share to validation (a count ``val_size`` is
    spread over the classes in proportion to their sizes), so small classes are never left out of either side.
    """
    train, val, _ = stratified_split3(labels, val_size, None, seed)
    return train, val


def _fraction(name: str, size: int | float, n: int) -> float:
    size = check_size_or_fraction(name, size, total=n)
    return size if isinstance(size, float) else size / max(1, n)


def stratified_split3(
    labels: torch.Tensor, val_size: int | float, test_size: int | float | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train / validation / test indices, every class giving the same shares (fractions of the whole, or counts
    spread over the classes); each class keeps at least one training image. Seeded; with ``test_size`` None the
    test part is empty and the split is exactly ``stratified_split``'s."""
    n = len(labels)
    val_frac = _fraction("val_size", val_size, n)
    test_frac = _fraction("test_size", test_size, n) if test_size is not None else 0.0
    if val_frac + test_frac >= 1:
        raise BadValue(
            f"val_size {val_size} and test_size {test_size} leave no training images; make them smaller"
        )
    gen = torch.Generator().manual_seed(seed)
    train, val, test = [], [], []
    for c in labels.unique(sorted=True):
        rows = (labels == c).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n_val = min(len(rows) - 1, round(val_frac * len(rows)))  # each class keeps a training row
        n_test = min(len(rows) - 1 - n_val, round(test_frac * len(rows)))
        val.append(rows[:n_val])
        test.append(rows[n_val : n_val + n_test])
        train.append(rows[n_val + n_test :])
    return tuple(torch.cat(part).sort().values for part in (train, val, test))  # type: ignore[return-value]


def stable_key(seed: int, key: str) -> float:
    """A number in [0, 1) drawn from ``seed`` and ``key`` alone (a file's path): the same key always gets it."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hashed_split3(
    keys: Sequence[str], labels: torch.Tensor, val_size: int | float, test_size: int | float | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train / validation / test indices where each item's part depends only on its own key (a photo's path below
    the collection's root) and ``seed``: ``stable_key`` below ``val_size`` (a fraction, or a count as a share of
    the whole) is validation, below ``val_size + test_size`` test, the rest training. Adding or removing items never
    moves another one, so a validation photo is never trained on when the collection grows; the shares are close to
    the ones asked for (binomial: 20 % of 300 photos is 60 +- 7), not exact. In each class, so that no part is empty
    by chance: a class keeps at least one training image, and one validation (test) image when it has two (three)
    or more, taken from the training images nearest the boundary. Two exceptions to "never moves another one",
    both at the edges: in a class whose own keys put none of its images in a part, the image taken for that part is
    the nearest one, which an added image can replace (in a class of two or three images); and ``val_size`` given
    as a count is a share of the collection's size, so when the size changes the boundary moves with it and the
    images nearest it change part (give a fraction for a split that stays put)."""
    n = len(keys)
    if n != len(labels):
        raise ValueError(f"{n} keys but {len(labels)} labels")
    val_frac = _fraction("val_size", val_size, n)
    test_frac = _fraction("test_size", test_size, n) if test_size is not None else 0.0
    if val_frac + test_frac >= 1:
        raise BadValue(
            f"val_size {val_size} and test_size {test_size} leave no training images; make them smaller"
        )
    u = torch.tensor([stable_key(seed, k) for k in keys], dtype=torch.float64)
    part = torch.zeros(n, dtype=torch.long)  # 0 train, 1 validation, 2 test
    part[u < val_frac] = 1
    part[(u >= val_frac) & (u < val_frac + test_frac)] = 2
    for c in labels.unique(sorted=True):
        rows = (labels == c).nonzero().flatten()
        rows = rows[u[rows].argsort()]
        if not (part[rows] == 0).any():
            part[rows[-1]] = 0
        for p, frac, least in ((1, val_frac, 2), (2, test_frac, 3)):
            train = rows[part[rows] == 0]
            if frac > 0 and len(rows) >= least and not (part[rows] == p).any() and len(train) >= 2:
                part[train[0]] = p
    return tuple((part == p).nonzero().flatten() for p in (0, 1, 2))  # type: ignore[return-value]


class EpochShuffleSampler(DistributedSampler):
    """A random order of ``n`` rows that depends only on ``seed`` and the epoch (Lightning calls ``set_epoch``),
    so a run resumed at epoch E sees exactly the batches an uninterrupted run would. ``resume(epoch, skip)``
    makes the next pass over that epoch start after its first ``skip`` rows (a run stopped mid-epoch).

    Under DDP (torch.distributed initialised when the order is drawn) process r of w takes rows r, r + w, ... of
    the same order, cut to a multiple of w: the rows of a step's batches on all processes together are the rows
    of that step's batch of one process with a w times larger batch, so DDP trains on what one process would (a
    DistributedSampler, so Lightning does not wrap it in its own, which would reorder the rows)."""

    def __init__(
        self, n: int, seed: int
    ):  # no DistributedSampler.__init__: the processes are known at iteration
        self.n, self.seed, self.epoch = n, seed, 0
        self._resume: tuple[int, int] | None = None

    @staticmethod
    def _processes() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        self._resume = (epoch, skip)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen)
        rank, world = self._processes()
        if world > 1:
            order = order[rank : self.n // world * world : world]
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1] :]  # rows of this process's share
        self._resume = None
        return iter(order.tolist())

    def __len__(self) -> int:
        rank, world = self._processes()
        return self.n // world if world > 1 else self.n


@dataclass
class EpochProgress:
    """How many training batches of which epoch have gone through training (counted where a batch reaches the
    device, so batches a loader has prefetched but training has not used do not count)."""

    epoch: int = -1
    batches: int = 0

    def advance(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, 0
        self.batches += 1


class ResumableLoader(DataLoader):
    """The training DataLoader, with its place in the epoch as state: Lightning saves ``state_dict()`` of a
    training loader that has one in every checkpoint and gives it back on resume, so a run stopped mid-epoch
    (SIGTERM, or a checkpoint every N steps) continues with exactly the batches it had not seen."""

    def __init__(self, *args, progress: EpochProgress | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress if progress is not None else EpochProgress()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.progress.epoch, "batches": self.progress.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state.get("epoch", -1)), int(state.get("batches", 0))
        if epoch < 0 or not isinstance(self.sampler, EpochShuffleSampler):
            return  # nothing trained yet, or a sampler Lightning replaced (DDP): the epoch restarts
        self.progress.epoch, self.progress.batches = epoch, batches
        self.sampler.resume(epoch, batches * (self.batch_size or 1))
