"""Training curves from a run's TensorBoard logs: loss and accuracy, train against validation, and epoch time
against the epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import MissingFile
from ..runs import mean_std, stage_parent, stage_start, version_dirs


def _has_events(d: Path) -> bool:
    return any(d.glob("events.out.tfevents.*"))


def _with_parent_stages(run: Path) -> list[Path]:
    """``run`` preceded by the runs of its earlier stages (``stage.json`` names each one's parent run)."""
    chain = [run]
    while True:
        parent = stage_parent(chain[0])
        if parent is None or parent in chain or not parent.is_dir() or not _has_events(parent):
            break
        chain.insert(0, parent)
    return chain


def run_dirs(path: str | Path) -> list[Path]:
    """The version folders of a run, oldest first: ``path`` itself if it holds event files (after the runs of
    its earlier stages, when it is a stage started with ``fit --ckpt_path``), else its ``version_N`` folders
    (an experiment folder such as ``lightning_logs/model_g``: a run resumed into a new folder, or later stages
    of it, make up its history)."""
    path = Path(path)
    if _has_events(path):
        return _with_parent_stages(path.resolve())
    versions = [d for d in version_dirs(path) if _has_events(d)]
    if not versions:
        raise MissingFile(f"no TensorBoard event files in '{path}' or its version_N folders")
    return versions


def read_scalars(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run as ``tag -> [(epoch, value), ...]`` sorted by epoch; epoch-level metrics are placed
    at the epoch Lightning logged with them (steps without an epoch keep their step number). Where versions
    overlap (a resumed run), the later value of an epoch wins."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for run in run_dirs(path):
        raw: dict[str, list[tuple[int, float, float]]] = {}
        for events in sorted(run.glob("events.out.tfevents.*")):
            acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags().get("scalars", []):
                raw.setdefault(tag, []).extend((e.step, e.value, e.wall_time) for e in acc.Scalars(tag))
        # Lightning's epoch counter (``train/epoch`` as cifar_pl.logger writes it, ``epoch`` in older runs)
        epoch_at = {step: int(v) for step, v, _ in raw.pop("epoch", []) + raw.pop("train/epoch", [])}
        for tag, items in raw.items():
            for step, value, _ in sorted(items, key=lambda t: (t[2], t[0])):
                out.setdefault(tag, {})[epoch_at.get(step, step)] = value
    return {tag: sorted(values.items()) for tag, values in out.items()}


def stage_starts(path: str | Path) -> list[int]:
    """The epochs at which the later stages of a run began (``stage.json`` of each run folder ``read_scalars``
    joins), for marking them on the curves."""
    return sorted({s for d in run_dirs(path) if (s := stage_start(d)) is not None})


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
