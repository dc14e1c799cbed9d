"""What a sweep says about its runs: the progress line of each, a finished run's result (``result.json``), the
line of one that did not finish, and the charts and ``summary.md`` of the runs' results (mean ± std per group of
seeds, and which groups the repeats cannot tell apart)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..files import write_text_atomic
from ..runs import LOG_ROOT, mean_std, read_scalars, run_status
from .spec import Planned


def record_result(spec: dict[str, Any], run: Planned, took: float | None) -> dict[str, Any]:
    """A finished run's final values and wall time (None: not measured), written to ``result.json`` in its
    folder."""
    result = final_values(run.run_dir)
    result["wall_s"] = None if took is None else round(took, 1)
    result["overrides"] = spec["runs"][run.name]
    write_text_atomic(run.run_dir / "result.json", json.dumps(result, indent=2))
    return result


def failure_line(tag: str, run: Planned, rc: int, took: float | None = None) -> tuple[str, str]:
    """The status and the progress line of a run that did not complete (with the last lines of its log)."""
    after = run_status(run.run_dir)
    kind = "interrupted" if rc > 128 or rc < 0 or after == "interrupted" else "failed"
    then = ("run the sweep again to resume it" if kind == "interrupted" or rc != 2 else
            "it refused a value or stopped on one (the error below): running again repeats it until "
            "that is fixed")  # fmt: skip
    line = f"{tag} {run.name}: {kind} (exit {rc}, its record says {after}); {then}\n{_tail(run.run_dir / 'sweep.log')}"
    return f"{kind} (exit {rc})", line


TRIED = "tried (fast_dev_run: its batches ran; nothing kept)"


def try_line(tag: str, run: Planned, rc: int, took: float | None) -> tuple[str, str]:
    """The status and the progress line of a try (``trainer.fast_dev_run``), which keeps no record to read: it
    passed when its process ended well."""
    if rc == 0:
        took_text = "" if took is None else f" in {took:.1f} s"
        return (
            TRIED,
            f"{tag} {run.name}: tried{took_text} (fast_dev_run: its batches ran; no record, checkpoint or result is kept)",
        )
    kind = "interrupted" if rc > 128 or rc < 0 else "failed"
    return (
        f"{kind} (exit {rc})",
        f"{tag} {run.name}: the try {kind} (exit {rc})\n{_tail(run.run_dir / 'sweep.log')}",
    )


class Progress:
    """The one line per finished run: run k of N, its result, the time since the sweep started and an estimate
    of the time left: the runs waiting, ``parallel`` at a time, plus what the runs in progress still need, each at
    the mean duration of the runs done so far."""

    def __init__(self, todo: int, parallel: int = 1):
        self.todo, self.parallel = todo, max(1, parallel)
        self.durations: list[float] = []
        self.count = 0  # runs that ended, done or not
        self.running: dict[str, float] = {}  # run -> when it started
        self.begun = time.perf_counter()

    def started(self, name: str) -> None:
        self.running[name] = time.perf_counter()

    def ended(self, name: str = "") -> None:
        """A run ended without a result to time (failed, interrupted, or a try)."""
        self.count += 1
        self.running.pop(name, None)

    def done(self, tag: str, name: str, took: float, result: dict[str, Any]) -> str:
        self.durations.append(took)
        self.count += 1
        self.running.pop(name, None)
        left = self.todo - self.count
        mean = sum(self.durations) / len(self.durations)
        now = time.perf_counter()
        waiting = max(0, left - len(self.running))
        in_flight = max((max(0.0, mean - (now - t)) for t in self.running.values()), default=0.0)
        eta = math.ceil(waiting / self.parallel) * mean + in_flight
        return (f"{tag} {name}: done in {took:.1f} s{_headline(result)}; elapsed {now - self.begun:.0f} s"
                f"{f', about {eta:.0f} s left ({left} runs)' if left > 0 else ''}")  # fmt: skip


def start_log(run: Planned) -> Any:
    """Open the run's ``sweep.log`` (appending) with a header line: what was started, and how."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    out = open(run.run_dir / "sweep.log", "a")
    out.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {run.doing}\n{' '.join(run.cmd)}\n")
    out.flush()
    return out


def _tail(log: Path, lines: int = 12) -> str:
    """The last lines of a run's log, indented (what the user needs to see when it failed)."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    | {line}" for line in text)


def _headline(result: dict[str, Any]) -> str:
    for key in ("test/acc", "test_on_val/acc", "val/acc"):
        if isinstance(result.get(key), (int, float)):
            return f", {key} {result[key]:.4f}"
    return ""


def final_values(run_dir: Path) -> dict[str, Any]:
    """The last logged value of each epoch-level metric of a run, and its number of epochs."""

    scalars = read_scalars(run_dir)
    out: dict[str, Any] = {
        tag: round(v[-1][1], 5)
        for tag, v in scalars.items()
        if v and "step" not in tag and not tag.startswith("activations/")
    }
    out["epochs"] = len(scalars.get("train/loss", []))
    return out


SUMMARY_COLS = ["train/loss", "train/acc", "val/acc", "clean_test/acc", "test/acc"]


def group_finals(
    groups: dict[str, list[dict[str, list[tuple[int, float]]]]], metric: str
) -> dict[str, tuple[float, float, int]]:
    """Per group, mean, std and count of the last logged value of ``metric`` over the members that logged it."""
    out = {}
    for name, members in groups.items():
        values = [sc[metric][-1][1] for sc in members if sc.get(metric)]
        if values:
            out[name] = (*mean_std(values), len(values))
    return out


def overlap_lines(finals: dict[str, tuple[float, float, int]], metric: str) -> list[str]:
    """One sentence per pair of groups: whether their mean ± std intervals of ``metric`` overlap."""
    lines = []
    names = list(finals)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (ma, sa, na), (mb, sb, nb) = finals[a], finals[b]
            if na < 2 or nb < 2:
                continue
            gap = abs(ma - mb)
            if gap <= sa + sb:
                lines.append(f"- {a} and {b}: {metric} intervals overlap ({ma:.4f} ± {sa:.4f} vs {mb:.4f} ± "
                             f"{sb:.4f}): the repeats do not separate them")  # fmt: skip
            else:
                hi, lo = (a, b) if ma > mb else (b, a)
                lines.append(f"- {hi} above {lo} on {metric} by {gap:.4f}, more than the sum of their stds "
                             f"({sa + sb:.4f}): the intervals do not overlap")  # fmt: skip
    return lines


def summary_lines(groups: dict[str, list[dict[str, list[tuple[int, float]]]]], repeated: bool) -> list[str]:
    """``summary.md``: a table of final values (mean ± std per group when runs are repeated) and, for repeats,
    which groups' intervals overlap."""
    cols = [c for c in SUMMARY_COLS if any(c in sc for members in groups.values() for sc in members)]
    lines = [f"| run | {'n | ' if repeated else ''}epochs | {' | '.join(cols)} | mean epoch time (s) |",
             "| --- " * (len(cols) + (4 if repeated else 3)) + "|"]  # fmt: skip
    for name, members in groups.items():
        cells = []
        for col in cols:
            values = [sc[col][-1][1] for sc in members if sc.get(col)]
            if not values:
                cells.append("")
            elif repeated and len(values) > 1:
                cells.append("{:.4f} ± {:.4f}".format(*mean_std(values)))
            else:
                cells.append(f"{values[0]:.4f}")
        times = [v for sc in members for _, v in sc.get("train/epoch_time", [])]
        mean_t = f"{sum(times) / len(times):.1f}" if times else ""
        epochs = max((len(sc.get("train/loss", [])) for sc in members), default=0)
        n = f"{len(members)} | " if repeated else ""
        lines.append(f"| {name} | {n}{epochs} | {' | '.join(cells)} | {mean_t} |")
    if repeated:
        lines += [
            "",
            "Mean ± sample standard deviation over the seeds of each group (n = 1: the one run's value).",
        ]
        for metric in ("test/acc", "clean_test/acc", "val/acc"):
            said = overlap_lines(group_finals(groups, metric), metric)
            if said:
                lines += ["", f"Overlap of mean ± std intervals, {metric}:", *said]
    return lines


def plot_sweep(spec: dict[str, Any], log_root: Path = Path(LOG_ROOT)) -> list[Path]:
    """The comparison charts, the final-value bars and ``summary.md`` of a sweep's runs that have logs; with
    repeats, per group: mean curves with a ±1 std band, bars with std error bars, mean ± std in the table."""
    from ..viz.curves import compare_figure, final_bars_figure, save  # deferred: matplotlib

    sweep_dir = log_root / spec["sweep"]
    groups: dict[str, list[dict[str, list[tuple[int, float]]]]] = {}
    for group, members in spec.get("groups", {run: [run] for run in spec["runs"]}).items():
        for name in members:
            try:
                scalars = read_scalars(sweep_dir / name)
            except FileNotFoundError:
                continue
            groups.setdefault(group, []).append(scalars)
    if not groups:
        return []
    repeated = bool(spec.get("seeds"))
    out = sweep_dir / "plots"
    paths: list[Path] = []
    for metric in spec["compare"]:
        fig = compare_figure(groups, metric, f"{spec['sweep']}: {metric}")
        paths += save(fig, out / metric.replace("/", "_"), ("png", "svg"))
    paths += save(
        final_bars_figure(groups, tuple(spec["final"]), f"{spec['sweep']}: final values"),
        out / "final",
        ("png", "svg"),
    )
    lines = summary_lines(groups, repeated)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return [*paths, out / "summary.md"]
