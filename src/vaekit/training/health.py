"""Gradient health: clipping, the finite check of a step, and per-tensor normalisation."""

from __future__ import annotations

import torch
from torch import nn


class GradientHealth:
    """Clips the gradients (when the run clips: every step) and, on a ``check`` step, says whether the
    loss and every gradient are finite. ``check`` is set by the loop before each step: every step on
    a CPU or under ``--nonfinite skip``, every few steps on a GPU (a check is a host sync there).
    Under DDP the gradients are all-reduced already, so every process decides alike."""

    def __init__(self, clip: float):
        self.clip = clip
        self.check = True

    def __call__(self, loss: torch.Tensor, parameters: list[nn.Parameter]) -> bool:
        if not (self.clip or self.check):
            return True
        params = [p for p in parameters if p.grad is not None]
        grads = [p.grad for p in params]
        health = loss + (torch.nn.utils.clip_grad_norm_(params, self.clip) if self.clip else gradient_sum(grads))
        return not self.check or bool(torch.isfinite(health)) or all_finite(loss, grads)


def normalize_gradients(params) -> None:
    """g <- g / (‖g‖₂ + 1e-7) for each parameter tensor's gradient, in place: the per-tensor
    normalisation of the AdamNormGrad optimizer in the VampPrior paper's code (under DDP, of the
    all-reduced gradients, so every process steps alike)."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        norms = torch._foreach_norm(grads)
        torch._foreach_add_(norms, 1e-7)
        torch._foreach_div_(grads, norms)


def gradient_sum(grads: list[torch.Tensor]) -> torch.Tensor:
    """The sum of every gradient entry (0-d): non-finite if any entry is, and cheaper than a norm.
    (A sum of finite entries can still overflow; ``all_finite`` settles that rare case.)"""
    return torch.stack([g.sum() for g in grads]).sum() if grads else torch.zeros(())


def all_finite(loss: torch.Tensor, grads: list[torch.Tensor]) -> bool:
    return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads)
