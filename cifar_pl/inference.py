"""A trained checkpoint as a predictor: the net, its class names and the input normalisation it was trained
with, read from the checkpoint alone (``torch.load(weights_only=True)``: no code in the file runs)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .data.base import STATS
from .data.folder import read_image
from .data.tensor_dataset import normalize_uint8
from .lit import ImageClassifier

SizeMode = Literal["auto", "native", "train"]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint of ours, loaded with ``weights_only=True``, with a clear error otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist; pass the .ckpt a `fit` run wrote")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on garbage
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"'{path}' is not a readable checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(
            f"'{path}' is not a cifar_pl Lightning checkpoint (no state_dict/hyper_parameters); for a plain "
            f"weights file use model.init_from in a config"
        )
    return ckpt


def _normalisation(ckpt: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The mean/std the model was trained with: the DataModule's saved state, else its hyperparameters."""
    dm_hp = ckpt.get("datamodule_hyper_parameters") or {}
    class_path = dm_hp.get("_class_path", "")
    state = ckpt.get(class_path.rsplit(".", 1)[-1]) if class_path else None
    if isinstance(state, dict) and "mean" in state and "std" in state:
        return list(state["mean"]), list(state["std"])
    if dm_hp.get("mean") is not None and dm_hp.get("std") is not None:
        return list(dm_hp["mean"]), list(dm_hp["std"])
    stats = dm_hp.get("stats", "default")
    if stats == "default" and class_path:
        module, name = class_path.rsplit(".", 1)
        stats = getattr(getattr(importlib.import_module(module), name, None), "default_stats", "cifar10")
    mean, std = STATS.get(stats, STATS["cifar10"])
    return list(mean), list(std)


@dataclass
class Predictor:
    """``model`` in eval mode on ``device``, with ``classes`` and the normalisation ``mean``/``std``;
    ``train_size`` is the side the training images had (None when unknown)."""

    model: ImageClassifier
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    train_size: int | None
    datamodule_hparams: dict[str, Any]

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        ckpt = read_checkpoint(path)
        hp = dict(ckpt["hyper_parameters"])
        for key in ("_instantiator", "_class_path"):
            hp.pop(key, None)
        hp.update(init_from=None, compile=False)  # the weights are in this file; no compilation for inference
        model = ImageClassifier(**hp)
        sd = ckpt["state_dict"]
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise ValueError(f"checkpoint '{path}' does not fit its own net '{hp.get('net')}': {e}") from None
        model.eval().to(device)
        dm_hp = ckpt.get("datamodule_hyper_parameters") or {}
        mean, std = _normalisation(ckpt)
        names = hp.get("class_names") or [str(i) for i in range(model.net.num_classes)]
        size = dm_hp.get("image_size", 32 if "CIFAR" in dm_hp.get("_class_path", "") else None)
        return cls(model, list(names), torch.tensor(mean), torch.tensor(std), size, dm_hp)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def net(self) -> torch.nn.Module:
        return self.model.net

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N x) C x H x W -> the normalised float batch the net expects, on the model's device."""
        x = images.unsqueeze(0) if images.dim() == 3 else images
        return normalize_uint8(x.to(self.device), self.mean.to(self.device), self.std.to(self.device))

    def input_size(self, mode: SizeMode = "auto") -> int | tuple[int, int] | None:
        """The size images are resized to under ``mode`` (None: each at its own size).

        ``auto``: a global-average-pooling net takes any size, so images keep theirs; a net with a flatten head
        gets its fixed input size. ``train``: always the training size. ``native``: never resized (fails for
        fixed-input nets)."""
        fixed = getattr(self.net, "fixed_input_size", None)
        if mode == "native" or (mode == "auto" and fixed is None and getattr(self.net, "global_pool", False)):
            return None
        return fixed or self.train_size or 32

    def load_image(self, path: str | Path, mode: SizeMode = "auto") -> tuple[torch.Tensor, str]:
        """An image file as uint8 3 x H x W, ready for this net, and a note of what was done to its size."""
        size = self.input_size(mode)
        if size is None:
            img = read_image(path, None)
            return img, f"own size {img.shape[2]}x{img.shape[1]}"
        side = size if isinstance(size, int) else size[0]
        img = read_image(path, side, self.datamodule_hparams.get("resize", "squash"))
        return img, f"resized to {side}x{side}"

    @torch.no_grad()
    def predict_files(
        self, paths: Sequence[str | Path], top_k: int = 3, mode: SizeMode = "auto"
    ) -> list[dict]:
        """Top-k classes and probabilities for each image file; unreadable files get an ``error`` entry."""
        rows = []
        k = min(top_k, len(self.classes))
        for path in paths:
            try:
                img, note = self.load_image(path, mode)
            except (OSError, ValueError) as e:
                rows.append({"file": str(path), "error": f"unreadable image ({type(e).__name__}: {e})"})
                continue
            probs = self.model(self.normalize(img)).softmax(1)[0]
            p, idx = probs.topk(k)
            rows.append({
                "file": str(path), "width": int(img.shape[2]), "height": int(img.shape[1]), "input": note,
                "top": [{"class": self.classes[int(i)], "prob": round(float(v), 6)} for v, i in zip(p, idx, strict=True)],
            })  # fmt: skip
        return rows
