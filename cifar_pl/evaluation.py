"""What a trained net sees and where it fails, as tensors: class-activation maps, per-image evaluation, the
confusion matrix and the per-class table. No plotting here (``cifar_pl.figures.report`` draws these)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_confusion_matrix

from .devices import prepare_images, to_cpu, to_module
from .errors import BadValue


def cam_ready(net: nn.Module) -> bool:
    """Whether ``net`` has the GAP + linear head that class-activation maps need."""
    return bool(getattr(net, "global_pool", False)) and isinstance(net.get_classifier(), nn.Linear)


def _check_cam_ready(net: nn.Module) -> None:
    if not cam_ready(net):
        raise BadValue(
            f"{type(net).__name__} has no global-average-pooling + linear head, so its class-activation map is "
            f"not defined; use a GAP net (model_gap, resnet*, shake_shake_*, xception, timm_backbone). "
            f"Grad-CAM is not built in"
        )


@torch.no_grad()
def class_activation_map(
    net: nn.Module, x: torch.Tensor, class_idx: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CAM (Zhou et al. 2016) of one normalised image ``x`` (C x H x W or 1 x C x H x W), computed on the net's
    device and returned as float32 on the CPU.

    Returns the map at feature resolution (h x w: the sum over channels of each channel's map times the class's
    weight in the final linear layer), the logits, and the class (the predicted one unless ``class_idx``).
    The spatial mean of the map plus the class's bias is that class's logit.
    """
    _check_cam_ready(net)
    x = to_module(x.unsqueeze(0) if x.dim() == 3 else x, net)
    feats = net.forward_features(x)
    logits = net.forward_head(feats)[0].float()
    c = int(logits.argmax()) if class_idx is None else int(class_idx)
    cam = torch.einsum("chw,c->hw", feats[0].float(), net.get_classifier().weight[c].float())
    return to_cpu(cam), to_cpu(logits), c


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A feature-resolution map bilinearly resized to the image's (H, W)."""
    return F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


@torch.no_grad()
def feature_map(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map (C x h x w, float32 on the CPU) of one normalised image."""
    return to_cpu(net.forward_features(to_module(x.unsqueeze(0) if x.dim() == 3 else x, net))[0])


@dataclass
class Evaluation:
    """Predictions of a net over a labelled set: probabilities, per-image loss, and the labels (CPU)."""

    probs: torch.Tensor
    losses: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: torch.Tensor) -> Evaluation:
        """From logits already computed (e.g. by the test pass), on the CPU."""
        logits, labels = to_cpu(logits), labels.cpu().clone()
        return cls(logits.softmax(1), F.cross_entropy(logits, labels, reduction="none"), labels)

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
        return multiclass_confusion_matrix(self.preds, self.labels, num_classes)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
) -> Evaluation:
    """Run ``model`` (eval mode) over uint8 ``images`` on its own device, normalised by ``normalize``."""
    logits = [
        to_cpu(model(prepare_images(images[i : i + batch_size], normalize, model)))
        for i in range(0, len(images), batch_size)
    ]
    return Evaluation.from_logits(torch.cat(logits), labels)


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
