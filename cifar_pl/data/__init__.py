"""LightningDataModules and what they need. Importing this package registers every DataModule by name."""

from ._registry import datamodule_class, list_datamodules, register_datamodule
from .base import STATS, InMemoryImageDataModule, Stats, channel_stats, resolve_stats
from .cifar import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule, read_cifar_batch
from .flowers17 import FLOWERS17_CLASSES, Flowers17DataModule
from .folder import ImageFolderDataModule, decode_images
from .tensor_dataset import TensorImageDataset, normalize_uint8, seeded_split, stratified_split

__all__ = [
    "CIFAR10DataModule", "CIFAR100DataModule", "CIFARDataModule", "FLOWERS17_CLASSES", "Flowers17DataModule",
    "ImageFolderDataModule", "InMemoryImageDataModule", "STATS", "Stats", "TensorImageDataset", "channel_stats",
    "datamodule_class", "decode_images", "list_datamodules", "normalize_uint8", "read_cifar_batch",
    "register_datamodule", "resolve_stats", "seeded_split", "stratified_split",
]  # fmt: skip
