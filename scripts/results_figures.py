"""The charts and tables of docs/results.md, from the runs of the write-ups' experiments in lightning_logs/writeups/
(run them first with the commands in docs/results.md). Redraws each sweep's plots (lightning_logs/writeups/<sweep>/
plots/, summary.md with mean ± std and the overlap statements), copies the charts the page shows into
docs/img/results/, and prints every summary.

    python scripts/results_figures.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cifar_pl.sweep import load_sweep, plot_sweep  # noqa: E402
from cifar_pl.viz.activations import drift_figure, read_history  # noqa: E402
from cifar_pl.viz.curves import compare_figure, curves_figure, read_scalars, save  # noqa: E402

LOGS = REPO / "lightning_logs"
OUT = REPO / "docs" / "img" / "results"
SWEEPS = {  # sweep file -> the charts of it that the page shows
    "000_bn_lr": ["train_acc", "clean_test_acc"],
    "000_augmentation": ["train_acc", "clean_test_acc"],
    "000_corruption": ["train_acc", "clean_test_acc"],
    "003_augmentations": ["train_acc", "clean_test_acc", "clean_test_loss"],
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, charts in SWEEPS.items():
        spec = load_sweep(REPO / "configs" / "writeups" / "sweeps" / f"{name}.yaml")
        if not (LOGS / spec["sweep"]).is_dir():
            print(f"{name}: not run, skipped")
            continue
        print(f"\n## {name}")
        plot_sweep(spec, LOGS)
        for chart in charts:
            src = LOGS / spec["sweep"] / "plots" / f"{chart}.png"
            if src.is_file():
                shutil.copyfile(src, OUT / f"{name}_{chart}.png")
    bn_lr = LOGS / "writeups" / "000_bn_lr"
    runs = {
        "no BN, LR 0.02": bn_lr / "net=vgg_like,lr=0.02,seed=0",
        "BN, LR 0.02": bn_lr / "net=vgg_like_bn,lr=0.02,seed=0",
    }
    noise = LOGS / "writeups" / "000_bn_noise" / "bn_noise"
    if noise.is_dir():
        runs["BN + noise, LR 0.02"] = noise
    if all(p.is_dir() for p in runs.values()):
        fig = drift_figure(
            {k: read_history(v) for k, v in runs.items()},
            4,
            "000: pre-activation percentiles (15/50/85) and mean",
        )
        save(fig, OUT / "000_activation_drift")
    # noise against the clean nets: the runs of 000_bn_lr at LR 0.02, seed 0, are the noise sweep's `plain` and
    # `bn` runs (the same config, seed and budget), so the noise sweep was run with --only bn_noise bn_noise_channel
    noisy = {
        "no BN": bn_lr / "net=vgg_like,lr=0.02,seed=0",
        "BN": bn_lr / "net=vgg_like_bn,lr=0.02,seed=0",
        "BN + noise per activation": LOGS / "writeups" / "000_bn_noise" / "bn_noise",
        "BN + noise per channel": LOGS / "writeups" / "000_bn_noise" / "bn_noise_channel",
    }
    if all(p.is_dir() for p in noisy.values()):
        scalars = {k: read_scalars(v) for k, v in noisy.items()}
        for metric in ("train/acc",):
            fig = compare_figure(scalars, metric, f"000 BN + noise (LR 0.02, seed 0): {metric}")
            save(fig, OUT / f"000_bn_noise_{metric.replace('/', '_')}")
    gap = LOGS / "writeups" / "001_gap"
    if gap.is_dir():
        save(
            curves_figure(read_scalars(gap), "001 GAP: 5 epochs, then continued to 10 (fit --ckpt_path)"),
            OUT / "001_gap_curves",
        )
    print("\nwrote", *sorted(p.name for p in OUT.glob("*.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
