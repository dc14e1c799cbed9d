"""What a trained net sees and where it fails: class-activation maps, feature channels, the gallery of mistakes
and the confusion matrix, as numbers and as matplotlib figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .augment import _show  # noqa: E402


def _check_cam_ready(net: nn.Module) -> None:
    if not getattr(net, "global_pool", False) or not isinstance(net.get_classifier(), nn.Linear):
        raise ValueError(
            f"{type(net).__name__} has no global-average-pooling + linear head, so its class-activation map is "
            f"not defined; use a GAP net (model_gap, resnet*, shake_shake_*, xception, timm_backbone). "
            f"Grad-CAM is not built in"
        )


@torch.no_grad()
def class_activation_map(
    net: nn.Module, x: torch.Tensor, class_idx: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CAM (Zhou et al. 2016) of one normalised image ``x`` (C x H x W or 1 x C x H x W).

    Returns the map at feature resolution (h x w: the sum over channels of each channel's map times the class's
    weight in the final linear layer), the logits, and the class (the predicted one unless ``class_idx``).
    The spatial mean of the map plus the class's bias is that class's logit.
    """
    _check_cam_ready(net)
    x = x.unsqueeze(0) if x.dim() == 3 else x
    feats = net.forward_features(x)
    logits = net.forward_head(feats)[0]
    c = int(logits.argmax()) if class_idx is None else int(class_idx)
    weight = net.get_classifier().weight[c].to(feats.dtype)
    cam = torch.einsum("chw,c->hw", feats[0], weight)
    return cam, logits, c


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A feature-resolution map bilinearly resized to the image's (H, W)."""
    return F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


@dataclass
class Evaluation:
    """Predictions of a net over a labelled set: probabilities, per-image loss, and the labels."""

    probs: torch.Tensor
    losses: torch.Tensor
    labels: torch.Tensor

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(1)

    def mistakes(self) -> torch.Tensor:
        """Indices of the misclassified images, the most confidently wrong (highest loss) first."""
        wrong = (self.preds != self.labels).nonzero().flatten()
        return wrong[self.losses[wrong].argsort(descending=True)]

    def correct(self) -> torch.Tensor:
        """Indices of the correctly classified images, the most confident first."""
        right = (self.preds == self.labels).nonzero().flatten()
        return right[self.losses[right].argsort()]

    def confusion(self, num_classes: int) -> torch.Tensor:
        """K x K counts: row = true class, column = predicted class."""
        idx = self.labels * num_classes + self.preds
        return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)


@torch.no_grad()
def evaluate(
    model: nn.Module, normalize, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> Evaluation:
    """Run ``model`` (eval mode) over uint8 ``images`` normalised by ``normalize``."""
    probs, losses = [], []
    for i in range(0, len(images), batch_size):
        logits = model(normalize(images[i : i + batch_size])).float().cpu()
        y = labels[i : i + batch_size]
        probs.append(logits.softmax(1))
        losses.append(F.cross_entropy(logits, y, reduction="none"))
    return Evaluation(torch.cat(probs), torch.cat(losses), labels.clone())


def per_class_table(cm: torch.Tensor, classes: Sequence[str]) -> list[dict]:
    """Per class: images, correct, accuracy, and the class it is most often mistaken for."""
    rows = []
    for i, name in enumerate(classes):
        total, right = int(cm[i].sum()), int(cm[i, i])
        off = cm[i].clone()
        off[i] = -1
        worst = int(off.argmax())
        rows.append({
            "class": name, "images": total, "correct": right, "accuracy": right / total if total else float("nan"),
            "most_confused_with": classes[worst] if off[worst] > 0 else "",
        })  # fmt: skip
    return rows


# ---- figures ----
def _overlay(fig, ax, img: torch.Tensor, cam: torch.Tensor, title: str) -> None:
    _show(ax, img)
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
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
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
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].axis("on")
    _show(axes.flat[0], image)
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
    fig, axes = plt.subplots(rows, cols * per, figsize=(2.1 * cols * per, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    flat = list(axes.flat)
    for i in range(n):
        ax = flat[i * per]
        ax.axis("on")
        _show(ax, images[i])
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
    fig, ax = plt.subplots(figsize=(size + 1, size))
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


def cam_ready(net: nn.Module) -> bool:
    """Whether ``net`` has the GAP + linear head that class-activation maps need."""
    return bool(getattr(net, "global_pool", False)) and isinstance(net.get_classifier(), nn.Linear)


def report_figures(
    model: nn.Module,
    net: nn.Module,
    normalize,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    n_cams: int = 8,
    n_mistakes: int = 16,
    n_channels: int = 16,
) -> tuple[dict[str, Figure], Evaluation]:
    """Every picture of a labelled set at once: ``confusion``, ``mistakes`` (with CAMs when the net has a GAP
    head), ``cams`` of the most confidently right images and ``channels`` of the first of them."""
    ev = evaluate(model, normalize, images, labels)
    figs = {"confusion": confusion_figure(ev.confusion(len(classes)), classes)}
    wrong = ev.mistakes()[:n_mistakes]
    with_cam = cam_ready(net)
    mistake_cams = (
        [class_activation_map(net, normalize(images[i : i + 1]))[0].cpu() for i in wrong]
        if with_cam
        else None
    )
    figs["mistakes"] = mistakes_figure(
        images[wrong], labels[wrong].tolist(), ev.preds[wrong].tolist(), ev.probs[wrong].max(1).values.tolist(),
        classes, mistake_cams, ev.probs[wrong, labels[wrong]].tolist(),
    )  # fmt: skip
    right = ev.correct()[:n_cams]
    if with_cam and len(right):
        cams = [class_activation_map(net, normalize(images[i : i + 1]))[0].cpu() for i in right]
        titles = [f"{classes[int(labels[i])]} ({float(ev.probs[i].max()):.2f})" for i in right]
        figs["cams"] = cam_figure(images[right], cams, titles)
        with torch.no_grad():
            feats = net.forward_features(normalize(images[right[0] : right[0] + 1]))[0].cpu()
        figs["channels"] = channels_figure(images[right[0]], feats, n_channels)
    return figs, ev
