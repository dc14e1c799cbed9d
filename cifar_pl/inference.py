"""A trained checkpoint as a predictor: the net, its class names, the input normalisation and image size it was
trained with, all from the checkpoint through ``cifar_pl.checkpoints.read_checkpoint`` (no code in the file runs,
nothing it names is imported)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoints import Checkpoint, read_checkpoint
from .data.tensor_dataset import normalize_uint8
from .devices import device_of, prepare_images, to_cpu
from .lit import ImageClassifier
from .prediction import MAX_SIDE, InputRules, PredictsFiles, SizeMode


@dataclass
class Predictor(PredictsFiles):
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

    @property
    def rules(self) -> InputRules:
        """How this net takes photos (``cifar_pl.images.InputRules``, shared with the ONNX engine)."""
        fixed = getattr(self.net, "fixed_input_size", None)
        return InputRules(
            self.train_size, self.checkpoint.datamodule_args.get("resize", "squash"),
            fixed[0] if fixed else None, bool(getattr(self.net, "global_pool", False)), self.checkpoint.net,
        )  # fmt: skip

    def input_size(self, mode: SizeMode = "train") -> int | None:
        """The side images are resized to under ``mode`` (``InputRules.side``)."""
        return self.rules.side(mode)

    def load_image(
        self, path: str | Path, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> tuple[torch.Tensor, str]:
        """An image file as uint8 3 x H x W, ready for this net, and a note of what was done to its size
        (``InputRules.load``)."""
        image, note = self.rules.load(path, mode, max_side)
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), note

    @torch.no_grad()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities (float32) of one H x W x 3 uint8 image."""
        x = self.normalize(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        return to_cpu(self.model(x)).softmax(1)[0].numpy()
