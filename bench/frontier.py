"""Time to accuracy against the recipe: the speed preset and airbench94's own script (../shared/bench/, a CPU port
of upstream's recipe) run in alternation at several epoch counts and seeds, on the same data, width, batch and
threads; prints accuracy against wall time for both and draws the frontier (accuracy vs seconds, one line each,
+-1 std both ways).

    python bench/frontier.py --data ../shared/data --epochs 12 20 30 42 --seeds 0 1 2
    python bench/frontier.py --data ../shared/data --epochs 10 --seeds 0 1 2 --chart docs/img/frontier.png

Wall time is each fresh process from start to exit, for both sides: imports, data loading, whitening, training,
evaluation and the final test with TTA are all time a user waits for. The preset's warmup is 23% of the run at
every epoch count (the config's ``warmup_share: 0.23``), as the recipe's is; everything else is the config.
Runs one process at a time; keep the machine otherwise idle while it runs. "training s" is the preset's summed
epoch times (steps only) and, for the recipe, its own `total_time_seconds` less its final TTA evaluation (so
whitening and steps); "outside training" is the rest of the wall. The recipe also scores the test set (one view)
after every epoch, which the preset does not (it validates on nothing): "per-epoch eval s" is that time, parsed
from the recipe's own table, and "wall without it" the recipe's wall less it, the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speedrun import run as run_preset  # noqa: E402

RESULT = re.compile(r"tta_val_acc=([0-9.]+) total_time_seconds\(upstream def\)=([0-9.]+) wall_s=([0-9.]+)")


def run_recipe(
    script: Path, data: Path, epochs: float, seed: int, width: float, batch: int, env: dict
) -> dict:
    args = [sys.executable, str(script), "--data", str(data), "--width-mult", str(width), "--batch-size", str(batch),
            "--threads", env["OMP_NUM_THREADS"], "--seed", str(seed), "--epochs", str(epochs)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    match = RESULT.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise SystemExit(f"recipe run failed ({proc.returncode}): {shlex.join(args)}\n{proc.stderr[-3000:]}")
    per_epoch_eval, tta_eval = eval_seconds(proc.stdout)
    # upstream's total_time_seconds is whitening + training steps + the final TTA evaluation
    return {
        "acc": float(match.group(1)),
        "wall": wall,
        "train": float(match.group(2)) - tta_eval,
        "own_wall": float(match.group(3)),
        "eval": per_epoch_eval,
    }


def eval_seconds(stdout: str) -> tuple[float, float]:
    """From the recipe's printed table (| run | epoch | train_loss | train_acc | val_acc | tta_val_acc |
    epoch_train_s | epoch_eval_s | total_time |): the summed per-epoch evaluation seconds, and the final TTA
    evaluation's (the row whose epoch is ``eval``)."""
    per_epoch = tta = 0.0
    for line in stdout.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) != 9:
            continue
        try:
            seconds = float(parts[7])
        except ValueError:
            continue
        if parts[1].isdigit():
            per_epoch += seconds
        elif parts[1] == "eval":
            tta = seconds
    return per_epoch, tta


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: dict[str, dict[float, list[dict]]]) -> list[dict]:
    rows = []
    for side, by_epochs in results.items():
        for epochs, runs in sorted(by_epochs.items()):
            acc, acc_sd = mean_std([r["acc"] for r in runs])
            wall, wall_sd = mean_std([r["wall"] for r in runs])
            train, _ = mean_std([r["train"] for r in runs])
            extra, _ = mean_std([r.get("eval", 0.0) for r in runs])
            rows.append({"side": side, "epochs": epochs, "n": len(runs), "acc": acc, "acc_sd": acc_sd,
                         "wall": wall, "wall_sd": wall_sd, "train": train, "outside": wall - train,
                         "eval": extra, "wall_less_eval": wall - extra})  # fmt: skip
    return rows


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for side in dict.fromkeys(r["side"] for r in rows):
        pts = [r for r in rows if r["side"] == side]
        ax.errorbar([r["wall"] for r in pts], [100 * r["acc"] for r in pts],
                    xerr=[r["wall_sd"] for r in pts], yerr=[100 * r["acc_sd"] for r in pts],
                    marker="o", capsize=3, label=side)  # fmt: skip
        for r in pts:
            ax.annotate(f"{r['epochs']:g} ep", (r["wall"], 100 * r["acc"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)  # fmt: skip
    ax.set_xlabel("wall time per run (s): process start to exit")
    ax.set_ylabel("test accuracy (%), mean ± 1 std")
    ax.set_title("Time to accuracy on this CPU", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    p.add_argument("--config", default=str(ROOT / "configs/speed/speednet_cpu.yaml"))
    p.add_argument("--reference", default=str(ROOT.parent / "shared/bench/airbench94_cpu.py"))
    p.add_argument("--epochs", type=float, nargs="+", default=[10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--extra", default="", help="more arguments for the preset's runs")
    p.add_argument("--json", default=None, help="write every run here")
    p.add_argument("--chart", default=None, help="draw the frontier here (PNG)")
    a = p.parse_args(argv)
    data, config, reference = Path(a.data).resolve(), Path(a.config).resolve(), Path(a.reference).resolve()
    if not reference.is_file():
        raise SystemExit(f"error: no reference script at {reference} (pass --reference)")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    os.environ.update(OMP_NUM_THREADS=env["OMP_NUM_THREADS"], MKL_NUM_THREADS=env["MKL_NUM_THREADS"])
    results: dict[str, dict[float, list[dict]]] = {"cifar_pl preset": {}, "airbench94 recipe": {}}
    print("| side | seed | epochs | test acc | wall (s) |\n| --- | ---: | ---: | ---: | ---: |", flush=True)
    for seed in a.seeds:
        for epochs in a.epochs:
            extra = ["--model.net_kwargs.width", str(a.width), "--data.batch_size", str(a.batch_size),
                     *shlex.split(a.extra)]  # fmt: skip
            if not float(epochs).is_integer():
                raise SystemExit(f"error: the preset trains whole epochs; got --epochs {epochs}")
            with tempfile.TemporaryDirectory(prefix="frontier_") as tmp:
                ours = run_preset(config, data, extra, seed, int(epochs), None, Path(tmp), "cpu")
            theirs = run_recipe(reference, data, epochs, seed, a.width, a.batch_size, env)
            for side, r in (("cifar_pl preset", ours), ("airbench94 recipe", theirs)):
                results[side].setdefault(epochs, []).append(r)
                print(
                    f"| {side} | {seed} | {epochs:g} | {100 * r['acc']:.2f}% | {r['wall']:.1f} |", flush=True
                )
    rows = summarise(results)
    print("\n| side | epochs | runs | test acc (mean ± std) | wall s (mean ± std) | training s | outside training s "
          "| per-epoch eval s | wall without it |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")  # fmt: skip
    for r in rows:
        print(f"| {r['side']} | {r['epochs']:g} | {r['n']} | {100 * r['acc']:.2f} ± {100 * r['acc_sd']:.2f}% "
              f"| {r['wall']:.1f} ± {r['wall_sd']:.1f} | {r['train']:.1f} | {r['outside']:.1f} | {r['eval']:.1f} "
              f"| {r['wall_less_eval']:.1f} |")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results, "rows": rows}, indent=1))
    if a.chart:
        chart(rows, Path(a.chart))
        print(f"\nchart: {a.chart}")


if __name__ == "__main__":
    main()
