"""The run's whole configuration travels in every checkpoint, so a later ``fit --ckpt_path`` can tell an exact
resume from a new stage and list what changed."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from ..weights_io import RUN_CONFIG_KEY


class RunConfig(pl.Callback):
    """Holds the configuration (plain values, as ``--print_config`` shows it) and saves it in checkpoints."""

    def __init__(self, config: dict[str, Any] | None = None):
        self.config = config or {}

    @property
    def state_key(self) -> str:
        return RUN_CONFIG_KEY

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the configuration of this run is the one it was started with, never the checkpoint's


class StageStart(pl.Callback):
    """A new stage continues its parent's counters: before the first epoch, set the epoch, the optimiser step
    (``global_step``) and the logging step, so the TensorBoard curves of both stages join on one axis."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        for tracker in (loop.epoch_progress.total, loop.epoch_progress.current):
            tracker.ready = tracker.started = tracker.processed = tracker.completed = self.epoch
        optimizer = loop.epoch_loop.automatic_optimization.optim_progress.optimizer
        for tracker in (optimizer.step.total, optimizer.zero_grad.total):
            tracker.ready = tracker.completed = self.step
        optimizer.zero_grad.total.started = self.step
        loop.epoch_loop._batches_that_stepped = self.step
