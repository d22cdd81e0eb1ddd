"""The epoch's running sums of an objective's named terms, kept on the device and saved by name."""

from __future__ import annotations

import torch

PREFIX = "sums."  # the running sums' keys in a checkpoint's optimizer file
LEGACY = "epoch_sums"  # before named sums: a (4,) vector of the ELBO family's loss, neg_elbo, log p(x|z), kl
LEGACY_SIGNS = {"loss": 1.0, "neg_elbo": 1.0, "reconstruction": -1.0, "kl": 1.0}  # that vector held +log p(x|z)


class RunningSums:
    """Per-epoch sums (float64, on ``device``) of the per-example terms ``names``: one vector, added
    to with one reduction per step and read back once per epoch (no host sync per step)."""

    def __init__(self, names: tuple[str, ...], device: torch.device):
        self.names = tuple(names)
        self.values = torch.zeros(len(self.names), dtype=torch.float64, device=device)

    def add(self, reported: dict[str, torch.Tensor], applied: torch.Tensor | None = None) -> None:
        """Fold in one step's terms {name: (B,)}; ``applied`` (0-d bool on the device): only where the step was applied."""
        with torch.no_grad():
            step = torch.stack([reported[n] for n in self.names]).sum(1, dtype=torch.float64)  # (T,)
            self.values += step if applied is None else torch.where(applied, step, 0.0)

    def means(self, count: float) -> dict[str, float]:
        """{name: sum / count} (one host read)."""
        return dict(zip(self.names, (self.values / count).tolist()))

    def zero(self) -> None:
        self.values.zero_()

    def to_tensors(self, values: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The sums by name, for a checkpoint (``values``: the sums to save, default this process's)."""
        values = self.values if values is None else values
        return {PREFIX + n: values[i].reshape(1) for i, n in enumerate(self.names)}

    def load(self, tensors: dict[str, torch.Tensor], keep: bool) -> None:
        """Take the sums from a checkpoint's tensors (``keep`` False: start from zero, as a process
        after the first does, since the saved sums were added up over the processes). A name the
        checkpoint lacks (a term added since) starts at zero; a checkpoint written before the sums
        had names holds the ELBO family's (4,) vector."""
        self.zero()
        if not keep:
            return
        saved = {k[len(PREFIX) :]: v.reshape(()) for k, v in tensors.items() if k.startswith(PREFIX)}
        if LEGACY in tensors:
            legacy = tensors[LEGACY]
            if legacy.shape != (len(LEGACY_SIGNS),):
                raise ValueError(f"{LEGACY} has shape {tuple(legacy.shape)}, expected ({len(LEGACY_SIGNS)},)")
            saved = {name: sign * legacy[i] for i, (name, sign) in enumerate(LEGACY_SIGNS.items())}
        for i, name in enumerate(self.names):
            if name in saved:
                self.values[i] = saved[name].to(self.values)
