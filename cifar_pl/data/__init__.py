"""LightningDataModules and what they need."""

from .cifar import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule, read_cifar_batch
from .tensor_dataset import TensorImageDataset, normalize_uint8, seeded_split

__all__ = [
    "CIFAR10DataModule", "CIFAR100DataModule", "CIFARDataModule", "TensorImageDataset",
    "normalize_uint8", "read_cifar_batch", "seeded_split",
]  # fmt: skip
