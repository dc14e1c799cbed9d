"""The sequential engine: a sweep's runs one after another on this machine, each ``python -m cifar_pl fit`` in its
own process; a signal to the sweep reaches the run in progress, which saves and stops."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ..runs import LOG_ROOT, run_status
from .report import Progress, failure_line, record_result, start_log, try_line
from .spec import child_env, plan_runs


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
            if run.tryout:
                status[run.name], line = try_line(tag, run, rc, took)
                progress.ended(run.name)
                print(line, flush=True)
                continue
            if rc != 0 or run_status(run.run_dir) != "complete":
                status[run.name], line = failure_line(tag, run, rc)
                progress.ended(run.name)
                print(line, flush=True)
                continue
            result = record_result(spec, run, took)
            status[run.name] = "done"
            print(progress.done(tag, run.name, took, result), flush=True)
    if forward.signum is not None:
        status["__signal__"] = str(forward.signum)
    return status
