"""A stop saves what it says, wherever it arrives: in a training step, in validation, while last.ckpt is being
written, in the test after fit, while the photos are decoded, or twice. The run's record and message name the step
the checkpoint really holds, and `--ckpt_path last` continues from there to the weights of a run never stopped.

The signal is this process's own SIGTERM, sent by tests.helpers.SignalAt at the chosen place of an in-process run
(exactly what a scheduler's SIGTERM does when it arrives there)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from .helpers import largest_difference, run_cli, write_photo_folder

SIGNAL = "--trainer.callbacks+=tests.helpers.SignalAt"
# 130 training images in batches of 16: 9 steps per epoch, 27 in 3 epochs; 14 validation images in batches of 4
BASE = ("--trainer.max_epochs 3 --trainer.deterministic true --data.batch_size 16 --data.eval_batch_size 4 "
        "--data.augment standard --test_after_fit false " + SIGNAL)  # fmt: skip


@pytest.fixture(scope="module")
def straight(cifar10_root, tmp_path_factory) -> tuple[Path, dict]:
    """A run never stopped, and its final last.ckpt."""
    work = tmp_path_factory.mktemp("stops")
    run_cli("fit", "model_gap", cifar10_root, f"{BASE} --experiment straight", cwd=work)
    return work, _last(work, "straight")


def _last(work: Path, experiment: str) -> dict:
    return torch.load(work / "lightning_logs" / experiment / "version_0" / "checkpoints" / "last.ckpt",
                      weights_only=True)  # fmt: skip


def _record(work: Path, experiment: str) -> dict:
    return json.loads((work / "lightning_logs" / experiment / "version_0" / "run.json").read_text())


def _stopped(cifar10_root, work: Path, experiment: str, extra: str = "", config: str = "model_gap") -> int:
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        run_cli("fit", config, cifar10_root, f"{BASE} --experiment {experiment} {extra}", cwd=work)
    assert signal.getsignal(signal.SIGTERM) == handler  # the run's handlers are gone with it
    return stop.value.code


@pytest.mark.parametrize("where, step, phase", [
    ("train:13", 13, "training"),  # mid epoch 1: saved after step 13
    ("val:1:1", 18, "validation"),  # validation batch 1 of 4 after epoch 1: the pass ends, then last.ckpt as usual
    # while last.ckpt of epoch 1 is being written (Lightning writes it at the end of the training epoch, after the
    # validation pass): the write ends whole, nothing more is written
    ("write:18", 18, "training"),
])  # fmt: skip
def test_a_stop_saves_where_it_happened_and_resumes_to_the_weights_of_a_run_never_stopped(
    straight, cifar10_root, monkeypatch, caplog, where, step, phase
):
    work, expected = straight
    name = f"stop_{where.replace(':', '_')}"
    monkeypatch.setenv("SIGNAL_AT", where)
    assert _stopped(cifar10_root, work, name) == 128 + signal.SIGTERM
    held = _last(work, name)
    assert held["global_step"] == step
    record = _record(work, name)
    assert record["status"] == "interrupted" and record["exit_code"] == 143 and record["phase"] == phase
    assert record["global_step"] == record["checkpoint_step"] == step  # the record names what the file holds
    assert (
        f"holds epoch {held['epoch']}, step {step}: the same command with --ckpt_path last continues from there, "
        "redoing nothing" in caplog.text
    )
    monkeypatch.delenv("SIGNAL_AT")
    run_cli("fit", "model_gap", cifar10_root, f"{BASE} --experiment {name} --ckpt_path last", cwd=work)
    final = _last(work, name)
    assert final["global_step"] == expected["global_step"] == 27
    key, worst = largest_difference(expected["state_dict"], final["state_dict"])
    print(
        f"stop at {where} ({phase}), resume: max abs weight difference to a run never stopped {worst} ({key})"
    )
    assert worst == 0.0, key
    record = _record(work, name)
    assert record["status"] == "complete"
    # nothing of the stop is left in the record of the run that then completed
    assert not {"exit_code", "phase", "stopped_step", "checkpoint_step", "checkpoint_epoch"} & set(record)
    assert not (work / "lightning_logs" / name / "version_1").exists()


def test_a_second_signal_stops_at_once_exits_143_and_says_which_steps_are_trained_again(
    straight, cifar10_root, monkeypatch
):
    work, expected = straight
    monkeypatch.setenv("SIGNAL_AT", "train:13")
    monkeypatch.setenv("SIGNAL_TIMES", "2")
    assert _stopped(cifar10_root, work, "twice") == 143
    record = _record(work, "twice")
    assert record["status"] == "interrupted" and record["exit_code"] == 143
    # stopped at once in step 13: nothing new saved, last.ckpt still holds the end of epoch 0
    assert (
        record["stopped_step"] == 13
        and record["global_step"] == record["checkpoint_step"] == _last(work, "twice")["global_step"] == 9
    )
    monkeypatch.delenv("SIGNAL_AT")
    run_cli("fit", "model_gap", cifar10_root, f"{BASE} --experiment twice --ckpt_path last", cwd=work)
    key, worst = largest_difference(expected["state_dict"], _last(work, "twice")["state_dict"])
    assert worst == 0.0, key


def test_the_same_sigterm_delivered_twice_is_one_stop_that_saves(straight, cifar10_root, monkeypatch):
    # a launcher and the operating system may both pass one stop on (a sweep's worker dying): not "stop now"
    work, expected = straight
    monkeypatch.setenv("SIGNAL_AT", "train:13")
    monkeypatch.setenv("SIGNAL_TIMES", "2")
    monkeypatch.setenv("SIGNAL_AGAIN", "TERM")
    assert _stopped(cifar10_root, work, "dup") == 143
    record = _record(work, "dup")
    assert record["status"] == "interrupted" and record["stopped_step"] == 13
    assert _last(work, "dup")["global_step"] == 13  # saved after the step, as for one signal
    monkeypatch.delenv("SIGNAL_AT")
    run_cli("fit", "model_gap", cifar10_root, f"{BASE} --experiment dup --ckpt_path last", cwd=work)
    key, worst = largest_difference(expected["state_dict"], _last(work, "dup")["state_dict"])
    assert worst == 0.0, key


def test_a_stop_in_the_test_after_fit_is_recorded_and_the_same_command_tests_again(
    cifar10_root, tmp_path, monkeypatch
):
    monkeypatch.setenv("SIGNAL_AT", "test:0")
    extra = "--trainer.max_epochs 1 --test_after_fit true --experiment tested"
    assert _stopped(cifar10_root, tmp_path, "tested", extra) == 143
    record = _record(tmp_path, "tested")
    assert record["status"] == "interrupted" and record["phase"] == "test"
    assert record["checkpoint_step"] == 9  # training was complete and saved
    monkeypatch.delenv("SIGNAL_AT")
    run_cli("fit", "model_gap", cifar10_root, f"{BASE} {extra} --ckpt_path last", cwd=tmp_path)
    record = _record(tmp_path, "tested")
    assert record["status"] == "complete" and record["tested"] and "test/acc" in record["test"]


def test_a_stop_while_the_photos_are_decoded_leaves_no_half_entry_and_an_interrupted_record(
    tmp_path, monkeypatch
):
    photos = write_photo_folder(tmp_path / "photos", ["cat", "dog"], 10)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SIGNAL_AT", "build:5")
    args = (f"--model.net model_gap --data.image_size 16 --data.batch_size 8 --trainer.max_epochs 1 --data.cache_dir {cache} "
            f"--experiment decoding --test_after_fit false {SIGNAL}")  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        run_cli("fit", "transfer/1_scratch", photos, args, cwd=tmp_path)
    assert stop.value.code == 143
    record = _record(tmp_path, "decoding")
    assert record["status"] == "interrupted" and record["phase"] == "preparing the run"
    assert record["last_checkpoint"] is None
    assert list(cache.iterdir()) == []  # neither a half-built entry nor a leftover of its build
    monkeypatch.delenv("SIGNAL_AT")
    run_cli("fit", "transfer/1_scratch", photos, args, cwd=tmp_path)
    assert (
        json.loads((tmp_path / "lightning_logs" / "decoding" / "version_1" / "run.json").read_text())[
            "status"
        ]
        == "complete"
    )


def test_resuming_a_finished_run_with_fewer_epochs_is_refused_and_its_record_kept(straight, cifar10_root):
    work, _ = straight
    before = _record(work, "straight")
    with pytest.raises(ValueError, match=r"last.ckpt has trained 3 epochs; trainer.max_epochs 2 is fewer"):
        run_cli("fit", "model_gap", cifar10_root,
                f"{BASE} --experiment straight --trainer.max_epochs 2 --ckpt_path last", cwd=work)  # fmt: skip
    assert _record(work, "straight") == before and before["status"] == "complete"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_of_a_fast_dev_run_writes_nothing_in_the_working_folder(
    cifar10_root, tmp_path, monkeypatch, caplog, signum
):
    # fast_dev_run has no logger and so no run folder: the stop saves nowhere (it used to write
    # ./checkpoints/last.ckpt, 23 MB for the VGG, in whatever folder the command was started from)
    monkeypatch.setenv("SIGNAL_AT", "train:1")
    monkeypatch.setenv("SIGNAL_KIND", signal.Signals(signum).name[3:])
    extra = "--trainer.fast_dev_run 3 --experiment dev"
    assert _stopped(cifar10_root, tmp_path, "dev", extra) == 128 + signum
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == []
    assert "nothing to resume" in caplog.text
