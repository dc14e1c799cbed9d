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

Where the runs run: with Ray Tune installed (``pip install 'cifar_pl[ray]'``), side by side as Tune trials
(``cifar_pl.ray_engine``: ``--cpus-per-run``, ``--gpus-per-run``, ``--max-parallel``, ``--address``), else one after
another in this process's machine (``--engine sequential`` asks for that with Ray installed). A ``search:`` section
searches options instead of listing runs (``cifar_pl.search``, Ray only). docs/scale.md.

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
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .errors import BadValue, run_main_code
from .runs import LOG_ROOT
from .sweep_runs import (  # noqa: F401  (the sweep's library, also used from here by tests and scripts)
    DEFAULT_COMPARE,
    RESULT_KEYS,
    SEED_SEP,
    SUMMARY_COLS,
    SWEEP_KEYS,
    SWEEP_OWNED,
    Planned,
    Progress,
    _as_args,
    changes_since,
    check_runs,
    check_sweep,
    child_env,
    configuration_of,
    failure_line,
    final_values,
    group_finals,
    load_sweep,
    overlap_lines,
    plan_runs,
    plot_sweep,
    record_result,
    recorded_configuration,
    run_args,
    run_status,
    start_log,
    summary_lines,
)  # fmt: skip


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
    spec: dict[str, Any],
    extra: list[str],
    log_root: Path = Path(LOG_ROOT),
    dry_run: bool = False,
    only=None,
    changed: dict[str, str] | None = None,
    threads: int | None = None,
) -> dict[str, str]:
    """Run every run of ``spec`` not done yet, one after another (``changed``: ``check_sweep``'s plan for runs that
    ran before with another configuration; ``threads``: CPU threads per run); returns run name -> ``done``/
    ``skipped``/``interrupted (...)``/``failed (...)``/``dry run``. A signal stops the sweep after the run in
    progress has saved. One line per run says where the sweep is (run k of N, elapsed, an estimate of the time
    left from the runs done so far); each run's own output goes to ``<run folder>/sweep.log`` (its last lines are
    shown when it fails)."""
    status: dict[str, str] = {}
    plan = plan_runs(spec, extra, log_root, only, changed)
    todo = [r for r in plan if not r.finished]
    if dry_run:
        print(f"[sweep] dry run: {len(todo)} of {len(plan)} runs would run; nothing is started")
    progress = Progress(len(todo))
    with _Forward() as forward:
        for run in plan:
            if forward.signum is not None:
                break
            tag = f"[sweep {run.index}/{len(plan)}]"
            if run.finished:
                print(f"{tag} {run.name}: finished before, skipped (its configuration is this file's)")
                status[run.name] = "skipped"
                continue
            if dry_run:
                print(
                    f"{tag} {run.name}: {run.doing} (dry run: not started)\n  {' '.join(run.cmd)}", flush=True
                )
                status[run.name] = "dry run"
                continue
            print(f"{tag} {run.name}: {run.doing} (output: {run.run_dir / 'sweep.log'})", flush=True)
            start = time.perf_counter()
            progress.started(run.name)
            with start_log(run) as out:
                forward.proc = subprocess.Popen(
                    run.cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(threads)
                )
                rc = forward.proc.wait()
            forward.proc = None
            took = time.perf_counter() - start
            if rc != 0 or run_status(run.run_dir) != "complete":
                status[run.name], line = failure_line(tag, run, rc)
                progress.failed(run.name)
                print(line, flush=True)
                continue
            result = record_result(spec, run, took)
            status[run.name] = "done"
            print(progress.done(tag, run.name, took, result), flush=True)
    if forward.signum is not None:
        status["__signal__"] = str(forward.signum)
    return status


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
    engine = parser.add_argument_group("where the runs run (Ray Tune: pip install 'cifar_pl[ray]')")
    engine.add_argument("--engine", choices=["auto", "ray", "sequential"], default="auto",
                        help="ray: runs side by side as Ray Tune trials; sequential: one after another in this "
                             "process's machine; auto (default): ray when it is installed")  # fmt: skip
    engine.add_argument("--cpus-per-run", type=float, default=None,
                        help="CPUs per run, also its math threads (ray default 1; sequential default: all)")  # fmt: skip
    engine.add_argument("--gpus-per-run", type=float, default=None,
                        help="GPUs per run on Ray; a fraction shares a GPU (0.5: two runs each) (default: 1 where "
                             "the cluster has GPUs, else 0)")  # fmt: skip
    engine.add_argument("--max-parallel", type=int, default=None,
                        help="runs at a time on Ray at most (default: as many as the CPUs/GPUs hold)")  # fmt: skip
    engine.add_argument("--address", default=None,
                        help="a running Ray cluster: auto, host:port or ray://host:port (default: start Ray on "
                             "this machine for the sweep)")  # fmt: skip
    engine.add_argument("--confirm-seeds", type=int, default=3,
                        help="a search: train its best configuration again with this many seeds (default 3; 0: "
                             "none)")  # fmt: skip
    args, extra = parser.parse_known_args(argv)
    spec = load_sweep(args.sweep)
    if args.cpus_per_run is not None and not (math.isfinite(args.cpus_per_run) and args.cpus_per_run > 0):
        raise BadValue(
            f"--cpus-per-run {args.cpus_per_run:g}: give a positive number of CPUs per run, e.g. 1"
        )
    if not 0 <= args.confirm_seeds <= 100:
        raise BadValue(f"--confirm-seeds {args.confirm_seeds}: give 0 (none) to 100 seeds")
    if spec.get("search") is not None and args.only:
        raise BadValue("--only picks runs of a sweep's runs:/grid:; a search draws its own trials")
    if spec.get("search") is not None and args.plots_only:
        return _search_plots(spec)
    use_ray = _use_ray(args, spec)
    res = None
    if use_ray:
        from .ray_engine import Resources  # deferred: only for the Ray engine

        res = Resources(1.0 if args.cpus_per_run is None else args.cpus_per_run, args.gpus_per_run,
                        args.max_parallel, args.address)  # fmt: skip
        res.check()
    if spec.get("search") is not None:
        return _search(spec, extra, args, res)
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
        if use_ray and not args.dry_run:
            from .ray_engine import run_sweep_ray  # deferred: Ray, only for its engine

            status = run_sweep_ray(spec, extra, res, only=only, changed=changed)
        else:
            threads = None if args.cpus_per_run is None else max(1, int(args.cpus_per_run))
            status = run_sweep(spec, extra, dry_run=args.dry_run, only=only, changed=changed, threads=threads)
    signum = status.pop("__signal__", None)
    for name, s in status.items():
        print(f"[sweep] {name}: {s}")  # the summary, one line per run
    if not args.dry_run:
        for p in plot_sweep(spec):
            print(f"wrote {p}")
    if signum is not None:
        return 128 + int(signum)
    return 1 if any(s.startswith(("failed", "interrupted")) for s in status.values()) else 0


def _use_ray(args: argparse.Namespace, spec: dict[str, Any]) -> bool:
    """Which engine runs the sweep: Ray when asked for or installed (``auto``), else one run after another;
    options only Ray honours are refused without it, in one line."""
    from .ray_engine import (  # deferred: the Ray engine's module (Ray itself is not imported)
        RAY_HINT,
        ray_available,
    )

    ray_only = [o for o, v in (("--gpus-per-run", args.gpus_per_run), ("--max-parallel", args.max_parallel),
                               ("--address", args.address)) if v is not None]  # fmt: skip
    if args.engine == "sequential":
        if ray_only or spec.get("search") is not None:
            what = ray_only[0] if ray_only else "a search (`search:`)"
            raise BadValue(f"{what} runs on Ray only; drop --engine sequential")
        return False
    if not ray_available():
        if args.engine == "ray" or ray_only or spec.get("search") is not None:
            what = (
                "--engine ray"
                if args.engine == "ray"
                else ray_only[0]
                if ray_only
                else "a search (`search:`)"
            )
            raise BadValue(f"{what} needs Ray Tune, which is not installed: {RAY_HINT}")
        return False
    return True


def _search_plots(spec: dict[str, Any]) -> int:
    from .search import search_plots  # deferred: the search's module (Ray), only for a search

    return search_plots(spec)


def _search_plots(spec: dict[str, Any]) -> int:
    from .search import search_plots  # deferred: the search's module (Ray), only for a search

    return search_plots(spec)


def _search(spec: dict[str, Any], extra: list[str], args: argparse.Namespace, res: Any) -> int:
    from .search import run_search  # deferred: Ray and the search, only for a search

    return run_search(spec, extra, res, confirm_seeds=args.confirm_seeds, dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    return run_main_code(lambda: sweep(argv))


if __name__ == "__main__":
    sys.exit(main())
