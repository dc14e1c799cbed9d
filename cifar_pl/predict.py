"""Predict the classes of image files of any size with a trained checkpoint.

    python -m cifar_pl.predict --ckpt lightning_logs/transfer/flowers/scratch/best.ckpt photos/ more.jpg \\
        --out predictions.csv --top-k 3

Folders are searched recursively. A net with global average pooling takes each image at its own size; a net
with a fixed input size gets it resized (``--size train`` resizes for every net, as in training). The output
(CSV, or JSON for a ``.json`` name) has one row per file: its size, what was done to it, the top-k classes with
probabilities, or the reason it could not be read. Class names and normalisation come from the checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .inference import Predictor


def image_files(inputs: list[str]) -> list[Path]:
    """The files named, and every non-hidden file under the folders named (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"'{p}' is neither a file nor a folder")
    return out


def write_rows(rows: list[dict], out: Path, top_k: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        out.write_text(json.dumps(rows, indent=2))
        return
    fields = ["file", "width", "height", "input"]
    for i in range(1, top_k + 1):
        fields += [f"top{i}", f"prob{i}"]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*fields, "error"])
        writer.writeheader()
        for row in rows:
            flat = {k: row.get(k, "") for k in ("file", "width", "height", "input", "error")}
            for i, t in enumerate(row.get("top", []), 1):
                flat[f"top{i}"], flat[f"prob{i}"] = t["class"], t["prob"]
            writer.writerow(flat)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m cifar_pl.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files and/or folders")
    parser.add_argument(
        "--ckpt", required=True, help="a checkpoint written by `fit` (e.g. lightning_logs/X/best.ckpt)"
    )
    parser.add_argument("--out", default="predictions.csv", help="output file: .csv or .json")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--size", choices=["auto", "native", "train"], default="auto")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    predictor = Predictor.from_checkpoint(args.ckpt, args.device)
    files = image_files(args.inputs)
    if not files:
        parser.error(f"no files found in {args.inputs}")
    rows = predictor.predict_files(files, args.top_k, args.size)
    write_rows(rows, Path(args.out), min(args.top_k, len(predictor.classes)))
    for row in rows:
        shown = row.get("error") or ", ".join(f"{t['class']} {t['prob']:.3f}" for t in row["top"])
        print(f"{row['file']}: {shown}" + (f"  ({row['input']})" if "input" in row else ""))
    print(f"wrote {args.out} ({len(rows)} files)")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
