"""ImageClassifier: the one LightningModule. It owns the loss, the metrics, the optimiser and the schedule;
the net is a plain ``nn.Module`` picked by name from the registry."""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ..checks import check_class_names, check_number
from ..errors import BadValue, TrainingDiverged
from ..models import create_model, get_cfg, init_weights, load_weights, norm_parameters, split_parameters
from ..renames import MODEL_KEYS, model_args
from .average import WeightAverage
from .optim import KerasRMSprop
from .options import GROUPS, Average, Evaluation, Init, Optim, Runtime, Schedule
from .schedule import LRMultiplier, PlannedLR, milestone_factors
from .tta import tta_logits

STAGES = ("train", "val", "test")
KERAS_RMSPROP_EPS = 1e-7  # Keras' epsilon (torch's RMSprop default is 1e-8)


def _regrouped(old_keys: dict[str, Any], **groups: Any) -> tuple[Any, ...]:
    """The groups of ImageClassifier with its flat keyword arguments of before 2026-12 (``lr=0.1``) moved in
    (``cifar_pl.renames.MODEL_KEYS``); a group's own value wins over an old key. A name that never was an
    argument is a TypeError, as Python says it."""
    unknown = sorted(set(old_keys) - set(MODEL_KEYS))
    if unknown:
        raise TypeError(f"ImageClassifier.__init__() got unexpected keyword argument(s) {', '.join(unknown)}")
    by_key = {g.KEY: g for g in GROUPS}
    given = {}
    for key, value in groups.items():
        # only what differs from the defaults, so that an old key can fill the rest
        if isinstance(value, by_key[key]):
            default = by_key[key]().plain()
            value = {k: v for k, v in value.plain().items() if v != default[k]}
        given[key] = value
    merged = model_args({**given, **old_keys}, where="ImageClassifier")
    return tuple(merged[key] for key in groups)


class ImageClassifier(pl.LightningModule):
    """Classify images with a registered net.

    Args:
        net: registered net name (``cifar_pl.models.list_models()``).
        net_kwargs: extra arguments of that net's constructor.
        num_classes: classifier width; linked from ``data.num_classes`` by the CLI.
        class_names: names of the classes, kept in the checkpoint; linked from ``data.classes``.
        image_size: the side of the images the data hands out; linked from ``data.image_size`` by the CLI. A net
            whose head is built for one size (``NetCfg.sized``: the flatten-head CNNs) is built for this one; the
            checkpoint keeps it, and prediction resizes to it.
        label_smoothing: of the cross-entropy loss.
        optim: the optimiser (``cifar_pl.lit.options.Optim``: ``model.optim.name``, ``.lr``, ``.weight_decay``, ...).
        schedule: the LR schedule (``Schedule``: ``model.schedule.name``, ``.warmup_epochs``, ...).
        average: the weight average that evaluation uses (``Average``: ``model.average.decay``, ...).
        evaluation: test-time augmentation (``Evaluation``: ``model.evaluation.tta``).
        runtime: memory format, compilation, device waits (``Runtime``: ``model.runtime.compile``, ...).
        init: where the weights start (``Init``: ``model.init.scheme``, ``.weights``, ``.strict``).

    Each group checks its own values and declares which of them an exact resume may change
    (``cifar_pl.lit.options``). Checkpoints, configs and keyword arguments written with the earlier flat keys
    (``model.lr``, ``ImageClassifier(lr=0.1)``, ...) still work: ``cifar_pl.renames`` maps them and says the new
    key (CHANGELOG.md lists them).
    """

    def __init__(
        self,
        net: str = "model_g",
        net_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        class_names: list[str] | None = None,
        image_size: int | None = None,
        label_smoothing: float = 0.0,
        optim: Optim = Optim(),  # noqa: B008  (copied by Optim.of: never shared between modules)
        schedule: Schedule = Schedule(),  # noqa: B008
        average: Average = Average(),  # noqa: B008
        evaluation: Evaluation = Evaluation(),  # noqa: B008
        runtime: Runtime = Runtime(),  # noqa: B008
        init: Init = Init(),  # noqa: B008
        **old_keys: Any,
    ):
        super().__init__()
        if old_keys:  # ImageClassifier(lr=0.1) of before the grouping: read into the groups, said once
            optim, schedule, average, evaluation, runtime, init = _regrouped(
                old_keys, optim=optim, schedule=schedule, average=average, evaluation=evaluation,
                runtime=runtime, init=init,
            )  # fmt: skip
            old_keys = {}  # noqa: F841  (emptied: save_hyperparameters would record them as they came)
        self.save_hyperparameters()
        self.optim, self.schedule, self.average = Optim.of(optim), Schedule.of(schedule), Average.of(average)
        self.evaluation, self.runtime, self.init = (
            Evaluation.of(evaluation),
            Runtime.of(runtime),
            Init.of(init),
        )
        # hyper-parameters hold plain values (checkpoints are read with weights_only)
        for group in GROUPS:
            self.hparams[group.KEY] = getattr(self, group.KEY).plain()
        self._check_arguments()
        self.net = init_weights(
            create_model(net, num_classes=num_classes, **self.net_kwargs_for(net, net_kwargs, image_size)),
            self.init.scheme,
        )
        # a copy whose weights follow the net's; evaluation uses it
        self.ema: WeightAverage | None = WeightAverage(self.net) if self.average.decay is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self._weights_loaded = self.init.weights is None
        self._memory_format = torch.channels_last if self.runtime.channels_last else torch.contiguous_format
        self._compiled = False
        # Where this run's stage began (a new stage from `fit --ckpt_path` continues the counters of its parent);
        # the schedule's horizon counts from here. Saved in every checkpoint.
        self.stage: dict[str, Any] = {"start_epoch": 0, "start_step": 0, "parent": None}
        side = (
            getattr(self.net, "fixed_input_size", None)
            or (image_size or get_cfg(net, net_kwargs).input_size,) * 2
        )
        self.example_input_array = torch.zeros(2, 3, *side)  # lets the model summary show shapes

        # One metric set and one loss mean per stage ("train" cannot be a ModuleDict key: it is a method). Top-5
        # accuracy only above 5 classes: with 5 or fewer it is 1.0 whatever the net does.
        for stage in STAGES:
            metrics = {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
            if num_classes > 5:
                metrics["acc5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
            setattr(self, f"{stage}_metrics", MetricCollection(metrics, prefix=f"{stage}/"))
            setattr(self, f"{stage}_loss", MeanMetric())
        # Accumulated in test_step; computed (a collective under DDP) at the end of the test epoch for the report.
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_confusion_matrix: torch.Tensor | None = None
        #: (logits, labels) of the last test pass, in its loader's order; one process only (else None)
        self.test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._epoch_start: float | None = None
        self.best_val_acc: float | None = None  # logged as val/acc_best; kept in checkpoints

    @staticmethod
    def net_kwargs_for(net: str, net_kwargs: dict[str, Any] | None, image_size: int | None) -> dict[str, Any]:
        """The net's arguments; a net built for one image size (``NetCfg.sized``) gets the data's."""
        kwargs = dict(net_kwargs or {})
        if image_size is None or not get_cfg(net, kwargs).sized:
            return kwargs
        given = kwargs.get("input_size")
        if given is not None and given != image_size:
            raise BadValue(
                f"model.net_kwargs.input_size {given} is not the data's image size {image_size}: drop "
                f"net_kwargs.input_size ({net} is built for the data's size) or change data.image_size"
            )
        kwargs["input_size"] = image_size
        return kwargs

    def _check_arguments(self) -> None:
        """Every argument in its range, named, at construction (not at the first step)."""
        hp = self.hparams
        check_number("model.num_classes", hp.num_classes, 2, integer=True)
        if hp.class_names is not None:
            check_class_names("model.class_names", hp.class_names)
            if len(hp.class_names) != hp.num_classes:
                raise BadValue(f"{len(hp.class_names)} class_names for num_classes={hp.num_classes}")
        weight_args = get_cfg(hp.net, hp.net_kwargs).weight_args or {}
        loads = [k for k, off in weight_args.items() if (hp.net_kwargs or {}).get(k, off) != off]
        if self.init.scheme != "default" and loads:
            raise BadValue(
                f"model.init.scheme {self.init.scheme} would overwrite the weights that net_kwargs.{loads[0]} loads; "
                f"drop one of them"
            )
        check_number("model.label_smoothing", hp.label_smoothing, 0, 1, hi_open=True)
        if hp.image_size is not None:
            check_number("model.image_size", hp.image_size, 8, 4096, integer=True)
        self.optim.check()
        self.schedule.check(self.optim.lr)
        self.average.check()
        self.evaluation.check()
        self.runtime.check()
        self.init.check()

    @property
    def eval_net(self) -> torch.nn.Module:
        """The net that validation, test and prediction use: the weight average once it has begun."""
        return self.ema.module if self.ema is not None and self.ema.is_started else self.net

    def forward(self, x: torch.Tensor, tta: bool = True) -> torch.Tensor:
        """Training: the net's logits. Evaluation: the average's (when there is one), over the ``tta`` views
        unless ``tta`` is false (validation: one view)."""
        x = x.contiguous(memory_format=self._memory_format)
        if self.training:
            return self.net(x)
        return tta_logits(self.eval_net, x, self.evaluation.tta if tta else "none")

    def configure_model(self) -> None:
        # Once per process, after the module is on its device: memory format, then compilation. The net is
        # compiled in place (nn.Module.compile), so state-dict keys and checkpoints are unchanged.
        if self.runtime.channels_last:
            self.net.to(memory_format=torch.channels_last)
            if self.ema is not None:
                self.ema.to(memory_format=torch.channels_last)
        if self.runtime.compile and not self._compiled:
            self.net.compile(mode=self.runtime.compile_mode)
            self._compiled = True

    # ---- weights from elsewhere ----
    def setup(self, stage: str) -> None:
        # Here rather than in __init__, so load_from_checkpoint never needs the original weights file;
        # a later `ckpt_path` restore still overrides these weights.
        if self._weights_loaded:
            return
        report = load_weights(self.net, self.init.weights, strict=self.init.strict)
        rank_zero_info(f"init.weights: loaded {len(report.loaded)} tensors from {self.init.weights}")
        for key in report.skipped:
            rank_zero_warn(f"init.weights: skipped {key}")
        self._weights_loaded = True

    # ---- steps ----
    def _shared_step(self, batch, stage: str, return_logits: bool = False) -> torch.Tensor:
        x, y = batch
        logits = self(x, tta=stage == "test")
        # Soft (N x C) targets, e.g. from MixUp, go straight into the loss; metrics score their argmax.
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        hard = y if y.dim() == 1 else y.argmax(dim=1)
        metrics, mean_loss = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        metrics.update(logits.detach(), hard)
        mean_loss.update(loss.detach(), weight=len(x))
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        loss_key = getattr(self, "_test_loss_key", "test/loss") if stage == "test" else f"{stage}/loss"
        self.log(loss_key, mean_loss, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return logits if return_logits else loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        # Waits for the device (the progress bar, when shown, makes the same wait to print the loss): every
        # `sync_every` steps only.
        every = self.runtime.sync_every
        if every and self.global_step % every == 0 and not torch.isfinite(loss):
            raise TrainingDiverged(self._non_finite_message(loss, batch_idx))
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=every == 1)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        avg = self.average
        if self.ema is None or self.global_step % avg.every:
            return
        decay = avg.decay
        if avg.ramp:  # small early (the average follows the net), average.decay at the end of the run
            total = max(1, self.trainer.estimated_stepping_batches)
            decay *= min(1.0, self.global_step / total) ** avg.ramp
        self.ema.update(self.net, decay)
        if avg.lookahead:  # the trained weights jump to the average
            self.ema.copy_to(self.net)

    def _non_finite_message(self, loss: torch.Tensor, batch_idx: int) -> str:
        trainer = self._trainer
        where = (
            f"epoch {trainer.current_epoch}, step {trainer.global_step} (batch {batch_idx})"
            if trainer
            else f"batch {batch_idx}"
        )
        last = ""
        if trainer is not None:
            saved = [cb.last_model_path or cb.best_model_path for cb in trainer.checkpoint_callbacks]
            saved = [p for p in saved if p]
            last = f"; the last good checkpoint is {saved[0]} (resume with --ckpt_path)" if saved else ""
        return (
            f"training loss is {loss.item()} at {where}. Try a lower learning rate (--model.optim.lr), gradient "
            f"clipping (--trainer.gradient_clip_val 1.0), warmup (--model.schedule.warmup_epochs 1) or full precision "
            f"(--trainer.precision 32-true){last}"
        )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def on_test_start(self) -> None:
        # A DataModule whose test split is its validation split (photos without test_size/test_dir) says so; the
        # figures are then logged (and printed) as test_on_val/..., never mistaken for a held-out test.
        on_val = bool(getattr(self.trainer.datamodule, "test_is_validation", False))
        self.test_metrics.prefix = "test_on_val/" if on_val else "test/"
        self._test_loss_key = "test_on_val/loss" if on_val else "test/loss"
        # The test pass's own logits and labels (CPU, float32), kept for the gallery of mistakes, which would
        # otherwise run the whole pass (with its TTA views) a second time. One process only: under DDP each
        # rank sees a strided share, and the report runs its own pass.
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] | None = (
            [] if self.trainer.world_size == 1 else None
        )
        self.test_outputs = None

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self._shared_step(batch, "test", return_logits=True)
        hard = y if y.dim() == 1 else y.argmax(dim=1)
        self.test_confusion.update(logits.detach(), hard)
        if self._test_outputs is not None:
            self._test_outputs.append(
                (logits.detach(), hard.detach())
            )  # to the host once, at the epoch's end

    def on_test_epoch_end(self) -> None:
        self.test_confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        if self._test_outputs:
            logits, labels = zip(*self._test_outputs, strict=True)
            self.test_outputs = (torch.cat(logits).to("cpu", torch.float32), torch.cat(labels).cpu())
        self._test_outputs = None

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        probs = self(x).softmax(dim=1)
        return {"probs": probs, "preds": probs.argmax(dim=1)}

    # ---- epoch wall time ----
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        if self._epoch_start is not None:  # includes the validation run at the end of the epoch
            self.log(
                "train/epoch_time", time.perf_counter() - self._epoch_start, on_epoch=True, sync_dist=True
            )
        # the epochs this run has trained (its HParams row's count, which a resume with more epochs moves on)
        self.log("train/epochs_done", float(self.current_epoch + 1), on_epoch=True)

    # ---- optimiser and schedule ----
    def _param_groups(self) -> list[dict[str, Any]]:
        hp = self.optim
        # Every parameter of the net, trainable now or not: a frozen one has no gradient, so the optimiser skips
        # it (no update, no weight decay, no momentum) until a callback unfreezes it. (The weight average, when
        # there is one, is not trained.)
        params = list(self.net.parameters())
        if hp.body_lr_factor == 1:
            parts = [("all", params, hp.lr)]
        else:
            body, head = split_parameters(self.net)
            parts = [("body", body, hp.lr * hp.body_lr_factor), ("classifier", head, hp.lr)]
        # Normalisation layers' parameters may learn faster (bias_lr_factor, with their decay coefficient divided
        # by the same factor: the same decay per step), and 1-d parameters may be spared decay (no_decay_bn_bias).
        fast_ids = {id(p) for p in norm_parameters(self.net)} if hp.bias_lr_factor != 1 else set()
        groups = []
        for name, ps, lr in parts:
            for fast, spared, suffix in ((False, False, ""), (True, False, "_norm"), (False, True, "_no_decay"),
                                         (True, True, "_norm_no_decay")):  # fmt: skip
                chosen = [
                    p
                    for p in ps
                    if (id(p) in fast_ids) == fast and (hp.no_decay_bn_bias and p.ndim <= 1) == spared
                ]
                factor = hp.bias_lr_factor if fast else 1.0
                decay = 0.0 if spared else hp.weight_decay / factor
                groups.append(
                    {"name": name + suffix, "params": chosen, "lr": lr * factor, "weight_decay": decay}
                )
        groups = [g for g in groups if g["params"]]
        if len(groups) == 1:  # one group logs its LR as plain `lr-SGD`
            del groups[0]["name"]
        return groups

    def configure_optimizers(self):
        hp = self.optim
        groups = self._param_groups()
        if hp.name == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)
        elif hp.name == "adam":
            opt = torch.optim.Adam(groups, lr=hp.lr, betas=tuple(hp.betas))
        elif hp.name == "rmsprop":
            opt = torch.optim.RMSprop(groups, lr=hp.lr, alpha=hp.rho, momentum=hp.rmsprop_momentum)
        elif hp.name == "rmsprop_keras":
            opt = KerasRMSprop(
                groups, lr=hp.lr, rho=hp.rho, eps=KERAS_RMSPROP_EPS, momentum=hp.rmsprop_momentum
            )
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        multiplier = self.schedule_plan()
        cycle = self.schedule.cycle_momentum
        momentum = tuple(cycle) if cycle is not None else None
        # Stepped every optimiser step whatever `interval` says: warmup rises per step, and `per_epoch` in the
        # plan holds the rest of the schedule still within an epoch.
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": PlannedLR(opt, multiplier, momentum), "interval": "step"},
        }

    def schedule_plan(self) -> LRMultiplier:
        """The LR multiplier for this stage of the run, planned over its horizon: the steps from the stage's
        first epoch to ``max_epochs`` (or ``max_steps``) with the trainer's current batches per epoch.

        Before the training loader exists (``configure_optimizers`` runs before it is built and before a
        checkpoint is restored) the plan is provisional, and ``on_train_start`` plans again: asking Lightning for
        ``estimated_stepping_batches`` here would build the loader early, and a loader built before the restore
        never gets its place in the epoch back."""
        hp, trainer = self.schedule, self.trainer
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            return LRMultiplier(kind=hp.name, total_steps=1)  # provisional: no step is taken with it
        steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        horizons = []
        if trainer.max_steps is not None and trainer.max_steps != -1:
            horizons.append(trainer.max_steps - self.stage["start_step"])
        if trainer.max_epochs is not None and trainer.max_epochs != -1:
            horizons.append(steps_per_epoch * (trainer.max_epochs - self.stage["start_epoch"]))
        total = max(1, min(horizons) if horizons else steps_per_epoch)
        warmup = (
            int(hp.warmup_share * total)  # as airbench counts it: int(0.23 * total_train_steps)
            if hp.warmup_share is not None
            else round(hp.warmup_epochs * steps_per_epoch)
        )
        if warmup >= total and hp.warmup_epochs > 0 and not trainer.fast_dev_run:
            raise BadValue(
                f"model.schedule.warmup_epochs {hp.warmup_epochs} ({warmup} steps) is as long as the run ({total} "
                f"steps); "
                f"shorten the warmup or raise trainer.max_epochs"
            )
        milestones = tuple(m * steps_per_epoch for m in (hp.milestones or []))
        return LRMultiplier(
            kind=hp.name,
            total_steps=total,
            steps_per_epoch=steps_per_epoch,
            per_epoch=hp.interval == "epoch",
            warmup_steps=warmup,
            warmup_mode=hp.warmup_mode,
            warmup_factor=hp.warmup_factor,
            milestones=milestones,
            gammas=milestone_factors(hp.gamma, milestones),
            min_factor=hp.min_lr / self.optim.lr if self.optim.lr > 0 else 0.0,
            pct_start=min(0.99, warmup / total) if warmup else 0.3,
        )

    def on_train_start(self) -> None:
        # The loader exists and a checkpoint, if any, is restored: plan the schedule over the real horizon,
        # from the step the run is at.
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, PlannedLR):
                config.scheduler.replan(self.schedule_plan())

    def on_validation_epoch_end(self) -> None:
        # The best validation accuracy so far, one of the HParams tab's metrics (cifar_pl.logger).
        if self.trainer.sanity_checking:
            return
        acc = float(self.val_metrics["acc"].compute())
        self.best_val_acc = acc if self.best_val_acc is None else max(self.best_val_acc, acc)
        self.log("val/acc_best", self.best_val_acc, on_step=False, on_epoch=True)

    # ---- stages: where the counters started, in every checkpoint ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cifar_pl_stage"] = dict(self.stage)
        checkpoint["cifar_pl_best_val_acc"] = self.best_val_acc

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("cifar_pl_stage")
        if isinstance(saved, dict):
            self.stage = {**self.stage, **saved}
        best = checkpoint.get("cifar_pl_best_val_acc")
        if isinstance(best, float):
            self.best_val_acc = best
