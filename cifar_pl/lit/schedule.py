"""Learning-rate schedules as one multiplier function of the optimiser step."""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULERS = ("constant", "multistep", "cosine", "onecycle")


@dataclass
class LRMultiplier:
    """Factor applied to the base LR after ``count`` scheduler steps (picklable, unlike a lambda).

    Everything is reckoned in optimiser steps: ``steps_per_count`` is 1 when the scheduler steps every
    batch and the number of steps per epoch when it steps every epoch. Warmup rises linearly from
    ``1 / (warmup + 1)`` to 1; then ``constant`` stays at 1, ``multistep`` multiplies by ``gamma`` at
    each milestone, ``cosine`` falls to ``min_factor`` at ``total_steps``.
    """

    kind: str
    total_steps: int
    steps_per_count: int = 1
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_factor: float = 0.0

    def __call__(self, count: int) -> float:
        step = count * self.steps_per_count
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.kind == "constant":
            return 1.0
        if self.kind == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        raise ValueError(f"Unknown schedule '{self.kind}'; choose one of {', '.join(SCHEDULERS)}")
