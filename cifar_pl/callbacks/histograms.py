"""Histograms of the net's parameters and of their gradients, every few epochs, in TensorBoard's Histograms and
Distributions tabs: how the weights of each layer spread out (or collapse) over training."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from ..checks import check_number
from .activations import spread


class ParameterHistograms(pl.Callback):
    """Every ``every_n_epochs`` epochs, each chosen parameter of ``model.net`` as a histogram
    ``weights/<name>`` at the epoch's end and, with ``gradients``, its gradient of the epoch's last optimiser step
    as ``gradients/<name>`` (after any gradient unscaling, before the step). ``max_tensors`` parameters at most,
    evenly spaced over the net in its own order (first and last kept); the histograms are drawn on the host and
    written by the process of rank 0 only. Needs a TensorBoard logger; does nothing without one."""

    def __init__(self, every_n_epochs: int = 1, gradients: bool = True, max_tensors: int = 32):
        check_number("ParameterHistograms every_n_epochs", every_n_epochs, 1, integer=True)
        check_number("ParameterHistograms max_tensors", max_tensors, 1, 4096, integer=True)
        self.every_n_epochs, self.gradients, self.max_tensors = every_n_epochs, gradients, max_tensors

    def _due(self, trainer: pl.Trainer) -> TensorBoardLogger | None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return None
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return None
        return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def _chosen(self, pl_module: pl.LightningModule) -> list[tuple[str, torch.nn.Parameter]]:
        net = getattr(pl_module, "net", pl_module)
        return spread([(n, p) for n, p in net.named_parameters() if p.numel() > 1], self.max_tensors)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.gradients or not trainer.is_last_batch or (logger := self._due(trainer)) is None:
            return
        for name, param in self._chosen(pl_module):
            if param.grad is not None:
                grad = param.grad.detach().float().cpu()
                if torch.isfinite(grad).all():  # a step the scaler skips has inf gradients: nothing to draw
                    logger.experiment.add_histogram(f"gradients/{name}", grad, trainer.global_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (logger := self._due(trainer)) is None:
            return
        for name, param in self._chosen(pl_module):
            logger.experiment.add_histogram(
                f"weights/{name}", param.detach().float().cpu(), trainer.global_step
            )
