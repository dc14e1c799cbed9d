"""Every bad input a hostile user has tried, as one table: tests/test_hostile.py asserts each through the real
entry points, and scripts/bad_inputs.py prints it for the docs.

A case runs a command's ``main(argv)`` (the function ``python -m ...`` calls) in a sandbox folder of small, made-up
data, and expects exit code 2, one ``error:`` line matching ``first_line``, and no traceback (a user error that
escaped as an exception would reach the test instead of an exit code).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from .paths import CONFIGS


@dataclass(frozen=True)
class Case:
    id: str
    tool: str  # cli | predict | viz | sweep | scrape
    args: tuple[str, ...]  # {name} placeholders filled from the sandbox
    first_line: str  # a substring of the `error:` line
    code: int = 2
    setup: str = ""  # a name in SETUPS: what the working folder holds while the case runs


def _fit(*extra: str, config: str = "model_gap") -> tuple[str, ...]:
    return ("fit", "--config", f"{{configs}}/{config}.yaml", "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu", *extra)  # fmt: skip


def _c10(*extra: str) -> tuple[str, ...]:
    return _fit("--data.data_dir", "{c10}", "--trainer.fast_dev_run", "true", *extra)


def _photos(*extra: str) -> tuple[str, ...]:
    return _fit(
        "--data.data_dir", "{photos}", "--trainer.fast_dev_run", "true", *extra, config="transfer/1_scratch"
    )


CASES = [
    # data that is missing, broken or wrong
    Case("missing data folder", "cli", _fit("--data.data_dir", "nowhere", "--trainer.fast_dev_run", "true"),
         "data_dir 'nowhere' holds no complete cifar-10-batches-py/"),
    Case("folder with the wrong layout", "cli", _fit("--data.data_dir", "{wrong}", "--trainer.fast_dev_run", "true"),
         "holds no complete cifar-10-batches-py/"),
    Case("truncated CIFAR batch file", "cli", _fit("--data.data_dir", "{corrupt}", "--trainer.fast_dev_run", "true"),
         "data_batch_3 is not a readable CIFAR batch file"),
    Case("CIFAR batch with label 10", "cli", _fit("--data.data_dir", "{badlabel}", "--trainer.fast_dev_run", "true"),
         "data_batch_2: 'labels' of row 5 is 10, outside 0..9"),
    Case("image folder: unreadable files only", "cli", _photos("--data.data_dir", "{broken_photos}"),
         "no readable image for class(es) ['cat']"),
    Case("image folder without class folders", "cli", _photos("--data.data_dir", "{noclasses}"),
         "holds no class folders"),
    Case("image folder with one class", "cli", _photos("--data.data_dir", "{oneclass}"),
         ": only 1 class ['cat']; a classifier needs at least 2"),
    Case("duplicated class names", "cli", _photos("--data.classes", "[cat, cat]"),
         "classes lists ['cat'] more than once"),
    Case("a class that has no folder", "cli", _photos("--data.classes", "[cat, cow]"), "no class folder ['cow']"),
    # names
    Case("unknown net", "cli", _c10("--model.net", "resnet21"), "Unknown net 'resnet21'. Did you mean"),
    Case("unknown augmentation preset", "cli", _c10("--data.augment", "standart"),
         "augment preset: unknown value 'standart'. Did you mean 'standard'?"),
    Case("unknown augmentation step", "cli", _c10("--data.augment", "[{name: cutot}]"), "Unknown augmentation 'cutot'"),
    Case("augmentation parameter that does not exist", "cli", _c10("--data.augment", "[{name: cutout, sizee: 8}]"),
         "augment step 'cutout' has no parameter sizee"),
    Case("unknown optimiser", "cli", _c10("--model.optim.name", "adamm"),
         "model.optim.name: unknown value 'adamm'; choose one of sgd, adam, adamw, rmsprop, rmsprop_keras"),
    Case("unknown scheduler", "cli", _c10("--model.schedule.name", "cosin"), "model.schedule.name: unknown value 'cosin'"),
    Case("unknown stats", "cli", _c10("--data.stats", "imagnet"),
         "data.stats: unknown value 'imagnet'; choose one of default, dataset, cifar10"),
    Case("an option the DataModule does not take", "cli", _c10("--data.classes", "[a, b]"),
         "data: Option 'classes' is not accepted"),
    Case("a word where a number goes", "cli", _c10("--trainer.max_epochs", "abc"),
         "trainer.max_epochs: expected a whole number, got 'abc'"),
    Case("config key that does not exist", "cli", _c10("--model.learning_rate", "0.1"),
         "unrecognized arguments: --model.learning_rate 0.1"),
    Case("padding mode with a typo", "cli",
         _c10("--data.augment", "[{name: random_crop, padding: 4, padding_mode: symetric}]"),
         "padding_mode: unknown value 'symetric'. Did you mean 'symmetric'?"),
    # values out of range, caught where they enter
    Case("val_size 1.5", "cli", _c10("--data.val_size", "1.5"), "val_size must be in (0, 1), got 1.5"),
    Case("val_size as many as the images", "cli", _c10("--data.val_size", "144"), "val_size=144 takes all 144 images"),
    Case("batch_size 0", "cli", _c10("--data.batch_size", "0"), "batch_size must be >= 1, got 0"),
    Case("drop_last with a batch larger than the training split", "cli",
         _fit("--data.data_dir", "{c10}", "--data.drop_last", "true", "--data.batch_size", "500", "--trainer.max_epochs", "1"),
         "data.drop_last true with data.batch_size 500 leaves no training step: the training split has"),
    Case("MASTER_PORT that is not a port", "cli",
         _c10("--trainer.strategy", "ddp", "--trainer.num_nodes", "2", "--trainer.devices", "1"),
         "MASTER_PORT 'notaport' is not a port number (1..65535)", setup="master_port_word"),
    Case("num_workers -1", "cli", _c10("--data.num_workers", "-1"), "num_workers must be >= 0, got -1"),
    Case("cutout larger than the image", "cli", _c10("--data.augment", "[{name: cutout, size: 100}]"),
         "augment step 'cutout': size must be in [1, 31], got 100"),
    Case("shift of 2.0", "cli", _c10("--data.augment", "[{name: shift, fraction: 2.0}]"),
         "augment step 'shift': fraction must be in [0, 0.5], got 2.0"),
    Case("crop padding larger than half the image", "cli", _c10("--data.augment", "[{name: random_crop, padding: 40}]"),
         "augment step 'random_crop': padding must be in [0, 16], got 40"),
    Case("rotation of 400 degrees", "cli", _c10("--data.augment", "[{name: rotation, degrees: 400}]"),
         "degrees must be in [0, 180]"),
    Case("corrupt_prob 2", "cli", _c10("--data.corrupt", "labels", "--data.corrupt_prob", "2"),
         "corrupt_prob must be in [0, 1], got 2"),
    Case("max_per_class 0", "cli", _photos("--data.max_per_class", "0"), "max_per_class must be >= 1, got 0"),
    Case("image_size 4", "cli", _photos("--data.image_size", "4"), "image_size must be in [8, 4096], got 4"),
    Case("a flatten head sized for other images than the data's", "cli",
         _photos("--model.net", "model_g", "--data.image_size", "64", "--model.net_kwargs", "{input_size: 32}"),
         "model.net_kwargs.input_size 32 is not the data's image size 64"),
    Case("a net_kwargs key the net does not take", "cli", _c10("--model.net_kwargs", "{widht: 3}"),
         "net model_gap takes no argument 'widht' (model.net_kwargs)"),
    Case("negative learning rate", "cli", _c10("--model.optim.lr", "-1"), "model.optim.lr must be >= 0, got -1"),
    Case("a bad value under a key of before the grouping", "cli", _c10("--model.lr", "-1"),
         "model.optim.lr must be >= 0, got -1"),
    Case("a key a group does not have", "cli", _c10("--model.optim.lrr", "0.1"), "--model.optim.lrr"),
    Case("the same stateful callback twice", "cli",
         _c10("--trainer.callbacks+=cifar_pl.callbacks.ActivationStats",
              "--trainer.callbacks+=cifar_pl.callbacks.ActivationStats"),
         "trainer.callbacks has ActivationStats twice with the same settings; give it once"),
    Case("the predict subcommand", "cli", ("predict", "--config", "{configs}/model_gap.yaml"),
         "python -m cifar_pl predict would print nothing and write nothing; predict image files with"),
    Case("momentum 1.5", "cli", _c10("--model.optim.momentum", "1.5"), "model.optim.momentum must be in [0, 1), got 1.5"),
    Case("label_smoothing 1", "cli", _c10("--model.label_smoothing", "1.0"), "model.label_smoothing must be in [0, 1)"),
    Case("ema_decay 1 (an average that never moves)", "cli", _c10("--model.average.decay", "1.0"),
         "model.average.decay must be in (0, 1), got 1.0"),
    Case("unknown test-time augmentation", "cli", _c10("--model.evaluation.tta", "mirror"), "model.evaluation.tta"),
    Case("resident data with a per-image step", "cli", _c10("--data.resident", "true", "--data.augment", "[{name: rotation}]"),
         "resident: true gathers batches on the device, where only batched augmentation runs"),
    Case("alternating flips without resident data", "cli", _c10("--data.augment", "[{name: alternating_flip}]"),
         "alternating_flip needs resident: true"),
    Case("milestones that do not rise", "cli", _c10("--model.schedule.name", "multistep", "--model.schedule.milestones", "[5, 3]"),
         "model.schedule.milestones must rise"),
    Case("multistep without milestones", "cli", _c10("--model.schedule.name", "multistep"),
         "multistep needs model.schedule.milestones"),
    Case("a gamma per milestone, miscounted", "cli",
         _c10("--model.schedule.name", "multistep", "--model.schedule.milestones", "[3, 6]", "--model.schedule.gamma", "[0.5]"),
         "model.schedule.gamma lists 1 factors for 2 milestones"),
    Case("max_epochs 0", "cli", _fit("--data.data_dir", "{c10}", "--trainer.max_epochs", "0"),
         "trainer.max_epochs 0 trains nothing"),
    Case("warmup longer than the run", "cli",
         _fit("--data.data_dir", "{c10}", "--trainer.max_epochs", "2", "--model.schedule.warmup_epochs", "3"),
         "model.schedule.warmup_epochs 3.0 is as long as the run (trainer.max_epochs 2)"),
    Case("a diverging learning rate", "cli",
         _fit("--data.data_dir", "{c10}", "--model.net", "model_e", "--model.optim.lr", "1e30", "--model.schedule.name",
              "constant", "--trainer.max_epochs", "1", "--data.batch_size", "16", "--test_after_fit", "false",
              config="model_e"),
         "training loss is nan at epoch 0"),
    # weights and checkpoints
    Case("init_from: a head for another class count", "cli", _c10("--model.init.weights", "{five_classes}"),
         "shapes differ for classifier.weight: (5, 160) vs (10, 160)"),
    Case("init_from: a checkpoint of another net", "cli", _c10("--model.init.weights", "{resnet20}"),
         "do not fit ConvBlockNet"),
    Case("init_from: not a checkpoint", "cli", _c10("--model.init.weights", "{not_a_checkpoint}"),
         "is not a readable PyTorch weights file"),
    Case("init_from: a pickle that would run code", "cli", _c10("--model.init.weights", "{pickle_bomb}"),
         "is not a readable PyTorch weights file"),
    Case("init_from: a file that does not exist", "cli", _c10("--model.init.weights", "missing.pt"),
         "weights file 'missing.pt' does not exist"),
    Case("fit --ckpt_path last with nothing to resume", "cli", _c10("--ckpt_path", "last"),
         "--ckpt_path last: no last.ckpt under lightning_logs/model_gap"),
    Case("validate --ckpt_path last with nothing to resume", "cli",
         ("validate", "--config", "{configs}/model_gap.yaml", "--data.data_dir", "{c10}", "--ckpt_path", "last"),
         "--ckpt_path last: no last.ckpt"),
    Case("test with no weights at all", "cli", ("test", "--config", "{configs}/model_gap.yaml", "--data.data_dir", "{c10}"),
         "test scores trained weights: pass --ckpt_path"),
    Case("test a checkpoint of other classes", "cli",
         ("test", "--config", "{configs}/model_gap.yaml", "--data.data_dir", "{c10}", "--ckpt_path", "{gap5}"),
         "classifies 5 classes, the data has 10"),
    Case("fit --ckpt_path with a crafted checkpoint", "cli", _c10("--ckpt_path", "{crafted}"),
         "_class_path is 'os.system', not cifar_pl's ImageClassifier; nothing named in a checkpoint is imported"),
    Case("viz with a checkpoint naming os.system as its DataModule", "viz", ("confusion", "--ckpt", "{crafted_dm}"),
         "_class_path is 'os.system', which is not a registered DataModule"),
    Case("test with a crafted checkpoint", "cli",
         ("test", "--config", "{configs}/model_gap.yaml", "--data.data_dir", "{c10}", "--ckpt_path", "{crafted}"),
         "_class_path is 'os.system'"),
    Case("weights_only false", "cli", _c10("--weights_only", "false"), "weights_only: false would let a checkpoint run code"),
    # where runs are written
    Case("experiment that climbs out of the log folder", "cli", _c10("--experiment", "../../x"),
         "--experiment '../../x' is not a run name"),
    Case("experiment as an absolute path", "cli", _c10("--experiment", "/tmp/x"), "--experiment '/tmp/x' is not a run name"),
    # predict
    Case("predict: top-k 0", "predict", ("{photos}", "--ckpt", "{gap5}", "--top-k", "0"), "--top-k must be >= 1, got 0"),
    Case("predict: not a checkpoint", "predict", ("{photos}", "--ckpt", "{not_a_checkpoint}"),
         "is not a readable PyTorch weights file"),
    Case("predict: a crafted checkpoint", "predict", ("{photos}", "--ckpt", "{crafted}"), "_class_path is 'os.system'"),
    Case("predict: a folder with no files", "predict", ("{empty}", "--ckpt", "{gap5}"), "no files found"),
    Case("predict: an input that does not exist", "predict", ("nowhere.jpg", "--ckpt", "{gap5}"),
         "'nowhere.jpg' is neither a file nor a folder"),
    Case("predict: a table that is not csv or json", "predict", ("{photos}", "--ckpt", "{gap5}", "--out", "p.txt"),
         "written as .csv or .json"),
    Case("predict: max-side 0", "predict", ("{photos}", "--ckpt", "{gap5}", "--max-side", "0"), "--max-side must be in [8, 4096], got 0"),
    # viz
    Case("viz: a class the checkpoint does not have", "viz", ("cam", "{photo_file}", "--ckpt", "{gap5}", "--class", "nope"),
         "--class 'nope' is not a class of this checkpoint"),
    Case("viz: a crafted checkpoint", "viz", ("confusion", "--ckpt", "{crafted}"), "_class_path is 'os.system'"),
    Case("viz: only unreadable images", "viz", ("cam", "{text_file}", "--ckpt", "{gap5}"), "is a readable image"),
    Case("viz: --n 0", "viz", ("mistakes", "--ckpt", "{gap5}", "--n", "0"), "--n must be in [1, 256], got 0"),
    # sweeps
    Case("sweep: not YAML", "sweep", ("{sweep_bad_yaml}",), "is not valid YAML (line"),
    Case("sweep: runs is a list", "sweep", ("{sweep_runs_list}",), "`runs:` must map run names"),
    Case("sweep: a name that climbs out", "sweep", ("{sweep_climbs}",), "sweep '../x' is not a run name"),
    Case("sweep: an unknown key", "sweep", ("{sweep_unknown_key}",), "unknown keys ['runz']"),
    Case("sweep: a file that does not exist", "sweep", ("nowhere.yaml",), "sweep file 'nowhere.yaml' does not exist"),
    Case("sweep: --only a run it does not have", "sweep", ("{sweep_ok}", "--only", "nope"), "--only ['nope']: no such run"),
    Case("sweep: a seed given twice", "sweep", ("{sweep_seed_twice}",), "`seeds:` is a list of distinct whole numbers"),
    Case("sweep: repeats: 0", "sweep", ("{sweep_repeats_zero}",), "`repeats:` is a whole number of runs per group, 1 to 100"),
    Case("sweep: seeds and a fixed seed_everything", "sweep", ("{sweep_seed_clash}",), "`args:` sets seed_everything"),
    Case("search: num_samples 0", "sweep", ("{search_zero}",), "search.num_samples is the number of trials, 1 to 10000"),
    Case("search: a key that is not an option", "sweep", ("{search_not_an_option}",),
         "search.space.model.optim.lrate = 0.01"),
    Case("sweep on Ray: an address where nothing answers", "sweep", ("{sweep_real}", "--engine", "ray", "--address",
         "127.0.0.1:1"), "--address 127.0.0.1:1: nothing answers there"),
    Case("sweep on Ray: more GPUs per run than the cluster has", "sweep", ("{sweep_real}", "--engine", "ray",
         "--gpus-per-run", "4"), "--gpus-per-run 4.0: the Ray cluster has 0 GPU(s)"),
    Case("sweep: --cpus-per-run 0", "sweep", ("{sweep_real}", "--engine", "ray", "--cpus-per-run", "0"),
         "--cpus-per-run 0: give a positive number"),
    Case("DDP: sync_batchnorm on the CPU", "cli", _c10("--trainer.sync_batchnorm", "true"),
         "trainer.sync_batchnorm works on GPUs only"),
    # the write-ups' experiments
    Case("test every 0 epochs", "cli", _c10("--trainer.callbacks+=cifar_pl.callbacks.EvaluateEachEpoch",
                                            "--trainer.callbacks.every_n_epochs", "0"),
         "EvaluateEachEpoch every_n_epochs must be >= 1, got 0"),
    Case("activation stats every 0 steps", "cli", _c10("--trainer.callbacks+=cifar_pl.callbacks.ActivationStats",
                                                       "--trainer.callbacks.every_n_steps", "0"),
         "ActivationStats every_n_steps must be >= 1, got 0"),
    Case("contrast factor the wrong way round", "cli",
         _c10("--data.augment", '[{"name": "channel_contrast", "factor": [1.2, 0.8]}]'),
         "factor[1] must be >= 1.2, got 0.8"),
    Case("viz activations of a run without them", "viz", ("activations", "{c10}"), "no activation_stats.json in"),
    Case("viz activations: a truncated stats file", "viz", ("activations", "{bad_acts}"),
         "is not an activation history written by ActivationStats"),
    # issue 25: data safety and the last tracebacks
    Case("val_size 1.0 (a fraction: every image)", "cli", _c10("--data.val_size", "1.0"),
         "val_size 1.0 is a fraction that takes every image; give a fraction below 1"),
    Case("the experiment's folder is a file", "cli", _c10("--experiment", "taken"),
         "--experiment 'taken': 'lightning_logs/taken' is a file, not a folder", setup="log_file"),
    Case("lightning_logs read-only", "cli", _c10("--experiment", "ro/run"),
         "--experiment 'ro/run': cannot write in 'lightning_logs/ro'", setup="read_only_logs"),
    Case("a 300-character experiment name", "cli", _c10("--experiment", "x" * 300),
         "is too long for a folder name (300 characters in one part"),
    Case("seed_everything -1", "cli", _c10("--seed_everything", "-1"),
         "seed_everything must be a whole number in [0, 2**32 - 1], got -1"),
    Case("an unknown data.class_path", "cli", _c10("--data.class_path", "cifar_pl.data.Nope"),
         "data.class_path 'cifar_pl.data.Nope' is not a DataModule; give one of cifar_pl.data.CIFAR100DataModule"),
    Case("a malformed config file", "cli", ("fit", "--config", "{bad_config}"),
         "bad_config.yaml' is not valid YAML (line 4, column 1)"),
    Case("a config of nested YAML aliases", "cli", ("fit", "--config", "{alias_config}"),
         "its YAML aliases (*name) expand it to more than 100,000 values"),
    Case("a config nested 20,000 levels deep", "cli", ("fit", "--config", "{deep_config}"),
         "its values nest deeper than YAML can be read here"),
    Case("checkpoint.dirpath outside the run folder", "cli", _c10("--checkpoint.dirpath", "/tmp/elsewhere"),
         "checkpoint.dirpath: checkpoints are written in the run's folder"),
    Case("test a checkpoint with NaN weights", "cli",
         ("test", "--config", "{configs}/model_gap.yaml", "--data.data_dir", "{c10}", "--ckpt_path", "{nan_ckpt}"),
         "its weights hold NaN or infinite values (net.classifier.weight)"),
    Case("predict: a checkpoint with NaN weights", "predict", ("{photos}", "--ckpt", "{nan_ckpt}"),
         "its weights hold NaN or infinite values"),
    Case("predict: --device banana", "predict", ("{photos}", "--ckpt", "{gap5}", "--device", "banana"),
         "--device 'banana' is not a device; use cpu, cuda, cuda:N or mps"),
    Case("predict: --out below a file (checked before the work)", "predict",
         ("{photos}", "--ckpt", "{gap5}", "--out", "{text_file}/p.csv"), "notes.txt' is a file, not a folder"),
    Case("predict: --max-side 100000", "predict", ("{photos}", "--ckpt", "{gap5}", "--max-side", "100000"),
         "--max-side must be in [8, 4096], got 100000"),
    Case("viz cam on more files than panels", "viz", ("cam", *["{photo_file}"] * 9, "--ckpt", "{gap5}"),
         "cam draws one panel per image and got 9 files, more than --n 8"),
    Case("viz: --device banana", "viz", ("confusion", "--ckpt", "{gap5}", "--device", "banana"),
         "--device 'banana' is not a device"),
    Case("scrape: --out is a file (before the search)", "scrape", ("green curry", "--out", "{text_file}"),
         "notes.txt' is a file, not a folder; move it away"),
    Case("sweep: args set experiment", "sweep", ("{sweep_experiment}",), "`args:` sets experiment, which the sweep sets"),
    Case("sweep: two grid values, one run name", "sweep", ("{sweep_collide}",),
         "make the run name 'lr=0.1', which another grid combination has too"),
    Case("sweep: nested YAML aliases", "sweep", ("{sweep_bomb}",),
         "its YAML aliases (*name) expand it to more than 100,000 values"),
    Case("sweep: nested 20,000 levels deep", "sweep", ("{sweep_deep}",), "its values nest deeper than YAML"),
    Case("sweep: a config it includes sets experiment", "sweep", ("{sweep_hijack}", "--dry-run"),
         "run 'a': a config it includes sets experiment to 'hijacked', which the sweep sets"),
    Case("sweep: a typo in one run's overrides", "sweep", ("{sweep_typo}",),
         "run 'typo': unrecognized arguments: --model.lrr 0.1"),
]  # fmt: skip

_BOMB = "\n".join(['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] + [
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)])  # fmt: skip


@contextlib.contextmanager
def _log_file(cwd: Path):
    (cwd / "lightning_logs").mkdir(exist_ok=True)
    (cwd / "lightning_logs" / "taken").write_text("a file where a run folder would go")
    try:
        yield
    finally:
        (cwd / "lightning_logs" / "taken").unlink()


@contextlib.contextmanager
def _read_only_logs(cwd: Path):
    """``lightning_logs/ro`` that takes no new file: immutable for root (permission bits do not stop root), mode
    555 for anyone else."""
    import subprocess

    folder = cwd / "lightning_logs" / "ro"
    folder.mkdir(parents=True, exist_ok=True)
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
    else:
        folder.chmod(0o555)
    try:
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


@contextlib.contextmanager
def _master_port_word(cwd: Path):
    """The environment of a run across nodes with a word where the port goes."""
    saved = {k: os.environ.get(k) for k in ("MASTER_PORT", "MASTER_ADDR", "NODE_RANK")}
    os.environ.update(MASTER_PORT="notaport", MASTER_ADDR="127.0.0.1", NODE_RANK="0")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


SETUPS = {"log_file": _log_file, "read_only_logs": _read_only_logs, "master_port_word": _master_port_word}


# ---- the sandbox ----
def write_cifar_batch(
    path: Path, n_rows: int, n_labels: int, seed: int, bad_label_at: int | None = None
) -> None:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 10, n_labels)]
    if bad_label_at is not None:
        labels[bad_label_at] = 10
    d = {
        b"batch_label": b"b",
        b"data": rng.integers(0, 256, (n_rows, 3072), dtype=np.uint8),
        b"labels": labels,
    }
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def write_checkpoint(path: Path, num_classes: int = 10, datamodule: dict | None = None, **model_args) -> Path:
    """A checkpoint as ``fit`` writes it (weights, arguments, the DataModule's name, arguments and state); the
    arguments are written as given, so flat keys of before the options were grouped make an old checkpoint."""
    from cifar_pl.lit import ImageClassifier
    from cifar_pl.renames import model_args as grouped

    args = {"net": "model_gap", "num_classes": num_classes, **model_args}
    model = ImageClassifier(**grouped(args))
    dm = datamodule or {
        "_class_path": "cifar_pl.data.ImageFolderDataModule",
        "data_dir": "photos",
        "image_size": 16,
    }
    torch.save({
        "epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6", "state_dict": model.state_dict(),
        "hyper_parameters": {**args, "_class_path": "cifar_pl.lit.ImageClassifier"},
        "datamodule_hyper_parameters": dm,
        "ImageFolderDataModule": {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 16},
    }, path)  # fmt: skip
    return path


def build_sandbox(root: Path) -> dict[str, str]:
    """Write the small data and files the cases name into ``root``; returns the placeholders."""
    from PIL import Image

    from cifar_pl.lit import ImageClassifier

    root.mkdir(parents=True, exist_ok=True)
    rows = {"data_batch_1": 40, "data_batch_2": 24, "data_batch_3": 24, "data_batch_4": 32, "data_batch_5": 24,
            "test_batch": 30}  # fmt: skip
    for name, folder, damage in (("c10", "cifar-10-batches-py", None), ("corrupt", "cifar-10-batches-py", "trunc"),
                                 ("badlabel", "cifar-10-batches-py", "label")):  # fmt: skip
        d = root / name / folder
        d.mkdir(parents=True, exist_ok=True)
        for i, (f, n) in enumerate(rows.items()):
            write_cifar_batch(d / f, n, n + 10, i, 5 if damage == "label" and f == "data_batch_2" else None)
        if damage == "trunc":
            (d / "data_batch_3").write_bytes((d / "data_batch_3").read_bytes()[:5000])
    (root / "wrong" / "something").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for cls, colour in (("cat", (220, 40, 40)), ("dog", (40, 200, 60))):
        for i in range(6):
            px = np.clip(np.array(colour) + rng.normal(0, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
            (root / "photos" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(root / "photos" / cls / f"{i}.jpg")
    for cls in ("cat", "dog"):
        (root / "broken_photos" / cls).mkdir(parents=True, exist_ok=True)
    (root / "broken_photos" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "broken_photos" / "dog" / "ok.jpg")
    (root / "noclasses").mkdir(exist_ok=True)
    (root / "noclasses" / "a.jpg").write_bytes(b"")
    (root / "oneclass" / "cat").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20)).save(root / "oneclass" / "cat" / "a.jpg")
    (root / "empty").mkdir(exist_ok=True)
    (root / "notes.txt").write_text("not an image")
    torch.save(ImageClassifier(net="model_gap", num_classes=5).state_dict(), root / "five_classes.pt")
    torch.save(ImageClassifier(net="resnet20", num_classes=10).state_dict(), root / "resnet20.pt")
    (root / "not_a_checkpoint.ckpt").write_text("this is a text file")
    with open(root / "pickle_bomb.ckpt", "wb") as f:
        pickle.dump({"state_dict": os.system}, f)
    write_checkpoint(root / "gap5.ckpt", num_classes=5)
    write_crafted(root / "crafted.ckpt", root / "PWNED")
    write_checkpoint(
        root / "crafted_dm.ckpt",
        datamodule={"_class_path": "os.system", "command": f"touch {root / 'PWNED'}"},
    )
    sweeps = {
        "sweep_bad_yaml": "sweep: x\nconfig: [a\nruns: {",
        "sweep_runs_list": yaml.safe_dump({"sweep": "x", "config": "a.yaml", "runs": ["a", "b"]}),
        "sweep_climbs": yaml.safe_dump({"sweep": "../x", "config": "a.yaml", "runs": {"a": {}}}),
        "sweep_unknown_key": yaml.safe_dump({"sweep": "x", "config": "a.yaml", "runz": {"a": {}}}),
        "sweep_ok": yaml.safe_dump({"sweep": "x", "config": "a.yaml", "runs": {"a": {}}}),
        "sweep_seed_twice": yaml.safe_dump(
            {"sweep": "x", "config": "a.yaml", "runs": {"a": {}}, "seeds": [1, 1]}
        ),
        "sweep_repeats_zero": yaml.safe_dump(
            {"sweep": "x", "config": "a.yaml", "runs": {"a": {}}, "repeats": 0}
        ),
        "sweep_seed_clash": yaml.safe_dump(
            {
                "sweep": "x",
                "config": "a.yaml",
                "runs": {"a": {}},
                "args": {"seed_everything": 3},
                "seeds": [0, 1],
            }
        ),
    }
    sweeps.update({
        "sweep_experiment": yaml.safe_dump({"sweep": "x", "config": "a.yaml", "runs": {"a": {}},
                                            "args": {"experiment": "elsewhere"}}),
        "sweep_collide": yaml.safe_dump({"sweep": "x", "config": "a.yaml", "grid": {"model.optim.lr": [0.1, "0.1"]}}),
        "sweep_bomb": _BOMB + "\nsweep: x\nconfig: a.yaml\nruns: {a: {model.optim.lr: *a9}}\n",
        "sweep_deep": "sweep: x\nconfig: a.yaml\nruns: {a: {model.optim.lr: " + "[" * 20000 + "1" + "]" * 20000 + "}}\n",
        "sweep_hijack": yaml.safe_dump({"sweep": "x", "config": str(CONFIGS / "model_gap.yaml"),
                                        "args": {"data.data_dir": str(root / "c10")},
                                        "runs": {"a": {"config": str(root / "hijack.yaml")}}}),
        "sweep_typo": yaml.safe_dump({"sweep": "x", "config": str(CONFIGS / "model_gap.yaml"),
                                      "args": {"data.data_dir": str(root / "c10")},
                                      "runs": {"good": {}, "typo": {"model.lrr": 0.1}}}),
        "search_zero": yaml.safe_dump({"sweep": "x", "config": "a.yaml", "search": {
            "space": {"model.optim.lr": {"loguniform": [0.01, 1.0]}}, "num_samples": 0}}),
        "search_not_an_option": yaml.safe_dump({"sweep": "x", "config": str(CONFIGS / "model_gap.yaml"),
                                                "args": {"data.data_dir": str(root / "c10")}, "search": {
            "space": {"model.optim.lrate": {"loguniform": [0.01, 1.0]}}}}),
        "sweep_real": yaml.safe_dump({"sweep": "x", "config": str(CONFIGS / "model_gap.yaml"),
                                      "args": {"data.data_dir": str(root / "c10"), "trainer.max_epochs": 1},
                                      "runs": {"a": {}}}),
    })  # fmt: skip
    for name, text in sweeps.items():
        (root / f"{name}.yaml").write_text(text)
    (root / "bad_config.yaml").write_text("model:\n  net: model_gap\n  lr: [1, 2\n")
    (root / "alias_config.yaml").write_text(_BOMB + "\nmodel:\n  net: model_gap\n")
    (root / "deep_config.yaml").write_text("seed_everything: " + "[" * 20000 + "]" * 20000 + "\n")
    (root / "hijack.yaml").write_text("experiment: hijacked\n")
    write_checkpoint(root / "nan.ckpt", num_classes=10)
    nan = torch.load(root / "nan.ckpt", weights_only=True)
    nan["state_dict"]["net.classifier.weight"][0, 0] = float("nan")
    torch.save(nan, root / "nan.ckpt")
    (root / "bad_acts").mkdir()
    (root / "bad_acts" / "activation_stats.json").write_text('{"fields": ["step", "mean"')
    places = {name: str(root / f"{name}.yaml") for name in sweeps}
    places.update({name: str(root / name) for name in ("c10", "corrupt", "badlabel", "wrong", "photos", "broken_photos",
                                                       "noclasses", "oneclass", "empty")})  # fmt: skip
    places.update({
        "configs": str(CONFIGS), "five_classes": str(root / "five_classes.pt"), "resnet20": str(root / "resnet20.pt"),
        "not_a_checkpoint": str(root / "not_a_checkpoint.ckpt"), "pickle_bomb": str(root / "pickle_bomb.ckpt"),
        "gap5": str(root / "gap5.ckpt"), "crafted": str(root / "crafted.ckpt"), "crafted_dm": str(root / "crafted_dm.ckpt"),
        "photo_file": str(root / "photos" / "cat" / "0.jpg"), "text_file": str(root / "notes.txt"),
        "bad_acts": str(root / "bad_acts"), "bad_config": str(root / "bad_config.yaml"),
        "alias_config": str(root / "alias_config.yaml"), "nan_ckpt": str(root / "nan.ckpt"),
        "deep_config": str(root / "deep_config.yaml"),
    })  # fmt: skip
    return places


def write_crafted(path: Path, marker: Path) -> Path:
    """A checkpoint that loads with ``weights_only=True`` but names ``os.system`` with a shell command that would
    create ``marker``: in its DataModule's class path, its model's class path and its net's name."""
    write_checkpoint(path, datamodule={"_class_path": "os.system", "command": f"touch {marker}"})
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["_class_path"] = "os.system"
    ckpt["hyper_parameters"]["command"] = f"touch {marker}"
    torch.save(ckpt, path)
    return path


def fill(arg: str, places: dict[str, str]) -> str:
    """``{name}`` placeholders replaced (plain replacement: YAML braces in an argument stay as they are)."""
    for name, value in places.items():
        arg = arg.replace(f"{{{name}}}", value)
    return arg


def run_case(case: Case, places: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``case`` through its command's main() in ``cwd``; returns (exit code, stderr)."""
    from cifar_pl.__main__ import main as cli
    from cifar_pl.predict import main as predict
    from cifar_pl.scrape import main as scrape
    from cifar_pl.sweeps.cli import main as sweep
    from cifar_pl.viz.__main__ import main as viz

    args = [fill(a, places) for a in case.args]
    entry = {"cli": cli, "predict": predict, "viz": viz, "sweep": sweep, "scrape": scrape}[case.tool]
    err = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    setup = SETUPS[case.setup](cwd) if case.setup else contextlib.nullcontext()
    try:
        with setup, contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = entry(args)
            except SystemExit as e:  # argparse / jsonargparse refusing an argument
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(old)
    return code, err.getvalue()


def error_line(stderr: str) -> str:
    """The line a user reads: the last one starting with ``error:`` (jsonargparse puts the reason after it)."""
    lines = stderr.splitlines()
    at = [i for i, line in enumerate(lines) if line.lower().startswith("error:")]
    if not at:
        return ""
    line = lines[at[-1]].strip()
    if line.endswith(":") and at[-1] + 1 < len(lines):
        line += " " + lines[at[-1] + 1].strip()
    return line
