"""A stopped run is always resumable: SIGTERM (a scheduler, ``docker stop``, ``timeout``) or Ctrl+C ends training
at the next step boundary with ``last.ckpt`` written, and the process exits with 128 + the signal's number."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def last_checkpoint_path(trainer: pl.Trainer) -> Path | None:
    """Where ``last.ckpt`` goes: the folder of the checkpoint callback that writes it."""
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "filename", None) == "last" and cb.dirpath:
            return Path(cb.dirpath) / "last.ckpt"
    return None


class GracefulStop(pl.Callback):
    """On the first SIGTERM or SIGINT, ask Lightning to stop after the current step (its own SIGTERM flag, which
    it also passes to DDP ranks); when the stop arrives in training, write ``last.ckpt`` there (the training
    loader's place in the epoch goes with it, so ``fit --ckpt_path last`` continues with the very next batch)
    and make the process exit with 128 + signal. A second signal stops at once, as Ctrl+C twice would."""

    def __init__(self):
        self.signum: int | None = None
        self.saved: Path | None = None
        self._trainer: pl.Trainer | None = None
        self._previous: dict[int, object] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for sig in _SIGNALS:  # Lightning adds its own SIGTERM handler later, keeping this one in its chain
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: stop now, whatever the step
        self.signum = signum
        rank_zero_info(
            f"\nreceived {signal.Signals(signum).name}: stopping after this step and saving last.ckpt "
            f"(send it again to stop at once)"
        )
        if self._trainer is not None:
            self._trainer._signal_connector.received_sigterm = (
                True  # Lightning stops at the next step boundary
            )

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        signum = self.signum or signal.SIGTERM
        exception.code = 128 + signum  # Lightning's own exit says 0; a stopped run must not look finished
        path = last_checkpoint_path(trainer)
        if trainer.training and path is not None:
            # Lightning raises only between steps, so weights, optimiser, loop counters and the loader's place
            # in the epoch are consistent here.
            trainer.save_checkpoint(path, weights_only=False)  # the full training state, not weights alone
            self.saved = path
        elif path is not None and path.is_file():
            self.saved = path  # stopped outside a training step: the last checkpoint written stands
