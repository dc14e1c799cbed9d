"""The evidence behind docs/results.md: compact records of finished runs under ``results/``, and the page generated
from them.

A record is one folder per run, ``results/<experiment>/`` (the run's experiment name, e.g.
``writeups/002_step1_plain/step1_plain,seed=0``), holding the run's ``config.yaml``, its ``run.json`` (how it ended,
its test metrics; no pid or host) and ``scalars.csv`` (every epoch-level scalar, one row per epoch). No checkpoints,
no event files: a few kB a run.

    python -m cifar_pl.results record configs/writeups/sweeps/002_step1_plain.yaml   # a sweep's finished runs
    python -m cifar_pl.results record lightning_logs/writeups/002_step1_plain        # or a folder of runs
    python -m cifar_pl.results page            # docs/results.md (and its charts) from results/page.md + records
    python -m cifar_pl.results page --check    # exit 1 when docs/results.md is not what the records give

The page's source is ``results/page.md``: prose, with directives that the records fill in (and nothing else may):

* ``{{value SWEEP/GROUP METRIC [HOW]}}``: the group's value of METRIC as ``mean ± std (n = k)`` (one run: the
  value and ``n = 1``), HOW being ``last`` (the last epoch's, the default), ``first``, ``best`` (highest),
  ``min``, ``epoch=E`` (at epoch E, counted from 1), ``argmin``/``argmax`` (the epoch of the lowest/highest) or
  ``reach=X`` (the first epoch at which the value is at least X; ``each`` says ``never`` where it is not) or
  ``tail=K`` (the mean of the last K epochs) or ``epochs`` (the last epoch logged);
* ``{{each SWEEP/GROUP METRIC [HOW]}}``: the value of each run of the group (by seed), comma-separated, and n;
* ``{{diff SWEEP/GROUP METRIC_A METRIC_B [HOW]}}``: METRIC_A - METRIC_B per run, as mean ± std (n = k);
* ``{{table SWEEP [SWEEP ...] | METRIC [METRIC ...]}}``: one row per group of those sweeps, mean ± std per metric;
* ``{{chart NAME SWEEP [SWEEP ...] | METRIC}}``: a chart of METRIC against the epoch, one mean curve with a ±1 std
  band per group, drawn to ``docs/img/results/NAME.png``;
* ``{{drift NAME SWEEP/RUN ...}}``: the activation-drift figure (ActivationStats' records) of those runs, drawn to
  ``docs/img/results/NAME.png``; ``{{shift SWEEP/RUN}}``: the largest move of a layer's median between records;
* ``{{budget SWEEP}}``: the sweep's budget from results/catalogue.yaml, as images x epochs and a share of the
  write-up's;
* ``{{params NET CLASSES [IMAGE_SIZE]}}``: the parameter count of the registry's net for that many classes (and
  image size, for a net built for the data's size);
* ```` ```yaml result ```` blocks: the verdict rows (see ``VERDICTS``), gathered into the table at
  ``{{verdicts}}``.

A group is the runs of a sweep that differ only in their seed (run names ``<group>,seed=N`` or ``<group>_sN``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import BadFile, BadValue, MissingFile, run_main_code
from .files import write_text_atomic
from .runs import (
    ACTIVATION_FIELDS,
    ACTIVATION_STATS,
    LOG_ROOT,
    check_name,
    mean_std,
    read_activation_stats,
    read_record,
    read_scalars,
    version_dirs,
)
from .sweeps.spec import SEED_SEP, load_sweep

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
PAGE_SOURCE = RESULTS / "page.md"
PAGE = ROOT / "docs" / "results.md"
CHARTS = ROOT / "docs" / "img" / "results"
CATALOGUE = RESULTS / "catalogue.yaml"
# What a verdict can be (the rules: results/page.md, "How a row is judged").
VERDICTS = (
    "agrees",
    "disagrees",
    "partly run",
    "not testable at this budget",
    "not run here",
    "measured, no claim",
)
ROW_KEYS = ("id", "experiment", "claim", "sweeps", "measured", "verdict", "why")
# Per-step and per-layer tags are left out of a record: the curves behind the page are per epoch.
_SKIP_TAG = re.compile(r"(step|lr-|activations/|weights/|gradients/|hp_metric)")
_DROP_FROM_RECORD = ("pid", "host")
_GROUP = re.compile(rf"^(?P<group>.+?)(?:{re.escape(SEED_SEP)}\d+|_s\d+)$")


# ---------------------------------------------------------------------------------------------------- records
def record_run(run: Path, log_root: Path = Path(LOG_ROOT), results: Path | None = None) -> Path:
    """Write the compact record of one finished run folder (``lightning_logs/<experiment>``) and return its
    folder under ``results``. The experiment's name comes from the run's own folder below ``log_root``, checked
    as a run name, so a record can only land below ``results``."""
    results = RESULTS if results is None else results
    try:
        experiment = check_name(run.resolve().relative_to(log_root.resolve()).as_posix(), "run")
    except ValueError:
        raise BadValue(
            f"{run}: not a run folder below {log_root}/; record runs of {log_root}/ only"
        ) from None
    versions = version_dirs(run)
    if not versions:
        raise MissingFile(f"{run}: no version_N folders (not a run of {log_root}/)")
    record = read_record(versions[-1])
    if not record or record.get("status") != "complete":
        raise BadValue(f"{run}: the run is not complete ({(record or {}).get('status', 'no run.json')}); "
                       f"finish it (the sweep's command resumes it) before recording it")  # fmt: skip
    out = results / experiment
    out.mkdir(parents=True, exist_ok=True)
    config = versions[-1] / "config.yaml"
    write_text_atomic(out / "config.yaml", config.read_text() if config.is_file() else "")
    kept = {k: v for k, v in record.items() if k not in _DROP_FROM_RECORD}
    write_text_atomic(out / "run.json", _json(kept))
    write_text_atomic(out / "scalars.csv", scalars_csv(read_scalars(run)))
    stats = versions[-1] / ACTIVATION_STATS
    if (
        stats.is_file()
    ):  # ActivationStats' history (write-up 000's drift figure), compact: 4 significant digits
        layers = {
            k: [[float(f"{x:.4g}") for x in row] for row in rows]
            for k, rows in read_activation_stats(stats.parent).items()
        }
        write_text_atomic(
            out / ACTIVATION_STATS,
            json.dumps({"fields": list(ACTIVATION_FIELDS), "layers": layers}, separators=(",", ":")),
        )
    return out


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"


def scalars_csv(scalars: dict[str, list[tuple[int, float]]]) -> str:
    """Epoch-level scalars as CSV: ``epoch`` (from 1) and one column per tag, empty where a tag has no value."""
    tags = sorted(t for t in scalars if not _SKIP_TAG.search(t))
    by_epoch: dict[int, dict[str, float]] = {}
    for tag in tags:
        for epoch, value in scalars[tag]:
            if tag.startswith(("test/", "test_on_val/")):
                # a test after fit is logged at Lightning's epoch counter, the number of epochs trained: it belongs
                # to the last of them (a staged run's first test to the first stage's last epoch)
                epoch = max(epoch - 1, 0)
            by_epoch.setdefault(epoch, {})[tag] = value
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", *tags])
    for epoch in sorted(by_epoch):
        row = by_epoch[epoch]
        w.writerow([epoch + 1, *(_fmt_csv(row.get(t)) for t in tags)])
    return buf.getvalue()


def _fmt_csv(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def read_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """A record's ``scalars.csv`` as ``tag -> [(epoch, value), ...]`` (epochs from 1)."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise MissingFile(f"{path}: cannot be read ({e.strerror}); record the run again") from None
    if not rows or rows[0][:1] != ["epoch"]:
        raise BadFile(f"{path}: not a scalars.csv of a record (no epoch column); record the run again")
    tags = rows[0][1:]
    out: dict[str, list[tuple[int, float]]] = {t: [] for t in tags}
    for line, row in enumerate(rows[1:], 2):
        try:
            epoch = int(row[0])
            for tag, cell in zip(tags, row[1:], strict=True):
                if cell != "":
                    out[tag].append((epoch, float(cell)))
        except (ValueError, IndexError):
            raise BadFile(
                f"{path}:{line}: not a row of numbers under its header; record the run again"
            ) from None
    return out


def sweep_runs(target: str) -> list[Path]:
    """The run folders a ``record`` argument names: a sweep file's runs, or a folder of runs under the log root."""
    path = Path(target)
    if path.is_file():
        spec = load_sweep(path)
        base = Path(LOG_ROOT) / spec["sweep"]
        return [base / name for name in spec["runs"] if (base / name).is_dir()]
    if not path.is_dir():
        raise MissingFile(f"{target}: neither a sweep file nor a folder of runs")
    if version_dirs(path):
        return [path]
    return sorted(d for d in path.iterdir() if d.is_dir() and version_dirs(d))


def record(targets: list[str]) -> list[Path]:
    """Record every complete run the targets name; the others are listed and left."""
    written = []
    for target in targets:
        for run in sweep_runs(target):
            status = (read_record(version_dirs(run)[-1]) or {}).get("status")
            if status != "complete":
                print(f"[results] {run}: {status or 'no record'}, not recorded")
                continue
            written.append(record_run(run))
    print(f"[results] {len(written)} run record(s) written under {RESULTS.relative_to(ROOT)}/")
    return written


# ------------------------------------------------------------------------------------------------ reading back
def load_group(ref: str, results: Path | None = None) -> list[dict[str, list[tuple[int, float]]]]:
    """The scalars of every run of group ``SWEEP/GROUP`` (e.g. ``writeups/002_step1_plain/step1_plain``)."""
    results = RESULTS if results is None else results
    sweep, _, group = ref.rpartition("/")
    folder = results / check_name(sweep, "sweep")
    members = (
        [d for d in sorted(folder.iterdir()) if (d / "scalars.csv").is_file() and group_of(d.name) == group]
        if folder.is_dir()
        else []
    )
    if not members:
        raise MissingFile(
            f"results/{ref}: no records of this group (record its sweep: python -m cifar_pl.results record ...)"
        )
    return [read_csv(d / "scalars.csv") for d in members]


def group_of(run_name: str) -> str:
    m = _GROUP.match(run_name)
    return m.group("group") if m else run_name


def groups_of(sweep: str, results: Path | None = None) -> list[str]:
    results = RESULTS if results is None else results
    folder = results / check_name(sweep, "sweep")
    if not folder.is_dir():
        raise MissingFile(
            f"results/{sweep}: no records (record the sweep: python -m cifar_pl.results record ...)"
        )
    return list(
        dict.fromkeys(group_of(d.name) for d in sorted(folder.iterdir()) if (d / "scalars.csv").is_file())
    )


def _pick(curve: list[tuple[int, float]], how: str) -> float:
    if how == "last":
        return curve[-1][1]
    if how == "best":
        return max(v for _, v in curve)
    if how == "min":
        return min(v for _, v in curve)
    if how in ("argmin", "argmax"):  # the epoch (from 1) of the lowest / highest value
        pick = min if how == "argmin" else max
        return float(pick(curve, key=lambda ev: ev[1])[0])
    if how == "first":
        return curve[0][1]
    if how == "epochs":  # how many epochs logged the value (a run stopped early logs fewer)
        return float(curve[-1][0])
    if how.startswith("tail="):  # the mean of the last K epochs (a noisy per-epoch curve)
        k = int(how.split("=", 1)[1])
        return sum(v for _, v in curve[-k:]) / len(curve[-k:])
    if how.startswith(
        "reach="
    ):  # the first epoch (from 1) at which the value reaches the threshold, else nan
        level = float(how.split("=", 1)[1])
        return float(next((e for e, v in curve if v >= level), math.nan))
    if how.startswith("epoch="):
        at = int(how.split("=", 1)[1])
        for epoch, v in curve:
            if epoch == at:
                return v
        raise BadValue(f"no value at epoch {at} (the curve has epochs {curve[0][0]}..{curve[-1][0]})")
    raise BadValue(
        f"{how!r}: a value is last (default), first, best, min, argmin, argmax, reach=X, tail=K, epochs or epoch=E"
    )


def each(ref: str, metric: str, how: str = "last", results: Path | None = None) -> list[float]:
    """``metric`` taken ``how`` in each run of a group (the runs in name order, i.e. by seed)."""
    try:
        values = [_pick(s[metric], how) for s in load_group(ref, results) if s.get(metric)]
    except ValueError:  # tail=x, epoch=x, reach=x
        raise BadValue(f"{how!r}: K, E and X of tail=K, epoch=E, reach=X are numbers") from None
    if not values:
        raise MissingFile(f"results/{ref}: no run logged {metric}")
    return values


def stat(ref: str, metric: str, how: str = "last", results: Path | None = None) -> tuple[float, float, int]:
    """Mean, sample std and count over a group's runs of ``metric`` taken ``how``."""
    values = each(ref, metric, how, results)
    return (*mean_std(values), len(values))


def fmt_stat(mean: float, std: float, n: int, digits: int = 3) -> str:
    if n == 1:
        return f"{mean:.{digits}f} (n = 1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n = {n})"


# ----------------------------------------------------------------------------------------------------- the page
_DIRECTIVE = re.compile(
    r"\{\{\s*(value|each|diff|shift|drift|table|chart|budget|params|verdicts)\b([^}]*)\}\}"
)
_ROW = re.compile(r"```yaml result\n(.*?)```", re.S)


def catalogue() -> dict[str, dict[str, Any]]:
    """The catalogue's entries by sweep name (``writeups/002_step1_plain``)."""
    out = {}
    for entry in yaml.safe_load(CATALOGUE.read_text()):
        spec = load_sweep(ROOT / entry["sweep"])
        out[spec["sweep"]] = {**entry, "configs": spec["configs"]}
    return out


def percent(share: float) -> str:
    value = 100 * share
    return f"{value:.2g}%" if value < 10 else f"{value:.0f}%"


def budget_text(sweep: str, cat: dict[str, dict[str, Any]]) -> str:
    """A sweep's budget as images x epochs, and as a share of the write-up's where both are known."""
    if sweep not in cat:
        raise BadValue(f"{sweep}: not in results/catalogue.yaml")
    here, there = cat[sweep]["budget"], cat[sweep]["write_up"]
    images = here["images"] / there["images"]
    if here.get("epochs") and there.get("epochs"):
        share = images * here["epochs"] / there["epochs"]
        return (f"{here['images']:,} x {here['epochs']} of {there['images']:,} x {there['epochs']} image-epochs "
                f"= {percent(share)}")  # fmt: skip
    epochs = f" x {here['epochs']} epochs" if here.get("epochs") else " (epochs as the recipe)"
    return f"{here['images']:,} images{epochs}, {percent(images)} of the write-up's {there['images']:,} images (its epochs not stated)"


def _value(args: str) -> str:
    parts = args.split()
    if len(parts) not in (2, 3):
        raise BadValue(f"{{{{value{args}}}}}: give SWEEP/GROUP METRIC [last|best|min|epoch=E]")
    how = parts[2] if len(parts) == 3 else "last"
    return fmt_stat(*stat(parts[0], parts[1], how), digits=1 if how.startswith("arg") else 3)


def _each(args: str) -> str:
    parts = args.split()
    if len(parts) not in (2, 3):
        raise BadValue(f"{{{{each{args}}}}}: give SWEEP/GROUP METRIC [HOW]")
    how = parts[2] if len(parts) == 3 else "last"
    digits = 0 if how.startswith(("arg", "reach", "epochs")) else 3
    values = each(parts[0], parts[1], how)
    return (
        ", ".join("never" if math.isnan(v) else f"{v:.{digits}f}" for v in values) + f" (n = {len(values)})"
    )


def _diff(args: str) -> str:
    parts = args.split()
    if len(parts) not in (3, 4):
        raise BadValue(f"{{{{diff{args}}}}}: give SWEEP/GROUP METRIC_A METRIC_B [HOW]")
    how = parts[3] if len(parts) == 4 else "last"
    a, b = each(parts[0], parts[1], how), each(parts[0], parts[2], how)
    if len(a) != len(b):
        raise BadValue(f"{{{{diff{args}}}}}: not every run logged both metrics")
    return fmt_stat(*mean_std([x - y for x, y in zip(a, b, strict=True)]), len(a))


def _run_record(name: str) -> Path:
    folder = RESULTS / check_name(name, "run")
    if not (folder / "run.json").is_file():
        raise MissingFile(f"results/{name}: no record of this run")
    return folder


def shift_of(record: Path) -> float:
    """The largest move of a layer's median pre-activation from one ActivationStats record to the next, over the
    layers of a run (write-up 000's "covariate shift")."""
    history = read_activation_stats(record)
    p50 = ACTIVATION_FIELDS.index("p50")
    moves = [abs(b[p50] - a[p50]) for rows in history.values() for a, b in zip(rows, rows[1:], strict=False)]
    return max(moves, default=0.0)


def _shift(args: str) -> str:
    parts = args.split()
    if len(parts) != 1:
        raise BadValue(f"{{{{shift{args}}}}}: give one group (SWEEP/GROUP)")
    sweep, _, group = parts[0].rpartition("/")
    folder = RESULTS / check_name(sweep, "sweep")
    runs = [d for d in sorted(folder.iterdir()) if group_of(d.name) == group] if folder.is_dir() else []
    values = [shift_of(d) for d in runs if (d / ACTIVATION_STATS).is_file()]
    if not values:
        raise MissingFile(f"results/{parts[0]}: no run of this group recorded activation statistics")
    return ", ".join(f"{v:.3f}" for v in values) + f" (n = {len(values)})"


def _drift(args: str, draw: bool) -> str:
    parts = args.split()
    if len(parts) < 2 or not re.fullmatch(r"[A-Za-z0-9_.-]+", parts[0]):
        raise BadValue(f"{{{{drift{args}}}}}: give NAME SWEEP/RUN [SWEEP/RUN ...]")
    if draw:
        from .viz.activations import drift_figure  # deferred: matplotlib, only when the page is drawn
        from .viz.curves import save  # deferred: matplotlib

        fig = drift_figure({r.split("/")[-1]: read_activation_stats(_run_record(r)) for r in parts[1:]})
        CHARTS.mkdir(parents=True, exist_ok=True)
        save(fig, CHARTS / f"{parts[0]}.png")
    return f"![activation drift](img/results/{parts[0]}.png)"


def _split_bar(args: str, what: str) -> tuple[list[str], list[str]]:
    if "|" not in args:
        raise BadValue(f"{{{{{what}{args}}}}}: give the sweeps, a '|', then the metrics")
    left, right = args.split("|", 1)
    return left.split(), right.split()


def _table(args: str) -> str:
    sweeps, metrics = _split_bar(args, "table")
    lines = ["| run | " + " | ".join(metrics) + " |", "| --- |" + " ---: |" * len(metrics)]
    for sweep in sweeps:
        for group in groups_of(sweep):
            ref = f"{sweep}/{group}"
            cells = []
            for metric in metrics:
                try:
                    mean, std, n = stat(ref, metric)
                    cells.append(f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {std:.4f}")
                except MissingFile:
                    cells.append("")
            n = sum(1 for s in load_group(ref) if s.get(metrics[0]))
            lines.append(f"| {sweep.split('/')[-1]}: {group} (n = {n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _chart(args: str, draw: bool) -> str:
    head, metrics = _split_bar(args, "chart")
    if len(head) < 2 or len(metrics) != 1:
        raise BadValue(f"{{{{chart{args}}}}}: give NAME SWEEP [SWEEP ...] | METRIC")
    name, sweeps, metric = head[0], head[1:], metrics[0]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise BadValue(f"chart name {name!r}: letters, digits and _.- only")
    if draw:
        from .viz.curves import compare_figure, save  # deferred: matplotlib, only when the page is drawn

        runs = {}
        for sweep in sweeps:
            for group in groups_of(sweep):
                label = group if len(sweeps) == 1 else f"{sweep.split('/')[-1]}: {group}"
                runs[label] = load_group(f"{sweep}/{group}")  # epochs from 1, as in the tables
        fig = compare_figure(runs, metric, title=f"{metric} ({', '.join(s.split('/')[-1] for s in sweeps)})")
        CHARTS.mkdir(parents=True, exist_ok=True)
        save(fig, CHARTS / f"{name}.png")
    return f"![{metric}](img/results/{name}.png)"


def _params(args: str) -> str:
    """``{{params NET CLASSES [IMAGE_SIZE]}}``: the parameter count of the net as the registry builds it for that
    many classes (and, for a net built for the data's size, that image size)."""
    parts = args.split()
    if len(parts) not in (2, 3) or not all(x.isdigit() for x in parts[1:]):
        raise BadValue(f"{{{{params{args}}}}}: give NET CLASSES [IMAGE_SIZE]")
    from .lit.classifier import ImageClassifier  # deferred: Lightning, only for a page that counts parameters
    from .models import create_model  # deferred: torch, only for a page that counts parameters

    net, classes, size = parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None
    model = create_model(net, num_classes=classes, **ImageClassifier.net_kwargs_for(net, None, size))
    return f"{sum(p.numel() for p in model.parameters()):,}"


def expand(text: str, draw: bool = False) -> str:
    """``text`` with every directive replaced by what the records give."""
    cat = catalogue()

    def one(m: re.Match) -> str:
        kind, args = m.group(1), m.group(2)
        try:
            if kind == "value":
                return _value(args)
            if kind == "each":
                return _each(args)
            if kind == "diff":
                return _diff(args)
            if kind == "shift":
                return _shift(args)
            if kind == "drift":
                return _drift(args, draw)
            if kind == "table":
                return _table(args)
            if kind == "chart":
                return _chart(args, draw)
            if kind == "budget":
                return budget_text(args.strip(), cat)
            if kind == "params":
                return _params(args)
            return m.group(0)  # {{verdicts}}: filled once the rows are expanded
        except (BadValue, MissingFile) as e:
            raise BadValue(f"results/page.md: {m.group(0)}: {e}") from None

    return _DIRECTIVE.sub(one, text)


def rows(text: str) -> list[dict[str, Any]]:
    """The verdict rows of an expanded page, checked: every key, a known verdict, unique ids."""
    out = []
    for block in _ROW.findall(text):
        try:
            row = yaml.safe_load(block)
        except yaml.YAMLError as e:
            raise BadValue(f"a result row is not YAML ({str(e).splitlines()[0]}): {block[:60]!r}") from None
        if not isinstance(row, dict):
            raise BadValue(f"a result row is a mapping of {', '.join(ROW_KEYS)}; got {block[:60]!r}")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise BadValue(f"result row {row.get('id', '?')} lacks {', '.join(missing)}")
        if row["verdict"] not in VERDICTS:
            raise BadValue(f"result row {row['id']}: verdict {row['verdict']!r} is not one of {VERDICTS}")
        out.append(row)
    ids = [str(r["id"]) for r in out]
    if len(set(ids)) != len(ids):
        raise BadValue(f"result row ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
    return out


def verdict_table(page_rows: list[dict[str, Any]]) -> str:
    cat = catalogue()
    lines = [
        "| # | experiment | write-up's claim | measured here | budget | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in page_rows:
        sweeps = r["sweeps"] if isinstance(r["sweeps"], list) else [r["sweeps"]]
        budgets = "; ".join(dict.fromkeys(budget_text(s, cat) for s in sweeps)) if sweeps else "not run"
        was = f" (was: {r['was']})" if r.get("was") else ""
        lines.append(
            f"| {r['id']} | {r['experiment']} | {r['claim']} | {r['measured']} | {budgets} | "
            f"**{r['verdict']}**{was}: {r['why']} |"
        )
    return "\n".join(lines)


def experiment_files() -> list[str]:
    """Every experiment file of the catalogue's scope: configs/writeups/ (configs and sweeps) and configs/transfer/."""
    base = ROOT / "configs"
    files = [*sorted((base / "writeups").rglob("*.yaml")), *sorted((base / "transfer").glob("*.yaml"))]
    return [f.relative_to(ROOT).as_posix() for f in files]


def covered_files(page_rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Which experiment files each row covers: its sweeps' files and their base configs, and its ``files:``."""
    by_sweep = {name: [entry["sweep"], *entry["configs"]] for name, entry in catalogue().items()}
    out: dict[str, list[str]] = {}
    for r in page_rows:
        sweeps = r["sweeps"] if isinstance(r["sweeps"], list) else [r["sweeps"]]
        files = [f for s in sweeps for f in by_sweep.get(s, [])] + list(r.get("files") or [])
        for f in files:
            out.setdefault(f, []).append(str(r["id"]))
    return out


def verdict_counts(page_rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows per write-up (an id reads ``<write-up>/<row>``) and verdict."""
    out: dict[str, dict[str, int]] = {}
    for r in page_rows:
        wu = str(r["id"]).split("/")[0]
        out.setdefault(wu, {}).setdefault(r["verdict"], 0)
        out[wu][r["verdict"]] += 1
    return out


HEADER = "<!-- generated by python -m cifar_pl.results page from results/page.md and the records in results/; edit those -->\n"


def render(draw: bool = False) -> str:
    text = expand(PAGE_SOURCE.read_text(), draw)
    text = text.replace("{{verdicts}}", verdict_table(rows(text)))
    return HEADER + text


def page(check: bool) -> int:
    new = render(draw=not check)
    if check:
        old = PAGE.read_text() if PAGE.is_file() else ""
        if old != new:
            diff = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(old.splitlines(), new.splitlines(), strict=False))
                    if a != b
                ),
                None,
            )
            where = f" (first difference at line {diff + 1})" if diff is not None else ""
            print(f"docs/results.md is not what results/ gives{where}; run python -m cifar_pl.results page")
            return 1
        return 0
    write_text_atomic(PAGE, new)
    print(f"docs/results.md: {len(rows(new))} verdict rows, generated from {RESULTS.relative_to(ROOT)}/")
    return 0


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="python -m cifar_pl.results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="write the compact records of finished runs under results/")
    r.add_argument(
        "targets", nargs="+", help="sweep files (their runs) or folders of runs under lightning_logs/"
    )
    g = sub.add_parser("page", help="generate docs/results.md from results/page.md and the records")
    g.add_argument(
        "--check", action="store_true", help="exit 1 when docs/results.md differs from what the records give"
    )
    a = p.parse_args(argv)
    if a.command == "record":
        record(a.targets)
        return 0
    return page(a.check)


def main(argv: list[str] | None = None) -> int:
    return run_main_code(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
