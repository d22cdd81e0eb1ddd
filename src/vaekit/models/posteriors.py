"""Posterior heads q(z|x): map encoder features (B, F) to a distribution over z (event (L,))."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

LOGVAR_MIN, LOGVAR_MAX = -16.0, 10.0  # a numerically safe range for the log-variance head


class GaussianPosterior(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)) from a mean head and a log-variance head."""

    deterministic = False

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        mu = self.mean(h)  # (B, L)
        logvar = self.logvar(h).clamp(LOGVAR_MIN, LOGVAR_MAX)  # (B, L)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)


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


class DeterministicPosterior(nn.Module):
    """The bottleneck of a plain autoencoder: z = W h + b, returned as a ``PointMass``."""

    deterministic = True

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(features, latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return PointMass(self.mean(h))
