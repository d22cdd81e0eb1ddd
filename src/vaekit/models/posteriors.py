"""Posterior heads q(z|x): map encoder features (B, F) to a distribution over z (event (L,)).

Heads are registered in ``POSTERIORS`` under the model kind they make: ``vae`` (a Gaussian) and
``ae`` (a point mass: the plain autoencoder).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints, register_kl

from vaekit.models.priors import StandardNormal
from vaekit.objectives import PathDerivative
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

LOGVAR_MIN, LOGVAR_MAX = -16.0, 10.0  # a numerically safe range for the log-variance head (ModelConfig.logvar_range's default)


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if autocast left it in a 16-bit float, else as it is: distributions and
    log-densities are always computed in full precision."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class PosteriorHead(nn.Module, ABC):
    """Interface: encoder features h (B, F) -> q(z|x), batch (B,), event (L,).

    deterministic: the head is a point mass (a plain autoencoder: no KL term, no sampling).
    """

    deterministic: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: ModelConfig, features: int) -> PosteriorHead:
        """The head for encoder features of width ``features`` and z of ``config.latent_dim``."""
        return cls(features, config.latent_dim)

    @abstractmethod
    def forward(self, h: torch.Tensor) -> Distribution:
        """q(z|x) from features (B, F)."""

    def top(self, h: torch.Tensor) -> Distribution:
        """q(z_top|x), the posterior of the layer the prior's top is over: q(z|x) for one layer."""
        return self(h)


POSTERIORS: Registry[type[PosteriorHead]] = Registry("model kind")


@POSTERIORS.register("vae")
class GaussianPosterior(PosteriorHead):
    """q(z|x) = N(μ(x), diag σ²(x)): one linear layer gives the mean and the log-variance
    (one (F, 2L) matrix product rather than two thin ones), the latter clamped to ``logvar_range``."""

    def __init__(self, features: int, latent_dim: int, logvar_range: tuple[float, float] = (LOGVAR_MIN, LOGVAR_MAX)):
        super().__init__()
        self.params = nn.Linear(features, 2 * latent_dim)
        self.logvar_range = tuple(logvar_range)

    @classmethod
    def from_config(cls, config: ModelConfig, features: int) -> GaussianPosterior:
        return cls(features, config.latent_dim, config.logvar_range)

    def forward(self, h: torch.Tensor) -> Distribution:
        mu, logvar = full_precision(self.params(h)).chunk(2, dim=-1)  # (B, L) each
        return DiagonalNormal(mu, logvar.clamp(*self.logvar_range))


class DiagonalNormal(Independent, PathDerivative):
    """N(loc, diag exp(logvar)) as ``Independent(Normal(loc, exp(logvar / 2)), 1)`` that keeps its
    log-variance, so the KL to a standard normal is the closed form on (μ, log σ²) below."""

    def __init__(self, loc: torch.Tensor, logvar: torch.Tensor):
        self.logvar = logvar  # (B, L)
        super().__init__(Normal(loc, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)

    def parameters_stopped(self) -> DiagonalNormal:
        return DiagonalNormal(self.mean.detach(), self.logvar.detach())


@register_kl(DiagonalNormal, StandardNormal)
def _kl_diagonal_standard(q: DiagonalNormal, p: StandardNormal) -> torch.Tensor:
    """KL(N(μ, diag σ²) || N(0, I)) = ½ Σ (σ² + μ² − 1 − log σ²), per example (B,)."""
    return 0.5 * (q.logvar.exp() + q.mean.square() - 1 - q.logvar).sum(-1)


class PointMass(Distribution):
    """A point mass at ``loc`` (batch (B,), event (L,)): the 'posterior' of a plain autoencoder.
    ``rsample`` returns ``loc`` (expanded to the sample shape) with its gradient."""

    arg_constraints = {"loc": constraints.real_vector}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor):
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros(value.shape[:-1], device=value.device, dtype=value.dtype)


@POSTERIORS.register("ae")
class DeterministicPosterior(PosteriorHead):
    """The bottleneck of a plain autoencoder: z = W h + b, returned as a ``PointMass``."""

    deterministic = True

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(features, latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return PointMass(full_precision(self.mean(h)))
