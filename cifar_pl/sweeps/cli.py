"""The command ``python -m cifar_pl.sweep <sweep file> [arguments for every run]``: the sweep file read and checked,
its runs run by the engine chosen (``sequential`` or ``ray_engine``) or its search drawn (``search``), a summary
line per run and the charts drawn. The sweep file's format: the package's docstring (``cifar_pl.sweeps``)."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from typing import Any

from ..errors import BadValue, run_main_code
from .report import TRIED, plot_sweep
from .sequential import run_sweep
from .spec import check_extra, check_sweep, load_sweep, sweep_lock

_DESCRIPTION = "Run a family of experiments that differ in a few values and compare them (docs/scale.md)."


def sweep(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run and draw; the exit code: 0 all done, 1 a run failed, 128 + n stopped by signal n."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_pl.sweep", description=_DESCRIPTION,
        epilog="Arguments after the sweep file go to every run, e.g. --data.data_dir ../shared/data (not what the "
               "file sets per run: refused).",
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
    check_extra(spec, extra)
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
    status, changed = {}, {}
    if not args.plots_only:
        changed = check_sweep(spec, extra, only=only, rerun_changed=args.rerun_changed)
        with contextlib.nullcontext() if args.dry_run else sweep_lock(spec):
            if use_ray and not args.dry_run:
                from .ray_engine import run_sweep_ray  # deferred: Ray, only for its engine

                status = run_sweep_ray(spec, extra, res, only=only, changed=changed)
            else:
                threads = None if args.cpus_per_run is None else max(1, int(args.cpus_per_run))
                status = run_sweep(
                    spec, extra, dry_run=args.dry_run, only=only, changed=changed, threads=threads
                )
    signum = status.pop("__signal__", None)
    for name, s in status.items():
        print(f"[sweep] {name}: {s}")  # the summary, one line per run
    tries = bool(status) and all(v == TRIED or changed.get(k) == "try" for k, v in status.items())
    if tries:
        print("[sweep] no charts: the runs were tries (fast_dev_run), which keep nothing to draw")
    elif not args.dry_run:
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


def _search(spec: dict[str, Any], extra: list[str], args: argparse.Namespace, res: Any) -> int:
    from .search import run_search  # deferred: Ray and the search, only for a search

    return run_search(spec, extra, res, confirm_seeds=args.confirm_seeds, dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    return run_main_code(lambda: sweep(argv))


if __name__ == "__main__":
    sys.exit(main())
