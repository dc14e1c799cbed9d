"""The HParams tab as TensorBoard reads it: one row per run with the experiment's columns and real metrics."""

from __future__ import annotations

import pytest

from cifar_pl.logger import COLUMNS, METRICS, SHOWN, experiment_columns


def tensorboard_view(run_dir):
    """What TensorBoard shows of one run folder: every event file of it read in order by TensorBoard's own
    accumulator (a later file's values at an earlier step replace the tag's later values, as in the browser), the
    latest value per scalar tag, and the HParams plugin's experiment and session records."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    latest = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    exp = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    ssi = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {}
    for name, value in ssi.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return latest, exp, values


def test_hparams_row_has_the_experiment_columns_and_real_metrics_after_the_post_fit_test(
    cifar10_root, tmp_path, monkeypatch
):
    from .helpers import run_cli

    monkeypatch.chdir(tmp_path)
    cli = run_cli(
        "fit", "quickstart", cifar10_root, "--trainer.max_epochs 2 --trainer.log_every_n_steps 1"
    )  # + test
    run_dir = tmp_path / "lightning_logs/quickstart/version_0"
    assert len(list(run_dir.glob("events.out.tfevents.*"))) >= 1
    latest, exp, values = tensorboard_view(run_dir)
    assert "hp_metric" not in latest  # no placeholder, anywhere
    assert "epoch" not in latest and "train/epoch" in latest and "train/lr-SGD" in latest, sorted(latest)
    assert latest["val/acc_best"] == pytest.approx(cli.model.best_val_acc)
    assert 0.0 <= latest["test/acc"] <= 1.0
    test_acc = cli.trainer.callback_metrics["test/acc"]
    assert latest["test/acc"] == pytest.approx(float(test_acc))
    # the columns: the same set for every run, the metrics the run logs
    assert [h.name for h in exp.hparam_infos] == list(COLUMNS)
    assert [m.name.tag for m in exp.metric_infos] == list(METRICS)
    assert latest["train/epochs_done"] == 2.0
    assert {h.name for h in exp.hparam_infos if h.differs} == set(SHOWN)  # ticked at first
    assert values == {
        "experiment": "quickstart",
        "data": "CIFAR10",
        "net": "model_gap",
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "batch_size": 128.0,
        "augment": "none",
        "label_smoothing": 0.0,
        "epochs": 2.0,
        "seed": 42.0,
    }
    for internal in ("_instantiator", "augment_on_device", "optim/betas", "betas"):
        assert internal not in values
    # a test of that checkpoint, given another lr on the command line: its row is the checkpoint's
    best = tmp_path / "lightning_logs/quickstart/best.ckpt"
    run_cli(
        "test", "quickstart", cifar10_root, f"--ckpt_path {best} --model.optim.lr 0.5 --experiment scored"
    )
    _, _, scored = tensorboard_view(tmp_path / "lightning_logs/scored/version_0")
    assert scored["lr"] == 0.1 and scored["epochs"] == 2.0 and scored["experiment"] == "scored"


def test_no_logger_no_best_link_outside_the_log_root(cifar10_root, tmp_path, monkeypatch):
    from .helpers import run_cli

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_cli(
        "fit",
        "quickstart",
        cifar10_root,
        "--trainer.max_epochs 1 --trainer.logger false --test_after_fit false",
    )
    assert not (tmp_path / "best.ckpt").exists() and not (tmp_path / "best.ckpt").is_symlink()


def test_columns_leave_out_what_does_not_apply_and_name_steps_and_corruption():
    config = {
        "experiment": "x/y",
        "seed_everything": 3,
        "trainer": {"max_epochs": 5},
        "model": {"net": "vgg_like_bn_noise", "net_kwargs": {"noise_std": 0.1},
                  "optim": {"name": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0},
                  "schedule": {"name": "constant"}, "label_smoothing": 0.1},
        "data": {"class_path": "cifar_pl.data.CIFAR100DataModule",
                 "init_args": {"batch_size": 64, "augment": [{"name": "crop", "padding": 4}, {"name": "flip"}],
                               "corrupt": "labels", "corrupt_prob": 0.4}},
    }  # fmt: skip
    cols = experiment_columns(config)
    assert "momentum" not in cols  # Adam has none; the key is SGD's
    assert cols["net_kwargs"] == "noise_std=0.1"
    assert cols["augment"] == "crop(padding=4)+flip"  # settings shown: two cutout sizes are two values
    assert cols["corruption"] == "labels p=0.4"
    assert cols["data"] == "CIFAR100"
    config["data"]["init_args"]["corrupt"] = "none"
    config["seed_everything"] = True  # a random seed: not a value to compare
    config["trainer"]["max_epochs"] = -1  # steps decide: no epoch count to show
    config["model"]["optim"] = {"name": "rmsprop_keras", "rmsprop_momentum": 0.5}
    cols = experiment_columns(config)
    assert "corruption" not in cols and "seed" not in cols and "epochs" not in cols
    assert cols["momentum"] == 0.5  # Keras' RMSprop has one
    assert set(cols) <= set(COLUMNS)


def test_parameter_histograms_every_n_epochs_weights_and_gradients(cifar10_root, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from .helpers import run_cli

    monkeypatch.chdir(tmp_path)
    cb = "--trainer.callbacks+=cifar_pl.callbacks.ParameterHistograms"
    run_cli("fit", "quickstart", cifar10_root,
            f"--trainer.max_epochs 3 --test_after_fit false {cb} --trainer.callbacks.every_n_epochs 2 "
            f"--trainer.callbacks.max_tensors 3")  # fmt: skip
    acc = EventAccumulator(
        str(tmp_path / "lightning_logs/quickstart/version_0"), size_guidance={"histograms": 0}
    )
    acc.Reload()
    tags = acc.Tags()["histograms"]
    weights = sorted(t for t in tags if t.startswith("weights/"))
    grads = sorted(t for t in tags if t.startswith("gradients/"))
    assert len(weights) == 3 and len(grads) == 3  # first, middle and last of the net's tensors
    assert [t.removeprefix("weights/") for t in weights] == [t.removeprefix("gradients/") for t in grads]
    # epoch 2 only (every 2 epochs of 3): one histogram per tag
    for tag in weights + grads:
        events = acc.Histograms(tag)
        assert len(events) == 1 and events[0].histogram_value.num > 1
    # the gradient of the epoch's last step (drawn before it), the weights after it
    grad_step, weight_step = acc.Histograms(grads[0])[0].step, acc.Histograms(weights[0])[0].step
    assert weight_step == grad_step + 1
    steps_per_epoch = weight_step // 2
    assert steps_per_epoch >= 1 and weight_step == 2 * steps_per_epoch


def test_writeup_000_configs_draw_parameter_histograms():
    from .helpers import effective_config
    from .helpers.paths import CONFIGS

    callbacks = effective_config(CONFIGS / "writeups/000_vgg_like.yaml")["trainer"]["callbacks"]
    assert {"class_path": "cifar_pl.callbacks.ParameterHistograms",
            "init_args": {"every_n_epochs": 2, "gradients": True, "max_tensors": 32}} in callbacks  # fmt: skip


@pytest.mark.parametrize("how", ["logger", "no logger", "fast_dev_run"])
def test_a_fit_writes_nothing_in_the_working_folder_outside_lightning_logs(cifar10_root, tmp_path, how):
    from .helpers import run_cli

    extra = {"logger": "--trainer.max_epochs 1", "no logger": "--trainer.max_epochs 1 --trainer.logger false",
             "fast_dev_run": "--trainer.fast_dev_run 2"}[how]  # fmt: skip
    run_cli("fit", "model_gap", cifar10_root, f"{extra} --data.batch_size 32 --experiment here", cwd=tmp_path)
    assert {p.name for p in tmp_path.iterdir()} <= {"lightning_logs"}
    if how == "no logger":  # no run folder: the checkpoints go to the experiment's folder
        assert (tmp_path / "lightning_logs" / "here" / "checkpoints" / "last.ckpt").is_file()
