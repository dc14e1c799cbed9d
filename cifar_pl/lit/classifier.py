"""ImageClassifier: the one LightningModule. It owns the loss, the metrics, the optimiser and the schedule;
the net is a plain ``nn.Module`` picked by name from the registry."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ..models import create_model, load_weights, split_parameters
from .schedule import LRMultiplier

STAGES = ("train", "val", "test")


class ImageClassifier(pl.LightningModule):
    """Classify images with a registered net.

    Args:
        net: registered net name (``cifar_pl.models.list_models()``).
        net_kwargs: extra arguments of that net's constructor.
        num_classes: classifier width; linked from ``data.num_classes`` by the CLI.
        class_names: names of the classes, kept in the checkpoint; linked from ``data.classes``.
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr: peak learning rate (after warmup).
        momentum, nesterov: SGD only.
        betas: Adam/AdamW only.
        weight_decay: L2 (SGD, Adam) or decoupled (AdamW) weight decay.
        no_decay_bn_bias: exempt BatchNorm weights and all biases (every 1-d parameter) from weight decay.
        body_lr_factor: LR of everything but the final classifier relative to ``lr`` (e.g. 0.1 to fine-tune a
            pretrained body gently while a new head learns fast). Frozen parameters (``FreezeBackbone``) stay
            in the optimiser without gradients, so unfreezing later needs no new parameter group.
        scheduler: ``constant``, ``multistep``, ``cosine`` or ``onecycle`` (torch's OneCycleLR, per step).
        interval: step the schedule every optimiser ``step`` or every ``epoch``.
        warmup_epochs: linear warmup length in epochs (fractions allowed); for onecycle, its rising part.
        milestones: epochs at which ``multistep`` multiplies the LR by ``gamma``.
        min_lr: where ``cosine`` ends.
        label_smoothing: of the cross-entropy loss.
        init_from: start the net from this weights file (our checkpoint or a plain state dict).
        init_strict: with ``init_from``, require every name and shape to fit; if false, load what fits
            and list the rest.
        channels_last: keep the net's weights and inputs in NHWC memory format (faster convolutions with
            tensor cores under bf16/fp16 on recent GPUs).
        compile: compile the net's forward with ``torch.compile`` (the first steps are slow while it compiles).
        compile_mode: ``torch.compile`` mode: None (default), ``reduce-overhead``, ``max-autotune``, ...
    """

    def __init__(
        self,
        net: str = "model_g",
        net_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        class_names: list[str] | None = None,
        optimizer: Literal["sgd", "adam", "adamw"] = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 5e-4,
        no_decay_bn_bias: bool = False,
        body_lr_factor: float = 1.0,
        scheduler: Literal["constant", "multistep", "cosine", "onecycle"] = "cosine",
        interval: Literal["step", "epoch"] = "step",
        warmup_epochs: float = 0.0,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        min_lr: float = 0.0,
        label_smoothing: float = 0.0,
        init_from: str | None = None,
        init_strict: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        self.net = create_model(net, num_classes=num_classes, **(net_kwargs or {}))
        self.class_names = list(class_names) if class_names is not None else None
        self._weights_loaded = init_from is None
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._compiled = False
        size = getattr(self.net, "fixed_input_size", None) or (32, 32)
        self.example_input_array = torch.zeros(2, 3, *size)  # lets the model summary show shapes

        top_k = min(5, num_classes)
        # One metric set and one loss mean per stage ("train" cannot be a ModuleDict key: it is a method).
        for stage in STAGES:
            setattr(self, f"{stage}_metrics", MetricCollection(
                {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                 f"acc{top_k}": MulticlassAccuracy(num_classes, top_k=top_k, average="micro")},
                prefix=f"{stage}/",
            ))  # fmt: skip
            setattr(self, f"{stage}_loss", MeanMetric())
        self._epoch_start: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=self._memory_format))

    def configure_model(self) -> None:
        # Once per process, after the module is on its device: memory format, then compilation. The net is
        # compiled in place (nn.Module.compile), so state-dict keys and checkpoints are unchanged.
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._compiled:
            self.net.compile(mode=self.hparams.compile_mode)
            self._compiled = True

    # ---- weights from elsewhere ----
    def setup(self, stage: str) -> None:
        # Here rather than in __init__, so load_from_checkpoint never needs the original weights file;
        # a later `ckpt_path` restore still overrides these weights.
        if self._weights_loaded:
            return
        report = load_weights(self.net, self.hparams.init_from, strict=self.hparams.init_strict)
        rank_zero_info(f"init_from: loaded {len(report.loaded)} tensors from {self.hparams.init_from}")
        for key in report.skipped:
            rank_zero_warn(f"init_from: skipped {key}")
        self._weights_loaded = True

    # ---- steps ----
    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        # Soft (N x C) targets, e.g. from MixUp, go straight into the loss; metrics score their argmax.
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        hard = y if y.dim() == 1 else y.argmax(dim=1)
        metrics, mean_loss = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        metrics.update(logits.detach(), hard)
        mean_loss.update(loss.detach(), weight=len(x))
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        # One device sync per step (the progress bar, when shown, makes the same one to print the loss).
        if not torch.isfinite(loss):
            raise FloatingPointError(self._non_finite_message(loss, batch_idx))
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

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
            f"training loss is {loss.item()} at {where}. Try a lower learning rate (--model.lr), gradient clipping "
            f"(--trainer.gradient_clip_val 1.0), warmup (--model.warmup_epochs 1) or full precision "
            f"(--trainer.precision 32-true){last}"
        )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

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

    # ---- optimiser and schedule ----
    def _param_groups(self) -> list[dict[str, Any]]:
        hp = self.hparams
        # Every parameter, trainable now or not: a frozen one has no gradient, so the optimiser skips it
        # (no update, no weight decay, no momentum) until a callback unfreezes it.
        params = list(self.parameters())
        if hp.body_lr_factor == 1:
            parts = [("all", params, hp.lr)]
        else:
            body, head = split_parameters(self.net)
            parts = [("body", body, hp.lr * hp.body_lr_factor), ("classifier", head, hp.lr)]
        groups = []
        for name, ps, lr in parts:
            if not hp.no_decay_bn_bias or hp.weight_decay == 0:
                groups.append({"name": name, "params": ps, "lr": lr, "weight_decay": hp.weight_decay})
                continue
            groups.append({"name": name, "params": [p for p in ps if p.ndim > 1], "lr": lr,
                           "weight_decay": hp.weight_decay})  # fmt: skip
            groups.append({"name": f"{name}_no_decay", "params": [p for p in ps if p.ndim <= 1], "lr": lr,
                           "weight_decay": 0.0})  # fmt: skip
        groups = [g for g in groups if g["params"]]
        if len(groups) == 1:  # one group logs its LR as plain `lr-SGD`
            del groups[0]["name"]
        return groups

    def configure_optimizers(self):
        hp = self.hparams
        groups = self._param_groups()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=hp.lr, betas=tuple(hp.betas))
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        else:
            raise ValueError(f"Unknown optimizer '{hp.optimizer}'; choose one of sgd, adam, adamw")

        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        batches = self.trainer.num_training_batches
        accumulate = self.trainer.accumulate_grad_batches
        steps_per_epoch = max(1, math.ceil(batches / accumulate)) if math.isfinite(batches) else total_steps
        warmup = round(hp.warmup_epochs * steps_per_epoch)
        if hp.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in groups],
                total_steps=total_steps,
                pct_start=min(0.99, warmup / total_steps) if warmup else 0.3,
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if hp.scheduler not in ("constant", "multistep", "cosine"):
            raise ValueError(
                f"Unknown scheduler '{hp.scheduler}'; choose one of constant, multistep, cosine, onecycle"
            )
        per_step = hp.interval == "step"
        multiplier = LRMultiplier(
            kind=hp.scheduler,
            total_steps=total_steps,
            steps_per_count=1 if per_step else steps_per_epoch,
            warmup_steps=warmup,
            milestones=tuple(m * steps_per_epoch for m in (hp.milestones or [])),
            gamma=hp.gamma,
            min_factor=hp.min_lr / hp.lr if hp.lr > 0 else 0.0,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": hp.interval}}
