"""Pictures of what a trained net sees and where it fails: CAM overlays, feature channels, the gallery of
mistakes and the confusion matrix. Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot, no global
backend switch), so importing this module changes nothing for a notebook; the numbers come from
``cifar_pl.viz.analysis``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from matplotlib.figure import Figure

from .analysis import Evaluation, cam_ready, class_activation_map, evaluate, feature_map, upsample
from .augment import show_image


def _overlay(fig, ax, img: torch.Tensor, cam: torch.Tensor, title: str) -> None:
    show_image(ax, img)
    heat = upsample(cam, tuple(img.shape[1:])).cpu().numpy()
    im = ax.imshow(heat, cmap="jet", alpha=0.45, interpolation="bilinear")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cbar.ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=7)


def cam_figure(
    images: torch.Tensor, cams: Sequence[torch.Tensor], titles: Sequence[str], cols: int = 4
) -> Figure:
    """Each uint8 image with its CAM overlaid (jet colour map; the colour bar gives the map's values)."""
    n = len(images)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(2.6 * cols, 2.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cam, title in zip(axes.flat, images, cams, titles, strict=False):
        ax.axis("on")
        _overlay(fig, ax, img, cam, title)
    fig.suptitle("class-activation maps (predicted class)", fontsize=9)
    fig.tight_layout()
    return fig


def channels_figure(image: torch.Tensor, feats: torch.Tensor, n: int = 16, title: str = "") -> Figure:
    """The image and the ``n`` most active channels of its last feature map (C x h x w), each in its own
    colour scale, titled with the channel index and mean activation."""
    order = feats.mean((1, 2)).argsort(descending=True)[:n]
    cols = min(6, n + 1)
    rows = (n + 1 + cols - 1) // cols
    fig = Figure(figsize=(1.8 * cols, 1.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].axis("on")
    show_image(axes.flat[0], image)
    axes.flat[0].set_title("image", fontsize=7)
    for ax, c in zip(list(axes.flat)[1:], order, strict=False):
        ax.axis("on")
        ax.imshow(feats[c].float().cpu().numpy(), cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"ch {int(c)} ({float(feats[c].mean()):.2f})", fontsize=7)
    fig.suptitle(
        title or f"{n} most active of {feats.shape[0]} channels ({feats.shape[1]}x{feats.shape[2]})",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def mistakes_figure(
    images: torch.Tensor,
    true: Sequence[int],
    pred: Sequence[int],
    conf: Sequence[float],
    classes: Sequence[str],
    cams: Sequence[torch.Tensor] | None = None,
    true_prob: Sequence[float] | None = None,
    cols: int = 4,
) -> Figure:
    """Misclassified images (highest loss, i.e. lowest probability of the true class, first) titled true class
    (its probability) / predicted class (confidence), each followed by its CAM for the predicted class when
    ``cams`` are given."""
    per = 2 if cams is not None else 1
    n = len(images)
    rows = max(1, (n * per + cols * per - 1) // (cols * per))
    fig = Figure(figsize=(2.1 * cols * per, 2.3 * rows))
    axes = fig.subplots(rows, cols * per, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    flat = list(axes.flat)
    for i in range(n):
        ax = flat[i * per]
        ax.axis("on")
        show_image(ax, images[i])
        p_true = f" ({true_prob[i]:.2f})" if true_prob is not None else ""
        ax.set_title(
            f"true {classes[true[i]]}{p_true}\npred {classes[pred[i]]} ({conf[i]:.2f})",
            fontsize=7,
            color="firebrick",
        )
        if cams is not None:
            flat[i * per + 1].axis("on")
            _overlay(fig, flat[i * per + 1], images[i], cams[i], f"CAM: {classes[pred[i]]}")
    if n == 0:
        flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{n} mistakes, highest loss first", fontsize=9)
    fig.tight_layout()
    return fig


def confusion_figure(cm: torch.Tensor, classes: Sequence[str]) -> Figure:
    """Confusion matrix as row-normalised colours with counts, per-class accuracy in the row labels."""
    k = len(classes)
    norm = cm.float() / cm.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * k + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    acc = norm.diag()
    ax.set_yticks(
        range(k), [f"{c} ({a:.0%})" for c, a in zip(classes, acc.tolist(), strict=True)], fontsize=7
    )
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("true class (accuracy)")
    ax.set_xlabel("predicted class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    total = cm.sum().item()
    ax.set_title(
        f"confusion matrix: {cm.diag().sum().item()}/{total} = {cm.diag().sum().item() / max(1, total):.1%}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def report_figures(
    model: nn.Module,
    net: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    n_cams: int = 8,
    n_mistakes: int = 16,
    n_channels: int = 16,
    confusion: torch.Tensor | None = None,
) -> tuple[dict[str, Figure], Evaluation]:
    """Every picture of a labelled set at once: ``confusion`` (of ``confusion`` when given, e.g. accumulated by
    torchmetrics during test), ``mistakes`` (with CAMs when the net has a GAP head), ``cams`` of the most
    confidently right images and ``channels`` of the first of them. Computed on the model's device."""
    from ..devices import prepare_images

    ev = evaluate(model, normalize, images, labels)
    cm = confusion.cpu() if confusion is not None else ev.confusion(len(classes))
    figs = {"confusion": confusion_figure(cm, classes)}
    wrong = ev.mistakes()[:n_mistakes]
    with_cam = cam_ready(net)

    def cam(i) -> torch.Tensor:
        return class_activation_map(net, prepare_images(images[i], normalize, net))[0]

    figs["mistakes"] = mistakes_figure(
        images[wrong], labels[wrong].tolist(), ev.preds[wrong].tolist(), ev.probs[wrong].max(1).values.tolist(),
        classes, [cam(i) for i in wrong] if with_cam else None, ev.probs[wrong, labels[wrong]].tolist(),
    )  # fmt: skip
    right = ev.correct()[:n_cams]
    if with_cam and len(right):
        titles = [f"{classes[int(labels[i])]} ({float(ev.probs[i].max()):.2f})" for i in right]
        figs["cams"] = cam_figure(images[right], [cam(i) for i in right], titles)
        feats = feature_map(net, prepare_images(images[right[0]], normalize, net))
        figs["channels"] = channels_figure(images[right[0]], feats, n_channels)
    return figs, ev
