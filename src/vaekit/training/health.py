"""Gradient health: clipping, the finite check of a step, and per-tensor normalisation."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def checks_on_device(device: torch.device) -> bool:
    """Whether a run on ``device`` checks its steps on the device (``DeviceChecks``): on a GPU, where a
    host read per step would stall the queue of kernels; a CPU reads its checks at no cost."""
    return device.type == "cuda"


class GradientHealth:
    """Clips the gradients (when the run clips: every step) and says whether the loss and every gradient
    are finite. On the host (``checks`` None), on a ``check`` step: ``check`` is set by the loop before
    each step, every step on a CPU or under ``--nonfinite skip``. On the device (``checks``, a
    ``DeviceChecks``: a CUDA GPU's path), every step is checked with no host read and the answer is
    always "go on": the step is then applied or not on the device. Under DDP the gradients are
    all-reduced already, so every process decides alike."""

    def __init__(self, clip: float, checks: DeviceChecks | None = None):
        self.clip = clip
        self.check = True
        self.checks = checks

    def __call__(self, loss: torch.Tensor, parameters: list[nn.Parameter]) -> bool:
        params = [p for p in parameters if p.grad is not None]
        grads = [p.grad for p in params]
        if self.checks is not None:
            self.checks.flag(loss, grads)
            if self.clip:
                torch.nn.utils.clip_grad_norm_(params, self.clip)
            return True
        if not (self.clip or self.check):
            return True
        health = loss + (torch.nn.utils.clip_grad_norm_(params, self.clip) if self.clip else gradient_sum(grads))
        return not self.check or bool(torch.isfinite(health)) or all_finite(loss, grads)

    def guarded(self, optimizer: torch.optim.Optimizer):
        """A block in which ``optimizer.step()`` applies the step only where the device's check found it
        finite (the fused Adam's ``found_inf``); a plain block for host checks."""
        return contextlib.nullcontext() if self.checks is None else self.checks.guarded(optimizer)


class DeviceChecks:
    """Non-finite steps caught on the device, with no host read per step: a step's flag comes from one
    fused kernel over its gradients (the one AMP's gradient scaler uses) and its loss; the fused Adam
    skips a flagged step itself (its ``found_inf``: weights, moments and step count untouched), and the
    weight average and the running sums leave it out (``applied``). With ``sticky`` (``--nonfinite
    stop``) no step after a flagged one is applied either, so the weights stay those before the first
    bad step, which ``read`` names; otherwise (``skip``) ``read`` counts the flagged steps. The loop
    brackets each step with ``begin`` and ``end`` and reads every few steps and at the epoch's end:
    one host read each time."""

    def __init__(self, device: torch.device, sticky: bool):
        self.sticky = sticky
        self.bad = torch.zeros((), device=device)  # 1.0: the current step is not applied
        self.seen = torch.zeros((), dtype=torch.int64, device=device)  # steps since the last read
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # its place among them; -1: none
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)  # flagged steps since the last read
        self._one = torch.ones(1, device=device)

    def begin(self) -> None:
        """A new step: not flagged (under ``sticky``, flagged if any step before it was)."""
        if not self.sticky:
            self.bad.zero_()

    @torch.no_grad()
    def flag(self, loss: torch.Tensor, grads: list[torch.Tensor]) -> None:
        """Flag the current step if ``loss`` or an entry of ``grads`` is not finite (called once per
        group of parameters checked)."""
        found = torch.zeros(1, device=self._one.device)
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self._one)  # found <- 1 if any entry is not finite
        self.bad.copy_(torch.maximum(self.bad, torch.maximum(found[0], (~torch.isfinite(loss.detach().float())).float())))

    def end(self) -> None:
        """The current step is done: count it."""
        self.first_bad.copy_(torch.where((self.first_bad < 0) & (self.bad > 0), self.seen, self.first_bad))
        self.skipped += self.bad.long()
        self.seen += 1

    @property
    def applied(self) -> torch.Tensor:
        """0-d bool: whether the current step is applied."""
        return self.bad == 0

    @contextlib.contextmanager
    def guarded(self, optimizer: torch.optim.Optimizer):
        optimizer.found_inf = self.bad  # read by the fused Adam's step
        try:
            yield
        finally:
            del optimizer.found_inf

    def read(self) -> tuple[int, int]:
        """(the place of the first flagged step among the steps since the last read, -1 for none; the
        number flagged), one host read; the counts start again."""
        first_bad, skipped = torch.stack([self.first_bad, self.skipped]).tolist()
        self.seen.zero_()
        self.first_bad.fill_(-1)
        self.skipped.zero_()
        return first_bad, skipped


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
