"""Callbacks the reliability tests load by class path into a training subprocess."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class PauseAt(pl.Callback):
    """At global step ``$PAUSE_AT_STEP``, write ``$PAUSE_MARKER`` and wait (up to 10 minutes), so the test can
    stop the process mid-epoch. Read from the environment, so the resumed run's configuration is the same as the
    stopped one's (an exact resume) while it does not pause. A signal ends the wait: the run then stops the way
    it would in the middle of real work."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if str(trainer.global_step) != os.environ.get("PAUSE_AT_STEP"):
            return
        Path(os.environ["PAUSE_MARKER"]).write_text(str(batch_idx))
        deadline = time.time() + 600
        while time.time() < deadline and not trainer.received_sigterm:
            time.sleep(0.05)


class FailOnRank(pl.Callback):
    """Raise on one rank at one step: the DDP run must end with this error rather than hang."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            raise RuntimeError(f"deliberate failure on rank {self.rank} at step {self.step}")
