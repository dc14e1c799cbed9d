"""Test accuracy as a curve: the test split scored at the end of every validation epoch, for experiments whose
point is how test accuracy moves while the net fits corrupted training data (Zhang et al. 2017)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

from ..checks import check_number
from ..evaluation import evaluate


class EvaluateEachEpoch(pl.Callback):
    """After every ``every_n_epochs``-th validation epoch (or training epoch, when nothing is validated:
    ``val_size: 0``, as Keras' ``validation_data=(test_images, ...)`` runs go), score the model on the DataModule's test split (true
    labels; under ``shuffled_pixels`` the same permutation as training, as Zhang et al. did) and log
    ``clean_test/acc`` and ``clean_test/loss``. Data with no test split of its own (a photo folder without
    ``test/``, whose ``test`` scores the validation split) is scored on that split, said once and logged as
    ``clean_test_on_val/acc`` and ``clean_test_on_val/loss``, never as a test. The names are not ``val/*`` or ``test/*`` on purpose: no
    checkpoint, early stop or schedule reads them, so the test set never picks a model. The model is scored as
    validation scores it (in eval mode, the weight average when there is one, one view), without touching the
    random state, so a run with this callback trains exactly as one without it."""

    def __init__(self, every_n_epochs: int = 1, batch_size: int = 500):
        check_number("EvaluateEachEpoch every_n_epochs", every_n_epochs, 1, integer=True)
        check_number("EvaluateEachEpoch batch_size", batch_size, 1, integer=True)
        self.every_n_epochs, self.batch_size = every_n_epochs, batch_size
        self._scored_epoch: int | None = None
        self._said = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._score(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the epoch's validation, if there was one; else (nothing validated) here
        if self._scored_epoch != trainer.current_epoch:
            self._score(trainer, pl_module)

    @torch.no_grad()
    def _score(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._scored_epoch = trainer.current_epoch
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "normalize"):
            return
        if getattr(dm, "test_set", None) is None:
            dm.setup("test")
        test_set = dm.test_set
        prefix = "clean_test_on_val" if getattr(dm, "test_is_validation", False) else "clean_test"
        if prefix == "clean_test_on_val" and not self._said:
            self._said = True
            rank_zero_info(
                "EvaluateEachEpoch: the data has no test split of its own; its validation split is scored each "
                "epoch and logged as clean_test_on_val/acc and clean_test_on_val/loss"
            )

        was_training = pl_module.training
        pl_module.eval()
        net = getattr(pl_module, "eval_net", pl_module)  # the weight average once it has begun; one view
        correct, loss_sum = 0, 0.0
        for start in range(0, len(test_set), self.batch_size):  # a chunk at a time: bounded memory
            rows = slice(start, min(start + self.batch_size, len(test_set)))
            ev = evaluate(net, dm.normalize, test_set.take(rows), test_set.labels[rows], self.batch_size)
            correct += int((ev.preds == ev.labels).sum())
            loss_sum += float(ev.losses.sum())
        pl_module.train(was_training)
        n = len(test_set)
        pl_module.log(f"{prefix}/acc", correct / n, on_step=False, on_epoch=True, sync_dist=False)
        pl_module.log(f"{prefix}/loss", loss_sum / n, on_step=False, on_epoch=True, sync_dist=False)
