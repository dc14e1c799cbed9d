"""Run a family of experiments that differ in a few values, one after another, and compare them.

    python -m cifar_pl.sweep configs/sweeps/label_corruption.yaml --data.data_dir ../shared/data

A sweep file names a base config (LightningCLI composes several, like repeated ``--config``), arguments for
every run, and the runs: ``runs:`` maps a run name to its overrides, ``grid:`` makes one run per combination of
values (named after them). Each run is ``python -m cifar_pl fit`` in its own process, logging to
``lightning_logs/<sweep>/<run>/version_N``, so TensorBoard shows the runs side by side. Resumable: a finished
run (``result.json`` written) is not redone, an interrupted one continues from its ``last.ckpt``. At the end
``lightning_logs/<sweep>/plots/`` gets one chart per compared metric (PNG and SVG), final-value bars and
``summary.md``.

```yaml
sweep: label_corruption
config: configs/corrupt/labels.yaml
args: {trainer.max_epochs: 30}
grid: {data.corrupt_prob: [0.0, 0.5, 1.0]}        # or runs: {p0: {data.corrupt_prob: 0.0}, ...}
compare: [train/loss, train/acc, val/acc, train/epoch_time]
```
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .cli import LOG_ROOT, latest_last_checkpoint

DEFAULT_COMPARE = ["train/loss", "train/acc", "val/acc", "train/epoch_time"]


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


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A sweep file, checked: ``sweep`` (name), ``config`` (one or more), ``runs`` and/or ``grid``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file '{path}' does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"sweep", "config", "args", "runs", "grid", "compare", "final"}
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {sorted(unknown)}; a sweep has sweep, config, args, runs, grid, compare, final"
        )
    if not spec.get("sweep") or not spec.get("config"):
        raise ValueError(f"{path}: a sweep needs `sweep:` (its name) and `config:` (the base config file)")
    configs = spec["config"] if isinstance(spec["config"], list) else [spec["config"]]
    runs: dict[str, dict[str, Any]] = dict(spec.get("runs") or {})
    grid: dict[str, list] = spec.get("grid") or {}
    for values in itertools.product(*grid.values()) if grid else []:
        combo = dict(zip(grid, values, strict=True))
        name = ",".join(f"{k.split('.')[-1]}={_arg_value(v)}" for k, v in combo.items())
        runs[name] = combo
    if not runs:
        raise ValueError(f"{path}: no runs; give `runs:` or `grid:`")
    bad = [n for n in runs if "/" in n or n.startswith(".")]
    if bad:
        raise ValueError(f"{path}: run names become folder names; {bad} contain '/' or start with '.'")
    return {
        "sweep": spec["sweep"], "configs": configs, "args": spec.get("args") or {}, "runs": runs,
        "compare": spec.get("compare") or DEFAULT_COMPARE, "final": spec.get("final") or ["train/acc", "test/acc"],
    }  # fmt: skip


def run_sweep(
    spec: dict[str, Any], extra: list[str], log_root: Path = Path(LOG_ROOT), dry_run: bool = False, only=None
) -> dict[str, str]:
    """Run every run of ``spec`` not finished yet; returns run name -> ``done``/``skipped``/``failed (rc)``."""
    sweep_dir = log_root / spec["sweep"]
    status: dict[str, str] = {}
    for name, overrides in spec["runs"].items():
        if only and name not in only:
            continue
        run_dir = sweep_dir / name
        if (run_dir / "result.json").is_file():
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
        print(
            f"[sweep] {name}: {'resuming from ' + str(last) if last else 'starting'}\n  {' '.join(cmd)}",
            flush=True,
        )
        if dry_run:
            status[name] = "dry run"
            continue
        start = time.perf_counter()
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"[sweep] {name}: failed with exit code {rc}; run the sweep again to resume it", flush=True)
            status[name] = f"failed ({rc})"
            continue
        result = final_values(run_dir)
        result["wall_s"] = round(time.perf_counter() - start, 1)
        result["overrides"] = overrides
        (run_dir / "result.json").write_text(json.dumps(result, indent=2))
        status[name] = "done"
    return status


def final_values(run_dir: Path) -> dict[str, Any]:
    """The last logged value of each epoch-level metric of a run, and its number of epochs."""
    from .viz.curves import read_scalars

    scalars = read_scalars(run_dir)
    out: dict[str, Any] = {tag: round(v[-1][1], 5) for tag, v in scalars.items() if v and "step" not in tag}
    out["epochs"] = len(scalars.get("train/loss", []))
    return out


def plot_sweep(spec: dict[str, Any], log_root: Path = Path(LOG_ROOT)) -> list[Path]:
    """The comparison charts, the final-value bars and ``summary.md`` of a sweep's runs that have logs."""
    from .viz.curves import compare_figure, final_bars_figure, read_scalars, save

    sweep_dir = log_root / spec["sweep"]
    runs = {}
    for name in spec["runs"]:
        try:
            runs[name] = read_scalars(sweep_dir / name)
        except FileNotFoundError:
            continue
    if not runs:
        return []
    out = sweep_dir / "plots"
    paths: list[Path] = []
    for metric in spec["compare"]:
        fig = compare_figure(runs, metric, f"{spec['sweep']}: {metric}")
        paths += save(fig, out / metric.replace("/", "_"), ("png", "svg"))
    paths += save(
        final_bars_figure(runs, tuple(spec["final"]), f"{spec['sweep']}: final values"),
        out / "final",
        ("png", "svg"),
    )
    cols = ["train/loss", "train/acc", "val/acc", "test/acc"]
    lines = [f"| run | epochs | {' | '.join(cols)} | mean epoch time (s) |", "| --- " * (len(cols) + 3) + "|"]
    for name, sc in runs.items():
        vals = [f"{sc[c][-1][1]:.4f}" if c in sc else "" for c in cols]
        times = [v for _, v in sc.get("train/epoch_time", [])]
        mean_t = f"{sum(times) / len(times):.1f}" if times else ""
        lines.append(f"| {name} | {len(sc.get('train/loss', []))} | {' | '.join(vals)} | {mean_t} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return [*paths, out / "summary.md"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cifar_pl.sweep", description=__doc__.split("\n\n")[0],
        epilog="Arguments after the sweep file go to every run, e.g. --data.data_dir ../shared/data.",
    )  # fmt: skip
    parser.add_argument("sweep", help="a sweep YAML file (configs/sweeps/...)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--only", nargs="+", default=None, help="run only these run names")
    parser.add_argument("--plots-only", action="store_true", help="only (re)draw the comparison charts")
    args, extra = parser.parse_known_args(argv)
    spec = load_sweep(args.sweep)
    status = {} if args.plots_only else run_sweep(spec, extra, dry_run=args.dry_run, only=args.only)
    for name, s in status.items():
        print(f"[sweep] {name}: {s}")
    if not args.dry_run:
        for p in plot_sweep(spec):
            print(f"wrote {p}")
    return 1 if any(s.startswith("failed") for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
