"""Today's predict (torch engine, a checkpoint) beside the light predictor (onnx engine, its export) on the same photos:
start-up seconds, peak RSS and images per second, each engine and thread count in a fresh process.

    python bench/predict_engines.py --ckpt CKPT --onnx CKPT_EXPORT.onnx --images ../shared/data/flowers --n 1000

Start-up: from launching ``python`` until the first photo is predicted (interpreter, imports, reading the model,
one photo). Images/s: the next ``n`` photos one at a time, as ``python -m cifar_pl.predict`` takes them (decode,
resize, net, top-k). Peak RSS: the process's high-water mark (``ru_maxrss``) after all of it. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from cifar_pl.images import image_files
from cifar_pl.predict import load_predictor
engine, model, threads, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
files = image_files([folder])[: n + 1]
p = load_predictor(engine, model, "cpu", threads)
p.predict_files(files[:1])
print("READY", flush=True)
t = time.perf_counter()
rows = p.predict_files(files[1:])
dt = time.perf_counter() - t
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "pytorch_lightning", "lightning"})
print(json.dumps({"n": len(rows), "seconds": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "heavy": heavy, "top1": [r["top"][0]["class"] for r in rows if "top" in r]}))
"""


def run(engine: str, model: str, threads: int, n: int, folder: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, engine, model, str(threads), str(n), folder],
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    startup = time.perf_counter() - start
    if line.strip() != "READY":
        raise SystemExit(f"{engine}: the child did not start ({line!r})")
    out = json.loads(proc.stdout.readline())
    proc.wait()
    return {"engine": engine, "threads": threads, "startup_s": startup, **out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint (torch engine)")
    p.add_argument("--onnx", required=True, help="its export (python -m cifar_pl export)")
    p.add_argument("--images", required=True, help="a folder of photos (searched recursively)")
    p.add_argument("--n", type=int, default=1000, help="photos timed (default 1000)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    rows = []
    for threads in args.threads:
        for engine, model in (("torch", args.ckpt), ("onnx", args.onnx)):
            r = run(engine, model, threads, args.n, args.images)
            rows.append(r)
            print(f"{engine} threads={threads}: start-up {r['startup_s']:.2f} s, peak RSS {r['rss_mb']:.0f} MB, "
                  f"{r['n'] / r['seconds']:.0f} images/s (heavy modules: {r['heavy'] or 'none'})", flush=True)  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| engine | threads | start-up s | peak RSS MB | images/s | torch imported |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['engine']} | {r['threads']} | {r['startup_s']:.2f} | {r['rss_mb']:.0f} | "
              f"{r['n'] / r['seconds']:.0f} | {'yes' if r['heavy'] else 'no'} |")  # fmt: skip
    for threads in args.threads:
        a, b = (
            next(r for r in rows if r["engine"] == e and r["threads"] == threads) for e in ("torch", "onnx")
        )
        same = sum(x == y for x, y in zip(a["top1"], b["top1"], strict=True))
        print(f"threads={threads}: onnx/torch images/s {(b['n'] / b['seconds']) / (a['n'] / a['seconds']):.2f}x; "
              f"top-1 the same on {same}/{len(a['top1'])} photos")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
