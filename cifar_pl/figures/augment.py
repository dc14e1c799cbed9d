"""What the data and its augmentation look like: ``samples`` (training images with their class names) and
``augmentations`` (originals beside several augmented draws of each, as training draws them). Drawn by
``python -m cifar_pl.viz augment --config X.yaml`` and, at the start of every fit, into TensorBoard."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .mosaic import mosaic_figure, to_rgb


def samples_figure(images: torch.Tensor, labels: torch.Tensor, classes: list[str], cols: int = 8) -> Figure:
    """A grid of uint8 images (N x C x H x W) titled with their class names."""
    return mosaic_figure([to_rgb(img) for img in images], [classes[int(y)] for y in labels], cols)


def augmentation_figure(
    originals: torch.Tensor, draws: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str = ""
) -> Figure:
    """One row per image: the original, then its augmented draws (``draws``: N x D x C x H x W, uint8)."""
    n, d = draws.shape[:2]
    cells, titles = [], []
    for i in range(n):
        name = classes[int(labels[i])]
        cells.append(to_rgb(originals[i]))
        titles.append(f"original\n{name}" if i == 0 else name)
        for j in range(d):
            cells.append(to_rgb(draws[i, j]))
            titles.append(f"draw {j + 1}" if i == 0 else None)
    return mosaic_figure(cells, titles, d + 1, cell_inches=(1.3, 1.5), suptitle=title)


def preview_figures(datamodule, n_images: int = 8, draws: int = 6, seed: int = 0) -> dict[str, Figure]:
    """The two preview figures for a CIFAR-style DataModule (set up for fit on first use)."""
    if datamodule.train_set is None:
        datamodule.setup("fit")
    ds = datamodule.train_set
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: max(n_images, 32)]
    images, labels = ds.take(idx), ds.labels[idx]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        augmented = datamodule.augment_examples(images[:n_images], draws)
    name = datamodule.hparams.get("augment")
    title = (
        f"augment: {name}"
        if isinstance(name, str)
        else "augment: " + ", ".join(s["name"] for s in name or [])
    )
    return {
        "samples": samples_figure(images, labels, datamodule.classes),
        "augmentations": augmentation_figure(
            images[:n_images], augmented, labels[:n_images], datamodule.classes, title
        ),
    }
