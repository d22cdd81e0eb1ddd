"""Priors p(z): small modules whose call returns a distribution over z (event shape (L,))."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from vaekit.errors import ConfigError


class StandardNormal(Independent):
    """N(0, I) over (L,): ``Independent(Normal(0, 1), 1)``, a type of its own so that the KL from a
    diagonal Gaussian posterior is registered in closed form (see ``posteriors.DiagonalNormal``)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Normal(loc, scale, validate_args=False), 1, validate_args=False)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I); the KL from a diagonal Gaussian posterior has a closed form."""

    def __init__(self, latent_dim: int, components: int = 1):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> Distribution:
        return StandardNormal(self.loc, self.scale)


class MixturePrior(nn.Module):
    """A learned mixture of K diagonal Gaussians; no closed-form KL, so the objective uses Monte Carlo."""

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim, generator=g))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self) -> Distribution:
        comps = Independent(Normal(self.loc, self.log_scale.clamp(-7, 5).exp(), validate_args=False), 1)
        return MixtureSameFamily(Categorical(logits=self.logits), comps, validate_args=False)


PRIORS = {"normal": StandardNormalPrior, "mixture": MixturePrior}


def build_prior(name: str, latent_dim: int, components: int = 10) -> nn.Module:
    if name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; choose one of {', '.join(sorted(PRIORS))}")
    return PRIORS[name](latent_dim, components)
