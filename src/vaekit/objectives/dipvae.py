"""DIP-VAE (Kumar, Sattigeri & Balakrishnan 2018): the ELBO plus a penalty that pushes a covariance
of the codes towards the identity,

    λ_od · Σ_{i≠j} Cov_ij²  +  λ_d · Σ_i (Cov_ii − 1)²,

where Cov is, over the batch, the covariance of the posterior means E_q[z|x] (DIP-VAE-I) or of the
aggregate posterior q(z) (DIP-VAE-II: Cov[E_q[z|x]] + the batch's mean of the posterior covariances
diag σ²(x)). The penalty is one number per batch; every example's loss carries it whole, so the
step's batch mean (and its gradient) is the penalty's (``per_example``).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch.distributions import Distribution

from vaekit.config import RunConfig
from vaekit.objectives.base import OBJECTIVES, Draws
from vaekit.objectives.elbo import ELBO, MAX_SAMPLES, ELBOTerms, LatentBound, check_beta, check_samples
from vaekit.objectives.estimate import Posterior
from vaekit.objectives.regularised import check_nonnegative, per_example, require_gaussian


def mean_covariance(q: Distribution) -> torch.Tensor:
    """Cov over the batch of the posterior means (L, L): E[μ μᵀ] − E[μ] E[μ]ᵀ (the 1/B estimate)."""
    centered = q.mean - q.mean.mean(0)  # (B, L)
    return centered.T @ centered / len(centered)


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """λ_od · Σ_{i≠j} cov_ij² + λ_d · Σ_i (cov_ii − 1)² (0-d)."""
    diagonal = cov.diagonal()
    off = cov - torch.diag_embed(diagonal)
    return lambda_od * off.square().sum() + lambda_d * (diagonal - 1).square().sum()


class DIPVAE(LatentBound):
    """DIP-VAE (see the module docstring); the two variants differ in the covariance they penalise.

    lambda_od: λ_od, the weight of the squared off-diagonal entries.
    lambda_d: λ_d, the weight of the squared distances of the diagonal to 1 (None: ``diagonal_factor`` · λ_od).
    beta: the ELBO's KL weight (1 in the paper). n_samples: the ELBO's draws per example.

    Terms (B,), besides the ELBO's: ``covariance_penalty``, the batch's penalty (the same for each example).
    """

    terms = (*ELBOTerms.names, "covariance_penalty")
    diagonal_factor: ClassVar[float]  # λ_d / λ_od when λ_d is not given (the study's)

    def __init__(self, lambda_od: float = 10.0, lambda_d: float | None = None, beta: float = 1.0, n_samples: int = 1):
        super().__init__()
        check_beta(beta)
        check_samples(n_samples)
        lambda_d = self.diagonal_factor * lambda_od if lambda_d is None else lambda_d
        check_nonnegative(dip_lambda_od=lambda_od, dip_lambda_d=lambda_d)
        self.elbo, self.lambda_od, self.lambda_d, self.beta = ELBO(beta=beta, n_samples=n_samples), lambda_od, lambda_d, beta

    @classmethod
    def from_config(cls, config: RunConfig) -> DIPVAE:
        t = config.train
        require_gaussian(config, cls.name)
        check_samples(t.n_samples, MAX_SAMPLES)
        return cls(t.dip_lambda_od, t.dip_lambda_d, beta=t.beta, n_samples=t.n_samples)

    @staticmethod
    @abstractmethod
    def covariance(q: Distribution) -> torch.Tensor:
        """The covariance (L, L) the penalty pushes towards the identity, from q(z|x) of the batch."""

    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        terms = self.elbo.estimate(model, batch, posterior, beta, draws)
        penalty = per_example(dip_penalty(self.covariance(posterior.q), self.lambda_od, self.lambda_d), terms.loss)  # (B,)
        extra = {"covariance_penalty": penalty}
        return ELBOTerms(terms.loss + penalty, terms.reconstruction, terms.kl, terms.squared_error, extra)


@OBJECTIVES.register("dip-vae-i")
class DIPVAEI(DIPVAE):
    """DIP-VAE-I: the covariance of the posterior means; λ_d = 10·λ_od unless given."""

    diagonal_factor = 10.0

    @staticmethod
    def covariance(q: Distribution) -> torch.Tensor:
        return mean_covariance(q)


@OBJECTIVES.register("dip-vae-ii")
class DIPVAEII(DIPVAE):
    """DIP-VAE-II: the covariance of the aggregate posterior, Cov[μ] + E[diag σ²]; λ_d = λ_od unless given."""

    diagonal_factor = 1.0

    @staticmethod
    def covariance(q: Distribution) -> torch.Tensor:
        return mean_covariance(q) + torch.diag_embed(q.variance.mean(0))
