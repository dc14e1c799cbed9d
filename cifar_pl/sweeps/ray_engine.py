"""Sweeps and searches on Ray Tune: the runs of a sweep side by side on every core, GPU and node Ray has.

Each run is a Tune trial that starts the same ``python -m cifar_pl fit`` the sequential engine starts (same run
folder ``lightning_logs/<sweep>/<run>``, same ``run.json``, same resume from the run's own ``last.ckpt``), with
``--cpus-per-run`` CPUs (its math threads) and ``--gpus-per-run`` GPUs (fractions share one) reserved by Ray.
The trial reads the run's TensorBoard events as they are written and reports each epoch's validation metrics to
Tune (what a search's early stopping decides on). Without ``--address`` Ray starts on this machine for the
sweep and stops after it; ``--address auto`` (or ``host:port``, ``ray://host:port``) joins a running cluster,
whose nodes must see the same project folder (shared storage: docs/scale.md).

Stops: a SIGTERM/SIGINT to the sweep stops the trials, each run saves its ``last.ckpt`` and stops (its process
gets SIGTERM when its trial ends, also when the trial's worker is killed); running the same command again skips
the complete runs and resumes the others. Nothing of Ray's own state is needed for that: what is done is what
the runs' records say.

Ray is an optional extra (``pip install 'cifar_pl[ray]'``); this module imports it only when used.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadValue
from ..runs import LOG_ROOT, run_dir_of, run_status, version_dirs, wait_while_running
from .report import TRIED, Progress, failure_line, record_result, start_log, try_line
from .spec import SEARCH_METRICS, Planned, plan_runs

RAY_HINT = "pip install 'cifar_pl[ray]'"
POLL_S = 1.0  # how often a trial looks for new epochs in its run's events
# the scalars a trial reports for each epoch (those the run logs); `epoch` is the number of epochs done
REPORTED = SEARCH_METRICS
_PR_SET_PDEATHSIG = 1


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None


@dataclass
class Resources:
    """What each run gets and where: CPUs (also its math threads), GPUs (fractions share a GPU), runs at a time
    at most (None: as many as fit), and the Ray cluster (None: start one on this machine)."""

    cpus: float = 1.0
    gpus: float | None = None  # None: 1 where the cluster has GPUs, else 0
    max_parallel: int | None = None
    address: str | None = None

    def check(self) -> None:
        if not (isinstance(self.cpus, (int, float)) and math.isfinite(self.cpus) and self.cpus > 0):
            raise BadValue(f"--cpus-per-run {self.cpus}: give a positive number of CPUs per run, e.g. 1")
        if self.gpus is not None and not (
            isinstance(self.gpus, (int, float)) and math.isfinite(self.gpus) and self.gpus >= 0
        ):
            raise BadValue(
                f"--gpus-per-run {self.gpus}: give 0 or more GPUs per run (0.5: two runs share a GPU)"
            )
        if self.gpus is not None and self.gpus > 1 and self.gpus != int(self.gpus):
            raise BadValue(
                f"--gpus-per-run {self.gpus}: above 1 a run takes whole GPUs; give 1, 2, ... or a fraction below 1"
            )
        if self.max_parallel is not None and self.max_parallel < 1:
            raise BadValue(f"--max-parallel {self.max_parallel}: give 1 or more runs at a time")
        if self.address is not None and not self.address.strip():
            raise BadValue(
                "--address '': give auto, host:port or ray://host:port, or leave --address out to run on this machine"
            )

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


def _die_with_parent() -> None:
    """In the run's process, before it starts: SIGTERM when the thread of the trial that started it ends (Linux:
    the trial stopped, its worker or the driver killed), so no run is left training unwatched; the run saves and
    stops as on any SIGTERM."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_address(address: str, label: str, leave: str) -> None:
    """An address that answers nothing fails here in seconds, not after Ray's minutes of retries (``label``: how the
    user gave it, ``--address A`` or ``RAY_ADDRESS=A``; ``leave``: how to run on this machine instead)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadValue(
            f"{label}: give auto, host:port (the head's GCS port, 6379) or ray://host:port (Ray Client, 10001)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise BadValue(
            f"{label}: nothing answers there ({e.strerror or e}); start the cluster's head with `ray start --head`, "
            f"or {leave} to run on this machine"
        ) from None


def _program(pid: int | str) -> str:
    """The first word of a process's command line (its program, or the title Ray gives its workers)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def leftover_ray_processes() -> list[int]:
    """Ray's worker and agent processes of this machine (``ray::...``) whose raylet is gone: what a Ray started by
    a sweep whose driver was SIGKILLed leaves (its agents wait a minute or two on the dead GCS before they exit).
    Processes of a Ray that still runs (their parent is its raylet), and other users', are not among them."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        if not _program(d.name).startswith("ray::"):
            continue
        try:
            if d.stat().st_uid != os.getuid():
                continue  # another user's
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if Path(_program(ppid)).name != "raylet":
            found.append(int(d.name))
    return found


def remove_leftovers(grace_s: float = 3.0, say: bool = True) -> None:
    """Stop :func:`leftover_ray_processes` (SIGTERM, then SIGKILL after ``grace_s``) and say so in one line (not
    after this process's own ``ray.shutdown()``, whose agents may still be on their way out)."""
    pids = leftover_ray_processes()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + grace_s
        while (
            sig == signal.SIGTERM
            and time.monotonic() < end
            and any(Path(f"/proc/{p}").exists() for p in pids)
        ):
            time.sleep(0.1)
    if pids and say:
        print(f"[sweep] stopped {len(pids)} Ray process(es) left by an earlier Ray that is gone (a sweep whose "
              f"driver was killed): pid {', '.join(map(str, pids))}", flush=True)  # fmt: skip


PROJECT = Path(__file__).resolve().parents[2]  # the folder that holds the cifar_pl package the driver runs


@contextlib.contextmanager
def _quiet_fd2():
    """Ray's C++ client logs each refused call on the process's stderr (file descriptor 2), below Python: kept off
    the terminal while the driver connects (no process is started meanwhile, so none inherits it)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _refused(address: str) -> bool:
    """Whether the cluster's GCS at ``host:port`` refuses this process's authentication (one quick call)."""
    from ray._raylet import GcsClient

    try:
        with _quiet_fd2():
            GcsClient(address=address).internal_kv_get(b"session_name", b"session", timeout=5)
    except Exception as e:
        return type(e).__name__ == "AuthenticationError"
    return False


def _join_auth(address: str, label: str) -> None:
    """Join with the authentication the cluster uses, or say in one line what to set. ``ray start --head`` turns
    token authentication on wherever a token exists (``~/.ray/auth_token``), while Ray joins an explicit address
    without it: when the cluster refuses a caller without a token, token authentication is turned on here where a
    token is found (Ray's own rule for ``--address auto``). ``RAY_AUTH_MODE`` set by the user is kept."""
    if address.startswith("ray://") or address == "auto":
        return
    try:  # a Ray without token authentication has neither
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    if not _refused(address):
        return
    if "RAY_AUTH_MODE" not in os.environ:
        quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            found = maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        finally:
            quiet.setLevel(level)
        if not found:
            raise BadValue(
                f"{label}: the cluster uses token authentication and no token is found here: copy the "
                f"head's token (`ray get-auth-token` on the head) to ~/.ray/auth_token or RAY_AUTH_TOKEN, or start "
                f"the cluster with RAY_AUTH_MODE=disabled"
            )
        if not _refused(address):
            return
    raise BadValue(
        f"{label}: the cluster refused this driver's authentication (RAY_AUTH_MODE "
        f"{os.environ.get('RAY_AUTH_MODE')}): copy the head's token (`ray get-auth-token` on the head) to "
        f"~/.ray/auth_token or RAY_AUTH_TOKEN here, with RAY_AUTH_MODE=token"
    )


def _join_failure(label: str, leave: str, e: BaseException) -> BadValue:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return BadValue(
        f"{label}: could not join a Ray cluster ({first}); start one with `ray start --head`, or {leave} to run on "
        f"this machine"
    )


def joined(address: str | None) -> bool:
    """Whether the sweep runs on a cluster it joins (``--address`` or ``RAY_ADDRESS``), not on a Ray of its own."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


def start_ray(address: str | None) -> bool:
    """Ray on this machine (no address) or the cluster at ``address`` (or ``RAY_ADDRESS``); True when this call
    started it. Joined, the cluster's workers import this driver's cifar_pl (its folder first on their
    ``PYTHONPATH``)."""
    import ray

    if ray.is_initialized():
        return False
    label, leave = f"--address {address}", "leave --address out"
    if address is None and os.environ.get("RAY_ADDRESS") is not None:
        address = os.environ["RAY_ADDRESS"]
        label, leave = f"RAY_ADDRESS={address}", "unset RAY_ADDRESS"
        if not address.strip():
            raise BadValue("RAY_ADDRESS is set but empty: unset it to run on this machine, or give the cluster's "
                           "host:port")  # fmt: skip
    runtime_env = None
    if address is not None:
        if address != "auto":
            _check_address(address, label, leave)
        _join_auth(address, label)
        paths = [str(PROJECT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
    else:
        remove_leftovers()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a stopped trial's run gets SIGTERM (it saves and records the stop), not Ray's SIGKILL of a worker's children
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit", "0")
    os.environ.setdefault(
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"
    )  # the runs write their own TensorBoard logs
    try:
        quiet = (
            _quiet_fd2() if address is not None else contextlib.nullcontext()
        )  # a local Ray's processes keep it
        with contextlib.redirect_stderr(io.StringIO()), quiet:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env,
                     logging_level=logging.ERROR, configure_logging=True)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise _join_failure(label, leave, e) from None
    return True


def stop_ray(address: str | None) -> None:
    """The end of :func:`start_ray`: ``ray.shutdown()``, and for a Ray of this machine that it started, its
    per-node agents, which outlive it by a minute or two when their raylet goes first."""
    import ray

    ray.shutdown()
    if not joined(address):
        remove_leftovers(grace_s=5.0, say=False)


@contextlib.contextmanager
def ray_session(res: Resources, sweep_dir: Path) -> Iterator[int]:
    """Ray for one sweep or search: started or joined (:func:`start_ray`), the runs it holds at a time
    (:func:`check_cluster`, yielded), the shared folder checked on a joined cluster (:func:`check_shared`), and
    stopped at the end when this call started it (:func:`stop_ray`)."""
    started = start_ray(res.address)
    try:
        parallel = check_cluster(res)
        if joined(res.address):  # its nodes must see the runs' folders
            check_shared(sweep_dir)
        yield parallel
    finally:
        if started:
            stop_ray(res.address)


def check_shared(sweep_dir: Path) -> None:
    """Every node of a joined cluster sees the sweep's folder at the same path (the runs write their records and
    checkpoints there, and the driver reads them): a file written here is read back by a task on each node. A node
    that does not see it is named in one line before any run starts."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    sweep_dir = sweep_dir.resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    text = uuid.uuid4().hex
    probe = sweep_dir / f".probe-{text}"
    probe.write_text(text)

    def sees(path: str, expected: str) -> bool:  # defined here: shipped by value, runs without cifar_pl there
        try:
            with open(path) as f:
                return f.read() == expected
        except OSError:
            return False

    task = ray.remote(num_cpus=0)(sees)
    try:
        refs = [(n, task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                 .remote(str(probe), text)) for n in nodes]  # fmt: skip
        blind = []
        for node, ref in refs:
            try:
                ok = ray.get(ref, timeout=120)
            except Exception:  # a node that cannot run the task cannot run the runs either
                ok = False
            if not ok:
                blind.append(f"{node.get('NodeManagerAddress')} (node {node['NodeID'][:8]})")
    finally:
        probe.unlink(missing_ok=True)
    if blind:
        raise BadValue(
            f"the Ray node(s) {', '.join(blind)} do not see {sweep_dir}: every node of the cluster must see this "
            f"project's folder at the same path (shared storage, docs/scale.md), where the runs write their records "
            f"and checkpoints; mount it there, or leave --address out to run on this machine"
        )


def check_cluster(res: Resources) -> int:
    """The runs the cluster can hold at a time with ``res``; one line when a run cannot fit on it at all."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if res.gpus is None:  # a GPU each where there are GPUs: a run given none would train on the CPU
        res.gpus = 1.0 if gpus >= 1 else 0.0
    if res.gpus > gpus:
        raise BadValue(
            f"--gpus-per-run {res.gpus}: the Ray cluster has {gpus:g} GPU(s); give at most {gpus:g} (0 runs on CPUs)"
        )
    if res.cpus > cpus:
        raise BadValue(
            f"--cpus-per-run {res.cpus}: the Ray cluster has {cpus:g} CPU(s); give at most {cpus:g}"
        )
    fit = int(cpus // res.cpus)
    if res.gpus:
        fit = min(fit, int(gpus // res.gpus))
    return max(1, min(fit, res.max_parallel or fit))


class EpochReader:
    """The epochs a run has finished, read from its TensorBoard events as TensorBoard reads them: one dict per
    epoch with ``epoch`` (epochs done) and the :data:`REPORTED` scalars logged at that epoch's end."""

    def __init__(self, run_dir: Path, before: set[str], resume_dir: Path | None):
        self.run_dir, self.before, self.resume_dir = run_dir, before, resume_dir
        self.acc: Any = None
        self.reported = 0
        self.last: dict[str, Any] = {}

    def _version(self) -> Path | None:
        if self.resume_dir is not None:
            return self.resume_dir
        new = [d for d in version_dirs(self.run_dir) if d.name not in self.before]
        return new[-1] if new else None

    def new_epochs(self) -> list[dict[str, Any]]:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        if self.acc is None:
            folder = self._version()
            if folder is None or not any(folder.glob("events.out.tfevents.*")):
                return []
            self.acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        self.acc.Reload()
        tags = set(self.acc.Tags().get("scalars", []))
        epoch_at: dict[int, int] = {}
        for tag in ("epoch", "train/epoch"):
            if tag in tags:
                epoch_at.update({e.step: int(e.value) for e in self.acc.Scalars(tag)})
        by_epoch: dict[int, dict[str, float]] = {}
        for tag in REPORTED:
            if tag in tags:
                for e in self.acc.Scalars(tag):
                    if e.step in epoch_at:
                        by_epoch.setdefault(epoch_at[e.step] + 1, {})[tag] = float(e.value)
        out = []
        # an epoch is reported once its validation accuracy is there (train/acc of it follows at the same step)
        done = sorted(n for n, row in by_epoch.items() if "val/acc" in row)
        for n in done:
            if n > self.reported:
                row = {"epoch": n, **by_epoch[n]}
                out.append(row)
                self.reported = n
                self.last = row
        return out


def run_trial(config: dict[str, Any], runs: dict[str, dict[str, Any]]) -> None:
    """A sweep's Tune trial: the run ``config["run"]`` of ``runs`` (see :func:`run_one`)."""
    run_one(runs[config["run"]])


def run_one(run: dict[str, Any]) -> None:
    """In a Tune trial: run one run's ``fit`` in its own process and report its epochs; raise when it does not
    complete (Tune then marks the trial failed)."""
    from ray import tune

    run_dir = Path(run["run_dir"])
    if not wait_while_running(run_dir, timeout=300):
        raise RuntimeError(f"{run_dir} is still being trained by another process; stop it or wait")
    resume_dir = (
        run_dir_of(Path(run["resume"]), run["experiment"], run["log_root"]) if run.get("resume") else None
    )
    before = {d.name for d in version_dirs(run_dir)}
    planned = Planned(0, run["name"], run_dir, run["cmd"], run["doing"], False)
    env = {**os.environ, **run["env"]}
    start = time.perf_counter()
    reader = EpochReader(run_dir, before, resume_dir)
    last_epoch = run.get("max_epochs")
    with start_log(planned) as out:
        # its own session: a signal to the worker's process group is not a second stop for it (which would stop it
        # at once, unsaved); the trial's end reaches it through _die_with_parent
        proc = subprocess.Popen(run["cmd"], cwd=run["cwd"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent, start_new_session=True)  # fmt: skip
        # No terminate() when the trial is stopped (early stopping, a stopped sweep): the end of this thread is
        # the run's one SIGTERM (_die_with_parent), on which it saves and stops; a second signal would stop it
        # at once, unsaved.
        while True:
            rc = proc.poll()
            for row in reader.new_epochs():
                if last_epoch is not None and row["epoch"] >= last_epoch:
                    break  # the run's last epoch goes with its end: an early stop decided on it cannot cut the test
                tune.report({**row, "run": run["name"]})
            if rc is not None:
                break
            time.sleep(POLL_S)
    reader.new_epochs()  # the last events written before the process ended
    status = run_status(run_dir)
    final = {**reader.last, "epoch": reader.reported, "exit_code": rc, "complete": status == "complete",
             "run": run["name"],
             "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    tune.report(final)
    if rc != 0 or (status != "complete" and not run.get("tryout")):
        raise RuntimeError(f"run {run['name']} ended with exit {rc}, its record says {status}")


def trial_spec(spec: dict[str, Any], run: Planned, res: Resources, log_root: Path) -> dict[str, Any]:
    """What a trial needs to start a planned run anywhere in the cluster: absolute paths, the command, its
    environment (the math threads of ``--cpus-per-run``, this project on the path)."""
    cwd = Path.cwd()
    resume = None
    if "--ckpt_path" in run.cmd:
        resume = str((cwd / run.cmd[run.cmd.index("--ckpt_path") + 1]).resolve())
    env = {"OMP_NUM_THREADS": str(res.threads), "MKL_NUM_THREADS": str(res.threads)}
    for key in ("PYTHONPATH", "CIFAR_PL_DATA", "CIFAR_PL_TRACEBACK"):
        if key in os.environ:
            env[key] = os.environ[key]
    return {
        "name": run.name, "run_dir": str((cwd / run.run_dir).resolve()), "cmd": run.cmd, "cwd": str(cwd),
        "doing": run.doing, "env": env, "resume": resume, "experiment": f"{spec['sweep']}/{run.name}",
        "log_root": str((cwd / log_root).resolve()), "tryout": run.tryout,
    }  # fmt: skip


class SweepStop:
    """SIGTERM and SIGINT (Ctrl-C) to the sweep while Tune runs: the signal is kept (for the exit code and the
    line that says it) and Tune stops every trial through ``stopping.StopOnSignal`` (each run saves its
    ``last.ckpt`` and stops). Tune's own Ctrl-C handler is off, so a stop is said only when a signal came. A second
    signal stops at once."""

    def __init__(self):
        self.signum: int | None = None

    def __enter__(self):
        from . import stopping  # deferred: imports Ray

        self._flag = stopping.SIGNALLED
        self._flag.clear()
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signum = signum
        self._flag.append(signum)
        os.write(2, f"[sweep] {signal.Signals(signum).name}: stopping the runs (each saves its last.ckpt); a second "
                    f"signal stops at once\n".encode())  # fmt: skip


def _callback(spec: dict[str, Any], plan: dict[str, Planned], total: int, progress: Progress) -> Any:
    from ray import tune

    class Lines(tune.Callback):
        """The sequential engine's lines, for trials: started, done (with result.json written) or failed."""

        failed: dict[str, str] = {}
        recorded: set[str] = set()
        tried: set[str] = set()

        def on_trial_start(self, iteration, trials, trial, **info):
            run = plan[trial.config["run"]]
            progress.started(run.name)
            print(f"[sweep {run.index}/{total}] {run.name}: {run.doing} on Ray (output: {run.run_dir / 'sweep.log'})",
                  flush=True)  # fmt: skip

        def on_trial_complete(self, iteration, trials, trial, **info):
            run = plan[trial.config["run"]]
            took = float((trial.last_result or {}).get("wall_s", 0.0))
            if run.tryout:
                Lines.tried.add(run.name)
                print(try_line(f"[sweep {run.index}/{total}]", run, 0, took)[1], flush=True)
                progress.ended(run.name)
                return
            result = record_result(spec, run, took)
            Lines.recorded.add(run.name)
            print(progress.done(f"[sweep {run.index}/{total}]", run.name, took, result), flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            run = plan[trial.config["run"]]
            rc = (trial.last_result or {}).get("exit_code")
            progress.ended(run.name)
            rc = rc if isinstance(rc, int) else -1
            line_of = try_line if run.tryout else failure_line
            Lines.failed[run.name], line = line_of(f"[sweep {run.index}/{total}]", run, rc, None)
            print(line, flush=True)

    return Lines()


def run_sweep_ray(
    spec: dict[str, Any],
    extra: list[str],
    res: Resources,
    log_root: Path = Path(LOG_ROOT),
    only=None,
    changed: dict[str, str] | None = None,
) -> dict[str, str]:
    """``run_sweep`` on Ray Tune: the same runs, the same folders and records, several at a time."""
    from ray import tune

    from .stopping import StopOnSignal  # deferred: imports Ray

    plan = plan_runs(spec, extra, log_root, only, changed)
    status: dict[str, str] = {}
    for run in plan:
        if run.finished:
            print(f"[sweep {run.index}/{len(plan)}] {run.name}: finished before, skipped (its configuration is this "
                  f"file's)")  # fmt: skip
            status[run.name] = "skipped"
    todo = [r for r in plan if not r.finished]
    if not todo:
        return status
    with ray_session(res, Path.cwd() / log_root / spec["sweep"]) as parallel:
        print(f"[sweep] on Ray: {len(todo)} runs, {parallel} at a time ({res.cpus:g} CPU"
              f"{f', {res.gpus:g} GPU' if res.gpus else ''} each)", flush=True)  # fmt: skip
        runs = {r.name: trial_spec(spec, r, res, log_root) for r in todo}
        lines = _callback(spec, {r.name: r for r in plan}, len(plan), Progress(len(todo), parallel))
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, runs=runs), {"cpu": res.cpus, "gpu": res.gpus}
        )
        storage = fresh_state(Path.cwd() / log_root / spec["sweep"], "sweep")
        with SweepStop() as stop, _quiet_tune():
            tuner = tune.Tuner(
                trainable,
                param_space={"run": tune.grid_search([r.name for r in todo])},
                tune_config=tune.TuneConfig(max_concurrent_trials=parallel, reuse_actors=False),
                run_config=tune.RunConfig(name="sweep", storage_path=str(storage), verbose=0, callbacks=[lines],
                                          stop=StopOnSignal(), log_to_file=True),
            )  # fmt: skip
            tuner.fit()
        for run in todo:  # what each run's own record says, whatever Tune thought of its trial
            wait_while_running(run.run_dir, timeout=120)  # a stopped run of this machine may still be saving
            after = run_status(run.run_dir)
            if run.tryout:
                status[run.name] = (
                    TRIED if run.name in lines.tried else lines.failed.get(run.name, "not started")
                )
            elif after == "complete":
                status[run.name] = "done"
                if run.name not in lines.recorded:  # finished as the sweep was stopped: Tune never said so
                    record_result(spec, run, None)
            elif after == "interrupted":
                status[run.name] = "interrupted"
            elif run.name in lines.failed:
                status[run.name] = lines.failed[run.name]
            else:
                status[run.name] = "not started" if after == "new" else f"failed (its record says {after})"
        if stop.signum is not None:
            print(f"[sweep] stopped by {signal.Signals(stop.signum).name}: run the same command again to resume "
                  f"the interrupted runs and start the others", flush=True)  # fmt: skip
            status["__signal__"] = str(int(stop.signum))
    return status


def fresh_state(sweep_dir: Path, name: str) -> Path:
    """Tune's storage folder for a sweep (``<sweep>/.ray``), with the state of an earlier sweep run (``name``)
    removed: what is done is what the runs' records say, so each sweep run keeps one state folder, not one more per
    run (a search keeps its own, ``search``, to continue from)."""
    storage = (sweep_dir / ".ray").resolve()
    for old in [
        storage / name,
        *storage.glob("sweep-*"),
    ]:  # sweep-<time>: one per run, as Tune named them before
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return storage


@contextlib.contextmanager
def _quiet_tune():
    """Tune logs each failed trial's traceback (our RuntimeError, 40 lines): the sweep says it in one line with the
    run's own log; Tune's messages below ERROR+1 are kept off the terminal while the sweep runs."""
    loggers = [logging.getLogger(n) for n in ("ray.tune", "ray.tune.execution.tune_controller", "ray.train")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def require_ray(what: str) -> None:
    if not ray_available():
        raise BadValue(f"{what} needs Ray Tune, which is not installed: {RAY_HINT}")
