"""What the data and its augmentation look like: ``samples`` (training images with their class names) and
``augmentations`` (originals beside several augmented draws of each, as training draws them). Drawn by
``python -m cifar_pl.viz augment --config X.yaml`` and, at the start of every fit, into TensorBoard."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure


def show_image(ax, img: torch.Tensor, title: str | None = None) -> None:
    ax.imshow(img.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def samples_figure(images: torch.Tensor, labels: torch.Tensor, classes: list[str], cols: int = 8) -> Figure:
    """A grid of uint8 images (N x C x H x W) titled with their class names."""
    rows = (len(images) + cols - 1) // cols
    fig = Figure(figsize=(1.4 * cols, 1.55 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, y in zip(axes.flat, images, labels, strict=False):
        ax.axis("on")
        show_image(ax, img, classes[int(y)])
    fig.tight_layout()
    return fig


def augmentation_figure(
    originals: torch.Tensor, draws: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str = ""
) -> Figure:
    """One row per image: the original, then its augmented draws (``draws``: N x D x C x H x W, uint8)."""
    n, d = draws.shape[:2]
    fig = Figure(figsize=(1.3 * (d + 1), 1.4 * n))
    axes = fig.subplots(n, d + 1, squeeze=False)
    for i in range(n):
        show_image(
            axes[i, 0],
            originals[i],
            f"{classes[int(labels[i])]}" if i else f"original\n{classes[int(labels[i])]}",
        )
        for j in range(d):
            show_image(axes[i, j + 1], draws[i, j], f"draw {j + 1}" if i == 0 else None)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
