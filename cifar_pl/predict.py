"""Predict the classes of image files of any size with a trained checkpoint.

    python -m cifar_pl.predict --ckpt lightning_logs/transfer/flowers/scratch/best.ckpt photos/ more.jpg \\
        --out predictions.csv --top-k 3
    python -m cifar_pl.predict --engine onnx --ckpt lightning_logs/transfer/flowers/scratch/best.onnx photos/

``--engine onnx`` runs a file written by ``python -m cifar_pl export`` with ONNX Runtime, Pillow and numpy only
(torch and Lightning are not imported); the resizing rules and the table are the same.

Folders are searched recursively. Each image is resized to the training size by default (``--size train``: the
scale the net learnt); ``--size auto`` lets a net with global average pooling take each image at its own size
(the long side held at ``--max-side``, the short side raised to the training size; write-up 001's non-square
prediction), and a net with a fixed input size still gets that size; ``--size native`` never resizes. The output (CSV, or JSON for a ``.json``
name) has one row per file: its size, what was done to it, the top-k classes with probabilities, or the reason it
could not be read; one bad file never ends the run. Class names and normalisation come from the checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from .checks import check_number
from .errors import BadValue, run_main
from .files import check_writable_folder, csv_cell, write_text_atomic
from .images import image_files
from .prediction import MAX_SIDE

MAX_SIDE_LIMIT = 4096  # a 4096 x 4096 photo is 50 MB as uint8 and several GB through a net


def write_rows(rows: list[dict], out: Path, top_k: int) -> None:
    """The table, whole or not at all (``cifar_pl.files``); CSV cells that would start a formula are quoted."""
    if out.suffix == ".json":
        write_text_atomic(out, json.dumps(rows, indent=2))
        return
    fields = ["file", "width", "height", "input"]
    for i in range(1, top_k + 1):
        fields += [f"top{i}", f"prob{i}"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*fields, "error"])
    writer.writeheader()
    for row in rows:
        flat = {k: row.get(k, "") for k in ("file", "width", "height", "input", "error")}
        for i, t in enumerate(row.get("top", []), 1):
            flat[f"top{i}"], flat[f"prob{i}"] = t["class"], t["prob"]
        writer.writerow({k: csv_cell(v) for k, v in flat.items()})
    write_text_atomic(out, text.getvalue())


def load_predictor(engine: str, path: str, device: str = "cpu", threads: int | None = None):
    """The predictor of ``engine``: ``torch`` reads a checkpoint (``cifar_pl.inference``), ``onnx`` an exported
    file (``cifar_pl.serve.engine``); both give ``classes`` and ``predict_files``."""
    if engine == "onnx":
        from .serve.engine import OnnxPredictor  # deferred: onnxruntime is an optional extra

        if Path(path).suffix in (".ckpt", ".pt", ".pth"):
            raise BadValue(f"--engine onnx runs an exported .onnx file, not {path}; write one with "
                           f"python -m cifar_pl export --ckpt_path {path}")  # fmt: skip
        return OnnxPredictor(path, threads)
    if Path(path).suffix == ".onnx":  # torch would say it cannot unpickle it
        raise BadValue(f"--ckpt {path} is an ONNX export: add --engine onnx")
    import torch  # deferred: the onnx engine runs without torch

    from .devices import parse_device  # deferred: it imports torch
    from .inference import Predictor  # deferred: torch and Lightning load for the torch engine only

    if threads is not None:
        torch.set_num_threads(threads)
    return Predictor.from_checkpoint(path, parse_device(device))


def predict(argv: list[str] | None = None) -> list[dict]:
    """Parse ``argv``, predict, write the table; returns the rows (raises for bad options)."""
    parser = argparse.ArgumentParser(prog="python -m cifar_pl.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files and/or folders")
    parser.add_argument("--ckpt", "--ckpt_path", dest="ckpt", required=True,
                        help="a checkpoint written by `fit` (e.g. lightning_logs/X/best.ckpt); either spelling, "
                             "as fit's --ckpt_path")  # fmt: skip
    parser.add_argument("--out", default="predictions.csv", help="output file: .csv or .json")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per image (default 3)")
    parser.add_argument("--size", choices=["train", "auto", "native"], default="train",
                        help="train: resize to the training size (default); auto: a GAP net takes each image at "
                             "its own size; native: never resize")  # fmt: skip
    parser.add_argument("--max-side", type=int, default=MAX_SIDE,
                        help=f"own-size prediction: scale larger images down to this long side (default {MAX_SIDE})")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu; torch engine)")
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                        help="torch: a checkpoint, with the training stack (default); onnx: a file written by "
                             "python -m cifar_pl export, with ONNX Runtime, Pillow and numpy only")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the net (default: the library's own, one per core)")  # fmt: skip
    args = parser.parse_args(argv)
    check_number("--top-k", args.top_k, 1, integer=True)
    if args.threads is not None:
        check_number("--threads", args.threads, 1, 1024, integer=True)
    check_number("--max-side", args.max_side, 8, MAX_SIDE_LIMIT, integer=True,
                 hint="larger photos are scaled down to it; memory grows with its square")  # fmt: skip
    if Path(args.out).suffix not in (".csv", ".json"):
        raise BadValue(f"--out {args.out}: the table is written as .csv or .json; name the file so")
    if Path(args.out).is_dir():
        raise BadValue(
            f"--out {args.out} is a folder; name the table file (e.g. {Path(args.out) / 'predictions.csv'})"
        )
    check_writable_folder(Path(args.out).parent, "--out")  # before the work, not after it
    if args.engine == "onnx" and args.device != "cpu":
        raise BadValue(
            f"--device {args.device}: the onnx engine runs on the CPU; drop --device or use --engine torch"
        )
    files = image_files(args.inputs)
    if not files:
        raise BadValue(f"no files found in {args.inputs}")
    predictor = load_predictor(args.engine, args.ckpt, args.device, args.threads)
    rows = predictor.predict_files(files, args.top_k, args.size, args.max_side)
    write_rows(rows, Path(args.out), min(args.top_k, len(predictor.classes)))
    for row in rows:
        shown = row.get("error") or ", ".join(f"{t['class']} {t['prob']:.3f}" for t in row["top"])
        print(f"{row['file']}: {shown}" + (f"  ({row['input']})" if "input" in row else ""))
    failed = sum("error" in r for r in rows)
    print(f"wrote {args.out} ({len(rows)} files" + (f", {failed} unreadable)" if failed else ")"))
    return rows


def main(argv: list[str] | None = None) -> int:
    """The command: exit 0 when every file was predicted, 1 when some could not be read, 2 for bad options."""
    rows: list[dict] = []
    code = run_main(lambda: rows.extend(predict(argv)))
    return code or (1 if any("error" in r for r in rows) else 0)


if __name__ == "__main__":
    sys.exit(main())
