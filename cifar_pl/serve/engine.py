"""The light predictor: an exported ONNX file and its sidecar (``python -m cifar_pl export``) run with ONNX Runtime,
Pillow and numpy only; torch and Lightning are never imported, so it starts in a fraction of a second and holds
tens of MB. The resizing rules and the form of the answer are the torch engine's (``cifar_pl.prediction``).

    from cifar_pl.serve.engine import OnnxPredictor
    p = OnnxPredictor("lightning_logs/flowers/best.onnx")
    p.predict_files(["rose.jpg"], top_k=3)   # [{"file": ..., "top": [{"class": "rose", "prob": 0.91}, ...]}]
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import BadFile, BadValue, MissingFile
from ..prediction import InputRules, PredictsFiles

try:
    import onnxruntime as ort
except ImportError:  # an optional extra: said when a predictor is made, not when this module is read
    ort = None

SIDECAR_VERSION = 1
INPUT, LOGITS, CAM = "images", "logits", "cam"
GRAPH_IMAGE_SIZE, GRAPH_RESIZE = "cifar_pl.image_size", "cifar_pl.resize"  # in the ONNX file's own metadata
MAX_CLASSES = 100_000
MAX_SIDE_OF_NET = 4096


def sidecar_path(model_file: str | Path) -> Path:
    """Where the sidecar of an exported file lives: ``<file>.json`` beside it."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def _positive_int(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit


def read_sidecar(model_file: str | Path) -> dict:
    """The sidecar of ``model_file``, checked: every value the engine uses has the type and range it must have
    (nothing in it is imported, called or used as a path)."""
    path = sidecar_path(model_file)
    redo = "; export it again with python -m cifar_pl export --ckpt_path CHECKPOINT --out " + str(model_file)
    if not path.is_file():
        raise MissingFile(
            f"'{path}' (the sidecar of {model_file}: class names, image size) does not exist{redo}"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadFile(f"'{path}' is not a readable sidecar ({type(e).__name__}: {e}){redo}") from None
    problems = []
    if not isinstance(meta, dict) or meta.get("sidecar_version") != SIDECAR_VERSION:
        raise BadFile(f"'{path}' is not a sidecar of version {SIDECAR_VERSION}{redo}")
    classes = meta.get("classes")
    if not (
        isinstance(classes, list)
        and 0 < len(classes) <= MAX_CLASSES
        and all(isinstance(c, str) for c in classes)
    ):
        problems.append("classes is not a list of names")
    if not _positive_int(meta.get("image_size"), MAX_SIDE_OF_NET):
        problems.append("image_size is not a side in pixels")
    if meta.get("resize") not in ("squash", "crop"):
        problems.append("resize is not squash or crop")
    if meta.get("fixed_size") is not None and not _positive_int(meta.get("fixed_size"), MAX_SIDE_OF_NET):
        problems.append("fixed_size is not a side in pixels")
    if not isinstance(meta.get("any_size"), bool):
        problems.append("any_size is not true or false")
    if meta.get("outputs") not in ([LOGITS], [LOGITS, CAM]):
        problems.append(f"outputs is not [{LOGITS}] or [{LOGITS}, {CAM}]")
    if meta.get("format") != "onnx":
        problems.append(f"format is {meta.get('format')!r}; the light engine runs onnx exports")
    if problems:
        raise BadFile(f"'{path}': {'; '.join(problems)}{redo}")
    return meta


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (then float32), stable for large logits."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


class OnnxPredictor(PredictsFiles):
    """An exported net (``model_file``, an ``.onnx`` with its sidecar) on ONNX Runtime's CPU provider, with
    ``threads`` threads (None: ONNX Runtime's default, one per core)."""

    def __init__(self, model_file: str | Path, threads: int | None = None):
        if ort is None:
            raise BadValue(
                "the onnx engine needs onnxruntime: pip install 'cifar-pl[serve]' (or onnxruntime)"
            )
        model_file = Path(model_file).expanduser()
        if not model_file.is_file():
            raise MissingFile(f"'{model_file}' does not exist; write it with python -m cifar_pl export")
        self.meta = read_sidecar(model_file)
        self.file = model_file
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or 0)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: a refusal is said once, below
        try:
            self.session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        except (
            Exception
        ) as e:  # ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...) for a foreign file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise BadFile(f"'{model_file}' is not an ONNX file ONNX Runtime can run ({first})") from None
        inputs = self.session.get_inputs()
        names = [o.name for o in self.session.get_outputs()]
        if (
            len(inputs) != 1
            or inputs[0].name != INPUT
            or inputs[0].type != "tensor(uint8)"
            or names != self.meta["outputs"]
        ):
            raise BadFile(
                f"'{model_file}' does not take uint8 '{INPUT}' or give {self.meta['outputs']} as its sidecar says; "
                f"export it again with python -m cifar_pl export"
            )
        self._check_shapes(model_file, inputs[0].shape, self.session.get_outputs()[0].shape)
        self.classes: list[str] = list(self.meta["classes"])
        self.rules = InputRules(self.meta["image_size"], self.meta["resize"], self.meta["fixed_size"],
                                self.meta["any_size"], str(self.meta.get("net", "the net")))  # fmt: skip
        self.has_cam = CAM in names

    def _check_shapes(self, model_file: Path, input_shape: list, logits_shape: list) -> None:
        """The sidecar's class count and image size against what the graph itself says: a sidecar from another
        export would otherwise mislabel silently, fail on an index, or fail inside ONNX Runtime."""
        redo = f"; the sidecar {sidecar_path(model_file)} is not this file's: export it again"
        meta, problems = self.meta, []
        n_out = logits_shape[-1] if len(logits_shape) == 2 else None
        if isinstance(n_out, int) and n_out != len(meta["classes"]):
            problems.append(
                f"the net gives {n_out} logits but the sidecar names {len(meta['classes'])} classes"
            )
        hw = input_shape[1:3] if len(input_shape) == 4 else []
        fixed = [d for d in hw if isinstance(d, int)]
        side = meta["fixed_size"] or meta["image_size"]
        if fixed and (meta["any_size"] or any(d != side for d in fixed)):
            said = "any size" if meta["any_size"] else f"{side}x{side}"
            problems.append(
                f"the net takes {'x'.join(str(d) for d in hw)} images but the sidecar says {said}"
            )
        # what the shape cannot say (a pooling net takes any size), export also writes into the file itself
        props = self.session.get_modelmeta().custom_metadata_map
        if GRAPH_IMAGE_SIZE in props and props[GRAPH_IMAGE_SIZE] != str(meta["image_size"]):
            problems.append(f"the net was exported at {props[GRAPH_IMAGE_SIZE]} px but the sidecar says "
                            f"{meta['image_size']}")  # fmt: skip
        if GRAPH_RESIZE in props and props[GRAPH_RESIZE] != meta["resize"]:
            problems.append(f"the net was trained with resize {props[GRAPH_RESIZE]} but the sidecar says "
                            f"{meta['resize']}")  # fmt: skip
        if problems:
            raise BadFile(f"'{model_file}': {'; '.join(problems)}{redo}")

    def run(self, images: np.ndarray, cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (N x classes, float32) of uint8 N x H x W x 3 images, and their CAMs (N x classes x h x w) when
        ``cam`` and the net has them."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim == 3:
            images = images[None]
        wanted = [LOGITS, CAM] if cam and self.has_cam else [LOGITS]
        out = self.session.run(wanted, {INPUT: images})
        return out[0], (out[1] if len(out) > 1 else None)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities of one H x W x 3 uint8 image."""
        return softmax(self.run(image)[0])[0]


def cam_overlay(photo: Image.Image, cam: np.ndarray, longest: int = 320, alpha: float = 0.5) -> Image.Image:
    """One class's activation map (h x w) laid over ``photo`` (scaled so its long side is ``longest``): the map
    min-max scaled, bilinearly resized, coloured blue (low) to red (high) and blended."""
    scale = min(1.0, longest / max(photo.size))
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    base = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    cam = np.asarray(cam, dtype=np.float32)
    span = float(cam.max() - cam.min())
    unit = (cam - cam.min()) / span if span > 0 and math.isfinite(span) else np.zeros_like(cam)
    heat = np.asarray(Image.fromarray((unit * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))
    t = heat.astype(np.float32)[..., None] / 255.0
    # a jet-like ramp: blue -> cyan -> yellow -> red
    colour = np.concatenate([np.clip(1.5 - np.abs(4 * t - 3), 0, 1), np.clip(1.5 - np.abs(4 * t - 2), 0, 1),
                             np.clip(1.5 - np.abs(4 * t - 1), 0, 1)], axis=-1) * 255  # fmt: skip
    return Image.fromarray(np.clip((1 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8))
