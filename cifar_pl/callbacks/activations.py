"""Activation statistics over training: the distribution of what enters each non-linearity, recorded every few
steps, for the "internal covariate shift" experiments (Ioffe & Szegedy 2015, figure 1; Santurkar et al. 2018)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from ..checks import check_number
from ..runs import ACTIVATION_FIELDS as FIELDS
from ..runs import write_activation_stats

NONLINEARITIES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)
QUANTILES = (0.15, 0.5, 0.85)  # the percentiles Ioffe & Szegedy draw


def spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced over them, first and last kept (the last alone when n = 1)."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return items[-1:]
    return [items[i] for i in sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})]


def nonlinearity_inputs(net: nn.Module, max_layers: int) -> list[tuple[str, nn.Module]]:
    """The net's non-linearities in forward order, thinned to ``max_layers`` evenly spaced ones."""
    return spread([(name, m) for name, m in net.named_modules() if isinstance(m, NONLINEARITIES)], max_layers)


class ActivationStats(pl.Callback):
    """Every ``every_n_steps`` training steps, the input of each chosen non-linearity of ``model.net`` (after
    BatchNorm and any injected noise: the pre-activation whose drift "internal covariate shift" names) is
    summarised on that training batch: mean, std and the 15th/50th/85th percentiles (of at most ``sample``
    values, taken at a fixed stride so no random state is used). They go to TensorBoard as
    ``activations/<layer>/{mean,std,p15,p50,p85}`` and, with ``histograms``, as histograms
    ``activations/<layer>``; the whole history is kept in checkpoints (a resumed run draws its whole run) and
    written to ``activation_stats.json`` in the run folder at the end of fit (also when stopped by a signal).
    ``python -m cifar_pl.viz activations RUN [RUN ...]`` draws the drift of several runs side by side.
    Hooks fire in eager mode; under ``compile: true`` the compiled graph does not call them."""

    def __init__(
        self, every_n_steps: int = 50, max_layers: int = 8, histograms: bool = True, sample: int = 65536
    ):
        check_number("ActivationStats every_n_steps", every_n_steps, 1, integer=True)
        check_number("ActivationStats max_layers", max_layers, 1, 64, integer=True)
        check_number("ActivationStats sample", sample, 100, 2**24, integer=True)
        self.every_n_steps, self.max_layers, self.histograms, self.sample = (
            every_n_steps,
            max_layers,
            histograms,
            sample,
        )
        self.history: dict[str, list[list[float]]] = {}
        self._handles: list[Any] = []
        self._recording = False
        self._batch: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- hooks on the net ----
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self._handles:
            return
        net = getattr(pl_module, "net", pl_module)
        for name, module in nonlinearity_inputs(net, self.max_layers):
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def record(module: nn.Module, args: tuple) -> None:
            if not self._recording or not args or not isinstance(args[0], torch.Tensor):
                return
            flat = args[0].detach().flatten()
            if flat.numel() > self.sample:  # a fixed stride: no random state touched
                flat = flat[:: flat.numel() // self.sample][: self.sample]
            flat = flat.to(torch.float32, copy=True)  # an in-place non-linearity overwrites its input next
            q = torch.quantile(flat, torch.tensor(QUANTILES, device=flat.device))
            self._batch[name] = (torch.stack([flat.mean(), flat.std(), *q]), flat)

        return record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._recording = trainer.global_step % self.every_n_steps == 0
        self._batch = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._recording:
            return
        self._recording = False
        step = trainer.global_step - 1  # the step this batch trained (the counter has moved on)
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        for name, (stats, values) in self._batch.items():
            row = [float(step), *(float(v) for v in stats.cpu())]
            self.history.setdefault(name, []).append(row)
            if logger is not None and trainer.is_global_zero:
                for field, value in zip(FIELDS[1:], row[1:], strict=True):
                    logger.experiment.add_scalar(f"activations/{name}/{field}", value, step)
                if self.histograms:
                    logger.experiment.add_histogram(f"activations/{name}", values.cpu(), step)
        self._batch = {}

    # ---- the history: in checkpoints and, at the end, beside the logs ----
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        history = state_dict.get("history")
        if isinstance(history, dict):
            self.history = {str(k): [list(map(float, r)) for r in v] for k, v in history.items()}

    @rank_zero_only
    def _write(self, trainer: pl.Trainer) -> None:
        log_dir = getattr(trainer.logger, "log_dir", None) if trainer.logger else None
        if log_dir and self.history:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            write_activation_stats(Path(log_dir), self.history)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._write(trainer)
