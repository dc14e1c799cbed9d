"""Optimisers that torch does not have in the form a write-up's author ran them."""

from __future__ import annotations

import torch


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop as Keras 3 (and TF Keras 2) runs it: ``v = rho * v + (1 - rho) * g^2``, step
    ``lr * g / sqrt(v + eps)`` (torch's RMSprop divides by ``sqrt(v) + eps``: with Keras' eps 1e-7 the two differ
    by up to ``sqrt(1e-7)`` = 3e-4 in the denominator, which dominates for small gradients), optional heavy-ball
    momentum on the step, and Keras' decoupled weight decay ``w -= lr * weight_decay * w`` before the update.

    ``tests/reference/test_keras.py`` runs Keras' own RMSprop on the same gradients.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        rho: float = 0.9,
        eps: float = 1e-7,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ):
        if lr < 0 or not 0 <= rho < 1 or eps < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(
                f"invalid KerasRMSprop arguments lr={lr} rho={rho} eps={eps} momentum={momentum}"
            )
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, eps, momentum, wd = (group[k] for k in ("lr", "rho", "eps", "momentum", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if momentum > 0:
                        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if wd:
                    p.mul_(1 - lr * wd)
                v = state["velocity"]
                v.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                increment = p.grad.mul(lr).div_(v.add(eps).sqrt_())
                if momentum > 0:
                    buf = state.get("momentum")
                    if buf is None:  # momentum switched on in a later stage
                        buf = state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    increment = buf.mul_(momentum).add_(increment)
                p.sub_(increment)
        return loss
