"""Transfer-learning policy: BatchNorm kept in inference mode, and a frozen feature extractor (optionally
unfrozen at a given epoch).

Lightning's ``BaseFinetuning`` stops gradients but leaves BatchNorm in training mode, so a "frozen" net's
running statistics still drift towards the new data; these callbacks put every BatchNorm in eval mode and
keep it there (Lightning switches the module back to training mode after each validation loop).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch.nn as nn
from pytorch_lightning.utilities import rank_zero_info
from torch.nn.modules.batchnorm import _BatchNorm

from ..models import split_parameters


def _net(pl_module: pl.LightningModule) -> nn.Module:
    return getattr(pl_module, "net", pl_module)


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm and subclasses) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def body_parameters(net: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``net`` except those of its final classifier (``net.get_classifier()``)."""
    return split_parameters(net)[0]


class BatchNormEval(pl.Callback):
    """Every BatchNorm of the net in eval mode for the whole of training: running mean and variance stay as
    loaded (they normalise with the statistics of the data the net was trained on), while BN's affine weight
    and bias still learn if they have gradients. The fine-tuning stage of transfer learning."""

    def __init__(self):
        self._bn: list[_BatchNorm] = []
        self.bn_eval = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._bn = batchnorm_layers(_net(pl_module))

    def _enforce(self) -> None:
        if self.bn_eval:
            for bn in self._bn:
                if bn.training:
                    bn.eval()

    # Lightning calls module.train() when fit starts and restores modes after validation; re-assert before
    # every step (a loop over a few dozen layers, nothing to measure) and when validation ends.
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        self._enforce()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.training:
            self._enforce()


class FreezeBackbone(BatchNormEval):
    """Train only the final classifier: every other parameter gets no gradient and every BatchNorm runs in
    eval mode, so the feature extractor is bitwise unchanged.

    Args:
        unfreeze_at_epoch: from this epoch on, train everything (the model's ``body_lr_factor`` sets the LR of
            the unfrozen body relative to the classifier's). None: stay frozen.
        bn_eval_after_unfreeze: keep BatchNorm in eval mode after unfreezing (the usual fine-tuning recipe);
            false lets it update its statistics again.

    The state follows from the epoch number alone, so a run resumed with ``--ckpt_path`` is frozen or
    unfrozen exactly as the interrupted one was.
    """

    def __init__(self, unfreeze_at_epoch: int | None = None, bn_eval_after_unfreeze: bool = True):
        super().__init__()
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 0:
            raise ValueError(f"unfreeze_at_epoch must be >= 0 (or null), got {unfreeze_at_epoch}")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.bn_eval_after_unfreeze = bn_eval_after_unfreeze
        self._body: list[nn.Parameter] = []
        self.frozen = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        if self.unfreeze_at_epoch is not None and "ddp" in type(trainer.strategy).__name__.lower():
            raise ValueError(
                "FreezeBackbone(unfreeze_at_epoch=...) cannot run under DDP (DDP fixes the trainable parameters "
                "when it wraps the model); run the frozen and the fine-tuning stages as two runs instead"
            )
        self._body = body_parameters(_net(pl_module))
        self._freeze(True)  # before configure_optimizers, so the model summary counts the trainable part

    def _freeze(self, frozen: bool) -> None:
        for p in self._body:
            p.requires_grad_(not frozen)
        self.frozen = frozen
        self.bn_eval = frozen or self.bn_eval_after_unfreeze

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            self.frozen
            and self.unfreeze_at_epoch is not None
            and trainer.current_epoch >= self.unfreeze_at_epoch
        ):
            self._freeze(False)
            if not self.bn_eval:
                pl_module.train()
            rank_zero_info(f"FreezeBackbone: epoch {trainer.current_epoch}: the whole net trains from now on")
