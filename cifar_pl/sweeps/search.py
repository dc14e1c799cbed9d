"""A search over options, on Ray Tune: a sweep file's ``search:`` section.

```yaml
sweep: gap_lr_search
config: configs/model_gap.yaml
args: {trainer.max_epochs: 6}
search:
  space: {model.optim.lr: {loguniform: [0.001, 1.0]}}
  num_samples: 8            # trials
  metric: val/acc           # reported by every trial after each epoch
  mode: max
  scheduler: asha           # stop the trailing trials early (grace_period, reduction_factor); or none
  sampler: random           # or optuna (TPE, through Tune's OptunaSearch)
```

Each trial is a run of ``fit`` like a sweep's (``lightning_logs/<sweep>/search/<trial>``, its own record and
checkpoints), with the values Tune drew; it reports the validation metrics of each epoch, on which ASHA stops the
trials that trail. At the end ``lightning_logs/<sweep>/search/search.md`` and ``search.json`` give every trial
(values, best metric, epochs trained, stopped early or not) and ``search/plots/<option>.png`` the metric against
each searched value. The best configuration is then trained again with ``--confirm-seeds N`` seeds (default 3) as
the sweep's runs ``best,seed=<s>``, drawn and summarised as any sweep with repeats (mean ± std).

Running the same command again continues a stopped search (Tune's own state in ``<sweep>/.ray/search``; each
unfinished trial resumes from its run's ``last.ckpt``) and skips what is complete.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import BadValue, UserError
from ..files import write_text_atomic
from ..runs import LOG_ROOT, latest_last_checkpoint, read_scalars, run_status, safe_part, wait_while_running
from .ray_engine import (
    Resources,
    SweepStop,
    _quiet_tune,
    ray_session,
    require_ray,
    run_one,
    run_sweep_ray,
)
from .report import plot_sweep
from .spec import SEED_SEP, check_sweep, configuration_of, is_try, run_args, sweep_lock

SEARCH_DIR = "search"


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def trial_name(trial_id: str, values: dict[str, Any]) -> str:
    """A trial's run name: its number (random sampling: Tune's ids end in ``_00003``) or Tune's id (Optuna's are
    bare), and the values it was given (``t003,lr=0.0123``)."""
    found = re.search(r"_(\d+)$", trial_id)
    label = f"{int(found.group(1)):03d}" if found else safe_part(trial_id)
    shown = ",".join(f"{k.split('.')[-1]}={_value_text(v)}" for k, v in values.items())
    return safe_part(f"t{label},{shown}")


def _base_spec(spec: dict[str, Any], extra: list[str], threads: int, max_epochs: int) -> dict[str, Any]:
    """What a trial needs of the sweep to build its command (plain values; shipped to the workers)."""
    return {"sweep": spec["sweep"], "configs": spec["configs"], "args": spec["args"], "extra": list(extra),
            "keys": list(spec["search"]["space"]), "cwd": str(Path.cwd()), "log_root": LOG_ROOT, "threads": threads,
            "max_epochs": max_epochs,
            "env": {k: os.environ[k] for k in ("PYTHONPATH", "CIFAR_PL_DATA", "CIFAR_PL_TRACEBACK") if k in os.environ},
            }  # fmt: skip


def trial_run(config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """In a trial's worker: the run of the values Tune drew (its name from the trial's number), resuming its own
    ``last.ckpt`` when it has one (a restored search)."""
    from ray import tune

    values = {k: config[k] for k in base["keys"]}
    name = trial_name(tune.get_context().get_trial_id(), values)
    runs_spec = {"sweep": f"{base['sweep']}/{SEARCH_DIR}", "configs": base["configs"], "args": base["args"],
                 "runs": {name: values}}  # fmt: skip
    cwd = Path(base["cwd"])
    run_dir = cwd / base["log_root"] / base["sweep"] / SEARCH_DIR / name
    cmd = [sys.executable, "-m", "cifar_pl", "fit", *run_args(runs_spec, name, base["extra"])]
    last = latest_last_checkpoint(run_dir)
    if last is not None:
        cmd += ["--ckpt_path", str(last)]
    threads = str(base["threads"])
    return {"name": name, "run_dir": str(run_dir), "cmd": cmd, "cwd": str(cwd),
            "doing": f"resuming from {last}" if last else "starting", "resume": str(last) if last else None,
            "experiment": runs_spec["sweep"] + "/" + name, "log_root": str(cwd / base["log_root"]),
            "env": {**base["env"], "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
            "max_epochs": base["max_epochs"]}  # fmt: skip


def search_trial(config: dict[str, Any], base: dict[str, Any]) -> None:
    """A search's Tune trial: the run of the values Tune drew."""
    run_one(trial_run(config, base))


def _candidates(dist: dict[str, Any]) -> list[Any]:
    kind, arg = next(iter(dist.items()))
    return list(arg) if kind == "choice" else [arg[0], arg[1]]


def check_space(spec: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Each searched option at each end of its range (each choice) built as ``fit`` would build it: a key that is
    not an option, or a value it refuses, is one line naming it. Returns the base configuration."""
    base_spec = {**spec, "runs": {"base": {}}}
    try:
        view = configuration_of(run_args(base_spec, "base", extra))
    except UserError as e:
        raise BadValue(f"{spec['file']}: the search's base configuration: {e}") from None
    for key, dist in spec["search"]["space"].items():
        for value in _candidates(dist):
            base_spec["runs"]["base"] = {key: value}
            try:
                configuration_of(run_args(base_spec, "base", extra))
            except UserError as e:
                raise BadValue(f"{spec['file']}: search.space.{key} = {value!r}: {e}") from None
    return view


def _domain(tune: Any, dist: dict[str, Any]) -> Any:
    kind, arg = next(iter(dist.items()))
    if kind == "loguniform":
        return tune.loguniform(float(arg[0]), float(arg[1]))
    if kind == "uniform":
        return tune.uniform(float(arg[0]), float(arg[1]))
    if kind == "int":
        return tune.randint(int(arg[0]), int(arg[1]) + 1)  # Tune's upper end is excluded; ours is included
    return tune.choice(list(arg))


def _best(metrics: list[float], mode: str) -> float | None:
    values = [m for m in metrics if isinstance(m, (int, float)) and math.isfinite(m)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _trial_id(result: Any) -> str | None:
    tid = (result.metrics or {}).get("trial_id")
    if tid:
        return str(tid)
    found = re.search(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})_", Path(str(result.path or "")).name)
    return found.group(1) if found else None


def search_rows(grid: Any, spec: dict[str, Any], max_epochs: int) -> list[dict[str, Any]]:
    """One row per trial, read from its run's own folder (the truth, whoever ran it): its values, the best of the
    metric over its epochs, the epochs it trained and how it ended (complete, stopped early at epoch k, failed)."""

    search = spec["search"]
    rows = []
    for result in grid:
        if result.config is None:  # a trial that never started (the search was stopped first)
            continue
        values = {k: result.config.get(k) for k in search["space"]}
        tid = _trial_id(result)
        name = trial_name(tid, values) if tid else None
        run_dir = Path(LOG_ROOT) / spec["sweep"] / SEARCH_DIR / name if name else None
        history: list[float] = []
        epochs = 0
        status = "new"
        if run_dir is not None and run_dir.is_dir():
            wait_while_running(run_dir, timeout=120)  # a stopped trial's run may still be saving
            scalars = read_scalars(run_dir)
            history = [v for _, v in scalars.get(search["metric"], [])]
            epochs = len(scalars.get("val/acc", []))
            status = run_status(run_dir)
        if status == "complete":
            ended = "complete"
        elif result.error is not None and epochs == 0:
            ended = "failed"
        elif epochs < max_epochs:
            ended = f"stopped early at epoch {epochs}"
        else:
            ended = f"{status} after epoch {epochs}"
        rows.append({"trial": tid, "run": name, "values": values, "best": _best(history, search["mode"]),
                     "epochs": epochs, "ended": ended})  # fmt: skip
    return rows


def search_table(
    rows: list[dict[str, Any]], search: dict[str, Any], best: dict[str, Any] | None
) -> list[str]:
    keys = list(search["space"])
    lines = [f"| trial | {' | '.join(keys)} | best {search['metric']} | epochs | ended |",
             "| --- " * (len(keys) + 4) + "|"]  # fmt: skip
    for r in sorted(
        rows,
        key=lambda r: (r["best"] is None, -(r["best"] or 0) if search["mode"] == "max" else (r["best"] or 0)),
    ):
        cells = " | ".join(_value_text(r["values"][k]) for k in keys)
        score = "" if r["best"] is None else f"{r['best']:.4f}"
        mark = " **best**" if best is not None and r is best else ""
        lines.append(f"| {r['run'] or r['trial']}{mark} | {cells} | {score} | {r['epochs']} | {r['ended']} |")
    return lines


def search_charts(rows: list[dict[str, Any]], search: dict[str, Any], out: Path) -> list[Path]:
    """The metric against each searched value: one point per trial, hollow where ASHA stopped it early."""
    from matplotlib.figure import Figure

    from ..viz.curves import save  # deferred: matplotlib, only at the end of a search

    paths = []
    for key, dist in search["space"].items():
        kind = next(iter(dist))
        fig = Figure(figsize=(6.0, 4.0))
        ax = fig.subplots()
        for complete in (True, False):
            pts = [(r["values"][key], r["best"]) for r in rows
                   if r["best"] is not None and (r["ended"] == "complete") == complete]  # fmt: skip
            if not pts:
                continue
            xs = [str(x) for x, _ in pts] if kind == "choice" else [float(x) for x, _ in pts]
            ax.scatter(xs, [y for _, y in pts], s=40, label="complete" if complete else "stopped early",
                       facecolors="C0" if complete else "none", edgecolors="C0")  # fmt: skip
        if kind == "loguniform":
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {search['metric']} of the trial")
        ax.set_title(f"{search['metric']} against {key.split('.')[-1]}")
        if ax.collections:
            ax.legend()
        paths += save(fig, out / safe_part(key.replace(".", "_")), ("png",))
    return paths


def run_search(spec: dict[str, Any], extra: list[str], res: Resources | None, confirm_seeds: int = 3,
               dry_run: bool = False) -> int:  # fmt: skip
    """Run (or continue) the search, write its table and charts, then train the best configuration with
    ``confirm_seeds`` seeds as a sweep with repeats. The exit code: 0, 1 when no trial gave the metric or a
    confirmation run failed, 128 + n when stopped by signal n."""
    require_ray("a search (`search:`)")
    if isinstance(confirm_seeds, bool) or not 0 <= confirm_seeds <= 100:
        raise BadValue(f"--confirm-seeds {confirm_seeds}: give 0 (none) to 100 seeds")
    search = spec["search"]
    view = check_space(spec, extra)
    if is_try(view):
        raise BadValue(
            f"{spec['file']}: a search ranks its trials by {search['metric']} after each epoch, and a fast_dev_run "
            f"trains a few batches and keeps no epoch; try the configuration with `python -m cifar_pl fit "
            f"--config {spec['configs'][0]} --trainer.fast_dev_run true`, or search briefly with num_samples: 2 and "
            f"trainer.max_epochs 1"
        )
    max_epochs = (view.get("trainer") or {}).get("max_epochs")
    if "trainer.max_epochs" in search["space"]:
        if search["scheduler"] == "asha":
            raise BadValue(
                f"{spec['file']}: search.space.trainer.max_epochs: ASHA's budget is the trials' epochs, the same for "
                f"all; search the run length with scheduler: none"
            )
        max_epochs = max(_candidates(search["space"]["trainer.max_epochs"]))
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise BadValue(
            f"{spec['file']}: a search needs trainer.max_epochs (its trials' length; ASHA's budget)"
        )
    if search["scheduler"] == "asha" and search["grace_period"] >= max_epochs:
        raise BadValue(
            f"{spec['file']}: search.grace_period {search['grace_period']} is not below trainer.max_epochs "
            f"{max_epochs}: ASHA could stop no trial early; lower it or use scheduler: none"
        )
    print(f"[search] {spec['sweep']}: {search['num_samples']} trials of {max_epochs} epochs at most over "
          f"{', '.join(search['space'])}; {search['sampler']} sampling, "
          f"{'ASHA early stopping' if search['scheduler'] == 'asha' else 'no early stopping'} on {search['metric']}",
          flush=True)  # fmt: skip
    if dry_run:
        print("[search] dry run: the space is checked; nothing is started")
        return 0
    with sweep_lock(spec):
        return _search(spec, extra, res, max_epochs, confirm_seeds)


def _search(spec: dict[str, Any], extra: list[str], res: Resources | None, max_epochs: int,
            confirm_seeds: int) -> int:  # fmt: skip
    from ray import tune

    search = spec["search"]
    res = res or Resources()
    with ray_session(res, Path.cwd() / LOG_ROOT / spec["sweep"]) as parallel:
        grid, signum = _tune(spec, extra, res, parallel, max_epochs, tune)
    rows = search_rows(grid, spec, max_epochs)
    best = _report(spec, rows)
    if signum is not None:
        print(f"[search] stopped by {signal.Signals(signum).name}: run the same command again to continue it")
        return 128 + signum
    if best is None:
        print(f"[search] no trial reported {search['metric']}; see the trials' sweep.log under "
              f"{Path(LOG_ROOT) / spec['sweep'] / SEARCH_DIR}")  # fmt: skip
        return 1
    if not confirm_seeds:
        return 0
    return _confirm(spec, extra, res, best, confirm_seeds)


def _report(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The table (search.md, search.json, printed) and the charts of a search's trials; returns the best row."""
    search = spec["search"]
    scored = [r for r in rows if r["best"] is not None]
    best = (max if search["mode"] == "max" else min)(scored, key=lambda r: r["best"]) if scored else None
    out = Path(LOG_ROOT) / spec["sweep"] / SEARCH_DIR
    lines = search_table(rows, search, best)
    stopped = sum(1 for r in rows if r["ended"].startswith("stopped"))
    lines += [
        "",
        f"{len(rows)} trials, {stopped} stopped early; best {search['metric']} of each trial over its epochs.",
    ]
    if best is not None:
        lines.append(f"Best: {best['run']} with {', '.join(f'{k} {_value_text(v)}' for k, v in best['values'].items())}"
                     f" ({search['metric']} {best['best']:.4f}).")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "search.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "search.json", json.dumps({"search": search, "trials": rows, "best": best}, indent=2,
                                                      default=str))  # fmt: skip
    print("\n".join(lines))
    for p in search_charts(rows, search, out / "plots"):
        print(f"wrote {p}")
    return best


def search_plots(spec: dict[str, Any]) -> int:
    """``--plots-only`` for a search: its table and charts again from ``search.json``, and the confirmation runs'
    charts; nothing is trained."""
    path = Path(LOG_ROOT) / spec["sweep"] / SEARCH_DIR / "search.json"
    try:
        rows = json.loads(path.read_text())["trials"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BadValue(f"{path}: no finished search to draw yet; run the search first") from None
    best = _report(spec, rows)
    members = sorted(p.name for p in (Path(LOG_ROOT) / spec["sweep"]).glob(f"best{SEED_SEP}*") if p.is_dir())
    if best is not None and members:
        confirm = {**spec, "search": None, "seeds": [int(m.split(SEED_SEP)[1]) for m in members],
                   "groups": {"best": members}, "runs": {m: {} for m in members}}  # fmt: skip
        for p in plot_sweep(confirm):
            print(f"wrote {p}")
    return 0


def _tune(spec, extra, res, parallel, max_epochs, tune) -> tuple[Any, int | None]:
    from ray.tune.search import BasicVariantGenerator

    from .stopping import StopOnSignal  # deferred: imports Ray

    search = spec["search"]
    base = _base_spec(spec, extra, res.threads, max_epochs)
    trainable = tune.with_resources(
        tune.with_parameters(search_trial, base=base), {"cpu": res.cpus, "gpu": res.gpus}
    )
    storage = (Path.cwd() / LOG_ROOT / spec["sweep"] / ".ray").resolve()
    path = storage / SEARCH_DIR
    stop = SweepStop()  # entered around the fit below
    if tune.Tuner.can_restore(str(path)):
        print(f"[search] continuing the search stopped before ({path})", flush=True)
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = None
        if search["scheduler"] == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=search["grace_period"],
                                      reduction_factor=search["reduction_factor"])  # fmt: skip
        if search["sampler"] == "optuna":
            try:
                from ray.tune.search.optuna import OptunaSearch

                sampler = OptunaSearch(seed=search["seed"])
            except (ImportError, AssertionError):
                raise BadValue("search.sampler optuna needs optuna: pip install 'cifar_pl[ray]'") from None
        else:
            sampler = BasicVariantGenerator(random_state=search["seed"])
        space = {k: _domain(tune, d) for k, d in search["space"].items()}
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(num_samples=search["num_samples"], metric=search["metric"], mode=search["mode"],
                                        scheduler=scheduler, search_alg=sampler, max_concurrent_trials=parallel,
                                        reuse_actors=False),
            run_config=tune.RunConfig(name=SEARCH_DIR, storage_path=str(storage), verbose=0, log_to_file=True,
                                      callbacks=[_lines(spec)], stop=StopOnSignal()),
        )  # fmt: skip
    with stop, _quiet_tune():
        grid = tuner.fit()
    return grid, stop.signum


def _named(trial: Any, result: dict[str, Any]) -> str:
    """A trial as the table names it (``t003,lr=0.0123``: its run's name, reported with each result), also before
    its first result."""
    values = {k: v for k, v in (trial.config or {}).items()}
    return str(result.get("run") or trial_name(trial.trial_id, values))


def _lines(spec: dict[str, Any]) -> Any:
    from ray import tune

    class Lines(tune.Callback):
        """One line per trial: each epoch's metric, how it ended."""

        ended = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            metric = spec["search"]["metric"]
            if metric in result and "complete" not in result:
                print(f"[search] {_named(trial, result)}: epoch {result.get('epoch')}, {metric} "
                      f"{result[metric]:.4f}", flush=True)  # fmt: skip

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            Lines.ended += 1
            how = "complete" if last.get("complete") else f"stopped early after epoch {last.get('epoch')}"
            print(f"[search] {_named(trial, last)}: {how} ({Lines.ended} of {spec['search']['num_samples']} trials "
                  f"ended)", flush=True)  # fmt: skip

        def on_trial_error(self, iteration, trials, trial, **info):
            Lines.ended += 1
            print(f"[search] {_named(trial, trial.last_result or {})}: failed (its run's sweep.log says why)",
                  flush=True)  # fmt: skip

    return Lines()


def _confirm(spec: dict[str, Any], extra: list[str], res: Resources, best: dict[str, Any], seeds: int) -> int:
    """The best configuration with ``seeds`` seeds, as a sweep with repeats (``best,seed=<s>``)."""
    members = [f"best{SEED_SEP}{s}" for s in range(seeds)]
    confirm = {**spec, "search": None, "seeds": list(range(seeds)), "groups": {"best": members},
               "runs": {m: {**best["values"], "seed_everything": s} for s, m in enumerate(members)}}  # fmt: skip
    print(f"[search] the best configuration again with {seeds} seeds: {', '.join(members)}", flush=True)
    changed = check_sweep(confirm, extra)
    status = run_sweep_ray(confirm, extra, res, changed=changed)
    signum = status.pop("__signal__", None)
    for p in plot_sweep(confirm):
        print(f"wrote {p}")
    if signum is not None:
        return 128 + int(signum)
    return 1 if any(run_status(Path(LOG_ROOT) / spec["sweep"] / m) != "complete" for m in members) else 0
