"""Pictures of what a trained net sees and where it fails: CAM overlays, feature channels, the gallery of
mistakes and the confusion matrix. Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot, no global
backend switch), so importing this module changes nothing for a notebook; the numbers come from
``cifar_pl.evaluation``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure

from ..devices import prepare_images
from ..evaluation import Evaluation, cam_ready, class_activation_map, evaluate, feature_map, upsample
from .mosaic import colour_map, heat_overlay, mosaic_figure, to_rgb


def _overlay(img: torch.Tensor, cam: torch.Tensor) -> np.ndarray:
    return heat_overlay(img, upsample(cam, tuple(img.shape[1:])))


def cam_figure(
    images: torch.Tensor, cams: Sequence[torch.Tensor], titles: Sequence[str], cols: int = 4
) -> Figure:
    """Each uint8 image with its CAM over it (inferno, in proportion to the map scaled to its own range: the
    photo shows through where the map is low)."""
    cells = [_overlay(img, cam) for img, cam in zip(images, cams, strict=True)]
    return mosaic_figure(cells, list(titles), min(cols, max(1, len(cells))), cell_inches=(2.0, 2.3),
                         suptitle="class-activation maps (predicted class; bright = high)")  # fmt: skip


def channels_figure(image: torch.Tensor, feats: torch.Tensor, n: int = 16, title: str = "") -> Figure:
    """The image and the ``n`` most active channels of its last feature map (C x h x w), each in its own
    colour scale, titled with the channel index and mean activation."""
    order = feats.mean((1, 2)).argsort(descending=True)[:n]
    size = tuple(image.shape[1:])
    # each channel scaled up to the image's size without smoothing, so its own resolution stays visible
    cells = [to_rgb(image)] + [
        colour_map(
            torch.nn.functional.interpolate(feats[c][None, None].float(), size=size, mode="nearest")[0, 0]
        )
        for c in order
    ]
    titles = ["image"] + [f"ch {int(c)} ({float(feats[c].mean()):.2f})" for c in order]
    return mosaic_figure(cells, titles, min(6, n + 1), cell_inches=(1.8, 1.9), suptitle=title
                         or f"{n} most active of {feats.shape[0]} channels ({feats.shape[1]}x{feats.shape[2]})")  # fmt: skip


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
    n = len(images)
    if n == 0:
        fig = Figure(figsize=(4, 1.5))
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        return fig
    cells, titles, colors = [], [], []
    for i in range(n):
        p_true = f" ({true_prob[i]:.2f})" if true_prob is not None else ""
        cells.append(to_rgb(images[i]))
        titles.append(f"true {classes[true[i]]}{p_true}\npred {classes[pred[i]]} ({conf[i]:.2f})")
        colors.append("firebrick")
        if cams is not None:
            cells.append(_overlay(images[i], cams[i]))
            titles.append(f"CAM: {classes[pred[i]]}")
            colors.append(None)
    per = 2 if cams is not None else 1
    return mosaic_figure(cells, titles, per * min(cols, n), cell_inches=(2.1, 2.3), colors=colors,
                         suptitle=f"{n} mistake{'s' if n != 1 else ''}, highest loss first")  # fmt: skip


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
        range(k),
        [f"{c} ({a:.0%})" for c, a in zip(classes, acc.tolist(), strict=True)],
        fontsize=7,
        parse_math=False,  # class names come from folders and checkpoints: never matplotlib math ($...$)
    )
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7, parse_math=False)
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
    evaluation: Evaluation | None = None,
) -> tuple[dict[str, Figure], Evaluation]:
    """Every picture of a labelled set at once: ``confusion`` (of ``confusion`` when given, e.g. accumulated by
    torchmetrics during test), ``mistakes`` (with CAMs when the net has a GAP head), ``cams`` of the most
    confidently right images and ``channels`` of the first of them. Computed on the model's device."""
    ev = evaluation if evaluation is not None else evaluate(model, normalize, images, labels)
    cm = confusion.cpu() if confusion is not None else ev.confusion(len(classes))
    figs = {"confusion": confusion_figure(cm, classes)}
    wrong = ev.mistakes()[:n_mistakes]
    with_cam = cam_ready(net)

    def cam(i) -> torch.Tensor:  # the map of the class the figure names (the prediction, with the TTA views)
        return class_activation_map(net, prepare_images(images[i], normalize, net), int(ev.preds[i]))[0]

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
