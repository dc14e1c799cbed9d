"""Whitening filters from the data: the first layer of the speed net (``speednet``) set from training images."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from ..devices import prepare_images
from ..errors import BadValue


class WhitenFromData(pl.Callback):
    """At the start of a run's first fit, set the net's whitening filters (``net.init_whitening``) from the first
    ``n_images`` training images, normalised as training normalises them; a net whose filters were set already (a
    resumed run, a new stage, weights from ``init.weights``) keeps them. The whitening layer's bias trains for the
    first ``bias_epochs`` epochs only (None: throughout)."""

    def __init__(self, n_images: int = 5000, bias_epochs: int | None = 3):
        if n_images < 1:
            raise BadValue(f"WhitenFromData: n_images must be >= 1, got {n_images}")
        self.n_images, self.bias_epochs = n_images, bias_epochs

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = pl_module.net
        if not hasattr(net, "init_whitening"):
            raise BadValue(
                f"WhitenFromData needs a net with whitening filters (speednet), not {type(net).__name__}"
            )
        if not net.whitening:
            rank_zero_info(
                "WhitenFromData: the net learns its first layer (whitening: false); filters left as they are"
            )
            return
        if bool(net.whitened):
            return
        dm = trainer.datamodule
        n = min(self.n_images, len(dm.train_set))
        net.init_whitening(prepare_images(dm.train_set.take(slice(0, n)), dm.normalize, net))
        rank_zero_info(f"WhitenFromData: whitening filters from {n} training images")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bias_epochs is not None and pl_module.net.whitening:
            pl_module.net.whiten.bias.requires_grad_(trainer.current_epoch < self.bias_epochs)
