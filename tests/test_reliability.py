"""A run killed with SIGKILL resumes to exactly the weights of an uninterrupted one (checkpoint writes:
tests/test_checkpoint_io.py); resuming says clearly when there is nothing to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from .helpers import child_env, largest_difference, run_cli, training_command


def _final(workdir: Path, experiment: str) -> dict:
    return torch.load(
        workdir / "lightning_logs" / experiment / "version_0" / "checkpoints" / "last.ckpt", weights_only=True
    )


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(cifar10_root, tmp_path):
    # 130 training images in batches of 16: 9 steps per epoch, 27 in all. The run is killed at step 13, in the
    # middle of epoch 1, and resumed with `--ckpt_path last` from the checkpoint written at the end of epoch 0.
    subprocess.run(
        training_command(cifar10_root, "straight"),
        cwd=tmp_path,
        env=child_env(),
        check=True,
        capture_output=True,
    )
    marker = tmp_path / "paused"
    pause = ["--trainer.callbacks+=tests.helpers.PauseAt"]  # in both runs: the resumed config is the same
    proc = subprocess.Popen(training_command(cifar10_root, "killed", *pause), cwd=tmp_path,
                            env=child_env(PAUSE_AT_STEP="13", PAUSE_MARKER=str(marker)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the run never reached step 13"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    interrupted = _final(tmp_path, "killed")
    assert interrupted["global_step"] == 9 and interrupted["epoch"] == 0  # the last good checkpoint survived
    resumed = subprocess.run(training_command(cifar10_root, "killed", *pause, "--ckpt_path", "last"), cwd=tmp_path,
                             env=child_env(), capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint path at" in resumed.stderr + resumed.stdout
    a, b = _final(tmp_path, "straight"), _final(tmp_path, "killed")
    assert a["global_step"] == b["global_step"] == 27
    key, worst = largest_difference(a["state_dict"], b["state_dict"])
    print(f"max abs weight difference after SIGKILL + resume: {worst} ({key})")
    assert worst == 0.0, key
    # the resumed run continued in the same version folder: one run, one set of logs
    assert not (tmp_path / "lightning_logs" / "killed" / "version_1").exists()


def test_resume_last_with_nothing_to_resume_says_so(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match="--ckpt_path last: no last.ckpt under lightning_logs/nothing"
    ):
        run_cli("fit", "model_gap", cifar10_root, "--experiment nothing --ckpt_path last")


def _val_acc(run_dir: Path) -> list[float]:
    from cifar_pl.viz.curves import read_scalars

    return [v for _, v in read_scalars(run_dir).get("val/acc", [])]


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_ddp_on_two_cpu_processes_agrees_with_one(cifar10_root, tmp_path):
    # A few DDP training steps on 2 CPU processes, then the same checkpoint validated by DDP and by one process:
    # the synced accuracy over the whole split must equal the single-process one (14 validation images, 7 each).
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1",
           "--trainer.deterministic", "false"]  # fmt: skip
    fit = subprocess.run(training_command(cifar10_root, "ddp", *ddp), cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    runs = sorted((tmp_path / "lightning_logs" / "ddp").glob("version_*"))
    assert [r.name for r in runs] == ["version_0"]  # logged once
    ckpts = sorted(p.name for p in (runs[0] / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts  # best + last, written once
    last = runs[0] / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 5  # 130 images / (2 ranks x 16) per step
    accs = {}
    for name, extra in (("one", ["--trainer.devices", "1"]), ("two", ddp[:4])):
        cmd = training_command(
            cifar10_root, f"val_{name}", *extra, "--ckpt_path", str(last), subcommand="validate"
        )
        out = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        accs[name] = _val_acc(tmp_path / "lightning_logs" / f"val_{name}")
    print(
        f"validation accuracy of the DDP-trained checkpoint: one process {accs['one']}, two processes {accs['two']}"
    )
    assert len(accs["one"]) == 1 and accs["one"] == accs["two"]


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_ddp_error_on_one_rank_ends_the_run(cifar10_root, tmp_path):
    fail = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.deterministic", "false",
            "--trainer.callbacks+=tests.helpers.FailOnRank", "--trainer.callbacks.rank=1",
            "--trainer.callbacks.step=2"]  # fmt: skip
    start = time.time()
    out = subprocess.run(training_command(cifar10_root, "ddp_fail", *fail), cwd=tmp_path, env=child_env(), capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode != 0
    assert "deliberate failure on rank 1 at step 2" in out.stderr
    assert time.time() - start < 240  # ended, not hung until the collective timeout (30 minutes)
