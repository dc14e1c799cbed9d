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

Everything is checked before the first run starts: the file (read with a bound on YAML aliases), every run's
configuration (parsed and built as ``fit`` would, without training: a typo in one override fails at once, naming
the run), run names (two grid values that make one name are refused; ``experiment`` is the sweep's to set), and
every run that has run before: its recorded configuration must be the one the sweep would run now, or the sweep
stops with one line naming the runs that changed (``--rerun-changed`` trains those again in a new version folder).

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
import contextlib
import io
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import safe_yaml
from .errors import BadValue, UserError, run_main, user_error_in
from .files import write_text_atomic
from .runs import LOG_ROOT, check_name, latest_last_checkpoint, mean_std, read_record, safe_part, version_dirs

DEFAULT_COMPARE = ["train/loss", "train/acc", "val/acc", "train/epoch_time"]
SWEEP_KEYS = ("sweep", "config", "args", "runs", "grid", "compare", "final", "seeds", "repeats")
SEED_SEP = ",seed="
# Options a sweep sets for its runs itself (the run's folder, its resume): a sweep file may not.
SWEEP_OWNED = ("experiment", "ckpt_path")
# Values that decide what a finished run's results are, beyond those that make a resume a new stage.
RESULT_KEYS = ("trainer.max_epochs", "trainer.max_steps", "test_after_fit")


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
    spec = safe_yaml.load_file(path, "sweep file")
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
    _sweep_owned(path, "args", args)
    runs: dict[str, dict[str, Any]] = {}
    for run, overrides in _mapping(path, "runs", spec.get("runs"), "run names to their overrides").items():
        runs[run] = _mapping(path, f"runs.{run}", overrides, "option names to values")
        _sweep_owned(path, f"runs.{run}", runs[run])
    grid = _mapping(path, "grid", spec.get("grid"), "option names to lists of values")
    if not all(isinstance(v, list) and v for v in grid.values()):
        raise BadValue(f"{path}: every `grid:` entry is a non-empty list of values")
    _sweep_owned(path, "grid", grid)
    for values in itertools.product(*grid.values()) if grid else []:
        combo = dict(zip(grid, values, strict=True))
        run_name = safe_part(",".join(f"{k.split('.')[-1]}={_arg_value(v)}" for k, v in combo.items()))
        if run_name in runs:
            raise BadValue(
                f"{path}: the grid values {combo} make the run name {run_name!r}, which "
                f"{'another grid combination' if run_name not in spec.get('runs', {}) else '`runs:`'} has too "
                f"({runs[run_name]}); one would be dropped. Give distinct values, or name the runs with `runs:`"
            )
        runs[run_name] = combo
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
        "file": str(path), "sweep": name, "configs": configs, "args": args, "runs": runs, "groups": groups, "seeds": seeds,
        "compare": _names(path, "compare", spec.get("compare"), DEFAULT_COMPARE),
        "final": _names(path, "final", spec.get("final"), ["train/acc", "test/acc"]),
    }  # fmt: skip


def _sweep_owned(path: Path, where: str, overrides: dict[str, Any]) -> None:
    owned = [k for k in overrides if k.lstrip("-") in SWEEP_OWNED]
    if owned:
        raise BadValue(
            f"{path}: `{where}:` sets {owned[0].lstrip('-')}, which the sweep sets for each run (its folder "
            f"lightning_logs/<sweep>/<run>, its resume); name the runs with `sweep:` and the run names instead"
        )


def run_args(spec: dict[str, Any], name: str, extra: list[str]) -> list[str]:
    """The arguments of ``python -m cifar_pl fit`` for run ``name`` (without a checkpoint to resume)."""
    args: list[str] = []
    for config in spec["configs"]:
        args += ["--config", str(config)]
    return [*args, "--experiment", f"{spec['sweep']}/{name}", *_as_args(spec["args"]),
            *_as_args(spec["runs"][name]), *extra]  # fmt: skip


def configuration_of(args: list[str]) -> dict[str, Any]:
    """What ``fit`` with ``args`` would run, as its plain configuration, after parsing the arguments and building
    the model, the DataModule and the callbacks as ``fit`` would (no data is read, no trainer made, nothing
    written): a bad value raises the one-line error ``fit`` would give."""
    from .cli import CifarCLI  # deferred: Lightning and the CLI (3 s), only when a sweep's runs are checked

    class _Check(CifarCLI):
        def instantiate_trainer(self, **kwargs):
            return None

        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            self._check_fit_values(self.config)

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli = _Check(args=args, run=False)
    except Exception as e:
        err = user_error_in(e)
        if err is None:
            raise
        raise err from None
    return cli._config_view


def check_runs(spec: dict[str, Any], names: list[str], extra: list[str]) -> dict[str, dict[str, Any]]:
    """Every run's configuration (see ``configuration_of``), or the first run's error naming the run."""
    views = {}
    for name in names:
        try:
            views[name] = configuration_of(run_args(spec, name, extra))
        except UserError as e:
            raise BadValue(f"{spec['file']}: run {name!r}: {e}") from None
        # a config file named in args/runs/grid (or on the command line) may set what the sweep owns
        folder = f"{spec['sweep']}/{name}"
        if views[name].get("experiment") != folder or views[name].get("ckpt_path") is not None:
            key, value = (
                ("experiment", views[name].get("experiment"))
                if views[name].get("experiment") != folder
                else ("ckpt_path", views[name].get("ckpt_path"))
            )
            raise BadValue(
                f"{spec['file']}: run {name!r}: a config it includes sets {key} to {value!r}, which the sweep sets "
                f"for each run (its folder lightning_logs/{folder}, its resume); remove {key} from that config"
            )
    return views


def recorded_configuration(run_dir: Path) -> dict[str, Any] | None:
    """The configuration a run's newest version ran with: its record's, else its last checkpoint's."""
    versions = version_dirs(run_dir)
    record = read_record(versions[-1]) if versions else None
    if record and isinstance(record.get("config"), dict):
        return record["config"]
    last = latest_last_checkpoint(run_dir)
    if last is None:
        return None
    from .checkpoints import read_checkpoint  # deferred: Lightning, only for a run that has a checkpoint

    try:
        return read_checkpoint(last).config
    except UserError:
        return None


def changes_since(old: dict[str, Any], new: dict[str, Any], complete: bool) -> list[tuple[str, Any, Any]]:
    """What differs between a run's recorded configuration and the one the sweep would run: what makes a resume a
    new stage, and for a finished run also what decides its results (epochs, the test)."""
    from .stages import _canon, differences, flatten  # deferred: stages imports Lightning (3 s)

    out = differences(old, new)
    if complete:
        a, b = flatten(old), flatten(new)
        out += [(k, a.get(k), b.get(k)) for k in RESULT_KEYS if _canon(a.get(k)) != _canon(b.get(k))]
    return out


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


def check_sweep(
    spec: dict[str, Any],
    extra: list[str],
    log_root: Path = Path(LOG_ROOT),
    only=None,
    rerun_changed: bool = False,
) -> dict[str, str]:
    """Before the first run: every run's configuration (``check_runs``), and every run that ran before compared
    with it. Returns what to do with the runs that differ: ``longer`` (a finished run whose only change is a higher
    ``trainer.max_epochs``: it trains on from its last checkpoint) or ``again`` (anything else changed: trained
    again from scratch, in a new version folder, only with ``rerun_changed``; without it they are refused in one
    line that names them and what changed)."""
    from .stages import describe  # deferred: stages imports Lightning (3 s)

    names = [n for n in spec["runs"] if not only or n in only]
    views = check_runs(spec, names, extra)
    changed, plan = {}, {}
    for name in names:
        run_dir = log_root / spec["sweep"] / name
        status = run_status(run_dir)
        if status != "complete" and latest_last_checkpoint(run_dir) is None:
            continue  # nothing kept that the sweep would reuse
        old = recorded_configuration(run_dir)
        diff = changes_since(old, views[name], status == "complete") if old is not None else []
        if diff and all(k == "trainer.max_epochs" and _more_epochs(a, b) for k, a, b in diff):
            plan[name] = "longer"
        elif diff:
            changed[name] = diff
            plan[name] = "again"
    if changed and not rerun_changed:
        shown = "; ".join(f"{n} ({describe(d, 3)})" for n, d in list(changed.items())[:3])
        more = f"; ... {len(changed)} runs in all" if len(changed) > 3 else ""
        raise BadValue(
            f"{spec['file']}: {len(changed)} run(s) ran with another configuration than the file gives now, so their "
            f"results are not this file's: {shown}{more}. Run them again from scratch with --rerun-changed (a new "
            f"version folder beside the old one), or restore the file"
        )
    return plan


def _more_epochs(old: Any, new: Any) -> bool:
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (old, new))
    return numbers and old != -1 and (new == -1 or new > old)


def run_sweep(
    spec: dict[str, Any],
    extra: list[str],
    log_root: Path = Path(LOG_ROOT),
    dry_run: bool = False,
    only=None,
    changed: dict[str, str] | None = None,
) -> dict[str, str]:
    """Run every run of ``spec`` not done yet (``changed``: ``check_sweep``'s plan for runs that ran before with
    another configuration); returns run name -> ``done``/
    ``skipped``/``interrupted (...)``/``failed (...)``/``dry run``. A signal stops the sweep after the run in
    progress has saved. One line per run says where the sweep is (run k of N, elapsed, an estimate of the time
    left from the runs done so far); each run's own output goes to ``<run folder>/sweep.log`` (its last lines are
    shown when it fails)."""
    sweep_dir = log_root / spec["sweep"]
    status: dict[str, str] = {}
    changed = changed or {}
    names = [n for n in spec["runs"] if not only or n in only]
    todo = [n for n in names if run_status(sweep_dir / n) != "complete" or n in changed]
    if dry_run:
        print(f"[sweep] dry run: {len(todo)} of {len(names)} runs would run; nothing is started")
    durations: list[float] = []
    begun = time.perf_counter()
    with _Forward() as forward:
        for k, name in enumerate(names, 1):
            if forward.signum is not None:
                break
            run_dir = sweep_dir / name
            before = run_status(run_dir)
            again = changed.get(name) == "again"
            tag = f"[sweep {k}/{len(names)}]"
            if before == "complete" and name not in changed:
                print(f"{tag} {name}: finished before, skipped (its configuration is this file's)")
                status[name] = "skipped"
                continue
            cmd = [sys.executable, "-m", "cifar_pl", "fit", *run_args(spec, name, extra)]
            last = latest_last_checkpoint(run_dir) if not again else None
            if last is not None:
                cmd += ["--ckpt_path", str(last)]
            doing = (f"resuming ({before}) from {last}" if last else
                     "changed since it ran: starting again in a new version folder" if again else "starting")  # fmt: skip
            if dry_run:
                print(f"{tag} {name}: {doing} (dry run: not started)\n  {' '.join(cmd)}", flush=True)
                status[name] = "dry run"
                continue
            log = run_dir / "sweep.log"
            print(f"{tag} {name}: {doing} (output: {log})", flush=True)
            start = time.perf_counter()
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as out:
                out.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {doing}\n{' '.join(cmd)}\n")
                out.flush()
                forward.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
                rc = forward.proc.wait()
            forward.proc = None
            took = time.perf_counter() - start
            after = run_status(run_dir)
            if rc != 0 or after != "complete":
                kind = "interrupted" if rc > 128 or after == "interrupted" else "failed"
                then = ("run the sweep again to resume it" if kind == "interrupted" or rc != 2 else
                        "it refused a value or stopped on one (the error below): running again repeats it until "
                        "that is fixed")  # fmt: skip
                print(
                    f"{tag} {name}: {kind} (exit {rc}, its record says {after}); {then}\n{_tail(log)}",
                    flush=True,
                )
                status[name] = f"{kind} (exit {rc})"
                continue
            result = final_values(run_dir)
            result["wall_s"] = round(took, 1)
            result["overrides"] = spec["runs"][name]
            write_text_atomic(run_dir / "result.json", json.dumps(result, indent=2))
            status[name] = "done"
            durations.append(took)
            left = (
                sum(1 for n in todo[todo.index(name) + 1 :] if status.get(n) is None) if name in todo else 0
            )
            print(f"{tag} {name}: done in {took:.1f} s{_headline(result)}; elapsed {time.perf_counter() - begun:.0f} s"
                  f"{f', about {left * sum(durations) / len(durations):.0f} s left ({left} runs)' if left else ''}",
                  flush=True)  # fmt: skip
    if forward.signum is not None:
        status["__signal__"] = str(forward.signum)
    return status


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
    from .viz.curves import read_scalars  # deferred: matplotlib, only when results are read

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
    from .viz.curves import compare_figure, final_bars_figure, read_scalars, save  # deferred: matplotlib

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
    parser.add_argument("--rerun-changed", action="store_true",
                        help="train again, from scratch and in a new version folder, the runs whose configuration "
                             "changed since they ran (without it the sweep refuses them)")  # fmt: skip
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
    status = {}
    if not args.plots_only:
        changed = check_sweep(spec, extra, only=only, rerun_changed=args.rerun_changed)
        status = run_sweep(spec, extra, dry_run=args.dry_run, only=only, changed=changed)
    signum = status.pop("__signal__", None)
    for name, s in status.items():
        print(f"[sweep] {name}: {s}")  # the summary, one line per run
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
