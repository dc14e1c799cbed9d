"""Every config runs through the CLI; a real short run leaves logs, config and checkpoints that round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar

from cifar_pl.__main__ import cli_main
from cifar_pl.lit import ImageClassifier

from .helpers import CONFIGS, effective_config, run_cli

# Every CIFAR config, the corruption experiments included (the transfer configs have their own test).
ALL_CONFIGS = (
    sorted(CONFIGS.glob("*.yaml"))
    + sorted((CONFIGS / "corrupt").glob("*.yaml"))
    + sorted((CONFIGS / "writeups").glob("*.yaml"))  # the write-ups' recipes
)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=[c.relative_to(CONFIGS).as_posix() for c in ALL_CONFIGS])
def test_every_config_fast_dev_run(config, cifar10_root, cifar100_root, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    cfg = effective_config(config)  # a family member includes its base (configs/base/)
    root = cifar100_root if "CIFAR100" in cfg["data"]["class_path"] else cifar10_root
    extra = "--trainer.fast_dev_run true --data.batch_size 8"
    if cfg["model"]["net"].startswith(
        "shake_shake"
    ):  # the full widths are GPU-sized; the recipe is what counts
        extra += ' --model.net_kwargs {"base_width":4}'
    weights = (cfg["model"].get("init") or {}).get("weights")
    if weights:  # the pretrained configs point into the real data folder
        real = request.getfixturevalue("real_data")
        extra += f" --model.init.weights {real / 'weights' / Path(weights).name}"
    cli = run_cli("fit", config, root, extra)
    assert cli.model.hparams.net == cfg["model"]["net"]
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    assert cli.model.class_names == cli.datamodule.classes
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert "test/acc" in cli.trainer.callback_metrics  # test after fit ran
    assert not (tmp_path / "lightning_logs").exists()  # fast_dev_run writes nothing


def test_print_config_shows_the_whole_experiment(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["fit", "--config", str(CONFIGS / "model_g.yaml"), "--print_config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["net"] == "model_g" and printed["model"]["schedule"]["name"] == "onecycle"
    assert printed["data"]["class_path"] == "cifar_pl.data.CIFAR10DataModule"
    assert printed["experiment"] == "model_g" and printed["checkpoint"]["monitor"] == "val/acc"
    assert printed["last_checkpoint"]["filename"] == "last"
    assert "num_classes" not in printed["model"]  # linked from the data


def test_num_classes_is_linked_from_the_data(cifar100_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(
        "fit", "cifar100_model_gap", cifar100_root, "--data.label_type coarse --trainer.fast_dev_run true"
    )
    assert cli.model.net.get_classifier().out_features == 20 and len(cli.model.class_names) == 20


def test_unknown_config_key_is_refused():
    with pytest.raises(ValueError, match="unrecognized arguments: --model.learning_rate 0.1"):
        run_cli("fit", "quickstart", extra="--model.learning_rate 0.1")


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(
        ValueError,
        match="model.optim.name: unknown value 'lbfgs'; choose one of sgd, adam, adamw, rmsprop, rmsprop_keras",
    ):
        run_cli("fit", "quickstart", extra="--model.optim.name lbfgs")


def test_unknown_net_lists_the_valid_ones(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="Unknown net 'model_z'.*model_gap"):
        run_cli("fit", "quickstart", cifar10_root, "--model.net model_z")


SHORT = "--data.batch_size 32 --experiment short --model.schedule.name cosine --trainer.log_every_n_steps 2"


@pytest.fixture(scope="module")
def short_run(cifar10_root, tmp_path_factory):
    """A real (non fast_dev_run) two-epoch run of model_gap on the small CIFAR-10 folder."""
    workdir = tmp_path_factory.mktemp("run")
    cli = run_cli("fit", "quickstart", cifar10_root, f"{SHORT} --trainer.max_epochs 2", cwd=workdir)
    return cli, workdir


def _last(workdir: Path) -> Path:
    return workdir / "lightning_logs" / "short" / "version_0" / "checkpoints" / "last.ckpt"


def test_run_leaves_logs_config_and_checkpoints(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli, workdir = short_run
    run_dir = workdir / "lightning_logs" / "short" / "version_0"
    assert (run_dir / "config.yaml").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["net"] == "model_gap" and saved["trainer"]["max_epochs"] == 2
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(p.startswith("epoch") and "val_acc" in p for p in ckpts)
    # last.ckpt holds the final step whether or not val/acc improved at the end (Lightning 2.6 alone would not).
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10 and last["epoch"] == 1
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for key in ["train/loss", "train/acc", "train/acc5", "val/loss", "val/acc", "val/acc5", "train/epoch_time",
                "train/lr-SGD", "train/epoch", "test/acc", "test/loss"]:  # fmt: skip
        assert key in tags, key
    assert len(events.Scalars("val/acc")) == 2 and len(events.Scalars("train/epoch_time")) == 2
    assert all(e.value > 0 for e in events.Scalars("train/epoch_time"))
    assert "test/acc" in cli.trainer.callback_metrics


def test_checkpoint_round_trips(short_run, cifar10_root):
    cli, workdir = short_run
    loaded = ImageClassifier.load_from_checkpoint(_last(workdir), weights_only=True).eval()
    model = cli.model.eval()
    assert loaded.class_names == model.class_names and loaded.hparams.net == "model_gap"
    ckpt = torch.load(_last(workdir), weights_only=True)
    assert ckpt["datamodule_hyper_parameters"]["data_dir"] == str(cifar10_root)
    x = torch.randn(4, 3, 32, 32)
    model.load_state_dict(ckpt["state_dict"])  # the test after fit restored the best; compare against last
    torch.testing.assert_close(loaded(x), model(x))


def test_fit_resumes_from_a_checkpoint(short_run, cifar10_root, monkeypatch):
    cli, workdir = short_run
    monkeypatch.chdir(workdir)
    steps = torch.load(_last(workdir), weights_only=True)["global_step"]
    extra = f"{SHORT} --trainer.max_epochs 3 --ckpt_path {_last(workdir)} --test_after_fit false"
    resumed = run_cli("fit", "quickstart", cifar10_root, extra)
    assert resumed.trainer.current_epoch == 3 and resumed.trainer.global_step == steps * 3 // 2
    # the resumed run continues in the same folder; the first run's config is kept beside the resumed one's
    run_dir = workdir / "lightning_logs" / "short" / "version_0"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "config_resume1.yaml").is_file()
    assert not (workdir / "lightning_logs" / "short" / "version_1").exists()


def test_init_from_our_checkpoint_into_a_new_head(short_run, tmp_path, monkeypatch, recwarn):
    cli, workdir = short_run
    monkeypatch.chdir(tmp_path)
    model = ImageClassifier(
        net="model_gap", num_classes=4, init={"weights": str(_last(workdir)), "strict": False}
    )
    model.setup("fit")
    trained = torch.load(_last(workdir), weights_only=True)["state_dict"]
    torch.testing.assert_close(model.net.features[0].weight, trained["net.features.0.weight"])
    assert model.net.get_classifier().out_features == 4
    assert any("skipped classifier.weight" in str(w.message) for w in recwarn)
    strict = ImageClassifier(net="model_gap", num_classes=4, init={"weights": str(_last(workdir))})
    with pytest.raises(ValueError, match="another number of classes; set model.init.strict: false"):
        strict.setup("fit")


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_other_subcommands_from_a_checkpoint(subcommand, short_run, cifar10_root, tmp_path, monkeypatch):
    cli, workdir = short_run
    monkeypatch.chdir(tmp_path)
    out = run_cli(subcommand, "quickstart", cifar10_root, f"--ckpt_path {_last(workdir)}")
    assert out.trainer.state.finished
    assert f"{'val' if subcommand == 'validate' else 'test'}/acc" in out.trainer.callback_metrics


def test_the_predict_subcommand_points_to_the_predict_command(short_run, cifar10_root, tmp_path, monkeypatch):
    # Lightning's predict loop hands tensors back to Python: on the command line it printed nothing, wrote
    # nothing, and left an empty run folder
    _, workdir = short_run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError, match=r"predict image files with python -m cifar_pl.predict FILES_OR_FOLDERS"
    ):
        run_cli("predict", "quickstart", cifar10_root, f"--ckpt_path {_last(workdir)}")
    assert not (tmp_path / "lightning_logs").exists()


def test_callbacks_from_the_command_line_join_the_defaults(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = ("--trainer.max_epochs 20 --data.batch_size 64 --model.optim.lr 0.0 --test_after_fit false "
             "--trainer.callbacks+ EarlyStopping --trainer.callbacks.monitor val/acc "
             "--trainer.callbacks.mode max --trainer.callbacks.patience 1")  # fmt: skip
    cli = run_cli("fit", "quickstart", cifar10_root, extra)
    kinds = [type(cb) for cb in cli.trainer.callbacks]
    assert EarlyStopping in kinds and RichProgressBar not in kinds and LearningRateMonitor in kinds
    assert kinds.count(ModelCheckpoint) == 2
    assert cli.trainer.current_epoch < 20  # lr 0 cannot improve val/acc: stopped early


def test_checkpointing_can_be_turned_off(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(
        "fit", "quickstart", cifar10_root, "--trainer.max_epochs 1 --trainer.enable_checkpointing false"
    )
    assert not cli.trainer.checkpoint_callbacks and "test/acc" in cli.trainer.callback_metrics
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_datamodule_argument_error_reads_plainly(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        run_cli("fit", "model_gap", cifar10_root, "--data.augment standart --trainer.fast_dev_run true")
    assert str(e.value).startswith("augment preset: unknown value 'standart'. Did you mean 'standard'?")


def test_a_refused_value_of_a_datamodule_option_is_named_by_its_value():
    from cifar_pl.cli import parse_error_line

    message = (
        'Parser key "data":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [<class 'pytorch_lightning.core.datamodule.LightningDataModule'>, <class 'NoneType'>]\n"
        "  Errors:\n    - Problem with given class_path 'cifar_pl.data.CIFAR10DataModule':\n"
        "        Parser key \"drop_last\":\n          Expected a <class 'bool'>. Got value: 2\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'jsonargparse._util.NestedArg'>\n"
        "  Given value: NestedArg(key='drop_last', val='2')"
    )
    assert parse_error_line(message) == "data.drop_last: expected bool, got '2'"
