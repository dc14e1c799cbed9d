"""Time to accuracy: train a config (the speed preset by default) and report wall time and test accuracy, for a
given epoch count and training-set size, with variants (ablations) run in alternation so machine noise hits all.

    python bench/speedrun.py --data ../shared/data                          # configs/speed/speednet_cpu.yaml
    python bench/speedrun.py --data ../shared/data --seeds 42 43 \\
        --variant full= --variant no-tta="--model.evaluation.tta none" \\
        --variant no-ema="--model.average.decay null --model.average.lookahead false" \\
        --variant no-smoothing="--model.label_smoothing 0" \\
        --variant no-whitening="--model.net_kwargs.whitening false"
    python bench/speedrun.py --config configs/model_g.yaml --data ../shared/data --epochs 30

Each run is ``python -m cifar_pl fit`` in a fresh process (fit, then test of the final weights) in a scratch folder;
the test scores the best checkpoint by validation accuracy, as every fit does; ``wall`` is that process from start to exit (imports and the test included: what a user waits for), ``train`` the
sum of the logged epoch times. Prints one row per run and a median per variant (Markdown).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cifar_pl.viz.curves import read_scalars  # noqa: E402


def run(config: Path, data: Path, extra: list[str], seed: int, epochs: int | None, train_size: int | None,
        workdir: Path, accelerator: str) -> dict:  # fmt: skip
    args = [sys.executable, "-m", "cifar_pl", "fit", "--config", str(config), "--data.data_dir", str(data),
            "--seed_everything", str(seed), "--experiment", "bench", "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", accelerator, *extra]  # fmt: skip
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    if train_size is not None:
        args += ["--data.train_size", str(train_size)]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True, env=None)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {shlex.join(args)}\n{proc.stderr[-3000:]}")
    record = sorted(workdir.glob("lightning_logs/bench/version_*/run.json"))[-1]
    info = json.loads(record.read_text())
    epoch_times = [v for _, v in read_scalars(record.parent).get("train/epoch_time", [])]
    return {
        "wall": wall,
        "train": sum(epoch_times),
        "acc": info["test"]["test/acc"],
        "epochs": info["epochs_done"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/speed/speednet_cpu.yaml"))
    p.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    p.add_argument("--epochs", type=int, default=None, help="default: the config's max_epochs")
    p.add_argument("--train-size", type=int, default=None, help="training images (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--variant", action="append", default=[],
                   help="NAME=EXTRA ARGS (repeatable); default: the config as it is")  # fmt: skip
    p.add_argument("--accelerator", default="auto")
    a = p.parse_args(argv)
    variants = [v.split("=", 1) for v in a.variant] or [["as-is", ""]]
    config, data = Path(a.config).resolve(), Path(a.data).resolve()
    results: dict[str, list[dict]] = {name: [] for name, _ in variants}
    print(
        "| variant | seed | epochs | test acc | wall (s) | train (s) |\n|---|---|---|---|---|---|", flush=True
    )
    for seed in a.seeds:
        for name, extra in variants:
            with tempfile.TemporaryDirectory(prefix="speedrun_") as tmp:
                r = run(
                    config, data, shlex.split(extra), seed, a.epochs, a.train_size, Path(tmp), a.accelerator
                )
            results[name].append(r)
            print(f"| {name} | {seed} | {r['epochs']} | {100 * r['acc']:.2f}% | {r['wall']:.1f} | {r['train']:.1f} |",
                  flush=True)  # fmt: skip
    print(
        "\n| variant | runs | median test acc | median wall (s) | median train (s) |\n|---|---|---|---|---|"
    )
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("acc", "wall", "train")}
        print(f"| {name} | {len(rs)} | {100 * med['acc']:.2f}% | {med['wall']:.1f} | {med['train']:.1f} |")


if __name__ == "__main__":
    main()
