"""CifarCLI: LightningCLI with this project's links and defaults set in one place."""

from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import Namespace
from pytorch_lightning import LightningDataModule
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from . import data as _data  # noqa: F401  (DataModules must be imported to be found by short name)
from .lit import ImageClassifier

LOG_ROOT = "lightning_logs"


def _class_paths(callbacks) -> list[str]:
    out = []
    for cb in callbacks or []:
        path = (
            cb.get("class_path")
            if isinstance(cb, (dict, Namespace))
            else type(cb).__module__ + "." + type(cb).__name__
        )
        out.append(str(path))
    return out


class CifarCLI(LightningCLI):
    """``python -m cifar_pl {fit,validate,test,predict} --config configs/X.yaml``.

    * ``data.num_classes`` and ``data.classes`` are linked into the model;
    * ``experiment`` names the run: TensorBoard logs land in ``lightning_logs/<experiment>/version_N``,
      next to the run's ``config.yaml``;
    * ``checkpoint.*`` configures the ModelCheckpoint that keeps the best ``val/acc``; ``last_checkpoint.*``
      the one that rewrites ``last.ckpt`` after every validation (``every_n_train_steps`` for mid-epoch saves);
    * after ``fit``, ``lightning_logs/<experiment>/best.ckpt`` links to the best checkpoint of the newest run;
    * a rich progress bar, a LearningRateMonitor, the DataPreview (augmentation pictures in TensorBoard) and
      the TestReport (confusion matrix, mistakes and CAMs of the test set in TensorBoard) are added unless the config turns them off (no logger: no LR monitor and no preview).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("model_class", ImageClassifier)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        # ImageClassifier configures its own optimiser and schedule from plain values.
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str,
            default="default",
            help="run name: logs go to lightning_logs/<experiment>/version_N",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, score the best checkpoint (last weights if none) on the test set",
        )
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
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

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer = cfg.trainer
        version = None
        if self.subcommand == "fit" and cfg.get("ckpt_path"):
            cfg.ckpt_path, version = resolve_resume(cfg.ckpt_path, Path(LOG_ROOT) / cfg.experiment)
            if version is not None:  # the resumed run's config goes beside the first one, never over it
                run_dir = Path(LOG_ROOT) / cfg.experiment / f"version_{version}"
                n = 1
                while (run_dir / f"config_resume{n}.yaml").exists():
                    n += 1
                self.save_config_kwargs = {
                    **self.save_config_kwargs,
                    "config_filename": f"config_resume{n}.yaml",
                }
        if trainer.logger is None or trainer.logger is True:
            trainer.logger = Namespace(
                class_path="pytorch_lightning.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=LOG_ROOT, name=cfg.experiment, version=version),
            )
        trainer.callbacks = list(trainer.callbacks or [])
        present = _class_paths(trainer.callbacks)
        if not any("RNGState" in p for p in present):
            trainer.callbacks.append(
                Namespace(class_path="cifar_pl.callbacks.RNGState", init_args=Namespace())
            )
        if trainer.enable_progress_bar is not False and not any("ProgressBar" in p for p in present):
            trainer.callbacks.append(
                Namespace(
                    class_path="pytorch_lightning.callbacks.RichProgressBar", init_args=Namespace(leave=True)
                )
            )
        if trainer.logger is not False and not any("DataPreview" in p for p in present):
            trainer.callbacks.append(
                Namespace(class_path="cifar_pl.callbacks.DataPreview", init_args=Namespace())
            )
        if trainer.logger is not False and not any("TestReport" in p for p in present):
            trainer.callbacks.append(
                Namespace(class_path="cifar_pl.callbacks.TestReport", init_args=Namespace())
            )
        if trainer.logger is not False and not any("LearningRateMonitor" in p for p in present):
            trainer.callbacks.append(
                Namespace(
                    class_path="pytorch_lightning.callbacks.LearningRateMonitor",
                    init_args=Namespace(logging_interval="epoch"),
                )
            )

    def instantiate_trainer(self, **kwargs):
        # The checkpoint callbacks are always configured (checkpoint.*, last_checkpoint.*); drop them when the
        # run asks for no checkpointing, which the Trainer would otherwise refuse.
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if config.get("enable_checkpointing") is False:
            extra = [cb for cb in extra if not isinstance(cb, ModelCheckpoint)]
        return self._instantiate_trainer(config, extra)

    def after_fit(self) -> None:
        cfg = self.config[self.subcommand]
        best = next((cb.best_model_path for cb in self.trainer.checkpoint_callbacks if cb.monitor), "")
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if best and log_dir and self.trainer.is_global_zero:
            link_best(Path(best), Path(log_dir).parent / "best.ckpt")
        if not cfg.test_after_fit or self.trainer.interrupted:
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def latest_last_checkpoint(experiment_dir: Path) -> Path | None:
    """The newest ``version_*/checkpoints/last.ckpt`` of an experiment folder, or None."""
    found = sorted(experiment_dir.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_resume(ckpt_path: str, experiment_dir: Path) -> tuple[str, int | None]:
    """``fit --ckpt_path``: ``last`` means the newest ``last.ckpt`` of this experiment; a checkpoint inside
    ``<experiment>/version_N/checkpoints/`` continues in that version folder (same logs, same checkpoints)."""
    if ckpt_path == "last":
        path = latest_last_checkpoint(experiment_dir)
        if path is None:
            raise FileNotFoundError(
                f"--ckpt_path last: no last.ckpt under {experiment_dir}/version_*/checkpoints; nothing to resume "
                f"(check --experiment, or pass the checkpoint's path)"
            )
    else:
        path = Path(ckpt_path)
        if ckpt_path in ("best", "hpc", "registry") or not path.is_file():
            return ckpt_path, None  # Lightning's own keywords, or its own error for a missing file
    resolved, root = path.resolve(), experiment_dir.resolve()
    version = None
    if resolved.parent.name == "checkpoints" and resolved.parent.parent.parent == root:
        name = resolved.parent.parent.name
        if name.startswith("version_") and name[8:].isdigit():
            version = int(name[8:])
    return str(path), version


def link_best(target: Path, link: Path) -> None:
    """Point ``link`` (``lightning_logs/<experiment>/best.ckpt``) at the newest run's best checkpoint, so a
    later stage can name it (``init_from: lightning_logs/<experiment>/best.ckpt``) without knowing version_N.
    Replaced atomically; a real file of that name is left alone."""
    if link.exists() and not link.is_symlink():
        return
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()))
    os.replace(tmp, link)
    rank_zero_info(f"best checkpoint: {target} (linked as {link})")
