"""A trained checkpoint as a predictor: the net, its class names, the input normalisation and image size it was
trained with, all from the checkpoint through ``cifar_pl.checkpoints.read_checkpoint`` (no code in the file runs,
nothing it names is imported)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .checkpoints import Checkpoint, read_checkpoint
from .data.tensor_dataset import normalize_uint8
from .devices import device_of, prepare_images, to_cpu
from .errors import BadFile, UserError
from .images import READ_ERRORS, as_array, bound_sides, open_image, resize_square
from .lit import ImageClassifier

SizeMode = Literal["train", "auto", "native"]
FAR_LARGER = 4  # own-size prediction of images this many times the training size or more is flagged
MAX_SIDE = (
    1024  # own-size prediction: a larger photo is scaled down to this long side (memory grows with area)
)


@dataclass
class Predictor:
    """``model`` in eval mode, with ``classes``, the normalisation ``mean``/``std`` and ``train_size``, the side
    of the images it was trained on."""

    model: ImageClassifier
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    train_size: int
    checkpoint: Checkpoint

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        ckpt = read_checkpoint(path)
        model = ckpt.build_model(device)
        mean, std = ckpt.normalisation()
        return cls(model, ckpt.class_names, torch.tensor(mean), torch.tensor(std), ckpt.image_size(), ckpt)

    @property
    def device(self) -> torch.device:
        return device_of(self.model)

    @property
    def net(self) -> torch.nn.Module:
        return self.model.net

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_uint8(x, self.mean.to(x.device), self.std.to(x.device))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N x) C x H x W -> the normalised float batch the net expects, on the model's device."""
        return prepare_images(images, self._normalize, self.model)

    def input_size(self, mode: SizeMode = "train") -> int | None:
        """The side images are resized to under ``mode`` (None: each keeps its own size, within bounds).

        ``train`` (the default): always the training size, the scale the net learnt. ``auto``: a
        global-average-pooling net takes any size, so images keep theirs (write-up 001's non-square prediction);
        a net with a flatten head gets its fixed input size. ``native``: never resized (a fixed-input net
        refuses)."""
        fixed = getattr(self.net, "fixed_input_size", None)
        if mode == "native" and fixed is not None:
            raise BadFile(
                f"{self.checkpoint.net} takes only {fixed[0]}x{fixed[1]} images; use --size auto or train"
            )
        if mode == "native" or (mode == "auto" and fixed is None and getattr(self.net, "global_pool", False)):
            return None
        return fixed[0] if fixed else self.train_size

    def load_image(
        self, path: str | Path, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> tuple[torch.Tensor, str]:
        """An image file as uint8 3 x H x W, ready for this net, and a note of what was done to its size.
        At its own size, the long side is held at ``max_side`` and the short side raised to the training size."""
        size = self.input_size(mode)
        if size is None:
            im = open_image(path, draft=(max_side, max_side))
            im, note = bound_sides(im, max_side=max_side, min_side=self.train_size)
            note = note or f"own size {im.size[0]}x{im.size[1]}"
            side = max(im.size)  # as the net sees it
            if side >= FAR_LARGER * self.train_size:  # the net sees its classes at a scale it never learnt
                note += (f"; {side / self.train_size:.0f}x the training size {self.train_size}: --size train "
                         f"predicts at the scale the net learnt")  # fmt: skip
        else:
            resize = self.checkpoint.datamodule_args.get("resize", "squash")
            im = resize_square(open_image(path, draft=(size, size)), size, resize)
            note = f"resized to {size}x{size}"
        return torch.from_numpy(as_array(im)).permute(2, 0, 1).contiguous(), note

    @torch.no_grad()
    def predict_files(
        self, paths: Sequence[str | Path], top_k: int = 3, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> list[dict]:
        """Top-k classes and probabilities for each image file; a file that cannot be read (not an image, over
        the pixel limit, missing) gets an ``error`` row instead, and the others go on."""
        rows = []
        k = min(top_k, len(self.classes))
        for path in paths:
            try:
                img, note = self.load_image(path, mode, max_side)
            except (*READ_ERRORS, UserError) as e:
                rows.append({"file": str(path), "error": f"unreadable image ({type(e).__name__}: {e})"})
                continue
            probs = to_cpu(self.model(self.normalize(img))).softmax(1)[0]
            p, idx = probs.topk(k)
            rows.append({
                "file": str(path), "width": int(img.shape[2]), "height": int(img.shape[1]), "input": note,
                "top": [{"class": self.classes[int(i)], "prob": round(float(v), 6)} for v, i in zip(p, idx, strict=True)],
            })  # fmt: skip
        return rows
