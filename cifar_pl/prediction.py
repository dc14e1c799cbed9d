"""What every predictor does around its net, without torch: the resizing rules a trained net takes a photo by,
the top-k rows of the output, and the loop over files in which one unreadable file never ends the run. Shared by
the torch engine (``cifar_pl.inference``) and the ONNX engine (``cifar_pl.serve.engine``), so both engines
resize the same way and answer in the same form."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image

from .errors import BadFile, UserError
from .images import READ_ERRORS, ResizeMode, as_array, bound_sides, open_image, resize_square

SizeMode = Literal["train", "auto", "native"]
SIZE_MODES = ("train", "auto", "native")
FAR_LARGER = 4  # own-size prediction of images this many times the training size or more is flagged
MAX_SIDE = (
    1024  # own-size prediction: a larger photo is scaled down to this long side (memory grows with area)
)


@dataclass(frozen=True)
class InputRules:
    """How a trained net takes a photo, the one set of resizing rules of every predictor (``cifar_pl.predict``'s
    torch engine and the ONNX engine of ``cifar_pl.serve``): ``train_size`` is the side it was trained at,
    ``resize`` how photos were brought to it, ``fixed_size`` the only side a flatten-head net takes (None: any),
    ``any_size`` whether it pools globally (so it can take a photo at its own size); ``net`` names it in errors."""

    train_size: int
    resize: ResizeMode = "squash"
    fixed_size: int | None = None
    any_size: bool = False
    net: str = "the net"

    def side(self, mode: SizeMode = "train") -> int | None:
        """The side images are resized to under ``mode`` (None: each keeps its own size, within bounds).

        ``train`` (the default): always the training size, the scale the net learnt. ``auto``: a
        global-average-pooling net takes any size, so images keep theirs (write-up 001's non-square prediction);
        a net with a flatten head gets its fixed input size. ``native``: never resized (a fixed-input net
        refuses)."""
        if mode == "native" and self.fixed_size is not None:
            raise BadFile(
                f"{self.net} takes only {self.fixed_size}x{self.fixed_size} images; use --size auto or train"
            )
        if mode == "native" or (mode == "auto" and self.fixed_size is None and self.any_size):
            return None
        return self.fixed_size or self.train_size

    def load(
        self, path: str | Path | BinaryIO, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> tuple[np.ndarray, str]:
        """An image file (or an open binary file) as H x W x 3 uint8, ready for this net, and a note of what was
        done to its size (``fit``)."""
        return self.load_with_size(path, mode, max_side)[:2]

    def load_with_size(
        self, path: str | Path | BinaryIO, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> tuple[np.ndarray, str, tuple[int, int]]:
        """``load``, and the photo's own (width, height) as the file has it (the net's input is another size)."""
        size = self.side(mode)
        photo = open_image(path, draft=(size, size) if size else (max_side, max_side))
        own = photo.info.get("photo_size", photo.size)
        return (*self.fit(photo, mode, max_side), (int(own[0]), int(own[1])))

    def fit(
        self, im: Image.Image, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> tuple[np.ndarray, str]:
        """An RGB image brought to what this net takes under ``mode``, as H x W x 3 uint8, with a note. At its own
        size, the long side is held at ``max_side`` and the short side raised to the training size."""
        size = self.side(mode)
        if size is not None:
            return as_array(resize_square(im, size, self.resize)), f"resized to {size}x{size}"
        im, note = bound_sides(im, max_side=max_side, min_side=self.train_size)
        note = note or f"own size {im.size[0]}x{im.size[1]}"
        side = max(im.size)  # as the net sees it
        if side >= FAR_LARGER * self.train_size:  # the net sees its classes at a scale it never learnt
            note += (f"; {side / self.train_size:.0f}x the training size {self.train_size}: --size train "
                     f"predicts at the scale the net learnt")  # fmt: skip
        return as_array(im), note


def top_classes(probs: Sequence[float], classes: Sequence[str], k: int) -> list[dict]:
    """The ``k`` most probable classes, most probable first, as the rows of every predictor's output:
    ``{"class": name, "prob": p}`` with ``p`` rounded to 6 places (ties: the lower class index first)."""
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")[: min(k, len(classes))]
    return [{"class": classes[int(i)], "prob": round(float(p[i]), 6)} for i in order]


def prediction_rows(
    paths: Sequence[str | Path],
    load: Callable[[str | Path], tuple],
    probabilities: Callable[[np.ndarray], np.ndarray],
    classes: Sequence[str],
    k: int,
) -> list[dict]:
    """One row per file: the photo's own ``width`` and ``height``, what was done to it for the net (``input``:
    "resized to 32x32"), the top-``k`` classes; a file that cannot be read (not an image, over the pixel limit,
    missing) gets an ``error`` row, and the others go on. ``load(path)`` gives H x W x 3 uint8, a note and, when
    it knows it, the photo's own (width, height) (else the input's size is all there is to show);
    ``probabilities(image)`` the class probabilities."""
    rows = []
    for path in paths:
        try:
            img, note, *own = load(path)
        except (*READ_ERRORS, UserError) as e:
            rows.append({"file": str(path), "error": f"unreadable image ({type(e).__name__}: {e})"})
            continue
        width, height = own[0] if own else (int(img.shape[1]), int(img.shape[0]))
        rows.append({
            "file": str(path), "width": width, "height": height, "input": note,
            "top": top_classes(probabilities(img), classes, k),
        })  # fmt: skip
    return rows


class PredictsFiles:
    """What a predictor with ``rules`` (its ``InputRules``), ``classes`` and ``probabilities(image)`` does with image
    files: the torch engine (``cifar_pl.inference.Predictor``) and the ONNX engine (``cifar_pl.serve.engine``)."""

    rules: InputRules
    classes: list[str]

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities of one H x W x 3 uint8 image."""
        raise NotImplementedError

    def predict_files(
        self, paths: Sequence[str | Path], top_k: int = 3, mode: SizeMode = "train", max_side: int = MAX_SIDE
    ) -> list[dict]:
        """Top-k classes and probabilities for each image file (``prediction_rows``)."""
        rules = self.rules
        return prediction_rows(
            paths, lambda p: rules.load_with_size(p, mode, max_side), self.probabilities, self.classes, top_k
        )
