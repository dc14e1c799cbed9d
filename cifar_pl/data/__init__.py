"""LightningDataModules and what they need."""

from .base import STATS, InMemoryImageDataModule, channel_stats
from .cifar import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule, read_cifar_batch
from .folder import FLOWERS17_CLASSES, Flowers17DataModule, ImageFolderDataModule, read_image, read_images
from .tensor_dataset import TensorImageDataset, normalize_uint8, seeded_split, stratified_split

__all__ = [
    "CIFAR10DataModule", "CIFAR100DataModule", "CIFARDataModule", "FLOWERS17_CLASSES", "Flowers17DataModule",
    "ImageFolderDataModule", "InMemoryImageDataModule", "STATS", "TensorImageDataset", "channel_stats",
    "normalize_uint8", "read_cifar_batch", "read_image", "read_images", "seeded_split", "stratified_split",
]  # fmt: skip
