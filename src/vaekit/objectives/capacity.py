"""AnnealedVAE (Burgess et al. 2018, "Understanding disentangling in β-VAE"): the reconstruction
term plus γ·|KL − C|, a controlled capacity C that rises linearly from 0 to C_max nats over a number
of training steps, so that the KL is held near C while C grows.

As in Locatello et al.'s study, |KL − C| is of the batch's mean KL. For per-example terms whose
batch mean is that value, each example carries γ·s·(KL_i − C) with s = sign(mean KL − C) taken as a
constant: the batch mean and its gradient are γ·|mean KL − C|'s (under DDP, each process's batch
has its own sign). C follows the run's global step (``StepContext.step``, restored on ``--resume``),
set before each training step; outside training (evaluation of a saved run) C is C_max.
"""

from __future__ import annotations

import torch

from vaekit.config import RunConfig
from vaekit.objectives.base import OBJECTIVES, Draws, StepContext, Terms
from vaekit.objectives.elbo import ELBO, MAX_SAMPLES, ELBOTerms, LatentBound, check_samples
from vaekit.objectives.estimate import Posterior
from vaekit.objectives.regularised import check_nonnegative, per_example, require_density


@OBJECTIVES.register("annealed-vae")
class AnnealedVAE(LatentBound):
    """AnnealedVAE (see the module docstring).

    gamma: γ, the weight of |KL − C|.
    capacity_max: C_max, the capacity (nats) C reaches.
    capacity_steps: the training steps over which C rises from 0 to C_max (0: C_max from the start).
    n_samples: the ELBO's draws per example.

    Terms (B,), besides the ELBO's: ``capacity``, the C the batch was trained (or validated) with.
    """

    terms = (*ELBOTerms.names, "capacity")

    def __init__(self, gamma: float = 1000.0, capacity_max: float = 25.0, capacity_steps: int = 100_000, n_samples: int = 1):
        super().__init__()
        check_nonnegative(capacity_gamma=gamma, capacity_max=capacity_max, capacity_steps=capacity_steps)
        self.elbo, self.gamma, self.capacity_max, self.capacity_steps = ELBO(n_samples=n_samples), gamma, capacity_max, capacity_steps
        self.register_buffer(
            "capacity", torch.tensor(float(capacity_max)), persistent=False
        )  # C now: a tensor, so a compiled loss reads it

    @classmethod
    def from_config(cls, config: RunConfig) -> AnnealedVAE:
        t = config.train
        require_density(config, cls.name)
        check_samples(t.n_samples, MAX_SAMPLES)
        return cls(t.capacity_gamma, t.capacity_max, t.capacity_steps, t.n_samples)

    def capacity_at(self, step: int) -> float:
        """C after ``step`` training steps: C_max · min(1, step / capacity_steps)."""
        if not self.capacity_steps:
            return self.capacity_max
        return self.capacity_max * min(1.0, step / self.capacity_steps)

    def step(self, ctx: StepContext, batch, beta: float | torch.Tensor) -> Terms | None:
        self.capacity.fill_(self.capacity_at(ctx.step))
        return super().step(ctx, batch, beta)

    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        terms = self.elbo.estimate(model, batch, posterior, 1.0, draws)  # its KL: closed form where registered
        c = self.capacity
        side = torch.sign(terms.kl.mean() - c).detach()  # which side of C the batch's mean KL is on
        loss = -terms.reconstruction + self.gamma * side * (terms.kl - c)  # batch mean: −rec + γ·|mean KL − C|
        extra = {"capacity": per_example(c, terms.kl)}
        return ELBOTerms(loss, terms.reconstruction, terms.kl, terms.squared_error, extra)
