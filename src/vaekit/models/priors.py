"""Priors p(z): small modules whose call returns a distribution over z (event shape (L,)).

A prior is called with the model it belongs to (``prior(model)``), so a prior that needs the
encoder (a VampPrior: the posteriors of learned pseudo-inputs) can run it without holding a
second reference to it. Priors are registered by name in ``PRIORS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.models.distributions import DiagonalGaussianMixture, StandardNormal
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class Prior(nn.Module, ABC):
    """Interface: ``prior(model)`` -> p(z), batch shape (), event shape (L,).

    What each prior declares (read into the model's ``LatentSpec``):
    conditional: the prior is p(z|y), called ``prior(model, context)`` with context vectors (*batch, K)
    and returning batch shape ``batch`` (``vaekit.models.condition``). has_components: the prior is a
    mixture of ``prior_components`` components. closed_form_kl: the KL from a diagonal Gaussian
    posterior to it is registered in closed form. gaussian: every layer of p(z) is a diagonal Gaussian
    given its parent layer. parents: each layer's parent in p (``(None,)`` for one layer).
    """

    conditional: ClassVar[bool] = False
    has_components: ClassVar[bool] = False
    closed_form_kl: ClassVar[bool] = False
    gaussian: ClassVar[bool] = False
    parents: tuple[int | None, ...] = (None,)

    @classmethod
    @abstractmethod
    def from_config(cls, config: ModelConfig) -> Prior:
        """The prior ``config`` describes (``latent_dim``, ``prior_components``, ...)."""

    @abstractmethod
    def forward(self, model: nn.Module) -> Distribution:
        """p(z); ``model`` is the ``LatentVariableModel`` this prior belongs to."""

    def top_prior(self) -> Prior:
        """The prior over the top layer (the one without a parent): this prior itself for one layer."""
        return self


PRIORS: Registry[type[Prior]] = Registry("prior")


@PRIORS.register("normal")
class StandardNormalPrior(Prior):
    """p(z) = N(0, I); the KL from a diagonal Gaussian posterior has a closed form."""

    closed_form_kl = True
    gaussian = True

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
