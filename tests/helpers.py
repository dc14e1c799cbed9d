"""Callbacks the reliability tests load by class path into a training subprocess."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl


class PauseAt(pl.Callback):
    """At global step ``step``, write ``marker`` and sleep, so the test can kill the process mid-epoch."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            Path(self.marker).write_text(str(batch_idx))
            time.sleep(600)


class FailOnRank(pl.Callback):
    """Raise on one rank at one step: the DDP run must end with this error rather than hang."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            raise RuntimeError(f"deliberate failure on rank {self.rank} at step {self.step}")
