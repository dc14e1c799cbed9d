"""A stopped run is always resumable, and says where it can resume from.

SIGTERM (a scheduler, ``docker stop``, ``timeout``) or Ctrl+C during training ends it at the next step boundary with
``last.ckpt`` written there; during validation, the validation pass is finished first and ``last.ckpt`` is the one
an uninterrupted run writes after it, so ``fit --ckpt_path last`` redoes nothing. Outside the training loop (the
data being prepared, the sanity check, the test after fit) and at a second signal the run stops at once; nothing
new is saved and the last checkpoint written stands (a second SIGTERM within 3 s of the first is taken as the same
stop passed on twice, not as "stop now"). The process exits with 128 + the signal's number. A ``fast_dev_run``
has no run folder and saves nothing.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# a second SIGTERM this soon after the first is the same stop passed on twice (e.g. by a launcher and by the
# operating system when a sweep's worker dies); a second Ctrl-C, or a SIGTERM later, stops at once
SAME_STOP_S = 3.0


def _distributed(trainer: pl.Trainer) -> bool:
    import torch.distributed as dist

    return trainer.world_size > 1 and dist.is_available() and dist.is_initialized()


class StopNow(SIGTERMException):
    """A stop that cannot wait for a step boundary (a second signal, or one outside the training loop): nothing is
    saved, the last checkpoint written stands. A ``SystemExit`` carrying 128 + signal, so Lightning tears down and
    passes it on, and ``except Exception`` blocks do not swallow it."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def last_checkpoint_callback(trainer: pl.Trainer) -> pl.callbacks.ModelCheckpoint | None:
    """The checkpoint callback that writes ``last.ckpt``; none under ``fast_dev_run``, which has no run folder (the
    callback's folder would be ``./checkpoints`` of wherever the command started) and saves nothing."""
    if trainer.fast_dev_run:
        return None
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "filename", None) == "last" and cb.dirpath:
            return cb
    return None


def last_checkpoint_path(trainer: pl.Trainer) -> Path | None:
    """Where ``last.ckpt`` goes: the folder of the checkpoint callback that writes it."""
    cb = last_checkpoint_callback(trainer)
    return Path(cb.dirpath) / "last.ckpt" if cb is not None else None


class GracefulStop(pl.Callback):
    """Turns SIGTERM/SIGINT into a stop that saves what it says (see the module docstring).

    ``hold()`` installs the handlers for a whole command (the CLI holds them from before ``fit`` to the end of the
    test after it, so a signal while the data is decoded is handled too); used alone in a Trainer, the handlers are
    installed at ``setup``. After a stop, ``signum``, ``phase`` (where the signal arrived: ``preparing the run``,
    ``sanity check``, ``training``, ``validation``, ``test``) and ``saved`` (the ``last.ckpt`` that holds the run,
    if any) say what happened."""

    def __init__(self):
        self.signum: int | None = None
        self._first = 0.0  # when the first signal arrived (time.monotonic)
        self.phase: str | None = None
        self.saved: Path | None = None
        self._trainer: pl.Trainer | None = None
        self._previous: dict[int, object] = {}
        self._held = False
        self._in_loop = False  # between on_train_start and on_train_end: a stop can wait for the step to end
        self._deferred = False  # a stop that arrived during validation waits for the pass to end
        self._val_running = False  # validation batches are running (Lightning's loop would stop among them)

    # ---- installing the handlers ----
    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for sig in _SIGNALS:  # Lightning adds its own SIGTERM handler later, keeping this one in its chain
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @contextmanager
    def hold(self, trainer: pl.Trainer) -> Iterator[GracefulStop]:
        self._trainer, self._held = trainer, True
        self.install()
        try:
            yield self
        finally:
            self._held = False
            self.uninstall()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        self.install()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._in_loop = False
        if not self._held:
            self.uninstall()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_loop = True
        if _distributed(trainer) and self._previous and threading.current_thread() is threading.main_thread():
            # Under DDP Lightning's own SIGTERM handler makes a collective call inside the handler, on the signalled
            # process only, which hangs the others when one process alone is signalled (a node's SIGTERM): here
            # this handler alone runs, and the processes agree on a stop after each step (on_train_batch_end).
            for sig in _SIGNALS:
                signal.signal(sig, self._handle)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        if not _distributed(trainer):
            return
        import torch
        import torch.distributed as dist

        flag = torch.tensor([0 if self.signum is None else 1], device=trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # any process signalled: all stop after this step
        if int(flag.item()):
            if self.signum is None:
                self.signum, self.phase = signal.SIGTERM, "training"
                rank_zero_info("\nanother process of the run received a stop signal: stopping after this step and "
                               "saving last.ckpt")  # fmt: skip
            connector = self._connector()
            if connector is not None:
                connector.received_sigterm = (
                    True  # process 0's flag is the one Lightning passes to the others
                )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_loop = False

    # ---- the signal ----
    def _where(self) -> str:
        t = self._trainer
        if t is None or t.state.fn is None:
            return "preparing the run"
        if t.sanity_checking:
            return "sanity check"
        if t.testing:
            return "test"
        if t.validating:
            return "validation"
        return "training" if self._in_loop else "preparing the run"

    def _connector(self):
        return getattr(self._trainer, "_signal_connector", None)

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            if signum == signal.SIGTERM == self.signum and time.monotonic() - self._first < SAME_STOP_S:
                # one stop delivered twice (a launcher and the operating system both pass it on): not "stop now"
                rank_zero_info(
                    f"\nreceived {name} again within {SAME_STOP_S:g} s: the same stop, still saving"
                )
                return
            rank_zero_info(f"\nreceived {name} again: stopping now")
            raise StopNow(self.signum)  # asked twice: stop now, whatever the step
        self.signum, self.phase = signum, self._where()
        self._first = time.monotonic()
        connector = self._connector()
        if not self._in_loop or self.phase in ("sanity check", "test"):
            rank_zero_info(f"\nreceived {name} during {self.phase}: stopping now")
            raise StopNow(signum)
        if self._trainer is not None and _distributed(self._trainer):
            # Under DDP every check of Lightning's stop flag is made by each process on its own: raised on this
            # process alone, it would leave the others waiting in a collective. The flag is raised on all of them
            # together, after the next training step (on_train_batch_end).
            rank_zero_info(
                f"\nreceived {name}: stopping after the next training step on every process, saving last.ckpt"
            )
            if connector is not None:
                connector.received_sigterm = False  # Lightning's own handler may have raised it here alone
            return
        if self.phase == "validation" and self._val_running:
            # Lightning's evaluation loop would stop mid-pass, after which no checkpoint can hold the end of the
            # epoch; the flag is raised again when the pass is over (Lightning's own handler may have set it).
            self._deferred = True
            if connector is not None:
                connector.received_sigterm = False
            rank_zero_info(
                f"\nreceived {name}: stopping after this validation pass, with last.ckpt written after it "
                f"(send it again to stop at once)"
            )
            return
        dev_run = self._trainer is not None and self._trainer.fast_dev_run
        saving = "saving nothing (fast_dev_run)" if dev_run else "saving last.ckpt"
        rank_zero_info(
            f"\nreceived {name}: stopping after this step and {saving} (send it again to stop at once)"
        )
        if connector is not None:
            connector.received_sigterm = True  # Lightning stops at the next step boundary

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_running = not trainer.sanity_checking

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the last batch, before the checkpoint callbacks write last.ckpt at on_validation_end as usual
        self._val_running = False
        if self._deferred:
            self._deferred = False
            trainer._signal_connector.received_sigterm = True

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        signum = self.signum or signal.SIGTERM
        exception.code = 128 + signum  # Lightning's own exit says 0; a stopped run must not look finished
        path = last_checkpoint_path(trainer)
        if path is None:
            return
        if isinstance(exception, StopNow) or not trainer.training:
            self.saved = path if path.is_file() else None  # the last checkpoint written stands
            return
        cb = last_checkpoint_callback(trainer)
        if path.is_file() and getattr(cb, "_last_global_step_saved", None) == trainer.global_step:
            self.saved = path  # written after this very step (the end of the validation the stop waited for)
            return
        # Lightning raises only between steps, so weights, optimiser, loop counters and the loader's place in the
        # epoch are consistent here.
        trainer.save_checkpoint(path, weights_only=False)  # the full training state, not weights alone
        self.saved = path
