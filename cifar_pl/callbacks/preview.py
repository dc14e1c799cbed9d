"""Log what the training data and its augmentation look like to TensorBoard when fit starts."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only


class DataPreview(pl.Callback):
    """At the start of ``fit``, log the sample grid and the augmentation grid (``data/...`` images)."""

    def __init__(self, n_images: int = 8, draws: int = 6):
        self.n_images, self.draws = n_images, draws

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None or dm is None or not hasattr(dm, "augment_examples"):
            return
        from ..figures.augment import preview_figures  # deferred: matplotlib, only when a picture is drawn

        for name, fig in preview_figures(dm, self.n_images, self.draws).items():
            logger.experiment.add_figure(f"data/{name}", fig, global_step=0)
