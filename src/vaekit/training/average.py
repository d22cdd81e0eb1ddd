"""The weight average of a run trained with ``ema``: Polyak averaging, a function of the step alone."""

from __future__ import annotations

import contextlib

import torch


class WeightAverage:
    """An exponential moving average of a module's floating-point parameters (Polyak averaging):
    after step n, avg <- avg + (1 − d_n)(θ − avg) with d_n = min(decay, (1 + n) / (10 + n)), a
    function of the step alone, so a resumed run averages as an uninterrupted one."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.names = [name for name, p in module.named_parameters() if p.is_floating_point()]
        self.params = [p for name, p in module.named_parameters() if p.is_floating_point()]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int, applied: torch.Tensor | None = None) -> None:
        """Fold in the parameters after optimizer step ``step`` (0 for the first); ``applied`` (0-d bool
        on the device): fold them in only where the step was applied (``DeviceChecks``)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        params = [p.detach() for p in self.params]
        if applied is None:
            torch._foreach_lerp_(self.average, params, 1.0 - decay)
        else:
            weight = applied.to(self.average[0].dtype) * (1.0 - decay)  # 0 for a step not applied
            torch._foreach_lerp_(self.average, params, [weight] * len(params))

    def state_dict(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``module.state_dict()`` with the averaged parameters in place of the raw ones."""
        averaged = dict(zip(self.names, self.average))
        return {k: averaged.get(k, v) for k, v in module.state_dict().items()}

    @torch.no_grad()
    def load(self, weights: dict[str, torch.Tensor]) -> None:
        """Take the averaged parameters from a state dict written by ``state_dict``."""
        for avg, name in zip(self.average, self.names):
            avg.copy_(weights[name])

    @contextlib.contextmanager
    def swapped_in(self):
        """The module's parameters hold the average inside the block, their own values again after it."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)
