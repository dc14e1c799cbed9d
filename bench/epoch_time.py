"""Epoch wall time of a config under different augmentations, measured A/B/A/B so that machine noise hits
every variant alike.

    python bench/epoch_time.py --config configs/model_g.yaml --augment none standard --rounds 3

Each round runs ``fit`` for 2 epochs per variant (no test, no checkpoint) and keeps the second epoch's
``train/epoch_time`` (the first includes start-up). Prints the median per variant and the ratio to the first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def epoch_time(config: str, augment: str, data: str, workdir: Path) -> float:
    import os

    from cifar_pl.__main__ import cli_main

    old = os.getcwd()
    os.chdir(workdir)
    try:
        cli = cli_main(
            [
                "fit",
                "--config",
                str(Path(old) / config),
                "--data.data_dir",
                str(Path(old) / data),
                "--data.augment",
                augment,
                "--trainer.max_epochs",
                "2",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.enable_model_summary",
                "false",
                "--trainer.enable_checkpointing",
                "false",
                "--test_after_fit",
                "false",
                "--trainer.logger",
                "false",
                "--trainer.num_sanity_val_steps",
                "0",
            ]
        )
    finally:
        os.chdir(old)
    return float(cli.trainer.callback_metrics["train/epoch_time"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/model_g.yaml")
    ap.add_argument("--augment", nargs="+", default=["none", "standard"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    times: dict[str, list[float]] = {a: [] for a in args.augment}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for aug in args.augment:
                # a folder per run: without a logger the run's config.yaml lands in the working directory
                workdir = Path(tempfile.mkdtemp(dir=tmp))
                times[aug].append(epoch_time(args.config, aug, args.data, workdir))
                print(f"round {r + 1}: {aug}: {times[aug][-1]:.2f} s", flush=True)
    base = statistics.median(times[args.augment[0]])
    print(f"\n| augment | epoch times (s) | median (s) | vs {args.augment[0]} |\n| --- | --- | ---: | ---: |")
    for aug, ts in times.items():
        print(
            f"| {aug} | {', '.join(f'{t:.2f}' for t in ts)} | {statistics.median(ts):.2f} | "
            f"{statistics.median(ts) / base:.3f} |"
        )


if __name__ == "__main__":
    main()
