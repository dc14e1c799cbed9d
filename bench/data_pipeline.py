"""Images per second delivered by the training loader with the `standard` preset (reflect-pad crop + flip),
normalised and ready for the net.

    python bench/data_pipeline.py [--data ../shared/data] [--epochs 3] [--workers 2] [--device cpu|cuda]

(a) torchvision's classic per-image PIL pipeline: RandomCrop(32, 4, padding_mode='reflect'),
    RandomHorizontalFlip, ToTensor, Normalize over a Dataset of HWC uint8 arrays (as torchvision's CIFAR10),
    DataLoader with --workers processes;
(b) our per-image path: v2 transforms on uint8 tensors in the loader (--workers), normalised per batch;
(c) our batched path: uint8 batches, crop + flip + normalise on whole batches (no workers), on the CPU and,
    where CUDA is available, on the GPU (batches moved as uint8, augmented there).
Prints a table with the ratio of each to (a).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar_pl.data import CIFAR10DataModule  # noqa: E402
from cifar_pl.data.tensor_dataset import TensorImageDataset, collate_batch  # noqa: E402
from cifar_pl.data.transforms import Augmentation  # noqa: E402


class PILDataset(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: HWC uint8 -> PIL image -> transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def timed(loader_fn, epochs: int, per_batch=None, device: str = "cpu") -> float:
    """Images per second over ``epochs`` epochs after one warm-up epoch (which also starts the workers)."""

    def run():
        n = 0
        for x, _ in loader_fn():
            x = x.to(device, non_blocking=True)
            if per_batch is not None:
                x = per_batch(x)
            n += len(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return n

    run()
    t = time.perf_counter()
    n = sum(run() for _ in range(epochs))
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", default="../shared/data", help="folder holding cifar-10-batches-py/ (random data if absent)"
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    dm = CIFAR10DataModule(data_dir=args.data, augment="standard", val_size=0.0)
    try:
        dm.setup("fit")
        images, labels = dm.train_set.images, dm.train_set.labels
        source = f"real CIFAR-10 training images in {args.data}"
    except FileNotFoundError:
        images = torch.randint(0, 256, (8336, 3, 32, 32), dtype=torch.uint8)
        labels = torch.randint(0, 10, (8336,))
        source = "random uint8 images"
    print(
        f"{len(images)} {source}, batch {args.batch_size}, {args.epochs} timed epochs after one warm-up; "
        f"torch threads {torch.get_num_threads()}"
    )
    bs, w = args.batch_size, args.workers
    mean, std = dm.mean, dm.std

    classic = T.Compose(
        [
            T.RandomCrop(32, padding=4, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    pil_ds = PILDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), classic)

    per_image = Augmentation.from_config("standard", on_device=False).per_image()
    per_image_ds = TensorImageDataset(images, labels, per_image)
    batched_ds = TensorImageDataset(images, labels)

    def loader(ds, workers, collate=None):
        kwargs = {"collate_fn": collate} if collate else {}
        return lambda: DataLoader(
            ds, batch_size=bs, shuffle=True, num_workers=workers, persistent_workers=False, **kwargs
        )

    rows = [
        ("(a) torchvision PIL per image", w, "cpu", timed(loader(pil_ds, w), args.epochs)),
        (
            "(b) cifar_pl per image (v2, uint8)",
            w,
            "cpu",
            timed(loader(per_image_ds, w, collate_batch), args.epochs, dm.normalize),
        ),
        (
            "(c) cifar_pl batched",
            0,
            "cpu",
            timed(
                loader(batched_ds, 0, collate_batch), args.epochs, lambda x: dm.normalize(dm.augment_batch(x))
            ),
        ),
    ]
    if torch.cuda.is_available():
        rows.append(
            (
                "(c) cifar_pl batched",
                0,
                "cuda",
                timed(
                    loader(batched_ds, 0, collate_batch),
                    args.epochs,
                    lambda x: dm.normalize(dm.augment_batch(x)),
                    device="cuda",
                ),
            )
        )
    base = rows[0][3]
    print("\n| pipeline | workers | device | images/s | vs (a) |\n| --- | ---: | --- | ---: | ---: |")
    for name, workers, device, ips in rows:
        print(f"| {name} | {workers} | {device} | {ips:,.0f} | {ips / base:.1f}x |")


if __name__ == "__main__":
    main()
