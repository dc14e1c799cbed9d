"""A sweep file and its runs, for both engines (one after another: ``sequential``; side by side on Ray Tune:
``ray_engine``): the file read and checked, each run's command and configuration, and what each run needs now
(nothing, a start, a resume)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import itertools
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import safe_yaml
from ..errors import BadValue, UserError, user_error_in
from ..runs import (
    LOG_ROOT,
    check_name,
    latest_last_checkpoint,
    read_record,
    run_status,
    safe_part,
    version_dirs,
)

DEFAULT_COMPARE = ["train/loss", "train/acc", "val/acc", "train/epoch_time"]
SWEEP_KEYS = ("sweep", "config", "args", "runs", "grid", "compare", "final", "seeds", "repeats", "search")
SEARCH_KEYS = ("space", "num_samples", "metric", "mode", "scheduler", "grace_period", "reduction_factor",
               "sampler", "seed")  # fmt: skip
SPACE_KINDS = ("loguniform", "uniform", "int", "choice")
# what a trial reports after each epoch (cifar_pl.ray_engine.REPORTED), so what a search can decide on
SEARCH_METRICS = ("val/acc", "val/loss", "val/acc_best", "train/acc", "train/loss")
SEED_SEP = ",seed="
RESERVED = ("plots", "search")  # the sweep's own folders beside its runs: its charts, a search's trials
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
    search = load_search(path, spec.get("search"))
    if search is not None and runs:
        raise BadValue(
            f"{path}: a search (`search:`) draws its own runs; give `runs:`/`grid:` in another sweep file"
        )
    if search is not None and (spec.get("seeds") is not None or spec.get("repeats") is not None):
        raise BadValue(
            f"{path}: a search repeats its best configuration with --confirm-seeds N, not `seeds:`/`repeats:`"
        )
    if not runs and search is None:
        raise BadValue(f"{path}: no runs; give `runs:`, `grid:` or `search:`")
    for run in runs:
        check_name(run, f"{path}: run name")
        if "/" in run:
            raise BadValue(f"{path}: run name {run!r} becomes one folder name; use no '/'")
        if SEED_SEP in run:
            raise BadValue(f"{path}: run name {run!r} holds {SEED_SEP!r}, which names the repeats of a run")
        if run in RESERVED:
            raise BadValue(f"{path}: run name {run!r} is the name of the sweep's own folder for its "
                           f"{'charts' if run == 'plots' else 'search'}; give the run another name")  # fmt: skip
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
        "final": _names(path, "final", spec.get("final"), ["train/acc", "test/acc"]), "search": search,
    }  # fmt: skip


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_search(path: Path, value: Any) -> dict[str, Any] | None:
    """A sweep file's ``search:``, checked (the keys of ``space`` are checked against the options later, by building
    each run): ``space`` maps an option to ``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}``, ``{int: [lo, hi]}``
    (both ends included) or ``{choice: [a, b, ...]}``; ``num_samples`` trials; ``metric``/``mode`` (default
    ``val/acc``, ``max``); ``scheduler`` ``asha`` (default: stop the trials that trail, decided each epoch) or
    ``none``; ``grace_period`` (epochs before a trial can be stopped, default 1) and ``reduction_factor`` (default
    2); ``sampler`` ``random`` (default) or ``optuna`` (TPE); ``seed`` of the sampler (default 0)."""
    if value is None:
        return None
    s = _mapping(path, "search", value, "search settings (space, num_samples, metric, ...)")
    unknown = sorted(set(s) - set(SEARCH_KEYS))
    if unknown:
        raise BadValue(f"{path}: unknown keys {unknown} in `search:`; it has {', '.join(SEARCH_KEYS)}")
    space = _mapping(
        path, "search.space", s.get("space"), "option names to {loguniform|uniform|int|choice: ...}"
    )
    if not space:
        raise BadValue(
            f"{path}: `search.space` is empty; give e.g. {{model.optim.lr: {{loguniform: [0.001, 1.0]}}}}"
        )
    _sweep_owned(path, "search.space", space)
    for key, dist in space.items():
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in SPACE_KINDS:
            raise BadValue(
                f"{path}: search.space.{key} is one of {{loguniform: [lo, hi]}}, {{uniform: [lo, hi]}}, {{int: [lo, hi]}}"
                f" or {{choice: [a, b, ...]}}; got {dist!r:.80}"
            )
        kind, arg = next(iter(dist.items()))
        if kind == "choice":
            if not isinstance(arg, list) or not arg:
                raise BadValue(f"{path}: search.space.{key}.choice is a non-empty list of values")
            continue
        ok = isinstance(arg, list) and len(arg) == 2 and all(_number(x) for x in arg) and arg[0] < arg[1]
        if kind == "int":
            ok = ok and all(isinstance(x, int) for x in arg)
        if kind == "loguniform":
            ok = ok and arg[0] > 0
        if not ok:
            need = {"loguniform": "0 < lo < hi", "uniform": "lo < hi", "int": "whole numbers lo < hi"}[kind]
            raise BadValue(f"{path}: search.space.{key}.{kind} is [lo, hi] with {need}; got {arg!r:.80}")
    n = s.get("num_samples", 8)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10000:
        raise BadValue(f"{path}: search.num_samples is the number of trials, 1 to 10000; got {n!r}")
    mode = s.get("mode", "max")
    if mode not in ("max", "min"):
        raise BadValue(f"{path}: search.mode is max or min; got {mode!r}")
    metric = s.get("metric", "val/acc")
    if metric not in SEARCH_METRICS:
        raise BadValue(
            f"{path}: search.metric {metric!r}: a trial reports {', '.join(SEARCH_METRICS)} each epoch"
        )
    scheduler = s.get("scheduler", "asha")
    if scheduler not in ("asha", "none"):
        raise BadValue(
            f"{path}: search.scheduler is asha (stop trailing trials early) or none; got {scheduler!r}"
        )
    sampler = s.get("sampler", "random")
    if sampler not in ("random", "optuna"):
        raise BadValue(f"{path}: search.sampler is random or optuna (TPE); got {sampler!r}")
    grace, factor, seed = s.get("grace_period", 1), s.get("reduction_factor", 2), s.get("seed", 0)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 1:
        raise BadValue(f"{path}: search.grace_period is a whole number of epochs >= 1; got {grace!r}")
    if not _number(factor) or factor <= 1:
        raise BadValue(
            f"{path}: search.reduction_factor is a number above 1 (2: keep the better half); got {factor!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadValue(f"{path}: search.seed is a whole number in [0, 2**32); got {seed!r}")
    return {"space": space, "num_samples": n, "metric": metric, "mode": mode, "scheduler": scheduler,
            "grace_period": grace, "reduction_factor": float(factor), "sampler": sampler, "seed": seed}  # fmt: skip


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
    from ..cli import CifarCLI  # deferred: Lightning and the CLI (3 s), only when a sweep's runs are checked

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


def _option(key: str) -> str:
    """An option's name as a run's overrides and the command line may both spell it (``data.init_args.data_dir``
    is ``data.data_dir``)."""
    return ".".join(part for part in key.lstrip("-").split("=", 1)[0].split(".") if part != "init_args")


def _leaves(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    """The options a run's overrides set, down to the keys of a mapping value (a mapping is merged with what the
    command line gives inside it: ``model.net_kwargs: {noise_mode: x}`` and ``--model.net_kwargs.width`` both
    hold)."""
    out = []
    for key, value in overrides.items():
        if key.endswith("+"):
            continue
        name = _option(f"{prefix}{key}")
        out += _leaves(value, f"{name}.") if isinstance(value, dict) and value else [name]
    return out


def check_extra(spec: dict[str, Any], extra: list[str]) -> None:
    """Arguments after the sweep file go to every run, after its own values: one that sets what the sweep sets per
    run (an option of ``runs:``/``grid:``, the seed of ``seeds:``/``repeats:``, a searched option) would give every
    run the same value under its own name, and the summary a spread of zero. Refused in one line. Appending to a
    list option (``trainer.callbacks+``) overrides nothing."""
    given = {_option(a) for a in extra if a.startswith("--") and not a.split("=", 1)[0].endswith("+")}
    per_run = {leaf for overrides in spec["runs"].values() for leaf in _leaves(overrides)}
    if spec.get("search"):
        per_run |= {_option(k) for k in spec["search"]["space"]}
    clash = sorted(
        g for g in given for r in per_run if g == r or g.startswith(f"{r}.") or r.startswith(f"{g}.")
    )
    if clash:
        what = "a searched option" if spec.get("search") else "an option the sweep sets per run"
        raise BadValue(
            f"{spec['file']}: --{clash[0]} on the command line is {what} (`runs:`, `grid:`, `seeds:` or `search:`): "
            f"it would give every run the same value under its own name. Set it in the file, or drop it"
        )


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
    from ..checkpoints import read_checkpoint  # deferred: Lightning, only for a run that has a checkpoint

    try:
        return read_checkpoint(last).config
    except UserError:
        return None


def changes_since(old: dict[str, Any], new: dict[str, Any], complete: bool) -> list[tuple[str, Any, Any]]:
    """What differs between a run's recorded configuration and the one the sweep would run: what makes a resume a
    new stage, and for a finished run also what decides its results (epochs, the test)."""
    from ..stages import _canon, differences, flatten  # deferred: stages imports Lightning (3 s)

    out = differences(old, new)
    if complete:
        a, b = flatten(old), flatten(new)
        out += [(k, a.get(k), b.get(k)) for k in RESULT_KEYS if _canon(a.get(k)) != _canon(b.get(k))]
    return out


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
    line that names them and what changed), or ``try`` (the run is a ``trainer.fast_dev_run``: a few batches that
    keep nothing, started afresh whatever ran before)."""
    from ..stages import describe  # deferred: stages imports Lightning (3 s)

    names = [n for n in spec["runs"] if not only or n in only]
    views = check_runs(spec, names, extra)
    changed, plan = {}, {}
    for name in names:
        if is_try(views[name]):
            plan[name] = "try"  # a few batches, nothing kept: what ran before is neither compared nor reused
            continue
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


def is_try(view: dict[str, Any]) -> bool:
    """Whether a run's configuration is a ``trainer.fast_dev_run``: a try of a few batches that keeps no record,
    checkpoint or result (the run's folder gets its ``sweep.log`` only)."""
    return bool((view.get("trainer") or {}).get("fast_dev_run"))


def _more_epochs(old: Any, new: Any) -> bool:
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (old, new))
    return numbers and old != -1 and (new == -1 or new > old)


@dataclass
class Planned:
    """One run of a sweep as both engines start it: its folder, its command (resuming its own ``last.ckpt`` where
    there is one), what the progress line says, whether it finished before (then it is not started) and whether it
    is a try (``trainer.fast_dev_run``: it keeps nothing)."""

    index: int
    name: str
    run_dir: Path
    cmd: list[str]
    doing: str
    finished: bool
    tryout: bool = False  # a fast_dev_run: a few batches, nothing kept (``is_try``)


def plan_runs(
    spec: dict[str, Any],
    extra: list[str],
    log_root: Path = Path(LOG_ROOT),
    only=None,
    changed: dict[str, str] | None = None,
) -> list[Planned]:
    """What each run of ``spec`` needs now (``changed``: ``check_sweep``'s plan): nothing (complete with this
    file's configuration), a start, a resume from its ``last.ckpt``, a new start in a new version folder, or a try
    (fast_dev_run)."""
    changed = changed or {}
    out = []
    names = [n for n in spec["runs"] if not only or n in only]
    for k, name in enumerate(names, 1):
        run_dir = log_root / spec["sweep"] / name
        before = run_status(run_dir)
        again, tryout = changed.get(name) == "again", changed.get(name) == "try"
        cmd = [sys.executable, "-m", "cifar_pl", "fit", *run_args(spec, name, extra)]
        last = latest_last_checkpoint(run_dir) if not (again or tryout) else None
        if last is not None:
            cmd += ["--ckpt_path", str(last)]
        doing = ("trying (fast_dev_run: a few batches; nothing is kept)" if tryout else
                 f"resuming ({before}) from {last}" if last else
                 "changed since it ran: starting again in a new version folder" if again else "starting")  # fmt: skip
        out.append(
            Planned(k, name, run_dir, cmd, doing, before == "complete" and name not in changed, tryout)
        )
    return out


def child_env(threads: int | None) -> dict[str, str]:
    """A run's environment: this one, with ``threads`` CPU threads for its math when given (``--cpus-per-run``)."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


@contextlib.contextmanager
def sweep_lock(spec: dict[str, Any]) -> Iterator[None]:
    """The sweep's folder held by this process while it runs: a second copy of the same sweep (which would train
    every run twice into the same folders) is refused in one line; the lock goes with the process, also when it is
    killed. A folder that cannot be written is one line too."""
    folder = Path(LOG_ROOT) / spec["sweep"]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BadValue(
            f"{folder}: cannot write the sweep's folder ({e.strerror or e}); run the sweep from a project folder "
            f"whose {LOG_ROOT}/ can be written"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BadValue(
                f"{spec['file']}: this sweep is running in another process (pid {holder}); wait for it to end, or "
                f"stop it and run this command again (its runs resume)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
