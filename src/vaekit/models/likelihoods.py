"""Likelihood heads p(x|z): turn decoder outputs into a ``torch.distributions`` object.

A head takes the decoder's parameters (*batch, k, *shape) -- k = ``head.params_per_output`` -- and
returns a distribution with batch shape ``batch`` (usually (B,)) and event shape ``shape``, so
``log_prob(x)`` is (*batch,), broadcasting x against the batch, and ``.mean`` is the decoder mean.
Heads are registered by name in ``LIKELIHOODS`` (``@register_likelihood(name)``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import ContinuousBernoulli, Distribution, Independent, Normal

from vaekit.models.distributions import FastBernoulli
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 5.0  # keep learned Gaussian scales in a numerically safe range

LIKELIHOODS: Registry[type[LikelihoodHead]] = Registry("likelihood")
register_likelihood = LIKELIHOODS.register  # the decorator a new head is registered with


class LikelihoodHead(nn.Module, ABC):
    """Interface. ``params_per_output``: channels the decoder must produce per data value.
    ``support``: ``unit`` or ``real`` -- the data values the distribution accepts. ``takes_scale``:
    the head reads ``scale`` (``--sigma``). ``binary``: a probability mass on {0, 1}, so its negative
    ELBO is a code length for binary data only (grey values in [0, 1] are soft targets, no code length)."""

    name: ClassVar[str]
    params_per_output: ClassVar[int] = 1
    support: ClassVar[str] = "real"
    takes_scale: ClassVar[bool] = False
    binary: ClassVar[bool] = False

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.event_dims = len(shape)

    @classmethod
    def from_config(cls, config: ModelConfig) -> LikelihoodHead:
        """The head for data of ``config.input_shape`` (and ``likelihood_scale`` for a head that ``takes_scale``)."""
        scale = {"scale": config.likelihood_scale} if cls.takes_scale else {}
        return cls(shape=tuple(config.input_shape), **scale)

    @abstractmethod
    def forward(self, params: torch.Tensor) -> Distribution:
        """p(x|z) from decoder outputs (*batch, k, *shape): batch shape ``batch``, event ``shape``."""

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor | None:
        """Decoder outputs (k, *shape) under which p(x|z) has the data's per-dimension ``mean``
        (and ``std``): a starting bias for the decoder's last layer. None: no such start."""
        return None

    def initial_params(self, x: torch.Tensor) -> torch.Tensor | None:
        """The decoder outputs at which p(x|z) fits the examples x (N, *shape) on average (``output_params``
        of their per-dimension mean and spread): a starting bias for the decoder's last layer. None: no such start."""
        x = x.float()
        return self.output_params(x.mean(0), x.std(0) if len(x) > 1 else torch.ones_like(x[0]))

    def param(self, params: torch.Tensor, i: int) -> torch.Tensor:
        """The i-th parameter map (*batch, *shape) of decoder output (*batch, k, *shape)."""
        return params.select(-1 - self.event_dims, i)


@register_likelihood("bernoulli")
class BernoulliHead(LikelihoodHead):
    """Bernoulli with logits; for binary data (grayscale in [0, 1] is accepted as soft targets)."""

    support = "unit"
    binary = True

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3)).unsqueeze(0)  # the log-odds of each pixel

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(FastBernoulli(logits=self.param(params, 0), validate_args=False), self.event_dims)


@register_likelihood("continuous-bernoulli")
class ContinuousBernoulliHead(LikelihoodHead):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): a proper density on [0, 1]."""

    support = "unit"

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(ContinuousBernoulli(logits=self.param(params, 0), validate_args=False), self.event_dims)


@register_likelihood("gaussian")
class GaussianFixedHead(LikelihoodHead):
    """Normal(mean, σ) with a fixed σ (``scale``): σ² plays the role of the β / constant c trade-off."""

    takes_scale = True

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0):
        super().__init__(shape)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return mean.unsqueeze(0)

    def forward(self, params: torch.Tensor) -> Distribution:
        mean = self.param(params, 0)
        return Independent(Normal(mean, self.scale.expand_as(mean), validate_args=False), self.event_dims)


@register_likelihood("gaussian-learned")
class GaussianLearnedHead(LikelihoodHead):
    """Normal(mean, σ(z)): the decoder predicts a mean and a log-scale for every output."""

    params_per_output = 2

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return torch.stack([mean, std.clamp_min(1e-3).log().clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)])

    def forward(self, params: torch.Tensor) -> Distribution:
        mean, log_scale = self.param(params, 0), self.param(params, 1).clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
        return Independent(Normal(mean, log_scale.exp(), validate_args=False), self.event_dims)


@register_likelihood("gaussian-shared")
class GaussianSharedHead(LikelihoodHead):
    """Normal(mean, σ): one learned scale per data dimension, shared by all examples (starting at ``scale``)."""

    takes_scale = True

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0):
        super().__init__(shape)
        self.log_scale = nn.Parameter(torch.full(shape, math.log(scale)))

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return mean.unsqueeze(0)

    def forward(self, params: torch.Tensor) -> Distribution:
        mean = self.param(params, 0)
        scale = self.log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX).exp().expand_as(mean)
        return Independent(Normal(mean, scale, validate_args=False), self.event_dims)
