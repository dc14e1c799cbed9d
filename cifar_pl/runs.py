"""Where runs live, and every file format of a run folder: ``lightning_logs/<experiment>/version_N/`` with
``checkpoints/last.ckpt``, the best checkpoint, ``config.yaml``, ``run.json`` (the run's own record of how it
ended), ``stage.json`` (a stage's parent run and what changed) and ``activation_stats.json`` (ActivationStats'
history), plus ``<experiment>/best.ckpt``, a link to the newest run's best checkpoint. Each file is written and
read here only.

Experiment and sweep names are relative names below the log root (letters, digits and ``._,=+-``, parts joined
by ``/``): nothing a name says can put a run outside ``lightning_logs``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import BadFile, BadValue, MissingFile
from .files import write_text_atomic

LOG_ROOT = "lightning_logs"
RECORD = "run.json"
STAGE = "stage.json"
ACTIVATION_STATS = "activation_stats.json"
ACTIVATION_FIELDS = ("step", "mean", "std", "p15", "p50", "p85")  # one row per record, per layer
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,=+-]*")
MAX_PART = 120  # characters in one folder name (filesystems take 255 bytes; a sweep adds ",seed=N" and more)


def check_name(name: str, what: str = "--experiment") -> str:
    """``name`` if it is a relative name below the log root (``a`` or ``a/b``), else a clear error."""
    parts = str(name).split("/")
    bad = (
        not name or os.path.isabs(name) or any(p in ("", ".", "..") or not _PART.fullmatch(p) for p in parts)
    )
    if bad:
        raise BadValue(
            f"{what} {name!r} is not a run name: use letters, digits and ._,=+- (parts joined by '/', no '..', "
            f"not an absolute path); runs always go below {LOG_ROOT}/"
        )
    longest = max(parts, key=len)
    if len(longest) > MAX_PART or len(parts) > 8:
        raise BadValue(
            f"{what} {_shorten(name)} is too long for a folder name ({len(longest)} characters in one part, "
            f"{len(parts)} parts); use at most {MAX_PART} characters per part and 8 parts"
        )
    return name


def _shorten(name: str) -> str:
    return repr(name) if len(name) <= 60 else repr(name[:40] + "...")


def safe_part(text: str) -> str:
    """``text`` made into one valid name part (characters outside the allowed set become '_')."""
    out = re.sub(r"[^A-Za-z0-9._,=+-]+", "_", text).strip("_.") or "run"
    return out if out[0].isalnum() else f"r{out}"


def experiment_dir(experiment: str, root: str | Path = LOG_ROOT) -> Path:
    return Path(root) / check_name(experiment)


def version_number(run_dir: Path) -> int | None:
    name = run_dir.name
    return int(name[8:]) if name.startswith("version_") and name[8:].isdigit() else None


def version_dirs(exp_dir: Path) -> list[Path]:
    """The ``version_N`` folders of an experiment, oldest (lowest N) first."""
    found = [d for d in Path(exp_dir).glob("version_*") if d.is_dir() and version_number(d) is not None]
    return sorted(found, key=version_number)


def latest_last_checkpoint(exp_dir: Path) -> Path | None:
    """The newest ``version_*/checkpoints/last.ckpt`` of an experiment folder, or None."""
    found = sorted(Path(exp_dir).glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_ckpt_path(value: str, experiment: str, root: str | Path = LOG_ROOT) -> Path:
    """``--ckpt_path``: ``last`` is the newest ``last.ckpt`` of this experiment, ``best`` its ``best.ckpt`` link,
    anything else a file that must exist. Never None: a subcommand asked for weights gets them or an error."""
    exp_dir = experiment_dir(experiment, root)
    if value == "last":
        path = latest_last_checkpoint(exp_dir)
        if path is None:
            raise MissingFile(
                f"--ckpt_path last: no last.ckpt under {exp_dir}/version_*/checkpoints; nothing to resume "
                f"(check --experiment, or pass the checkpoint's path)"
            )
        return path
    if value == "best":
        path = exp_dir / "best.ckpt"
        if not path.exists():
            raise MissingFile(
                f"--ckpt_path best: {path} does not exist (it is made when a fit of this experiment ends); "
                f"check --experiment, or pass the checkpoint's path"
            )
        return path
    path = Path(value).expanduser()
    if not path.is_file():
        raise MissingFile(
            f"--ckpt_path '{value}' is not a file; pass a .ckpt written by fit, or last or best"
        )
    return path


def run_dir_of(ckpt: Path, experiment: str, root: str | Path = LOG_ROOT) -> Path | None:
    """The ``version_N`` folder of ``experiment`` that holds ``ckpt`` in its ``checkpoints/``, or None."""
    resolved = Path(ckpt).resolve()
    if resolved.parent.name != "checkpoints":
        return None
    run_dir = resolved.parent.parent
    if run_dir.parent != experiment_dir(experiment, root).resolve() or version_number(run_dir) is None:
        return None
    return run_dir


def next_free(run_dir: Path, stem: str, suffix: str = ".yaml") -> str:
    """``<stem>1<suffix>``, ``<stem>2<suffix>``, ...: the first name not taken in ``run_dir``."""
    n = 1
    while (run_dir / f"{stem}{n}{suffix}").exists():
        n += 1
    return f"{stem}{n}{suffix}"


def link_best(target: Path, link: Path) -> None:
    """Point ``link`` (``lightning_logs/<experiment>/best.ckpt``) at the newest run's best checkpoint, so a
    later stage can name it without knowing version_N. Replaced atomically; a real file of that name is kept."""
    if link.exists() and not link.is_symlink():
        return
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()))
    os.replace(tmp, link)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so a reader sees the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def update_record(run_dir: Path, _drop: Sequence[str] = (), **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the run's ``run.json`` (status: running, interrupted, failed, fitted, complete),
    first removing the keys in ``_drop`` (what an earlier stop recorded, when the run starts again)."""
    record = {k: v for k, v in (read_record(run_dir) or {}).items() if k not in _drop}
    record.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json_atomic(Path(run_dir) / RECORD, record)
    return record


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``run.json``, or None when it has none (or an unreadable one)."""
    path = Path(run_dir) / RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _running_here(record: dict[str, Any]) -> bool | None:
    """For a record of a run still at work (``running``, or ``fitted``: trained, its test under way): whether its
    process of this machine is alive (None: another machine's, or no pid, which cannot be told from here)."""
    pid = record.get("pid")
    if (
        record.get("status") not in ("running", "fitted")
        or record.get("host") != socket.gethostname()
        or not isinstance(pid, int)
    ):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def wait_while_running(run_dir: Path, timeout: float = 300.0, poll: float = 0.5) -> bool:
    """Wait while the newest version of a run is being trained or tested by a live process of this machine (its
    record says ``running`` or ``fitted`` with the pid of a process that still exists: a run of a sweep whose driver was killed saves and
    stops on its own); False when it still runs after ``timeout`` seconds. A record of another machine, or of a
    process that is gone, is not waited for."""
    versions = version_dirs(run_dir)
    if not versions:
        return True
    end = time.monotonic() + timeout
    while _running_here(read_record(versions[-1]) or {}):
        if time.monotonic() > end:
            return False
        time.sleep(poll)
    return True


def run_status(run_dir: Path) -> str:
    """What the newest version of a run says of itself: complete, fitted, interrupted, failed, running or new. A
    record left ``running`` or ``fitted`` by a process of this machine that is gone (killed before it could save
    and say so) is ``interrupted``: it resumes from its last checkpoint."""
    versions = version_dirs(run_dir)
    record = read_record(versions[-1]) if versions else None
    if not record:
        return "new"
    if _running_here(record) is False:
        return "interrupted"
    return str(record.get("status", "unknown"))


def is_complete(run_dir: Path) -> bool:
    """Whether the run says it ended well: every epoch trained (or stopped early by a callback), the test written
    (scripts/transfer.sh picks the CIFAR model by it)."""
    record = read_record(run_dir)
    return bool(record) and record.get("status") == "complete"


def write_stage(run_dir: Path, parent_ckpt: Path, start_epoch: int, start_step: int,
                changes: Sequence[tuple[str, Any, Any]]) -> None:  # fmt: skip
    """``stage.json`` of a run started as a new stage from ``parent_ckpt``. The parent's run folder is stored
    relative to this run's folder, so the link survives moving or copying ``lightning_logs/`` as a whole."""
    parent = Path(parent_ckpt).resolve()  # best.ckpt is a link: its target names the parent's run
    parent_run = parent.parent.parent if parent.parent.name == "checkpoints" else None
    write_json_atomic(Path(run_dir) / STAGE, {
        "parent": str(parent_ckpt),
        "parent_run": os.path.relpath(parent_run, Path(run_dir).resolve()) if parent_run else None,
        "start_epoch": start_epoch, "start_step": start_step,
        "changes": [{"key": k, "from": a, "to": b} for k, a, b in changes],
    })  # fmt: skip


def read_stage(run_dir: Path) -> dict[str, Any] | None:
    """A stage's ``stage.json`` (None: not a stage, or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / STAGE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stage_start(run_dir: Path) -> int | None:
    """The epoch a stage's counters started at (None: not a stage, or counters restarted at 0)."""
    start = (read_stage(run_dir) or {}).get("start_epoch")
    return start if isinstance(start, int) and not isinstance(start, bool) and start > 0 else None


def stage_parent(run_dir: Path) -> Path | None:
    """The run folder a stage started from (``stage.json``), or None (not a stage, or unreadable). Stage files
    written before 2026-12 hold an absolute path; later ones a path relative to the run's folder."""
    data = read_stage(run_dir)
    parent = data.get("parent_run") if data else None
    if not isinstance(parent, str) or not parent:
        return None
    path = Path(parent)
    return (path if path.is_absolute() else Path(run_dir) / path).resolve()


def write_activation_stats(run_dir: Path, history: dict[str, list[list[float]]]) -> None:
    """ActivationStats' history beside the run's logs: per layer, one row of ``ACTIVATION_FIELDS`` per record."""
    write_json_atomic(
        Path(run_dir) / ACTIVATION_STATS, {"fields": list(ACTIVATION_FIELDS), "layers": history}
    )


def read_activation_stats(run: Path) -> dict[str, list[list[float]]]:
    """The activation history of a run folder (``lightning_logs/<experiment>`` or one ``version_N`` of it: the
    newest version that has one)."""
    run = Path(run)
    candidates = [run / ACTIVATION_STATS] + [v / ACTIVATION_STATS for v in reversed(version_dirs(run))]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise MissingFile(f"no {ACTIVATION_STATS} in '{run}' or its version_N folders; train with the ActivationStats "
                          f"callback (trainer.callbacks: [{{class_path: cifar_pl.callbacks.ActivationStats}}])")  # fmt: skip
    try:
        data = json.loads(path.read_text())
        layers = data["layers"]
        if data.get("fields") != list(ACTIVATION_FIELDS) or not isinstance(layers, dict):
            raise ValueError("unexpected layout")
        n = len(ACTIVATION_FIELDS)
        return {
            str(k): [[float(x) for x in row] for row in rows if len(row) == n] for k, rows in layers.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadFile(f"'{path}' is not an activation history written by ActivationStats ({e})") from None


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value) of repeated runs' values."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0


# A run's TensorBoard scalars, read back (the sweep, the records under results/ and the figures use these).
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
