"""The GPU tier: every workflow on a real CUDA device. Skipped without one; ``make test-gpu`` runs it.

fit + test + the end-of-test report, bf16-mixed with channels_last and torch.compile, predict and viz on the GPU,
a SIGTERM then ``fit --ckpt_path last`` resume, and a one-GPU DDP run, on the small made-up CIFAR folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .helpers import CONFIGS, REPO, largest_difference, run_cli, training_command

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu on a GPU machine)"
    ),
]
GPU = "--trainer.accelerator gpu --trainer.devices 1"


def _events(run: Path) -> tuple[set[str], set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"]), set(acc.Tags()["images"])


def test_fit_test_and_the_report_on_the_gpu(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "quickstart", cifar10_root, f"{GPU} --trainer.max_epochs 2 --experiment g")
    assert cli.trainer.state.finished and cli.model.device.type == "cuda"
    scalars, images = _events(Path(cli.trainer.log_dir))
    assert "test/acc" in scalars
    assert {"test/confusion", "test/mistakes", "test/cams", "test/channels"} <= images


@pytest.mark.parametrize("variant", ["--trainer.precision bf16-mixed",
                                     "--trainer.precision bf16-mixed --model.runtime.channels_last true",
                                     "--trainer.precision bf16-mixed --model.runtime.channels_last true --model.runtime.compile true",
                                     "--trainer.precision bf16-true"])  # fmt: skip
def test_speed_switches_train_and_report_on_the_gpu(variant, cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "quickstart", cifar10_root, f"{GPU} {variant} --trainer.max_epochs 1 --experiment s")
    assert cli.trainer.state.finished and torch.isfinite(cli.trainer.callback_metrics["test/loss"])


def test_the_speed_preset_on_the_gpu(cifar10_root, tmp_path, monkeypatch):
    # resident uint8 set on the GPU, alternating flips, whitening, EMA/lookahead, TTA, bf16 + channels_last + compile
    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "speed/speednet", cifar10_root, f"{GPU} --trainer.max_epochs 3 --model.schedule.warmup_epochs 0.5 "
                  "--data.val_size 24 --data.batch_size 32 --data.eval_batch_size 64")  # fmt: skip
    dm, model = cli.datamodule, cli.model
    assert cli.trainer.state.finished and model.net.whitened and bool(model.ema.started)
    assert [d.type for d in dm._resident_on] == ["cuda"]
    assert torch.isfinite(cli.trainer.callback_metrics["test/loss"])


def test_predict_and_viz_on_the_gpu(cifar10_root, tmp_path, monkeypatch):
    from PIL import Image

    from cifar_pl.predict import predict
    from cifar_pl.viz.__main__ import run as viz

    monkeypatch.chdir(tmp_path)
    run_cli("fit", "quickstart", cifar10_root, f"{GPU} --trainer.max_epochs 1 --experiment p")
    ckpt = tmp_path / "lightning_logs" / "p" / "best.ckpt"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "x.jpg")
    rows = predict([str(tmp_path / "x.jpg"), "--ckpt", str(ckpt), "--device", "cuda"])
    assert len(rows[0]["top"]) == 3
    out = ["--ckpt", str(ckpt), "--device", "cuda", "--out", str(tmp_path / "viz")]
    made = viz(["report", *out, "--n", "4", "--data-dir", str(cifar10_root)]) + viz(
        ["cam", str(tmp_path / "x.jpg"), *out]
    )
    assert {p.name for p in made} >= {"cams.png", "mistakes.png", "confusion.png"}


def test_sigterm_then_resume_on_the_gpu(cifar10_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    subprocess.run(
        training_command(cifar10_root, "straight", device=tuple(GPU.split()), pause=True),
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    marker = tmp_path / "paused"
    proc = subprocess.Popen(training_command(cifar10_root, "stopped", device=tuple(GPU.split()), pause=True), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**env, "PAUSE_AT_STEP": "13", "PAUSE_MARKER": str(marker)})  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=300) == 143
    resumed = subprocess.run(training_command(cifar10_root, "stopped", "--ckpt_path", "last", device=tuple(GPU.split()), pause=True), cwd=tmp_path, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def final(name):
        return torch.load(
            tmp_path / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt", weights_only=True
        )

    a, b = final("straight"), final("stopped")
    key, worst = largest_difference(a["state_dict"], b["state_dict"])
    print(f"GPU: max abs weight difference after SIGTERM + resume: {worst} ({key})")
    assert a["global_step"] == b["global_step"] == 27 and worst == 0.0


def test_one_gpu_ddp(cifar10_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "cifar_pl", "fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.data_dir",
           str(cifar10_root), "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.strategy", "ddp",
           "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--experiment", "ddp"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "lightning_logs" / "ddp" / "version_0" / "run.json").is_file()
