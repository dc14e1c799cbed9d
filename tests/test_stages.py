"""`fit --ckpt_path`: exact resume, training longer on a re-planned schedule, and new stages, by rules a user can
predict (cifar_pl.stages)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from cifar_pl.errors import BadValue
from cifar_pl.lit.schedule import LRMultiplier
from cifar_pl.viz.curves import read_scalars

from .helpers import effective_config, run_cli

BASE = ("--experiment a --data.batch_size 16 --model.schedule.name cosine --model.optim.lr 0.05 --model.schedule.warmup_epochs 0 "
        "--trainer.log_every_n_steps 1 --test_after_fit false --data.augment none")  # fmt: skip
STEPS_PER_EPOCH = 9  # 130 training images of the small CIFAR folder, batches of 16


def _lrs(run: Path) -> dict[int, float]:
    """The LR logged at each step of a run folder (TensorBoard's step is the optimiser step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in sorted(run.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for e in acc.Scalars("train/lr-SGD") if "train/lr-SGD" in acc.Tags()["scalars"] else []:
            out[e.step] = e.value
    return out


@pytest.fixture(scope="module")
def stage_a(cifar10_root, tmp_path_factory):
    """Two epochs of model_gap, cosine from 0.05 to 0 (18 steps)."""
    cwd = tmp_path_factory.mktemp("stages")
    cli = run_cli("fit", "quickstart", cifar10_root, f"{BASE} --trainer.max_epochs 2", cwd=cwd)
    assert cli.trainer.global_step == 2 * STEPS_PER_EPOCH
    return cwd


def test_a_new_stage_uses_the_new_values_continues_the_counters_and_lists_the_changes(
    stage_a, cifar10_root, caplog
):
    cwd = stage_a
    last = cwd / "lightning_logs" / "a" / "version_0" / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True)["state_dict"]
    extra = (f"{BASE} --ckpt_path {last} --model.optim.lr 0.005 --trainer.max_epochs 4 "
             "--trainer.callbacks+ cifar_pl.callbacks.BatchNormEval")  # fmt: skip
    with caplog.at_level("INFO"):
        cli = run_cli("fit", "quickstart", cifar10_root, extra, cwd=cwd)
    said = caplog.text
    assert (
        f"new stage from {last}: changed model.optim.lr 0.05 -> 0.005" in said and "trainer.callbacks" in said
    )
    assert "-> [BatchNormEval]" in said  # the callbacks by name, not a cut-off dict of their settings
    # where the run lives is said first, before any epoch (not only inside the final "best checkpoint:" line)
    assert said.index("run folder: lightning_logs/a/version_1") < said.index("best checkpoint:")
    assert "Tip:" not in said  # Lightning's adverts for its cloud products are not a run's first lines
    assert "counters continue at epoch 2, step 18" in said
    run = cwd / "lightning_logs" / "a" / "version_1"  # a new folder; the first stage's is left as it was
    stage = json.loads((run / "stage.json").read_text())
    assert stage["start_epoch"] == 2 and stage["start_step"] == 18
    assert stage["parent_run"] == "../version_0"  # relative: moving lightning_logs keeps the link
    assert {c["key"] for c in stage["changes"]} == {"model.optim.lr", "trainer.callbacks"}
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        saved["model"]["optim"]["lr"] == 0.005 and cli.model.optim.lr == 0.005
    )  # the command line was not overridden
    assert cli.trainer.current_epoch == 4 and cli.trainer.global_step == 4 * STEPS_PER_EPOCH
    # the new optimiser and schedule: cosine from 0.005 over the stage's 18 steps, logged on the joined axis
    lrs = _lrs(run)
    plan = LRMultiplier("cosine", total_steps=18)
    assert min(lrs) == 18 and max(lrs) == 35
    for step, lr in lrs.items():
        assert lr == pytest.approx(0.005 * plan(step - 18), rel=1e-6), step
    # BatchNormEval: running statistics exactly as the first stage left them; the weights moved
    after = cli.model.state_dict()
    bn = [k for k in before if "running_" in k]
    assert bn and all(torch.equal(before[k], after[k]) for k in bn)
    assert not torch.equal(before["net.features.0.weight"], after["net.features.0.weight"])
    # the curves of both stages join on one epoch axis
    epochs = [e for e, _ in read_scalars(run)["train/loss"]]
    assert epochs == [0, 1, 2, 3]
    # ... and `viz curves` marks where the second stage began
    from cifar_pl.viz.curves import curves_figure, stage_starts

    assert stage_starts(run) == [2]
    fig = curves_figure(read_scalars(run), stages=stage_starts(run))
    marks = [ln for ax in fig.axes for ln in ax.lines if ln.get_label() == "stage start"]
    assert len(marks) == 3 and all(
        m.get_xdata()[0] == 1.5 for m in marks
    )  # in each panel, between epochs 1 and 2
    assert not (cwd / "lightning_logs" / "a" / "version_0" / "config_resume1.yaml").exists()


def test_training_longer_replans_the_schedule_over_the_new_horizon(stage_a, cifar10_root):
    cwd = stage_a
    last = cwd / "lightning_logs" / "a" / "version_0" / "checkpoints" / "last.ckpt"
    copy = cwd / "lightning_logs" / "b" / "version_0" / "checkpoints" / "last.ckpt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(last.read_bytes())  # the same run, as experiment b (its own folder)
    extra = f"{BASE.replace('--experiment a', '--experiment b')} --ckpt_path last --trainer.max_epochs 4"
    cli = run_cli("fit", "quickstart", cifar10_root, extra, cwd=cwd)
    assert cli.trainer.global_step == 36 and not (cwd / "lightning_logs" / "b" / "version_1").exists()
    lrs = _lrs(cwd / "lightning_logs" / "b" / "version_0")
    plan = LRMultiplier("cosine", total_steps=36)  # as if max_epochs had been 4 from the start
    assert lrs and all(lr == pytest.approx(0.05 * plan(step), rel=1e-6) for step, lr in lrs.items())
    assert lrs[18] == pytest.approx(0.025, rel=1e-6)  # half-way: the first two epochs ended at LR 0


def test_one_cycle_trains_longer_without_crashing(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = BASE.replace("cosine", "onecycle").replace("--experiment a", "--experiment oc")
    run_cli("fit", "quickstart", cifar10_root, f"{args} --trainer.max_epochs 1")
    cli = run_cli("fit", "quickstart", cifar10_root, f"{args} --trainer.max_epochs 2 --ckpt_path last")
    assert cli.trainer.global_step == 2 * STEPS_PER_EPOCH
    lrs = _lrs(tmp_path / "lightning_logs" / "oc" / "version_0")
    plan = LRMultiplier("onecycle", total_steps=18)
    assert all(lr == pytest.approx(0.05 * plan(step), rel=1e-6) for step, lr in lrs.items() if step >= 9)


def test_restarted_counters_and_a_stage_that_would_train_nothing(stage_a, cifar10_root):
    cwd = stage_a
    last = cwd / "lightning_logs" / "a" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        ValueError, match="continues last.ckpt's counters at epoch 2, so trainer.max_epochs 2"
    ):
        run_cli("fit", "quickstart", cifar10_root, f"{BASE} --ckpt_path {last} --model.optim.lr 0.01 --trainer.max_epochs 2",
                cwd=cwd)  # fmt: skip
    extra = f"{BASE} --ckpt_path {last} --model.optim.lr 0.01 --trainer.max_epochs 1 --stage_counters restart --experiment c"
    cli = run_cli("fit", "quickstart", cifar10_root, extra, cwd=cwd)
    assert cli.trainer.global_step == STEPS_PER_EPOCH and cli.trainer.current_epoch == 1
    with pytest.raises(ValueError, match="give either --ckpt_path .* or model.init.weights"):
        run_cli("fit", "quickstart", cifar10_root, f"{extra} --model.init.weights {last}", cwd=cwd)


def test_new_data_on_the_checkpoints_own_data_is_refused_and_leaves_the_run_as_it_was(stage_a, cifar10_root):
    # --new_data true turned an exact resume into a new stage whose stage.json said the data had changed
    cwd = stage_a
    runs = cwd / "lightning_logs" / "a"
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    before = (
        sorted(p.relative_to(runs) for p in runs.rglob("*")),
        (runs / "version_0" / "run.json").read_bytes(),
    )
    with pytest.raises(BadValue, match=r"^--new_data true: the data is the checkpoint's own \(CIFAR10DataModule, 144 "
                                       r"images of 10 classes, the same split\); drop it to resume "
                                       rf"{re.escape(str(last))} exactly$"):  # fmt: skip
        run_cli("fit", "quickstart", cifar10_root, f"{BASE} --ckpt_path {last} --trainer.max_epochs 3 --new_data true",
                cwd=cwd)  # fmt: skip
    after = (
        sorted(p.relative_to(runs) for p in runs.rglob("*")),
        (runs / "version_0" / "run.json").read_bytes(),
    )
    assert after == before  # no stage folder, no stage.json, the run's record untouched


def test_an_exact_resume_refuses_weights_other_than_those_its_run_started_from(stage_a, cifar10_root):
    # the resume loaded the checkpoint's weights and dropped model.init.weights without a word
    cwd = stage_a
    last = cwd / "lightning_logs" / "a" / "version_0" / "checkpoints" / "last.ckpt"
    net = {
        k[4:]: v for k, v in torch.load(last, weights_only=True)["state_dict"].items() if k.startswith("net.")
    }
    torch.save(net, cwd / "start.pt")
    torch.save({k: torch.zeros_like(v) for k, v in net.items()}, cwd / "other.pt")
    with pytest.raises(BadValue, match=rf"^--ckpt_path {re.escape(str(last))} resumes its run exactly, which continues the "
                                       r"checkpoint's own weights: model.init.weights other.pt would not be loaded "
                                       r"\(its run started from no weights file\)\. Drop it to resume, or leave "
                                       r"out --ckpt_path to start a new run from other.pt$"):  # fmt: skip
        run_cli("fit", "quickstart", cifar10_root, f"{BASE} --ckpt_path {last} --trainer.max_epochs 3 "
                "--model.init.weights other.pt", cwd=cwd)  # fmt: skip
    # a run that started from a file resumes with the same command (a sweep's resume names it again) ...
    args = f"{BASE.replace('--experiment a', '--experiment w')} --model.init.weights start.pt"
    run_cli("fit", "quickstart", cifar10_root, f"{args} --trainer.max_epochs 1", cwd=cwd)
    cli = run_cli(
        "fit", "quickstart", cifar10_root, f"{args} --trainer.max_epochs 2 --ckpt_path last", cwd=cwd
    )
    assert (
        cli.trainer.global_step == 2 * STEPS_PER_EPOCH
        and not (cwd / "lightning_logs" / "w" / "version_1").exists()
    )
    # ... and refuses another file, naming the one it started from
    with pytest.raises(BadValue, match=r"model.init.weights other.pt would not be loaded \(its run started from "
                                       r"start.pt\)"):  # fmt: skip
        run_cli("fit", "quickstart", cifar10_root, f"{args.replace('start.pt', 'other.pt')} --trainer.max_epochs 3 "
                "--ckpt_path last", cwd=cwd)  # fmt: skip


def test_warmup_rises_every_step_even_when_the_schedule_moves_per_epoch():
    # configs/resnet110.yaml on the full CIFAR-10 (352 steps an epoch): 0.01 for 400 iterations, then 0.1
    config = Path(__file__).parents[1] / "configs" / "resnet110.yaml"
    model = effective_config(config)["model"]  # the family's base plus the file's overrides
    cfg = {**model["schedule"], "lr": model["optim"]["lr"]}
    steps = 352
    f = LRMultiplier("multistep", total_steps=182 * steps, steps_per_epoch=steps, per_epoch=True,
                     warmup_steps=round(cfg["warmup_epochs"] * steps), warmup_mode=cfg["warmup_mode"],
                     warmup_factor=cfg["warmup_factor"], milestones=(91 * steps, 137 * steps), gammas=(0.1, 0.1))  # fmt: skip
    lr = [cfg["lr"] * f(s) for s in range(3 * steps)]
    assert lr[0] == pytest.approx(0.01) and lr[399] == pytest.approx(0.01) and lr[401] == pytest.approx(0.1)
    assert math.isclose(cfg["lr"] * f(91 * steps), 0.01) and math.isclose(cfg["lr"] * f(137 * steps), 0.001)


def test_an_argument_added_since_the_checkpoint_counts_as_its_default():
    from cifar_pl.stages import differences

    old = {"model": {"net": "model_g", "lr": 0.05}, "data": {"init_args": {"batch_size": 128}}}
    new = {"model": {"net": "model_g", "lr": 0.05, "rho": 0.9, "ema_decay": None, "betas": [0.9, 0.999]},
           "data": {"init_args": {"batch_size": 128, "resident": False}}}  # fmt: skip
    assert differences(old, new) == []  # a checkpoint from before these existed trained with their defaults
    new["model"]["rho"] = 0.5
    new["model"]["label_smoothing"] = 0.1
    assert differences(old, new) == [("model.label_smoothing", None, 0.1), ("model.optim.rho", None, 0.5)]
