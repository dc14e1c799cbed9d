"""A trained checkpoint as one file that runs without the training stack.

    python -m cifar_pl export --ckpt_path best --experiment transfer/flowers/resnet20_frozen [--format onnx]
    python -m cifar_pl export --ckpt_path lightning_logs/x/version_0/checkpoints/last.ckpt --format torchscript

The file holds the net in evaluation mode (the weight average and test-time augmentation of the checkpoint's own
evaluation included) with the input normalisation inside the graph. Its input ``images`` is **uint8, N x H x W x 3,
RGB in 0..255** (what Pillow and numpy give), H = W = the training size (any size for a global-pooling net);
the batch axis is dynamic. Outputs: ``logits`` (N x classes) and, for a net with a GAP + linear head, ``cam``
(N x classes x h x w, the class-activation maps of ``cifar_pl.evaluation`` for every class). Beside it,
``<file>.json`` (the sidecar) says the class names, the image size and resizing rule, the input and outputs, the
source checkpoint's SHA-256 and the versions that wrote it; ``cifar_pl.serve.engine`` reads both with ONNX Runtime,
Pillow and numpy only. Both files are written atomically (``cifar_pl.files``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn

from . import __version__
from .data.tensor_dataset import normalize_uint8
from .errors import BadFile, BadValue, run_main
from .evaluation import cam_ready
from .files import check_writable_folder, write_bytes_atomic, write_text_atomic
from .inference import Predictor
from .lit.tta import tta_logits
from .runs import resolve_ckpt_path
from .serve.engine import CAM, GRAPH_IMAGE_SIZE, GRAPH_RESIZE, INPUT, LOGITS, SIDECAR_VERSION, sidecar_path

Format = Literal["onnx", "torchscript"]
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
ALLOWED_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}
OPSET = 17
# Nets that cannot be exported, and why (looked up by registered name). Every other registered net exports; the
# test suite exports one net of each family and compares it with the checkpoint's eager outputs.
REFUSED: dict[str, str] = {}


class Deployable(nn.Module):
    """uint8 N x H x W x 3 RGB -> the checkpoint's evaluation logits (and the CAMs of every class): the
    normalisation of ``cifar_pl.inference.Predictor`` and the module's own evaluation forward, as one graph."""

    def __init__(self, predictor: Predictor, with_cam: bool):
        super().__init__()
        model = predictor.model.eval()
        # the plain nets of ImageClassifier's evaluation forward, not the LightningModule (which a tracer would ask
        # for its Trainer): the weight average once it has begun, over the checkpoint's test-time views
        self.net, self.tta = model.eval_net.eval(), model.evaluation.tta
        self.register_buffer("mean", predictor.mean.clone().float())
        self.register_buffer("std", predictor.std.clone().float())
        self.with_cam = with_cam
        self.requires_grad_(False)  # a traced graph of parameters that ask for gradients hands them out too

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = normalize_uint8(images.permute(0, 3, 1, 2), self.mean, self.std)
        logits = tta_logits(self.net, x, self.tta)
        if not self.with_cam:
            return (logits,)
        cam = torch.einsum("nchw,kc->nkhw", self.net.forward_features(x), self.net.get_classifier().weight)
        return logits, cam


@dataclass
class Exported:
    """What ``export`` wrote: the model file, its sidecar, and the sidecar's contents."""

    file: Path
    sidecar: Path
    meta: dict


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(predictor: Predictor, fmt: Format, file: Path, ckpt_path: Path, with_cam: bool) -> dict:
    rules = predictor.rules
    return {
        "sidecar_version": SIDECAR_VERSION,
        "format": fmt,
        "file": file.name,
        "classes": list(predictor.classes),
        "image_size": rules.train_size,
        "resize": rules.resize,
        "fixed_size": rules.fixed_size,
        "any_size": rules.any_size,
        "net": rules.net,
        "input": {
            "name": INPUT,
            "dtype": "uint8",
            "layout": "NHWC",
            "channels": "RGB",
            "range": [0, 255],
            "size": [rules.fixed_size or rules.train_size] * 2,
            "dynamic": ["batch"] + (["height", "width"] if rules.any_size else []),
        },  # fmt: skip
        "outputs": [LOGITS] + ([CAM] if with_cam else []),
        "normalisation": {"mean": predictor.mean.tolist(), "std": predictor.std.tolist(), "in_graph": True},
        "checkpoint": {"name": ckpt_path.name, "sha256": file_digest(ckpt_path)},
        "versions": {"cifar_pl": __version__, "torch": torch.__version__.split("+")[0]},
    }


def to_bytes(module: Deployable, fmt: Format, example: torch.Tensor, any_size: bool) -> bytes:
    """The traced graph of ``module`` as the bytes of an ONNX or TorchScript file."""
    buf = io.BytesIO()
    outputs = [LOGITS, CAM] if module.with_cam else [LOGITS]
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript-based exporters are deprecated in favour of torch.export, which needs onnxscript and
        # takes several times longer here; what they write is checked against the eager net by the tests
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(Constant folding|jit|TracerWarning|trace).*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), buf)
        else:
            axes = {INPUT: {0: "batch", **({1: "height", 2: "width"} if any_size else {})}}
            axes.update({name: {0: "batch"} for name in outputs})
            torch.onnx.export(module, (example,), buf, dynamo=False, input_names=[INPUT], output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True)  # fmt: skip
    return buf.getvalue()


def with_metadata(onnx_bytes: bytes, props: dict[str, str]) -> bytes:
    """The ONNX file with ``props`` in its metadata: what the graph's shape cannot say (the training size of a
    global-pooling net, the resizing rule), so the engine can check the sidecar against the file itself."""
    import onnx  # deferred: the onnx extra, needed only here

    model = onnx.load_from_string(onnx_bytes)
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def export(
    ckpt_path: str | Path, fmt: Format = "onnx", out: str | Path | None = None, experiment: str = "default"
) -> Exported:
    """Export the checkpoint ``ckpt_path`` (a file, ``last`` or ``best`` of ``experiment``) to ``out`` (default:
    beside the checkpoint, ``.onnx`` or ``.pt``) and write its sidecar."""
    if fmt not in SUFFIXES:
        raise BadValue(f"--format {fmt}: choose onnx or torchscript")
    path = resolve_ckpt_path(str(ckpt_path), experiment)
    out = Path(out) if out is not None else path.with_suffix(SUFFIXES[fmt])
    if out.suffix == ".json":
        raise BadValue(
            f"--out {out}: .json is the sidecar's name; name the model file (e.g. model{SUFFIXES[fmt]})"
        )
    if out.is_dir():
        raise BadValue(f"--out {out} is a folder; name the file (e.g. {out / ('model' + SUFFIXES[fmt])})")
    if out.resolve() == path.resolve() or (out.exists() and os.path.samefile(out, path)):
        raise BadValue(f"--out {out} is the checkpoint being exported; name another file (e.g. "
                       f"{path.with_suffix(SUFFIXES[fmt])})")  # fmt: skip
    if out.suffix.lower() not in ALLOWED_SUFFIXES[fmt]:
        raise BadValue(f"--out {out}: --format {fmt} writes a {' or '.join(ALLOWED_SUFFIXES[fmt])} file "
                       f"(e.g. {out.with_suffix(SUFFIXES[fmt])}); or pass the --format the name says")  # fmt: skip
    check_writable_folder(out.parent, "--out")
    predictor = Predictor.from_checkpoint(path)
    if predictor.checkpoint.net in REFUSED:
        raise BadFile(
            f"{path}: net {predictor.checkpoint.net} cannot be exported: {REFUSED[predictor.checkpoint.net]}"
        )
    rules = predictor.rules
    with_cam = cam_ready(predictor.net)
    side = rules.fixed_size or rules.train_size
    example = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, side, side, 3), dtype=np.uint8))
    try:
        data = to_bytes(Deployable(predictor, with_cam), fmt, example, rules.any_size)
    except (
        Exception
    ) as e:  # the exporter met an operation it cannot write (a timm model of timm_backbone, say)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        other = "torchscript" if fmt == "onnx" else "onnx"
        raise BadFile(f"{path}: net {rules.net} cannot be exported to {fmt} ({type(e).__name__}: {first}); "
                      f"try --format {other}") from e  # fmt: skip
    if fmt == "onnx":
        data = with_metadata(data, {GRAPH_IMAGE_SIZE: str(rules.train_size), GRAPH_RESIZE: rules.resize})
    meta = _sidecar(predictor, fmt, out, path, with_cam)
    write_bytes_atomic(out, data, hint="or export to another folder with --out")
    side_file = sidecar_path(out)
    write_text_atomic(side_file, json.dumps(meta, indent=2) + "\n")
    return Exported(out, side_file, meta)


def main(argv: list[str] | None = None) -> int:
    """``python -m cifar_pl export``: 0 when written, 2 with one line for a bad option or checkpoint."""
    p = argparse.ArgumentParser(prog="python -m cifar_pl export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", "--ckpt", dest="ckpt", required=True,
                   help="a checkpoint written by fit, or last / best of --experiment")  # fmt: skip
    p.add_argument("--experiment", default="default", help="where last and best are looked for (as fit's)")
    p.add_argument("--format", choices=sorted(SUFFIXES), default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--out", default=None, help="the file to write (default: beside the checkpoint)")

    def run() -> None:
        args = p.parse_args(argv)
        done = export(args.ckpt, args.format, args.out, args.experiment)
        m = done.meta
        print(f"wrote {done.file} ({done.file.stat().st_size / 1e6:.1f} MB, {m['net']}, {len(m['classes'])} classes, "
              f"input uint8 N x {m['image_size']} x {m['image_size']} x 3 RGB; outputs {', '.join(m['outputs'])}) "
              f"and {done.sidecar}")  # fmt: skip

    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
