"""Learning-rate schedules as one multiplier function of the optimiser step, and the scheduler that applies it.

Every schedule is evaluated at every optimiser step. Warmup always rises per step; with ``per_epoch`` the rest
of the schedule (cosine, multistep) changes only at epoch boundaries. The plan (horizon, milestones, warmup) is
always the current configuration's: a checkpoint keeps only how many steps were taken, so resuming with a larger
``max_epochs`` follows the schedule planned over the new horizon (as if the run had been configured so from the
start), and a new stage starts a schedule of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

Scheduler = Literal["constant", "multistep", "cosine", "linear", "onecycle"]
WarmupMode = Literal["linear", "constant"]
# torch's OneCycleLR: start at max_lr / 25, end at max_lr / 25 / 1e4, cosine both ways.
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


@dataclass
class LRMultiplier:
    """The factor on the base LR after ``step`` optimiser steps of a run of ``total_steps``.

    ``warmup_steps``: ``linear`` rises from ``warmup_factor`` to 1 (``(s+1)/(W+1)`` when the factor is 0);
    ``constant`` holds ``warmup_factor`` (He et al.'s 0.01 for ResNet-110 is factor 0.1 at LR 0.1). Then
    ``constant`` stays at 1, ``multistep`` multiplies by each milestone's factor once its step is reached,
    ``cosine`` falls to ``min_factor`` at ``total_steps``, ``linear`` falls to it in a straight line (the speed
    recipes' warmdown), ``onecycle`` is torch's OneCycleLR (cosine up to 1
    over ``pct_start`` of the run from 1/25, then down to 1/25/1e4).
    """

    kind: str
    total_steps: int
    steps_per_epoch: int = 1
    per_epoch: bool = False
    warmup_steps: int = 0
    warmup_mode: str = "linear"
    warmup_factor: float = 0.0
    milestones: tuple[int, ...] = ()  # in steps
    gammas: tuple[float, ...] = ()  # one factor per milestone
    min_factor: float = 0.0
    pct_start: float = 0.3

    def __call__(self, step: int) -> float:
        if self.kind == "onecycle":
            return self._onecycle(step)
        if step < self.warmup_steps:
            if self.warmup_mode == "constant":
                return self.warmup_factor
            return self.warmup_factor + (1 - self.warmup_factor) * (step + 1) / (self.warmup_steps + 1)
        if self.per_epoch:  # the decay moves at epoch starts only
            step = max(self.warmup_steps, step // self.steps_per_epoch * self.steps_per_epoch)
        if self.kind == "constant":
            return 1.0
        if self.kind == "multistep":
            return math.prod(g for m, g in zip(self.milestones, self.gammas, strict=True) if step >= m)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.kind == "cosine":
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "linear":
            return 1 + (self.min_factor - 1) * progress
        raise ValueError(f"unknown schedule {self.kind!r}")  # the model checks the name before building one

    def _onecycle(self, step: int) -> float:
        up_end = float(self.pct_start * self.total_steps) - 1
        end = float(self.total_steps) - 1
        low, lowest = 1 / ONECYCLE_DIV, 1 / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
        if step <= up_end:
            return _cos(low, 1.0, step / up_end) if up_end > 0 else 1.0
        return _cos(1.0, lowest, min(1.0, (step - up_end) / max(1e-9, end - up_end)))

    def momentum(self, step: int, low: float, high: float) -> float:
        """One-cycle momentum cycling (when asked): high -> low while the LR rises, back while it falls."""
        up_end = float(self.pct_start * self.total_steps) - 1
        if step <= up_end:
            return _cos(high, low, step / up_end) if up_end > 0 else low
        return _cos(low, high, min(1.0, (step - up_end) / max(1e-9, self.total_steps - 1 - up_end)))


def milestone_factors(gamma: float | Sequence[float], milestones: Sequence[int]) -> tuple[float, ...]:
    """One factor per milestone: ``gamma`` at each, or the list given (e.g. [0.5, 0.5, 0.4] takes 0.01 to
    0.005, 0.0025 and 0.001)."""
    if isinstance(gamma, (int, float)):
        return (float(gamma),) * len(milestones)
    return tuple(float(g) for g in gamma)


class PlannedLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` over an ``LRMultiplier``, stepped every optimiser step, that saves only its position.

    The multiplier (the plan) always comes from the configuration the run has now; restoring a checkpoint sets
    how many steps were taken and the learning rates of that step under the current plan. ``momentum`` =
    (low, high) cycles SGD's momentum (Adam's beta1) against the LR, as torch's OneCycleLR does.
    """

    def __init__(self, optimizer, multiplier: LRMultiplier, momentum: tuple[float, float] | None = None):
        self.multiplier = multiplier
        self.momentum_range = momentum
        super().__init__(optimizer, multiplier)
        self._apply_momentum()

    def replan(self, multiplier: LRMultiplier) -> None:
        """Follow ``multiplier`` from the current step on (the LR of this step is set at once)."""
        self.multiplier = multiplier
        self.lr_lambdas = [multiplier] * len(self.optimizer.param_groups)
        self._apply_position()

    def _apply_position(self) -> None:
        lrs = [base * self.multiplier(self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs
        self._apply_momentum()

    def _apply_momentum(self) -> None:
        if self.momentum_range is None:
            return
        value = self.multiplier.momentum(self.last_epoch, *self.momentum_range)
        for group in self.optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (value, *group["betas"][1:])
            else:
                group["momentum"] = value

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        self._apply_momentum()

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._apply_position()
