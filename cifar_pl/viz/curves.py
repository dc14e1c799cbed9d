"""Training curves from a run's TensorBoard logs: loss and accuracy, train against validation, and epoch time
against the epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..runs import mean_std, read_scalars, run_dirs, stage_starts  # noqa: F401  (the readers live with the records)


def curves_figure(
    scalars: dict[str, list[tuple[int, float]]], title: str = "", stages: Sequence[int] = ()
) -> Figure:
    """The classic pair, loss and accuracy with train against validation (and the test curve of
    EvaluateEachEpoch, the final test or test-on-validation score as a line), and the wall time of each epoch;
    ``stages``: epochs where a new stage began, drawn as dotted lines."""
    panels = [
        ("loss", ["train/loss", "val/loss"]),
        ("accuracy", ["train/acc", "val/acc"]),
        ("epoch time (s)", ["train/epoch_time"]),
    ]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, (name, tags) in zip(axes, panels, strict=True):
        for tag in tags:
            if tag in scalars:
                xs, ys = zip(*scalars[tag], strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=tag)
        if name == "accuracy" and "clean_test/acc" in scalars:
            xs, ys = zip(*scalars["clean_test/acc"], strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label="clean_test/acc")
        for final, style in (("test/acc", "--"), ("test_on_val/acc", ":")):
            if name == "accuracy" and final in scalars:
                value = scalars[final][-1][1]
                ax.axhline(value, color="gray", ls=style, lw=1, label=f"{final} {value:.3f}")
        for k, start in enumerate(stages, 2):
            ax.axvline(start - 0.5, color="tab:purple", ls=":", lw=1, label="stage start" if k == 2 else None)
            ax.annotate(f"stage {k}", (start - 0.5, 1), xycoords=("data", "axes fraction"), fontsize=7,
                        color="tab:purple", xytext=(2, -10), textcoords="offset points")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save(fig: Figure, out: Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write ``fig`` as ``out`` with each suffix in ``formats`` and close it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=130, bbox_inches="tight")
        paths.append(path)
    return paths


Scalars = dict[str, list[tuple[int, float]]]


def _members(run: Scalars | list[Scalars]) -> list[Scalars]:
    return run if isinstance(run, list) else [run]


def _mean_band(members: list[Scalars], metric: str) -> tuple[list[int], list[float], list[float]]:
    """Epochs, mean and sample std (n - 1) of ``metric`` over the members that logged each epoch."""
    at: dict[int, list[float]] = {}
    for sc in members:
        for x, y in sc.get(metric, []):
            at.setdefault(x, []).append(y)
    xs = sorted(at)
    pairs = [mean_std(at[x]) for x in xs]
    return xs, [m for m, _ in pairs], [sd for _, sd in pairs]


def compare_figure(runs: dict[str, Scalars | list[Scalars]], metric: str, title: str = "") -> Figure:
    """One curve per run of ``metric`` against the epoch, the run names in the legend. A run given as a list of
    repeats (seeds) is drawn as its mean with a band of ±1 std and its members as thin lines."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for name, run in runs.items():
        members = [sc for sc in _members(run) if metric in sc]
        if not members:
            continue
        xs, means, stds = _mean_band(members, metric)
        if len(members) == 1:
            ax.plot(xs, means, marker="o", markersize=2.5, lw=1.4, label=name)
            continue
        (line,) = ax.plot(xs, means, lw=1.8, label=f"{name} (mean ± std, n={len(members)})")
        lo = [m - s for m, s in zip(means, stds, strict=True)]
        hi = [m + s for m, s in zip(means, stds, strict=True)]
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        for sc in members:
            mx, my = zip(*sc[metric], strict=True)
            ax.plot(mx, my, color=line.get_color(), lw=0.5, alpha=0.5)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(title or metric, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def final_bars_figure(
    runs: dict[str, Scalars | list[Scalars]], metrics: tuple[str, ...], title: str = ""
) -> Figure:
    """The last value of each of ``metrics`` (e.g. final train/acc and test/acc) per run, as grouped bars; a run
    given as a list of repeats shows the mean with a ±1 std error bar."""
    names = list(runs)
    fig = Figure(figsize=(max(6.0, 0.9 * len(names) + 2), 4.2))
    ax = fig.subplots()
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        values, errors = [], []
        for n in names:
            finals = [sc[metric][-1][1] for sc in _members(runs[n]) if sc.get(metric)]
            mean, std = mean_std(finals) if finals else (float("nan"), 0.0)
            values.append(mean)
            errors.append(std)
        xs = [i + j * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=metric, yerr=errors if any(errors) else None, capsize=3)
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(
        [i + width * (len(metrics) - 1) / 2 for i in range(len(names))],
        names,
        rotation=30,
        ha="right",
        fontsize=7,
    )
    ax.set_title(title or "final values", fontsize=10)
    repeated = any(isinstance(runs[n], list) and len(runs[n]) > 1 for n in names)
    ax.set_ylabel(f"{' / '.join(metrics)}, last epoch" + (" (mean ± 1 std)" if repeated else ""), fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
