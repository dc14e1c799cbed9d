"""On the real CIFAR subsets (skipped where $CIFAR_PL_DATA is absent): our pixels, channel order, labels and
normalisation are the real CIFAR's, and a net trained here learns."""

from __future__ import annotations

import pytest

from .helpers import run_cli

pytestmark = pytest.mark.real_data


@pytest.mark.parametrize("depth, floor", [(20, 0.91), (56, 0.92)])
def test_peer_pretrained_resnet_scores_on_our_test_loop(depth, floor, real_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = next((real_data / "weights").glob(f"resnet{depth}-*.th"))
    cli = run_cli("test", f"resnet{depth}_pretrained", real_data, f"--model.init.weights {weights}")
    acc = float(cli.trainer.callback_metrics["test/acc"])
    assert acc >= floor, f"resnet{depth} scored {acc:.4f} on the 1,017 real test images"


def test_a_short_run_learns_real_cifar10(real_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "quickstart", real_data, "--trainer.max_epochs 2")
    acc = float(cli.trainer.callback_metrics["test/acc"])
    assert acc >= 0.40, f"two epochs of quickstart reached only {acc:.4f} test accuracy (chance is 0.10)"


@pytest.mark.long  # a 30-epoch training run (4 min here): make test-long, by hand
def test_model_g_reaches_55_percent_in_30_epochs(real_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli("fit", "model_g", real_data)
    assert cli.trainer.current_epoch == 30
    assert float(cli.trainer.callback_metrics["test/acc"]) >= 0.55
