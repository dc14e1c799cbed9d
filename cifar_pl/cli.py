"""CifarCLI: LightningCLI with this project's links, defaults, checks and run handling set in one place."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import jsonargparse
import torch
import yaml
from jsonargparse import Namespace
from pytorch_lightning import LightningDataModule
from pytorch_lightning.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    RichProgressBar,
)
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from . import data as _data  # noqa: F401  (DataModules must be imported to be found by short name)
from . import safe_yaml
from .callbacks import DataPreview, EndOfTestReport, GracefulStop, RNGState, RunConfig, StageStart
from .checkpoints import AtomicCheckpointIO, Checkpoint, checkpoint_counters, read_checkpoint
from .data import list_datamodules
from .data.identity import IDENTITY_KEY
from .data.identity import describe as describe_data
from .data.identity import differences as data_differences
from .errors import BadValue, error_in
from .files import check_writable_folder
from .lit import ImageClassifier
from .logger import ExperimentLogger, experiment_columns
from .models import get_cfg, load_weights
from .renames import command_line, renamed
from .runs import (
    LOG_ROOT,
    check_name,
    experiment_dir,
    link_best,
    next_free,
    resolve_ckpt_path,
    run_dir_of,
    update_record,
    version_number,
    write_stage,
)
from .stages import Continuation, flatten, plan_continuation

#: seconds the processes of one run wait for each other (torch's own default is 30 minutes of silence)
DDP_TIMEOUT_S = 300.0

# Configs and values given as YAML are read with a bound on alias expansion (cifar_pl.safe_yaml), and with old
# names replaced by new ones (cifar_pl.renames).
_bounded = safe_yaml.bounded_loader(jsonargparse.get_loader("yaml"))
jsonargparse.set_loader("yaml", lambda text: renamed(_bounded(text)), exceptions=(yaml.YAMLError,))


class _NoAdverts(logging.Filter):
    """Lightning's start-up tips advertise its cloud products; a run's first lines are for the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoAdverts())
# Lightning's own call into a torch API that torch deprecated: nothing a user can act on
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")

EVALUATING = ("validate", "test", "predict")
# What a stop (or a failure) wrote into run.json; a run that starts again (a resume) clears it.
STOP_FIELDS = ("exit_code", "phase", "stopped_epoch", "stopped_step", "epoch", "global_step", "checkpoint_epoch",
               "checkpoint_step", "last_checkpoint", "error")  # fmt: skip


# keep the keys whose value is None in a dump (the option's name is skip_unset from jsonargparse 4.49, skip_none before)
_KEEP_NONE = (
    {"skip_unset": False}
    if tuple(int(p) for p in re.findall(r"\d+", jsonargparse.__version__)[:2]) >= (4, 49)
    else {"skip_none": False}
)


def parse_error_line(message: str) -> str:
    """jsonargparse's report of an argument it refused, as one line: the option's full key and the reason
    (the report nests a DataModule's own options inside a union of class choices)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    keys: list[str] = []
    reason, given = lines[0] if lines else message, None
    for line in lines:
        key = re.match(r'Parser key "([^"]+)":\s*(.*)$', line)
        if key:
            keys.append(key.group(1))
            if key.group(2):
                reason = key.group(2)
                break
            continue
        if line.startswith("Given value:"):
            given = line.split(":", 1)[1].strip()
        skip = ("Does not validate", "Subtypes:", "Errors:", "- Problem with given class_path", "Given value")
        if line.startswith(skip) or line == "- Expected a <class 'NoneType'>":
            continue
        reason = line.lstrip("- ")
        if not reason.startswith("Expected a <class"):
            break
    literal = re.match(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)$", reason)
    if literal:
        options = ", ".join(o.strip().strip("'") for o in literal.group(1).split(","))
        reason = f"unknown value {literal.group(2)!r}; choose one of {options}"
    plain = re.match(r"Expected a <class '(\w+)'>(?:\. Got value: (.*))?$", reason)
    if plain:
        given = (
            plain.group(2) if plain.group(2) is not None else given
        )  # the value, not its NestedArg wrapper
        reason = f"expected {'a whole number' if plain.group(1) == 'int' else plain.group(1)}, got {given!r}"
    if reason.startswith("unrecognized arguments:"):
        return reason.replace("arguments: fit ", "arguments: ") + " (--help lists every option)"
    key = ".".join(dict.fromkeys(k for part in keys for k in [part]))
    return f"{key}: {reason}" if key else reason


class CifarCLI(LightningCLI):
    """``python -m cifar_pl {fit,validate,test,predict} --config configs/X.yaml``.

    * ``data.num_classes`` and ``data.classes`` are linked into the model;
    * ``experiment`` names the run (a relative name): logs land in ``lightning_logs/<experiment>/version_N``,
      next to the run's ``config.yaml`` and its ``run.json`` (how the run ended);
    * ``checkpoint.*`` configures the ModelCheckpoint that keeps the best ``val/acc``; ``last_checkpoint.*``
      the one that rewrites ``last.ckpt`` after every validation (``every_n_train_steps`` for mid-epoch saves);
    * ``--ckpt_path`` takes a checkpoint, ``last`` (the experiment's newest last.ckpt) or ``best`` (its best.ckpt
      link). ``fit`` resumes exactly or starts a new stage (``cifar_pl.stages``); validate/test/predict score the
      checkpoint's own net and refuse to score a net with no trained weights;
    * after ``fit``, ``lightning_logs/<experiment>/best.ckpt`` links to the best checkpoint of the newest run;
    * a rich progress bar, a LearningRateMonitor, the DataPreview and the EndOfTestReport are added unless the
      config turns them off (no logger: no LR monitor and no pictures); SIGTERM/SIGINT end training with
      last.ckpt written and exit 128 + signal (``GracefulStop``).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("model_class", ImageClassifier)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        # ImageClassifier configures its own optimiser and schedule from plain values.
        kwargs.setdefault("auto_configure_optimizers", False)
        # A refused argument raises (parse_arguments makes it one line) instead of printing usage and exiting.
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        self._continuation: Continuation | None = None
        self._checkpoint: Checkpoint | None = None
        self._config_view: dict[str, Any] = {}
        self._run_dir: Path | None = None
        self._ddp_timeout = DDP_TIMEOUT_S
        self._stop: GracefulStop | None = None
        self._held: ExitStack | None = None
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str, default="default",
                            help="run name below lightning_logs/ (letters, digits, ._,=+-, parts joined by /)")  # fmt: skip
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, score the best checkpoint (last weights if none) on the test set")  # fmt: skip
        parser.add_argument("--stage_counters", type=Literal["continue", "restart"], default="continue",
                            help="a new stage from --ckpt_path: continue its epoch/step counters, or start at 0")  # fmt: skip
        parser.add_argument("--new_data", type=bool, default=False,
                            help="fit --ckpt_path onto data other than the checkpoint's (another collection, photos "
                                 "added or removed, another split): a new stage, explicitly")  # fmt: skip
        parser.add_argument("--ddp_timeout", type=float, default=DDP_TIMEOUT_S,
                            help="seconds the processes of a run across processes or nodes (DDP) wait for each "
                                 "other before one line names who is missing and the run exits 2")  # fmt: skip
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Since Lightning 2.6, save_last only rewrites last.ckpt when a top-k checkpoint is saved in the same
        # step, so a run whose val/acc stopped improving would resume from a stale epoch. A second callback
        # without a monitor writes last.ckpt after every validation instead.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc",
            "checkpoint.mode": "max",
            "checkpoint.save_last": False,
            "checkpoint.filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}",
            "checkpoint.auto_insert_metric_name": False,
            "last_checkpoint.monitor": None,
            "last_checkpoint.save_top_k": 1,
            "last_checkpoint.filename": "last",
            "last_checkpoint.enable_version_counter": False,
        })  # fmt: skip

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # config files first, through the bounded reader: a malformed one is named with its line
        safe_yaml.check_config_files(config_files(args))
        given = sys.argv[1:] if args is None else list(args)
        if given[:1] == ["predict"]:  # Lightning's predict loop returns tensors to Python and writes nothing
            raise BadValue(
                "python -m cifar_pl predict would print nothing and write nothing; predict image files with "
                "python -m cifar_pl.predict FILES_OR_FOLDERS --ckpt CHECKPOINT (a table of classes and "
                "probabilities), or score a split with validate/test --ckpt_path"
            )
        mapped = command_line(given)  # flat model keys of before the grouping, said and mapped
        try:
            with warnings.catch_warnings():
                # the command line, mapped: LightningCLI would warn that args and sys.argv both exist
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                super().parse_arguments(parser, mapped if mapped != given or args is not None else args)
        except ArgumentError as e:
            raise BadValue(_class_path_error(str(e)) or parse_error_line(str(e))) from None
        # checked here: LightningCLI seeds everything before the classes are built
        cfg = self.config[self.config.subcommand] if self.config.get("subcommand") else self.config
        seed = cfg.get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
            raise BadValue(
                f"seed_everything must be a whole number in [0, 2**32 - 1], got {seed}; or true for a random seed"
            )

    def _parse_ckpt_path(self) -> None:
        """LightningCLI would merge the checkpoint's hyperparameters over this configuration (command line
        included) and hand a class path read from the file to the parser. Here a checkpoint is read by
        ``cifar_pl.checkpoints`` only, and the configuration given is the one that runs."""

    # ---- before anything is built: names, checkpoints, values ----
    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub] if sub else self.config
        check_name(cfg.experiment)
        timeout = cfg.get("ddp_timeout", DDP_TIMEOUT_S)
        if not (isinstance(timeout, (int, float)) and 0 < timeout < 7 * 24 * 3600):
            raise BadValue(f"--ddp_timeout {timeout} is not a number of seconds in (0, one week); the default is "
                           f"{DDP_TIMEOUT_S:g}")  # fmt: skip
        for key in ("checkpoint", "last_checkpoint"):
            if cfg.get(key) is not None and cfg[key].get("dirpath") is not None:
                raise BadValue(
                    f"{key}.dirpath: checkpoints are written in the run's folder ({LOG_ROOT}/<experiment>/version_N/"
                    f"checkpoints), where --ckpt_path last and best find them; choose the folder with --experiment "
                    f"and drop {key}.dirpath"
                )
        if sub and (cfg.trainer.logger is None or cfg.trainer.logger is True):
            check_writable_folder(experiment_dir(cfg.experiment), f"--experiment {cfg.experiment!r}")
        if cfg.get("weights_only") is False:
            raise BadValue(
                "weights_only: false would let a checkpoint run code when it is loaded; cifar_pl loads checkpoints "
                "as tensors and plain values only. Convert a file you trust once with torch.save(torch.load(f, "
                "weights_only=False)['state_dict'], 'clean.pt') and start from it with model.init.weights"
            )
        self._config_view = yaml.safe_load(self._parser(sub).dump(cfg, **_KEEP_NONE))
        version = None
        if sub == "fit":
            self._check_fit_values(cfg)
            if cfg.get("ckpt_path"):
                version = self._plan_fit_from_checkpoint(cfg)
        elif sub in EVALUATING:
            self._evaluate_from_checkpoint(cfg, sub)
        trainer = cfg.trainer
        if trainer.logger is None or trainer.logger is True:
            trainer.logger = Namespace(
                class_path="cifar_pl.logger.ExperimentLogger",
                init_args=Namespace(save_dir=LOG_ROOT, name=cfg.experiment, version=version),
            )
        elif trainer.logger is False and trainer.get("default_root_dir") is None:
            # no run folder: Lightning would write checkpoints/ and config.yaml into the working folder
            trainer.default_root_dir = str(experiment_dir(cfg.experiment))

    def _check_fit_values(self, cfg: Namespace) -> None:
        trainer = cfg.trainer
        if trainer.fast_dev_run:
            return
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
            raise BadValue(
                f"trainer.max_epochs {max_epochs} trains nothing; give a number of epochs >= 1 (or -1 with max_steps)"
            )
        if max_steps is not None and (max_steps == 0 or max_steps < -1):
            raise BadValue(
                f"trainer.max_steps {max_steps} trains nothing; give a number of steps >= 1, or -1"
            )
        epochs = max_epochs if max_epochs not in (None, -1) else None
        warmup = cfg.model.schedule.warmup_epochs
        if epochs is not None and (max_steps in (None, -1)) and warmup >= epochs:
            raise BadValue(
                f"model.schedule.warmup_epochs {warmup} is as long as the run (trainer.max_epochs {epochs}); "
                f"shorten the warmup or train longer"
            )

    def _plan_fit_from_checkpoint(self, cfg: Namespace) -> int | None:
        path = resolve_ckpt_path(str(cfg.ckpt_path), cfg.experiment)
        ckpt = read_checkpoint(path)
        cfg.ckpt_path = str(path)
        run_dir = run_dir_of(path, cfg.experiment)
        plan = plan_continuation(ckpt, self._config_view, run_dir, cfg.stage_counters, cfg.new_data)
        if plan.kind == "resume":
            self._check_resumed_weights(cfg, ckpt)
        self._continuation = plan
        if not plan.only_new_data:  # that one is said once the data is read and the claim checked (fit)
            rank_zero_info(plan.summary())
        if plan.kind == "resume":
            max_epochs = cfg.trainer.max_epochs
            if max_epochs not in (None, -1) and max_epochs < ckpt.epochs_done:
                raise BadValue(
                    f"{path} has trained {ckpt.epochs_done} epochs; trainer.max_epochs {max_epochs} is fewer. Give "
                    f"max_epochs {ckpt.epochs_done} or more to resume it (more trains longer)"
                )
            if ckpt.config and ckpt.config.get("seed_everything") != self._config_view.get("seed_everything"):
                rank_zero_warn(
                    "the seed differs from the interrupted run's: the remaining data order differs too"
                )
            if run_dir is None:
                return None
            # the resumed run's config goes beside the first one, never over it
            self.save_config_kwargs = {**self.save_config_kwargs,
                                       "config_filename": next_free(run_dir, "config_resume")}  # fmt: skip
            return version_number(run_dir)
        if cfg.model.init.weights:
            raise BadValue(
                "give either --ckpt_path (a new stage from that checkpoint's weights) or model.init.weights, not both"
            )
        max_epochs = cfg.trainer.max_epochs
        if plan.start_epoch and max_epochs not in (None, -1) and max_epochs <= plan.start_epoch:
            raise BadValue(
                f"the new stage continues {path.name}'s counters at epoch {plan.start_epoch}, so trainer.max_epochs "
                f"{max_epochs} leaves nothing to train; give max_epochs {plan.start_epoch} + the stage's epochs "
                f"(e.g. {plan.start_epoch + max_epochs}), or --stage_counters restart"
            )
        if (
            plan.start_epoch
            and max_epochs not in (None, -1)
            and cfg.model.schedule.warmup_epochs >= max_epochs - plan.start_epoch
        ):
            raise BadValue(
                f"model.schedule.warmup_epochs {cfg.model.schedule.warmup_epochs} is as long as the stage "
                f"({max_epochs - plan.start_epoch} epochs); shorten the warmup or train longer"
            )
        return None

    @staticmethod
    def _check_resumed_weights(cfg: Namespace, ckpt: Checkpoint) -> None:
        """An exact resume continues the checkpoint's weights: a ``model.init.weights`` other than the file its run
        started from (which the same command names again) would never be loaded."""
        given = cfg.model.init.weights
        started = flatten(ckpt.config).get("model.init.weights") if ckpt.config else None
        if not given or (started and (given == started or Path(given).resolve() == Path(started).resolve())):
            return
        began = f"its run started from {started}" if started else "its run started from no weights file"
        raise BadValue(
            f"--ckpt_path {ckpt.path} resumes its run exactly, which continues the checkpoint's own weights: "
            f"model.init.weights {given} would not be loaded ({began}). Drop it to resume, or leave out "
            f"--ckpt_path to start a new run from {given}"
        )

    def _evaluate_from_checkpoint(self, cfg: Namespace, sub: str) -> None:
        if not cfg.get("ckpt_path"):
            if not cfg.model.init.weights:
                raise BadValue(
                    f"{sub} scores trained weights: pass --ckpt_path (a checkpoint, last or best) or "
                    f"--model.init.weights; without either it would score a net with random weights"
                )
            return
        path = resolve_ckpt_path(str(cfg.ckpt_path), cfg.experiment)
        ckpt = read_checkpoint(path)
        cfg.ckpt_path = str(path)
        self._checkpoint = ckpt
        # The weights decide the architecture: build the checkpoint's own net (never fetching other weights).
        if cfg.model.net != ckpt.net:
            rank_zero_info(f"{sub}: using the checkpoint's net {ckpt.net} (the config names {cfg.model.net})")
        cfg.model.net = ckpt.net
        cfg.model.net_kwargs = ckpt.model_args.get("net_kwargs") or None
        cfg.model.init.weights = None

    # ---- after everything is built: checks that need the objects ----
    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        model, dm = self.model, self.datamodule
        ckpt = self._checkpoint
        if ckpt is not None and model.hparams.num_classes != len(ckpt.class_names):
            raise BadValue(
                f"the checkpoint {ckpt.path} classifies {len(ckpt.class_names)} classes, "
                f"the data has {model.hparams.num_classes}; pass the data it was trained on"
            )
        names = model.hparams.get("class_names")
        if (
            ckpt is not None
            and ckpt.model_args.get("class_names")
            and names
            and list(names) != ckpt.class_names
        ):
            raise BadValue(
                f"the checkpoint {ckpt.path} was trained on the classes {ckpt.class_names}, the data has {list(names)}; "
                f"its scores would be read under the wrong names: pass the data it was trained on"
            )
        size = getattr(dm, "image_size", None)
        if (
            ckpt is not None
            and get_cfg(ckpt.net, ckpt.model_args.get("net_kwargs")).sized
            and size != ckpt.image_size()
        ):
            raise BadValue(
                f"the checkpoint {ckpt.path} has a {ckpt.net} built for {ckpt.image_size()}x{ckpt.image_size()} images "
                f"(a flatten head), the data gives {size}x{size}: pass --data.image_size {ckpt.image_size()}"
            )
        self._check_image_size(model, dm)

    @staticmethod
    def _check_image_size(model: ImageClassifier, dm: Any) -> None:
        size = getattr(dm, "image_size", None)
        if not isinstance(size, int):
            return
        name = model.hparams.net
        fixed = getattr(model.net, "fixed_input_size", None)
        if fixed is not None and tuple(fixed) != (size, size):
            raise BadValue(
                f"net {name} has a flatten head for {fixed[0]}x{fixed[1]} images, but the data gives {size}x{size}: "
                f"set data.image_size {fixed[0]}, or use a global-average-pooling net (model_gap, resnet20, ...)"
            )
        was_training = model.net.training
        try:  # one tiny forward pass at the data's size: a net too deep for small images fails here, named
            with torch.no_grad():
                model.net.eval()(torch.zeros(1, 3, size, size))
        except RuntimeError as e:
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise BadValue(
                f"net {name} cannot take {size}x{size} images ({first}); use a larger data.image_size"
            ) from None
        finally:
            model.net.train(was_training)

    def instantiate_trainer(self, **kwargs):
        # The checkpoint callbacks are always configured (checkpoint.*, last_checkpoint.*); drop them when the
        # run asks for no checkpointing, which the Trainer would otherwise refuse. Infrastructure callbacks
        # (random state, signals, the configuration in checkpoints, a stage's counters) are always there.
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if config.get("enable_checkpointing") is False:
            extra = [cb for cb in extra if not isinstance(cb, ModelCheckpoint)]
        self._stop = GracefulStop()
        extra += [RNGState(), self._stop, RunConfig(self._config_view)]
        # Defaults the configuration can replace: decided on the instantiated callbacks (a class of the user's
        # that is a ProgressBar counts as one), so no name is looked up here.
        given = list(config.get("callbacks") or [])
        if config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in given
        ):
            extra.append(RichProgressBar(leave=True))
        if config.get("logger") is not False:
            for cls, args in (
                (DataPreview, {}),
                (EndOfTestReport, {}),
                (LearningRateMonitor, {"logging_interval": "step"}),
            ):
                if not any(isinstance(c, cls) for c in given):
                    extra.append(cls(**args))
        _check_unique_states(given + extra)
        plan = self._continuation
        if plan is not None and plan.kind == "stage" and (plan.start_epoch or plan.start_step):
            extra.append(StageStart(plan.start_epoch, plan.start_step))
        # every checkpoint goes through the crash-consistent writer, unless the configuration brings its own
        plugins = config.get("plugins")
        plugins = (
            [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        )
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            config["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = self._instantiate_trainer(config, extra)
        self._ddp_timeout = float(self._get(self.config, "ddp_timeout", default=None) or DDP_TIMEOUT_S)
        _short_rendezvous(trainer.strategy, self._ddp_timeout)
        _check_rendezvous_env(trainer)
        if config.get("sync_batchnorm") and type(trainer.accelerator).__name__ == "CPUAccelerator":
            raise BadValue(
                "trainer.sync_batchnorm works on GPUs only (torch's SyncBatchNorm); drop it on the CPU, where each "
                "process normalises its own share of the batch"
            )
        # the HParams row: the values that define this run; an evaluation's are the checkpoint's own (the weights
        # it scores), under this run's experiment name
        ckpt = self._checkpoint
        view = self._config_view
        if self.subcommand in EVALUATING and ckpt is not None and isinstance(ckpt.config, dict):
            view = {**renamed(ckpt.config), "experiment": view.get("experiment")}
        for logger in trainer.loggers:
            if isinstance(logger, ExperimentLogger):
                logger.columns = experiment_columns(view)
        return trainer

    # ---- fit: stages, the data check, the run's record, stops, test after fit ----
    def before_fit(self) -> None:
        # Signals are handled from here to the end of the test after fit: a stop while the data is decoded, in the
        # sanity check or in the test ends the run with its record saying so, never with the record left "running".
        self._held = ExitStack()
        self._held.enter_context(self._stop.hold(self.trainer))

    def _release(self) -> None:
        held = getattr(self, "_held", None)
        if held is not None:
            held.close()
            self._held = None

    def fit(self, model: ImageClassifier, datamodule=None, ckpt_path: str | None = None, **kwargs) -> None:
        plan = self._continuation
        try:
            if plan is not None:
                self._check_data(plan, datamodule)
                if plan.only_new_data:
                    rank_zero_info(plan.summary())
        except BaseException:
            self._release()
            raise
        if plan is not None and plan.kind == "stage":
            self._start_stage(model, plan)
            ckpt_path = None  # the weights are in; optimiser, schedule and counters start afresh
        log_dir = getattr(self.trainer.logger, "log_dir", None) if self.trainer.is_global_zero else None
        self._run_dir = (
            Path(log_dir) if log_dir else None
        )  # no logger (or fast_dev_run): no run folder, no record
        if (
            self._run_dir is not None
        ):  # first, so the user knows where to look (TensorBoard, run.json, checkpoints)
            rank_zero_info(f"run folder: {self._run_dir}")
        self._record(status="running", pid=os.getpid(), host=socket.gethostname(),
                     experiment=self.config.fit.experiment, max_epochs=self.trainer.max_epochs,
                     ckpt_path=ckpt_path or (str(plan.checkpoint.path) if plan else None),
                     config=self._config_view, _drop=STOP_FIELDS)  # fmt: skip
        if self._run_dir is not None and plan is not None and plan.kind == "stage":
            write_stage(self._run_dir, plan.checkpoint.path, plan.start_epoch, plan.start_step, plan.changes)
        try:
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **self._tensors_only(kwargs))
        except SystemExit as e:  # a signal (GracefulStop set the code), or Lightning's own exit
            self._stopped(e.code)
            self._release()
            raise
        except BaseException as e:
            missing = rendezvous_error(e, self.trainer, self._ddp_timeout)
            # nothing ran: the run folder made for it goes, the next run takes its number
            if missing is not None:
                self._forget_run_dir()
                self._release()
                raise missing from None
            self._record(
                status="failed", error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
            )
            self._release()
            raise
        self._record(status="fitted", epochs_done=self.trainer.current_epoch, global_step=self.trainer.global_step,
                     stopped_early=bool(self.trainer.should_stop))  # fmt: skip

    def _check_data(self, plan: Continuation, datamodule: Any) -> None:
        """``fit --ckpt_path``: the data given now is the data the checkpoint was trained on (class names, source,
        split; ``cifar_pl.data.identity``), or ``--new_data`` says a new stage goes onto other data on purpose."""
        ckpt = plan.checkpoint
        if not hasattr(datamodule, "data_identity"):
            return  # a DataModule of the user's that cannot say what it holds
        if self.trainer.local_rank == 0:
            datamodule.prepare_data()  # Lightning's call finds it done
        current = datamodule.data_identity()
        recorded = ckpt.datamodule_state.get(IDENTITY_KEY)
        diffs = data_differences(recorded, current) if isinstance(recorded, dict) else []
        names = ckpt.model_args.get("class_names")
        if not isinstance(recorded, dict) and names and list(names) != list(current["classes"]):
            diffs.append(f"classes {list(names)} then, {current['classes']} now")
        if not diffs:
            if plan.only_new_data and isinstance(recorded, dict):
                # nothing differs but the note a new stage would write: the run continues as it was
                raise BadValue(
                    f"--new_data true: the data is the checkpoint's own ({describe_data(current)}, the same "
                    f"split); drop it to resume {ckpt.path} exactly"
                )
            return
        if self.config.fit.new_data:
            rank_zero_info(f"new stage on other data (--new_data): {'; '.join(diffs)}")
            return
        raise BadValue(
            f"{ckpt.path} was trained on other data: {'; '.join(diffs)}. Pass the data it was trained on "
            f"(--data.data_dir), or go on with this data as a new stage with --new_data true"
        )

    def _stopped(self, code: Any, test: bool = False) -> None:
        """Record and say where a stopped run can continue from: the step the checkpoint really holds."""
        stop, trainer = self._stop, self.trainer
        saved = stop.saved
        held = checkpoint_counters(saved) if saved else None
        phase = "test" if test else (stop.phase or "training")
        # epoch / global_step: what a resume starts from (the checkpoint's counters); stopped_*: where it stopped
        fields: dict[str, Any] = {"status": "interrupted", "exit_code": code, "phase": phase,
                                  "stopped_epoch": trainer.current_epoch, "stopped_step": trainer.global_step,
                                  "epoch": held["epoch"] if held else None,
                                  "global_step": held["global_step"] if held else None,
                                  "checkpoint_epoch": held["epoch"] if held else None,
                                  "checkpoint_step": held["global_step"] if held else None,
                                  "last_checkpoint": str(saved) if saved else None}  # fmt: skip
        self._record(**fields)
        step = trainer.global_step
        if test:
            said = (f"stopped during the test after training; training is complete and saved ({saved}): the same "
                    f"command with --ckpt_path last runs the test again")  # fmt: skip
        elif held is None:
            said = (f"stopped during {phase} at step {step}, before any checkpoint was written; nothing to resume: "
                    f"run the same command again")  # fmt: skip
        else:
            redo = step - held["global_step"]
            said = (f"stopped during {phase} at step {step}; {saved} holds epoch {held['epoch']}, step "
                    f"{held['global_step']}: the same command with --ckpt_path last continues from there"
                    + (", redoing nothing" if redo <= 0 else f", training {redo} steps again"))  # fmt: skip
        rank_zero_info(said)

    # Checkpoints reach Lightning only after cifar_pl.checkpoints has read them, and are loaded tensors-only.
    @staticmethod
    def _tensors_only(kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "weights_only": True}  # before_instantiate_classes refused any other value

    def validate(self, model, datamodule=None, ckpt_path=None, **kwargs):
        with _rendezvous_said(self.trainer, self._ddp_timeout):
            return self.trainer.validate(
                model, datamodule=datamodule, ckpt_path=ckpt_path, **self._tensors_only(kwargs)
            )

    def test(self, model, datamodule=None, ckpt_path=None, **kwargs):
        with _rendezvous_said(self.trainer, self._ddp_timeout):
            return self.trainer.test(
                model, datamodule=datamodule, ckpt_path=ckpt_path, **self._tensors_only(kwargs)
            )

    def _forget_run_dir(self) -> None:
        """Remove the run folder of a run that never started (its record only, written before the rendezvous)."""
        run_dir, self._run_dir = self._run_dir, None
        if run_dir is not None and run_dir.is_dir():
            left = [p for p in run_dir.rglob("*") if p.is_file() and p.name != "run.json"]
            if not left:
                shutil.rmtree(run_dir, ignore_errors=True)

    def predict(self, model, datamodule=None, ckpt_path=None, **kwargs):
        return self.trainer.predict(
            model, datamodule=datamodule, ckpt_path=ckpt_path, **self._tensors_only(kwargs)
        )

    def _start_stage(self, model: ImageClassifier, plan: Continuation) -> None:
        ckpt = plan.checkpoint
        weights = {k[4:]: v for k, v in ckpt.state_dict.items() if k.startswith("net.")}
        report = load_weights(model.net, ckpt.path, strict=model.init.strict, state_dict=weights)
        for key in report.skipped:
            rank_zero_warn(f"new stage: skipped {key}")
        model.stage = {
            "start_epoch": plan.start_epoch,
            "start_step": plan.start_step,
            "parent": str(ckpt.path),
        }

    def _record(self, _drop: tuple[str, ...] = (), **fields: Any) -> None:
        if self._run_dir is not None:
            update_record(self._run_dir, subcommand=self.subcommand, _drop=_drop, **fields)

    def after_fit(self) -> None:
        try:
            self._after_fit()
        finally:
            self._release()

    def _after_fit(self) -> None:
        cfg = self.config[self.subcommand]
        best = next((cb.best_model_path for cb in self.trainer.checkpoint_callbacks if cb.monitor), "")
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if best and log_dir and self.trainer.logger is not None and self.trainer.is_global_zero:
            # (no logger: no run folder under the log root, so no experiment folder to link in)
            link = Path(log_dir).parent / "best.ckpt"
            link_best(Path(best), link)
            rank_zero_info(f"best checkpoint: {best} (linked as {link})")
        if not cfg.test_after_fit or self.trainer.interrupted:
            self._record(status="complete", tested=False)
            return
        try:
            results = self.trainer.test(
                self.model, datamodule=self.datamodule, ckpt_path=best or None, weights_only=True
            )
        except SystemExit as e:
            self._stopped(e.code, test=True)
            raise
        self._record(status="complete", tested=True, test=results[0] if results else {},
                     best_checkpoint=best or None)  # fmt: skip


def _short_rendezvous(strategy: Any, seconds: float) -> None:
    """The processes of a DDP run wait ``seconds`` for each other in init_process_group (torch: 30 silent
    minutes); the collectives after it keep the strategy's own timeout (a download on one process while the others
    wait at a barrier may take longer). A strategy that is pickled into spawned processes keeps torch's wait."""
    collective = getattr(strategy, "_timeout", None)
    setup = getattr(strategy, "setup_distributed", None)
    if not isinstance(collective, timedelta) or setup is None:
        return  # one process, or a strategy of another kind
    if getattr(getattr(strategy, "launcher", None), "_start_method", None) == "spawn":
        return

    def setup_distributed() -> None:
        strategy._timeout = timedelta(seconds=seconds)
        try:
            setup()
        finally:
            strategy._timeout = collective
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.set_timeout(collective)

    strategy.setup_distributed = setup_distributed


def _check_rendezvous_env(trainer: Any) -> None:
    """MASTER_PORT and NODE_RANK, read by a run across processes or nodes, are numbers in range: one line here,
    not Lightning's int() traceback once the processes start."""
    if not isinstance(getattr(trainer.strategy, "_timeout", None), timedelta):
        return  # one process: the variables are not read
    port = os.environ.get("MASTER_PORT")
    if port is not None and not (port.strip().isdigit() and 1 <= int(port) <= 65535):
        raise BadValue(f"MASTER_PORT {port!r} is not a port number (1..65535); set the same free port on every node "
                       f"rank, or unset it on one machine")  # fmt: skip
    node = os.environ.get("NODE_RANK")
    nodes = trainer.num_nodes
    if node is not None and not (node.strip().isdigit() and int(node) < nodes):
        raise BadValue(f"NODE_RANK {node!r} is not a node rank of trainer.num_nodes {nodes} (0..{nodes - 1})")


def rendezvous_error(exc: BaseException, trainer: Any, seconds: float) -> BadValue | None:
    """The one line for a process group whose processes did not all arrive within ``--ddp_timeout`` (torch raises
    a DistStoreError on the process that waits at MASTER_ADDR:MASTER_PORT, a DistNetworkError on one that finds
    nobody there); None for any other error."""
    err = error_in(exc, torch.distributed.DistError)
    text = str(err or "")
    if err is None or not re.search(r"timed out", text, re.IGNORECASE):
        return None
    env = getattr(trainer.strategy, "cluster_environment", None)
    where = f"{getattr(env, 'main_address', '?')}:{getattr(env, 'main_port', '?')}"
    nodes, devices, node = trainer.num_nodes, trainer.num_devices, trainer.node_rank
    waited = f"{seconds:g} s"
    joined = re.search(r"(\d+)/(\d+) clients joined", text)
    world = nodes * devices
    if joined is None:  # this process found nobody to join at the address
        return BadValue(
            f"node rank {node} found no node rank 0 at {where} within {waited} (MASTER_ADDR:MASTER_PORT): start "
            f"node rank 0 there, check the address and port, or wait longer with --ddp_timeout SECONDS"
        )
    came = int(joined.group(1))
    others = [str(r) for r in range(nodes) if r != node]
    who = (f"node rank {others[0]}" if len(others) == 1 else
           f"{world - came} process(es) of node ranks {', '.join(others)}")  # fmt: skip
    return BadValue(
        f"{who} did not join within {waited}: node rank {node} waited at {where} for {world} processes "
        f"({nodes} node ranks x {devices} device(s)) and {came} arrived; start every node rank with the same "
        f"MASTER_ADDR, MASTER_PORT and trainer.num_nodes, or wait longer with --ddp_timeout SECONDS"
    )


@contextmanager
def _rendezvous_said(trainer: Any, seconds: float) -> Iterator[None]:
    try:
        yield
    except Exception as e:
        missing = rendezvous_error(e, trainer, seconds)
        if missing is None:
            raise
        raise missing from None


def _check_unique_states(callbacks: list) -> None:
    """Two callbacks that keep a state in checkpoints under the same key (the same class with the same settings)
    would be indistinguishable on resume: one line here, before Lightning's traceback."""
    seen: dict[str, str] = {}
    for cb in callbacks:
        if type(cb).state_dict is Callback.state_dict:  # keeps no state
            continue
        name = type(cb).__name__
        if cb.state_key in seen:
            raise BadValue(
                f"trainer.callbacks has {name} twice with the same settings; give it once (a checkpoint could not "
                f"tell their states apart)"
            )
        seen[cb.state_key] = name


def config_files(args: Any) -> list[str]:
    """The existing files given with ``--config``/``-c`` in ``args`` (as on the command line; None: ``sys.argv``)."""
    import sys

    argv = sys.argv[1:] if args is None else args
    if not isinstance(argv, (list, tuple)):
        return []
    found = []
    for i, arg in enumerate(map(str, argv)):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            found.append(str(argv[i + 1]))
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    return [f for f in found if Path(f).is_file()]


def _class_path_error(message: str) -> str | None:
    """jsonargparse's report of a ``data.class_path`` it could not import, as one line listing our DataModules."""
    first = message.strip().split("\n", 1)[0]
    if first != 'Parser key "data":' or not re.search(
        r"has no attribute|No module named|Import path", message
    ):
        return None
    given = re.search(r"key='class_path', val='([^']+)'", message)
    name = f" {given.group(1)!r}" if given else ""
    return (
        f"data.class_path{name} is not a DataModule; give one of "
        f"{', '.join(f'cifar_pl.data.{n}' for n in list_datamodules())}, or the import path of your own "
        f"LightningDataModule"
    )
