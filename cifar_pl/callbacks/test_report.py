"""At the end of ``test``, log the confusion matrix, the gallery of mistakes and class-activation maps to
TensorBoard (``test/confusion``, ``test/mistakes``, ``test/cams``, ``test/channels``)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only


class TestReport(pl.Callback):
    """Pictures of the test set after ``test``. The confusion matrix is the one the model accumulated during
    ``test_step`` (torchmetrics, synced across processes); the gallery ranks images by their loss under the
    test pass's own logits when the model kept them (one process, the whole test set), otherwise it makes one
    more forward pass over at most ``max_images`` test images, on the model's own device."""

    def __init__(self, n_cams: int = 8, n_mistakes: int = 16, max_images: int = 10000):
        self.n_cams, self.n_mistakes, self.max_images = n_cams, n_mistakes, max_images

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        test_set = getattr(dm, "test_set", None)
        if logger is None or test_set is None or not hasattr(dm, "normalize") or trainer.sanity_checking:
            return
        from ..viz.analysis import Evaluation
        from ..viz.inspect import report_figures

        n = min(len(test_set), self.max_images)
        images, labels = test_set.take(slice(0, n)), test_set.labels[:n]
        classes = getattr(pl_module, "class_names", None) or [
            str(i) for i in range(pl_module.net.num_classes)
        ]
        was_training = pl_module.training
        pl_module.eval()
        whole = n == len(test_set)
        confusion = getattr(pl_module, "test_confusion_matrix", None) if whole else None
        kept = getattr(pl_module, "test_outputs", None) if whole else None
        ev = (
            Evaluation.from_logits(*kept)
            if kept is not None and len(kept[1]) == n and torch.equal(kept[1], labels.cpu())
            else None
        )
        figs, _ = report_figures(pl_module, pl_module.net, dm.normalize, images, labels, classes, self.n_cams,
                                 self.n_mistakes, confusion=confusion, evaluation=ev)  # fmt: skip
        pl_module.train(was_training)
        for name, fig in figs.items():
            logger.experiment.add_figure(f"test/{name}", fig, global_step=trainer.global_step)
