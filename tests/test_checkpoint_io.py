"""The one checkpoint writer: a crash, a SIGKILL or a full disk at any byte of a rewrite leaves the previous
checkpoint whole, also with the run folder on another filesystem than the system temp folder (where Lightning's own
writer copies over the old file)."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_pl import files
from cifar_pl.checkpoints import AtomicCheckpointIO

from .helpers import CONFIGS, FileProxy, child_env, largest_difference, run_cli, tmpfs_mount


def _ckpt(step: int, mb: float = 1.0) -> dict:
    return {"state_dict": {"w": torch.full((int(mb * 2**18),), float(step))}, "global_step": step}


def _size(ckpt: dict) -> int:
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return len(buf.getvalue())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


class _Failing(FileProxy):
    """A file that fails with ``error`` once ``at`` bytes have been written (the bytes before it are written)."""

    def __init__(self, f, at: int, error: OSError):
        super().__init__(f)
        self.at, self.error = at, error

    def write(self, data):
        data = bytes(data)
        if self.written + len(data) > self.at:
            self.f.write(data[: self.at - self.written])
            raise self.error
        self.written += len(data)
        return self.f.write(data)


def _fail_writes_at(monkeypatch, at: int, error: OSError) -> None:
    real = files._open_temp
    monkeypatch.setattr(files, "_open_temp", lambda folder, name: (lambda t: (t[0], _Failing(t[1], at, error)))(
        real(folder, name)))  # fmt: skip


@pytest.mark.parametrize("at", ["0", "1", "half", "all but one"])
def test_a_write_that_fails_at_any_byte_leaves_the_previous_checkpoint(tmp_path, monkeypatch, at):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(1), path)
    before = path.read_bytes()
    n = _size(_ckpt(2))
    _fail_writes_at(monkeypatch, {"0": 0, "1": 1, "half": n // 2, "all but one": n - 1}[at],
                    OSError(errno.EIO, "simulated crash"))  # fmt: skip
    with pytest.raises(OSError, match="simulated crash"):
        AtomicCheckpointIO().save_checkpoint(_ckpt(2), path)
    assert path.read_bytes() == before and torch.load(path, weights_only=True)["global_step"] == 1
    assert _leftovers(path.parent) == []


def test_a_crash_between_the_last_byte_and_the_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(1), path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError(errno.EIO, "simulated crash before the rename")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="before the rename"):
        AtomicCheckpointIO().save_checkpoint(_ckpt(2), path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_a_disk_that_fills_mid_write_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(1), path)
    before = path.read_bytes()
    _fail_writes_at(monkeypatch, _size(_ckpt(2)) // 2, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(files.DiskFull, match=r"no space left on the filesystem of .* while writing last.ckpt; the "
                                             r"previous last.ckpt is intact. Free space there"):  # fmt: skip
        AtomicCheckpointIO().save_checkpoint(_ckpt(2), path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


_KILLER = """
import os, signal, sys, torch
from pathlib import Path
from cifar_pl import files
from cifar_pl.checkpoints import AtomicCheckpointIO

path, kill_at = Path(sys.argv[1]), int(sys.argv[2])
real = files._open_temp


class Dying:  # SIGKILL once kill_at bytes are on disk; -1: every byte written and synced, before the rename
    def __init__(self, f):
        self.f, self.n = f, 0

    def write(self, data):
        data = bytes(data)
        if 0 <= kill_at < self.n + len(data):
            self.f.write(data[: kill_at - self.n])
            self.f.flush()
            os.fsync(self.f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        self.n += len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.flush()
        os.fsync(self.f.fileno())
        if kill_at < 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.f.__exit__(*exc)


files._open_temp = lambda folder, name: (lambda t: (t[0], Dying(t[1])))(real(folder, name))
AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.full((2**18,), 2.0)}, "global_step": 2}, path)
"""


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_sigkill_at_any_byte_of_a_rewrite_on_a_second_filesystem_keeps_the_previous_checkpoint(
    second_filesystem, tmp_path
):
    # last.ckpt on one filesystem, the system temp folder ($TMPDIR) on another: the layout where a write through
    # the temp folder and a move destroyed the old checkpoint
    assert os.stat(second_filesystem).st_dev != os.stat(tmp_path).st_dev
    path = second_filesystem / "run" / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(1), path)
    before = path.read_bytes()
    n = _size(_ckpt(2))
    for at in (0, 1, 65536, n // 2, n - 1, -1):
        out = subprocess.run([sys.executable, "-c", _KILLER, str(path), str(at)], env=child_env(TMPDIR=str(tmp_path)),
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
        assert path.read_bytes() == before, f"killed at byte {at}"
        assert torch.load(path, weights_only=True)["global_step"] == 1
        assert len(_leftovers(path.parent)) == 1  # the dead writer's temporary file, never read
        AtomicCheckpointIO().save_checkpoint(_ckpt(1), path)  # the next write removes it
        assert _leftovers(path.parent) == [] and path.read_bytes() == before
    print(
        f"SIGKILL at bytes 0, 1, 65536, {n // 2}, {n - 1} and after the last one ({n} bytes) on a second "
        f"filesystem: the previous last.ckpt byte-identical each time"
    )


def test_a_second_filesystem_that_fills_keeps_the_previous_checkpoint(tmp_path):
    with tmpfs_mount(tmp_path / "small", "3m") as mounted:
        if not mounted:
            pytest.skip("mounting a small tmpfs needs root (the injected full disk above always runs)")
        path = tmp_path / "small" / "last.ckpt"
        AtomicCheckpointIO().save_checkpoint(_ckpt(1, mb=1.25), path)  # 1.25 MB of 3: two copies do not fit
        before = path.read_bytes()
        with pytest.raises(files.DiskFull, match="the previous last.ckpt is intact"):
            AtomicCheckpointIO().save_checkpoint(_ckpt(2, mb=1.9), path)
        assert path.read_bytes() == before and _leftovers(path.parent) == []


def _fit(data_dir: Path, experiment: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cifar_pl", "fit", "--config", str(CONFIGS / "model_gap.yaml"),
        "--data.data_dir", str(data_dir), "--experiment", experiment, "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "3", "--trainer.deterministic", "true",
        "--data.batch_size", "16", "--data.augment", "standard", "--test_after_fit", "false",
        "--trainer.callbacks+=tests.helpers.SignalAt", *extra,
    ]  # fmt: skip


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_a_run_on_a_second_filesystem_killed_while_rewriting_last_ckpt_resumes_to_identical_weights(
    cifar10_root, second_filesystem, tmp_path
):
    # 9 steps per epoch; the run is killed while last.ckpt of epoch 1 (step 18) is half written over the one of
    # epoch 0 (step 9), resumes from that one, and ends with the weights of a run never stopped.
    env = child_env(TMPDIR=str(tmp_path))
    work = second_filesystem
    subprocess.run(
        _fit(cifar10_root, "straight"), cwd=work, env=env, check=True, capture_output=True, timeout=600
    )
    killed = subprocess.run(_fit(cifar10_root, "killed"), cwd=work, capture_output=True, text=True, timeout=600,
                            env={**env, "SIGNAL_AT": "write:18", "SIGNAL_KIND": "KILL"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpts = work / "lightning_logs" / "killed" / "version_0" / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 9  # the previous one, whole
    resumed = subprocess.run(_fit(cifar10_root, "killed", "--ckpt_path", "last"), cwd=work, env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _leftovers(ckpts) == []
    a, b = (torch.load(work / "lightning_logs" / e / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
            for e in ("straight", "killed"))  # fmt: skip
    assert a["global_step"] == b["global_step"] == 27
    key, worst = largest_difference(a["state_dict"], b["state_dict"])
    print(
        f"SIGKILL while rewriting last.ckpt on a second filesystem, resumed: max abs weight difference {worst}"
    )
    assert worst == 0.0, key


def test_the_cli_writes_every_checkpoint_through_the_atomic_writer(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(
        "fit", "model_gap", cifar10_root, "--trainer.max_epochs 1 --data.batch_size 32 --test_after_fit false"
    )
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_full_disk_with_no_previous_checkpoint_says_nothing_was_written(tmp_path, monkeypatch):
    """The first last.ckpt of a run on a full disk: no 'previous last.ckpt is intact' when there was none."""
    path = tmp_path / "last.ckpt"
    _fail_writes_at(monkeypatch, _size(_ckpt(1)) // 2, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(files.DiskFull) as raised:
        AtomicCheckpointIO().save_checkpoint(_ckpt(1), path)
    assert "nothing was written (there was no last.ckpt before)" in str(raised.value)
    assert "intact" not in str(raised.value)
    assert not path.exists() and _leftovers(tmp_path) == []


@pytest.mark.slow  # a training process of its own
def test_the_file_size_limit_during_a_save_is_one_line_and_exit_2(tmp_path, cifar10_root):
    """`ulimit -f` below a checkpoint's size: the save fails with EFBIG (SIGXFSZ is ignored by the command, as it
    would otherwise kill the process mid-write), one line, exit 2, no partial checkpoint."""
    import resource

    limit = 64 * 1024  # logs and records fit, a checkpoint of model_gap does not

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [*_fit(cifar10_root, "fsize"), "--trainer.logger", "false"]  # no TensorBoard file to meet it first
    out = subprocess.run(cmd, cwd=tmp_path, env={**child_env(), "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=300, preexec_fn=small_files)  # fmt: skip
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    print(f"ulimit -f {limit // 1024} KB: exit {out.returncode}: {errors}")
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and len(errors) == 1, out.stderr[-3000:]
    assert "the file-size limit of this process (ulimit -f) stopped writing" in errors[0]
    assert not [p for p in tmp_path.rglob("*.ckpt*")], list(tmp_path.rglob("*.ckpt*"))
