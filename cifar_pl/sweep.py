"""Run a family of experiments that differ in a few values, one after another, and compare them.

    python -m cifar_pl.sweep configs/sweeps/label_corruption.yaml --data.data_dir ../shared/data

A sweep file names a base config (LightningCLI composes several, like repeated ``--config``), arguments for
every run, and the runs: ``runs:`` maps a run name to its overrides, ``grid:`` makes one run per combination of
values (named after them). Each run is ``python -m cifar_pl fit`` in its own process, logging to
``lightning_logs/<sweep>/<run>/version_N``, so TensorBoard shows the runs side by side. Resumable: a run is done
when its own record says so (``run.json``: every epoch trained, the test written, exit 0) and is then not redone;
an interrupted or failed one continues from its ``last.ckpt``. SIGTERM/SIGINT to the sweep reach the run in
progress, which saves and stops; the sweep then exits 128 + signal. At the end ``lightning_logs/<sweep>/plots/``
gets one chart per compared metric (PNG and SVG), final-value bars and ``summary.md``.

```yaml
sweep: label_corruption
config: configs/corrupt/labels.yaml
args: {trainer.max_epochs: 30}
grid: {data.corrupt_prob: [0.0, 0.5, 1.0]}        # or runs: {p0: {data.corrupt_prob: 0.0}, ...}
compare: [train/loss, train/acc, val/acc, train/epoch_time]
seeds: [0, 1, 2]                                  # optional: every run once per seed (or repeats: 3)
```

With ``seeds:`` (or ``repeats: N``, seeds 0..N-1) every run becomes a group of runs ``<run>,seed=<s>`` that differ
only in ``seed_everything``; the charts draw each group's mean with a band of one standard deviation (and the
thin curves of its members), and ``summary.md`` gives mean ± std (sample std, n - 1) per group and says which
groups' intervals overlap, i.e. which differences the repeats cannot tell from seed noise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .errors import BadFile, BadValue, MissingFile, run_main
from .runs import LOG_ROOT, check_name, latest_last_checkpoint, mean_std, read_record, safe_part, version_dirs

DEFAULT_COMPARE = ["train/loss", "train/acc", "val/acc", "train/epoch_time"]
SWEEP_KEYS = ("sweep", "config", "args", "runs", "grid", "compare", "final", "seeds", "repeats")
SEED_SEP = ",seed="


def _arg_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_args(overrides: dict[str, Any] | None) -> list[str]:
    out: list[str] = []
    for key, value in (overrides or {}).items():
        out += [f"--{key}", _arg_value(value)]
    return out


def _mapping(path: Path, key: str, value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise BadValue(f"{path}: `{key}:` must map {what}, got {type(value).__name__} {value!r:.80}")
    return value


def _names(path: Path, key: str, value: Any, default: list[str]) -> list[str]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadValue(f"{path}: `{key}:` must be a list of metric names such as [train/acc, test/acc]")
    return value


def _seeds(path: Path, seeds: Any, repeats: Any) -> list[int]:
    """The seeds of ``seeds:`` (distinct integers) or ``repeats: N`` (0..N-1); none when neither is given."""
    if seeds is not None and repeats is not None:
        raise BadValue(f"{path}: give `seeds:` or `repeats:`, not both")
    if repeats is not None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
            raise BadValue(
                f"{path}: `repeats:` is a whole number of runs per group, 1 to 100; got {repeats!r}"
            )
        return list(range(repeats))
    if seeds is None:
        return []
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise BadValue(
            f"{path}: `seeds:` is a list of distinct whole numbers in [0, 2**32), e.g. [0, 1, 2]; got {seeds!r}"
        )
    return seeds


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A sweep file, checked: ``sweep`` (name), ``config`` (one or more), ``runs`` and/or ``grid``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"sweep file '{path}' does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        raise BadFile(f"sweep file '{path}' is not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    spec = _mapping(path, "the file", spec or {}, "keys to values")
    unknown = set(spec) - set(SWEEP_KEYS)
    if unknown:
        raise BadValue(f"{path}: unknown keys {sorted(unknown)}; a sweep has {', '.join(SWEEP_KEYS)}")
    if not spec.get("sweep") or not spec.get("config"):
        raise BadValue(f"{path}: a sweep needs `sweep:` (its name) and `config:` (the base config file)")
    name = check_name(str(spec["sweep"]), "sweep")
    configs = spec["config"] if isinstance(spec["config"], list) else [spec["config"]]
    if not all(isinstance(c, str) for c in configs):
        raise BadValue(f"{path}: `config:` is a config file or a list of them")
    args = _mapping(path, "args", spec.get("args"), "option names to values (trainer.max_epochs: 30)")
    runs: dict[str, dict[str, Any]] = {}
    for run, overrides in _mapping(path, "runs", spec.get("runs"), "run names to their overrides").items():
        runs[run] = _mapping(path, f"runs.{run}", overrides, "option names to values")
    grid = _mapping(path, "grid", spec.get("grid"), "option names to lists of values")
    if not all(isinstance(v, list) and v for v in grid.values()):
        raise BadValue(f"{path}: every `grid:` entry is a non-empty list of values")
    for values in itertools.product(*grid.values()) if grid else []:
        combo = dict(zip(grid, values, strict=True))
        runs[safe_part(",".join(f"{k.split('.')[-1]}={_arg_value(v)}" for k, v in combo.items()))] = combo
    if not runs:
        raise BadValue(f"{path}: no runs; give `runs:` or `grid:`")
    for run in runs:
        check_name(run, f"{path}: run name")
        if "/" in run:
            raise BadValue(f"{path}: run name {run!r} becomes one folder name; use no '/'")
        if SEED_SEP in run:
            raise BadValue(f"{path}: run name {run!r} holds {SEED_SEP!r}, which names the repeats of a run")
    seeds = _seeds(path, spec.get("seeds"), spec.get("repeats"))
    if seeds and "seed_everything" in args:
        raise BadValue(
            f"{path}: `args:` sets seed_everything and `seeds:`/`repeats:` set it per run; give one"
        )
    groups = {run: [run] for run in runs}
    if seeds:
        for run, overrides in list(runs.items()):
            if "seed_everything" in overrides:
                raise BadValue(f"{path}: run {run!r} sets seed_everything, which `seeds:`/`repeats:` set")
            del runs[run]
            groups[run] = [f"{run}{SEED_SEP}{s}" for s in seeds]
            for s, member in zip(seeds, groups[run], strict=True):
                runs[member] = {**overrides, "seed_everything": s}
    return {
        "sweep": name, "configs": configs, "args": args, "runs": runs, "groups": groups, "seeds": seeds,
        "compare": _names(path, "compare", spec.get("compare"), DEFAULT_COMPARE),
        "final": _names(path, "final", spec.get("final"), ["train/acc", "test/acc"]),
    }  # fmt: skip


def run_status(run_dir: Path) -> str:
    """What the newest version of a run says of itself: complete, fitted, interrupted, failed, running or new."""
    versions = version_dirs(run_dir)
    record = read_record(versions[-1]) if versions else None
    return str(record.get("status", "unknown")) if record else "new"


class _Forward:
    """While a run's process is alive, SIGTERM/SIGINT to the sweep are passed to it (it saves and stops) and the
    sweep stops after it, instead of leaving it orphaned or cut off mid-write."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.signum: int | None = None

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        self.signum = signum
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)


def run_sweep(
    spec: dict[str, Any], extra: list[str], log_root: Path = Path(LOG_ROOT), dry_run: bool = False, only=None
) -> dict[str, str]:
    """Run every run of ``spec`` not done yet; returns run name -> ``done``/``skipped``/``interrupted (...)``/
    ``failed (...)``/``dry run``. A signal stops the sweep after the run in progress has saved."""
    sweep_dir = log_root / spec["sweep"]
    status: dict[str, str] = {}
    with _Forward() as forward:
        for name, overrides in spec["runs"].items():
            if only and name not in only:
                continue
            if forward.signum is not None:
                break
            run_dir = sweep_dir / name
            before = run_status(run_dir)
            if before == "complete":
                print(f"[sweep] {name}: finished before, skipped")
                status[name] = "skipped"
                continue
            cmd = [sys.executable, "-m", "cifar_pl", "fit"]
            for config in spec["configs"]:
                cmd += ["--config", str(config)]
            cmd += [
                "--experiment",
                f"{spec['sweep']}/{name}",
                *_as_args(spec["args"]),
                *_as_args(overrides),
                *extra,
            ]
            last = latest_last_checkpoint(run_dir)
            if last is not None:
                cmd += ["--ckpt_path", str(last)]
            doing = f"resuming ({before}) from {last}" if last else "starting"
            print(f"[sweep] {name}: {doing}\n  {' '.join(cmd)}", flush=True)
            if dry_run:
                status[name] = "dry run"
                continue
            start = time.perf_counter()
            forward.proc = subprocess.Popen(cmd)
            rc = forward.proc.wait()
            forward.proc = None
            after = run_status(run_dir)
            if rc != 0 or after != "complete":
                kind = "interrupted" if rc > 128 or after == "interrupted" else "failed"
                print(f"[sweep] {name}: {kind} (exit {rc}, its record says {after}); run the sweep again to resume it",
                      flush=True)  # fmt: skip
                status[name] = f"{kind} (exit {rc})"
                continue
            result = final_values(run_dir)
            result["wall_s"] = round(time.perf_counter() - start, 1)
            result["overrides"] = overrides
            (run_dir / "result.json").write_text(json.dumps(result, indent=2))
            status[name] = "done"
    if forward.signum is not None:
        status["__signal__"] = str(forward.signum)
    return status


def final_values(run_dir: Path) -> dict[str, Any]:
    """The last logged value of each epoch-level metric of a run, and its number of epochs."""
    from .viz.curves import read_scalars

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
    from .viz.curves import compare_figure, final_bars_figure, read_scalars, save

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


def sweep(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run and draw; the exit code: 0 all done, 1 a run failed, 128 + n stopped by signal n."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_pl.sweep", description=__doc__.split("\n\n")[0],
        epilog="Arguments after the sweep file go to every run, e.g. --data.data_dir ../shared/data.",
    )  # fmt: skip
    parser.add_argument("sweep", help="a sweep YAML file (configs/sweeps/...)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--only", nargs="+", default=None,
                        help="run only these runs (a run name, or a group name for all its seeds)")  # fmt: skip
    parser.add_argument("--plots-only", action="store_true", help="only (re)draw the comparison charts")
    args, extra = parser.parse_known_args(argv)
    spec = load_sweep(args.sweep)
    unknown = sorted(set(args.only or []) - set(spec["runs"]) - set(spec["groups"]))
    if unknown:
        raise BadValue(
            f"--only {unknown}: no such run in {args.sweep}; its runs: {', '.join(spec['groups'])}"
        )
    only = None
    if args.only:
        only = {m for name in args.only for m in spec["groups"].get(name, [name])}
    status = {} if args.plots_only else run_sweep(spec, extra, dry_run=args.dry_run, only=only)
    signum = status.pop("__signal__", None)
    for name, s in status.items():
        print(f"[sweep] {name}: {s}")
    if not args.dry_run:
        for p in plot_sweep(spec):
            print(f"wrote {p}")
    if signum is not None:
        return 128 + int(signum)
    return 1 if any(s.startswith(("failed", "interrupted")) for s in status.values()) else 0


def main(argv: list[str] | None = None) -> int:
    code = 0

    def body():
        nonlocal code
        code = sweep(argv)

    return run_main(body) or code


if __name__ == "__main__":
    sys.exit(main())
