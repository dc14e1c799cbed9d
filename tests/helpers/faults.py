"""Callbacks the reliability tests load by class path into a training subprocess."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytorch_lightning as pl


class FileProxy:
    """A file that passes everything to ``f``; subclasses change ``write`` (faults, signals) and count ``written``."""

    def __init__(self, f):
        self.f, self.written = f, 0

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


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


class SignalAt(pl.Callback):
    """Send this process SIGTERM at one place of a run, as a scheduler would, read from ``$SIGNAL_AT`` so the
    resumed run's configuration is the stopped one's (an exact resume) while it sends nothing:

    * ``train:N``: after training step N; ``val:E:B``: after validation batch B of epoch E (not the sanity check);
      ``test:B``: after test batch B; ``write:N``: in the middle of writing last.ckpt after step N (a quarter of its
      bytes written); ``build:K``: while the decoded-image cache is being built, after K images.
    * ``$SIGNAL_TIMES`` (default 1): how many signals, one right after the other; the repeats are
      ``$SIGNAL_AGAIN`` (default ``INT``: a Ctrl-C after the scheduler's SIGTERM, asked twice; ``TERM``: the same
      SIGTERM delivered twice, which is one stop);
      ``$SIGNAL_KIND``: ``TERM`` (default) or ``KILL`` (the process dies on the spot, as a machine that is lost);
      ``$SIGNAL_RANK``: under DDP, only that global rank's process is signalled.

    Nothing is sent unless a handler of the run's own is installed (never the default, which would end the test
    process)."""

    def __init__(self):
        spec = os.environ.get("SIGNAL_AT", "")
        self.where, *rest = spec.split(":") if spec else ("",)
        self.at = [int(v) for v in rest]
        self.times = int(os.environ.get("SIGNAL_TIMES", "1"))
        self.kind = getattr(signal, f"SIG{os.environ.get('SIGNAL_KIND', 'TERM')}")
        self.sent = False
        self._restore: list = []
        if self.where == "build":
            self._patch_build()
        if self.where == "write":
            self._patch_write()
        self._trainer = None

    def _send(self) -> None:
        if self.sent or signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            return
        rank = os.environ.get("SIGNAL_RANK")  # DDP: only the process of this global rank is signalled
        if rank is not None and self._trainer is not None and str(self._trainer.global_rank) != rank:
            return
        self.sent = True
        again = getattr(signal, f"SIG{os.environ.get('SIGNAL_AGAIN', 'INT')}")
        for i in range(self.times):
            os.kill(os.getpid(), self.kind if i == 0 or self.kind == signal.SIGKILL else again)

    def setup(self, trainer, pl_module, stage) -> None:
        self._trainer = trainer

    def teardown(self, trainer, pl_module, stage) -> None:
        while self._restore:
            module, name, value = self._restore.pop()
            setattr(module, name, value)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.teardown(trainer, pl_module, "")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.where == "train" and trainer.global_step == self.at[0]:
            self._send()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if (
            self.where == "val"
            and not trainer.sanity_checking
            and [trainer.current_epoch, batch_idx] == self.at
        ):
            self._send()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.where == "test" and batch_idx == self.at[0]:
            self._send()

    def _patch_build(self) -> None:
        from cifar_pl.data import cache

        real, after = cache.read_images, self.at[0]
        self._restore.append((cache, "read_images", real))

        def reading(paths, *args, **kwargs):
            for n, item in enumerate(real(paths, *args, **kwargs)):
                if n == after:
                    self._send()
                yield item

        cache.read_images = reading

    def _patch_write(self) -> None:
        from cifar_pl import files

        real, helper = files._open_temp, self
        self._restore.append((files, "_open_temp", real))

        class Interrupted(FileProxy):
            def write(self, data):
                n = self.f.write(data)
                self.written += len(data)
                if self.written > 4096:
                    self.f.flush()  # what was written is on disk when the signal lands
                    helper._send()
                return n

        def opening(folder, name):
            tmp, f = real(folder, name)
            trainer = helper._trainer
            if name == "last.ckpt" and trainer is not None and trainer.global_step == helper.at[0]:
                return tmp, Interrupted(f)
            return tmp, f

        files._open_temp = opening
