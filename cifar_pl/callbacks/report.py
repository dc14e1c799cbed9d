"""At the end of ``test``, log the confusion matrix, the gallery of mistakes and class-activation maps to
TensorBoard (``test/confusion``, ``test/mistakes``, ``test/cams``, ``test/channels``; ``test_on_val/...`` when the
DataModule scores its validation split as the test, as the metrics are named)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from ..evaluation import Evaluation, evaluate


class EndOfTestReport(pl.Callback):
    """Pictures of the test set after ``test``. The confusion matrix is the one the model accumulated during
    ``test_step`` (torchmetrics, synced across processes); the gallery ranks images by their loss under the
    test pass's own logits when the model kept them (one process, the whole test set), otherwise it makes one
    more forward pass over at most ``max_images`` test images, on the model's own device."""

    def __init__(self, n_cams: int = 8, n_mistakes: int = 16, max_images: int = 10000):
        self.n_cams, self.n_mistakes, self.max_images = n_cams, n_mistakes, max_images

    @staticmethod
    def _kept_evaluation(pl_module, dm, images: torch.Tensor, labels: torch.Tensor) -> Evaluation | None:
        """The test pass's own logits (``ImageClassifier.test_outputs``) as an evaluation of ``images``, when they
        are of these images: the same labels in the same order, and a fresh pass over 8 of the images (spread over
        the set) gives the same probabilities. A test run on other loaders than this DataModule's test split
        (``trainer.test(dataloaders=...)`` after a fit keeps the fit's DataModule) fails the check, and the
        report then makes its own pass."""
        kept = getattr(pl_module, "test_outputs", None)
        if kept is None or len(kept[1]) != len(labels) or not torch.equal(kept[1], labels.cpu()):
            return None
        candidate = Evaluation.from_logits(*kept)
        probe = torch.linspace(0, len(labels) - 1, steps=min(len(labels), 8)).round().long().unique()
        fresh = evaluate(pl_module, dm.normalize, images[probe], labels[probe])
        return candidate if torch.allclose(fresh.probs, candidate.probs[probe], atol=2e-3) else None

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        test_set = getattr(dm, "test_set", None)
        if logger is None or test_set is None or not hasattr(dm, "normalize") or trainer.sanity_checking:
            return
        from ..figures.report import report_figures  # deferred: matplotlib, only when a picture is drawn

        n = min(len(test_set), self.max_images)
        images, labels = test_set.take(slice(0, n)), test_set.labels[:n]
        classes = getattr(pl_module, "class_names", None) or [
            str(i) for i in range(pl_module.net.num_classes)
        ]
        was_training = pl_module.training
        pl_module.eval()
        ev = self._kept_evaluation(pl_module, dm, images, labels) if n == len(test_set) else None
        # the matrix the test accumulated (synced across processes) is of these images when its logits are
        # (a test limited to some batches is not); otherwise the report's own pass gives it
        confusion = getattr(pl_module, "test_confusion_matrix", None) if ev is not None else None
        figs, _ = report_figures(pl_module, pl_module.net, dm.normalize, images, labels, classes, self.n_cams,
                                 self.n_mistakes, confusion=confusion, evaluation=ev)  # fmt: skip
        pl_module.train(was_training)
        prefix = "test_on_val" if getattr(dm, "test_is_validation", False) else "test"  # as the metrics say
        for name, fig in figs.items():
            logger.experiment.add_figure(f"{prefix}/{name}", fig, global_step=trainer.global_step)
