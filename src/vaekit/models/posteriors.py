"""Posterior heads q(z|x): map encoder features (B, F) to a distribution over z (event (L,)).

Heads are registered in ``POSTERIORS`` under the model kind they make: ``vae`` (a Gaussian) and
``ae`` (a point mass: the plain autoencoder).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.models.distributions import DiagonalNormal, PointMass
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

    What each head declares of its q(z|x) (read into the model's ``LatentSpec``):
    sizes: the stochastic layers' sizes, ``(L,)`` for one layer (set by ``__init__``).
    density: q has a density (False: a point mass, the plain autoencoder: no KL term, no sampling).
    factorises: q is a product of one-dimensional distributions over the units.
    gaussian: every layer of q is a diagonal Gaussian (``DiagonalNormal``) given its parent layer's code.
    closed_form_kl: q's family has a closed-form KL registered to the priors that declare one.
    parents, sees_x: each layer's parent in q (None: none) and whether its network reads x; one
    layer: ``(None,)`` and ``(True,)``. ``decoder_layers()``: the layers p(x|·) reads.
    """

    sizes: tuple[int, ...]
    density: ClassVar[bool] = True
    factorises: ClassVar[bool] = True
    gaussian: ClassVar[bool] = False
    closed_form_kl: ClassVar[bool] = False
    parents: tuple[int | None, ...] = (None,)
    sees_x: tuple[bool, ...] = (True,)

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

    def decoder_layers(self) -> tuple[int, ...]:
        """The layers whose codes p(x|·) reads: the one layer of a one-layer model."""
        return (0,)


POSTERIORS: Registry[type[PosteriorHead]] = Registry("model kind")


@POSTERIORS.register("vae")
class GaussianPosterior(PosteriorHead):
    """q(z|x) = N(μ(x), diag σ²(x)): one linear layer gives the mean and the log-variance
    (one (F, 2L) matrix product rather than two thin ones), the latter clamped to ``logvar_range``."""

    gaussian = True
    closed_form_kl = True

    def __init__(self, features: int, latent_dim: int, logvar_range: tuple[float, float] = (LOGVAR_MIN, LOGVAR_MAX)):
        super().__init__()
        self.sizes = (latent_dim,)
        self.params = nn.Linear(features, 2 * latent_dim)
        self.logvar_range = tuple(logvar_range)

    @classmethod
    def from_config(cls, config: ModelConfig, features: int) -> GaussianPosterior:
        return cls(features, config.latent_dim, config.logvar_range)

    def forward(self, h: torch.Tensor) -> Distribution:
        mu, logvar = full_precision(self.params(h)).chunk(2, dim=-1)  # (B, L) each
        return DiagonalNormal(mu, logvar.clamp(*self.logvar_range))


@POSTERIORS.register("ae")
class DeterministicPosterior(PosteriorHead):
    """The bottleneck of a plain autoencoder: z = W h + b, returned as a ``PointMass`` (a product of
    point masses: it factorises, without a density)."""

    density = False

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.sizes = (latent_dim,)
        self.mean = nn.Linear(features, latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return PointMass(full_precision(self.mean(h)))
