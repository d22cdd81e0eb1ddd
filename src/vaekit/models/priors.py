"""Priors p(z): small modules whose call returns a distribution over z (event shape (L,)).

A prior is called with the model it belongs to (``prior(model)``), so a prior that needs the
encoder (a VampPrior: the posteriors of learned pseudo-inputs) can run it without holding a
second reference to it. Priors are registered by name in ``PRIORS``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, MultivariateNormal, Normal

from vaekit.errors import ConfigError
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class Prior(nn.Module, ABC):
    """Interface: ``prior(model)`` -> p(z), batch shape (), event shape (L,).

    conditional: the prior is p(z|y), called ``prior(model, context)`` with context vectors (*batch, K)
    and returning batch shape ``batch`` (``vaekit.models.condition``). has_components: the prior is a
    mixture of ``prior_components`` components.
    """

    conditional: ClassVar[bool] = False
    has_components: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_config(cls, config: ModelConfig) -> Prior:
        """The prior ``config`` describes (``latent_dim``, ``prior_components``, ...)."""

    @abstractmethod
    def forward(self, model: nn.Module) -> Distribution:
        """p(z); ``model`` is the ``LatentVariableModel`` this prior belongs to."""


PRIORS: Registry[type[Prior]] = Registry("prior")


class StandardNormal(Independent):
    """N(0, I) over (L,): ``Independent(Normal(0, 1), 1)``, a type of its own so that the KL from a
    diagonal Gaussian posterior is registered in closed form (see ``posteriors.DiagonalNormal``)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Normal(loc, scale, validate_args=False), 1, validate_args=False)


@PRIORS.register("normal")
class StandardNormalPrior(Prior):
    """p(z) = N(0, I); the KL from a diagonal Gaussian posterior has a closed form."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    @classmethod
    def from_config(cls, config: ModelConfig) -> StandardNormalPrior:
        return cls(config.latent_dim)

    def forward(self, model: nn.Module | None = None) -> Distribution:
        return StandardNormal(self.loc, self.scale)


@PRIORS.register("mixture")
class MixturePrior(Prior):
    """A learned mixture of K diagonal Gaussians; no closed-form KL, so the objective uses Monte Carlo
    (its log-density is one matrix product, ``DiagonalGaussianMixture``)."""

    has_components = True

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim, generator=g))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    @classmethod
    def from_config(cls, config: ModelConfig) -> MixturePrior:
        return cls(config.latent_dim, config.prior_components)

    def forward(self, model: nn.Module | None = None) -> Distribution:
        return DiagonalGaussianMixture(self.loc, 2 * self.log_scale.clamp(-7, 5), self.logits)


class DiagonalGaussianMixture(MixtureSameFamily):
    """Σ_k π_k N(μ_k, diag exp(logvar_k)) over (L,), π = softmax(logits) (default uniform, 1/K): batch shape (), event (L,).

    ``log_prob`` computes the K log-densities with one matrix product instead of materialising
    z − μ_k for every pair (N, K, L) (the IW estimate evaluates it at millions of z):
    log N(z; μ_k, σ_k²) = −½ [z²·(1/σ_k²) − 2 z·(μ_k/σ_k²)] + c_k, with [z², z] (N, 2L) against a
    (K, 2L) matrix, in float64 so that the expanded square does not cancel for narrow components.
    """

    def __init__(self, loc: torch.Tensor, logvar: torch.Tensor, logits: torch.Tensor | None = None):
        logits = torch.zeros(len(loc), device=loc.device, dtype=loc.dtype) if logits is None else logits
        comps = Independent(Normal(loc, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)
        super().__init__(Categorical(logits=logits, validate_args=False), comps, validate_args=False)
        loc64, logvar64 = loc.double(), logvar.double()  # (K, L) each
        prec = torch.exp(-logvar64)
        self._weight = -0.5 * torch.cat([prec, -2 * loc64 * prec], 1)  # (K, 2L)
        norm = (loc64.square() * prec).sum(-1) + logvar64.sum(-1) + loc.shape[-1] * math.log(2 * math.pi)  # (K,)
        self._bias = -0.5 * norm + torch.log_softmax(logits.double(), -1)  # (K,): the constants and the log mixture weights

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z (*S, L) -> (*S,)."""
        zd = z.double().reshape(-1, z.shape[-1])  # (N, L)
        log_comp = torch.addmm(self._bias, torch.cat([zd.square(), zd], -1), self._weight.T)  # (N, K): log π_k N(z; μ_k, σ_k²)
        return torch.logsumexp(log_comp, -1).view(z.shape[:-1]).to(z.dtype)


def marginals(dist: Distribution) -> Distribution:
    """The one-dimensional marginals of a distribution over z (event (L,)), as one distribution
    with batch shape (L,) and event shape (). Handles ``Independent(Normal)``, ``MultivariateNormal``
    and mixtures (``MixtureSameFamily``) of either."""
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal) and dist.reinterpreted_batch_ndims == 1:
        return dist.base_dist
    if isinstance(dist, MultivariateNormal):
        return Normal(dist.loc, dist.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt(), validate_args=False)
    if isinstance(dist, MixtureSameFamily) and dist.batch_shape == ():
        comps = marginals(dist.component_distribution)  # batch (K, L)
        logits = dist.mixture_distribution.logits  # (K,)
        mix = Categorical(logits=logits.expand(comps.batch_shape[-1], -1), validate_args=False)  # batch (L,), K categories
        return MixtureSameFamily(mix, Normal(comps.loc.T, comps.scale.T, validate_args=False), validate_args=False)
    raise ConfigError(f"cannot take per-dimension marginals of a {type(dist).__name__} distribution")
