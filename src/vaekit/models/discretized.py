"""Discretised likelihoods for 8-bit data: a probability (not a density) for each of the 256 levels.

Data arrive as x = k / 255 in [0, 1] (k = 0 .. 255, the way vaekit loads 8-bit images); the heads
map x back to the integer level k and return log P(k), so the negative ELBO is a code length and
``vaekit compress`` can code the data losslessly with the same probabilities.

- ``beta-binomial`` (BB-ANS): k ~ BetaBinomial(255, α, β) per pixel, log α and log β from the decoder.
- ``discretized-logistic`` (PixelCNN++ without the mixture): the logistic(μ, s) mass of the bin
  [k - ½, k + ½] / 255, the first and last bins taking the tails.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch.distributions import Beta, Binomial, Distribution, Independent, constraints

from vaekit.models.likelihoods import LikelihoodHead, register_likelihood

LEVELS = 256  # 8-bit data
LOG_PARAM_MIN, LOG_PARAM_MAX = -7.0, 7.0  # a numerically safe range for the log-parameters


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """x in [0, 1] (k / 255) -> the integer level k as a float tensor of the same shape."""
    return torch.round(x * (LEVELS - 1)).clamp(0, LEVELS - 1)


class _Discretized(Distribution, ABC):
    """Per-value distribution over the levels k / 255 (batch shape = the parameters' shape)."""

    support = constraints.unit_interval
    has_rsample = False

    @abstractmethod
    def level_log_prob(self, k: torch.Tensor) -> torch.Tensor:
        """log P(k) of the integer levels k (a float tensor) -> (*batch)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.level_log_prob(to_levels(value))


class BetaBinomial(_Discretized):
    """k ~ BetaBinomial(n = 255, α, β), reported on x = k / 255. α, β: (*batch)."""

    arg_constraints = {"alpha": constraints.positive, "beta": constraints.positive}

    def __init__(self, log_alpha: torch.Tensor, log_beta: torch.Tensor):
        self.log_alpha = log_alpha.clamp(LOG_PARAM_MIN, LOG_PARAM_MAX)
        self.log_beta = log_beta.clamp(LOG_PARAM_MIN, LOG_PARAM_MAX)
        self.alpha, self.beta = self.log_alpha.exp(), self.log_beta.exp()
        super().__init__(self.alpha.shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.alpha / (self.alpha + self.beta)

    def level_log_prob(self, k: torch.Tensor) -> torch.Tensor:
        n, a, b = float(LEVELS - 1), self.alpha, self.beta
        log_choose = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        return (
            log_choose
            + torch.lgamma(k + a)
            + torch.lgamma(n - k + b)
            - torch.lgamma(n + a + b)
            - torch.lgamma(a)
            - torch.lgamma(b)
            + torch.lgamma(a + b)
        )

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            p = Beta(self.alpha, self.beta).sample(sample_shape)
            return Binomial(LEVELS - 1, probs=p).sample() / (LEVELS - 1)


class DiscretizedLogistic(_Discretized):
    """The mass of logistic(μ, s) on the bin of each level k / 255 (edges ± ½ / 255); the first and
    last levels take the tails. loc, log_scale: (*batch), in data units."""

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor):
        self.loc, self.log_scale = loc, log_scale.clamp(LOG_PARAM_MIN, LOG_PARAM_MAX)
        super().__init__(loc.shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.clamp(0, 1)

    def level_log_prob(self, k: torch.Tensor) -> torch.Tensor:
        inv_s = torch.exp(-self.log_scale)
        upper = ((k + 0.5) / (LEVELS - 1) - self.loc) * inv_s  # (*batch)
        lower = ((k - 0.5) / (LEVELS - 1) - self.loc) * inv_s
        # σ(u) - σ(l) = σ(u) σ(-l) (1 - e^(l - u)): stable for any u > l
        width = inv_s / (LEVELS - 1)
        mid = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-width))
        return torch.where(k <= 0, F.logsigmoid(upper), torch.where(k >= LEVELS - 1, F.logsigmoid(-lower), mid))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            x = self.loc + self.log_scale.exp() * torch.logit(u)
            return to_levels(x.clamp(0, 1)) / (LEVELS - 1)


class _DiscretizedHead(LikelihoodHead):
    support = "unit"
    params_per_output = 2


@register_likelihood("beta-binomial")
class BetaBinomialHead(_DiscretizedHead):
    """Per-pixel beta-binomial over the 256 levels (BB-ANS's likelihood): decoder gives log α, log β."""

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        m = mean.clamp(0.02, 0.98)
        total = (m * (1 - m) / std.clamp_min(0.02).square() - 1).clamp(0.05, 100.0)  # α + β by moments
        return torch.stack([(m * total).log(), ((1 - m) * total).log()]).clamp(LOG_PARAM_MIN, LOG_PARAM_MAX)

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(BetaBinomial(self.param(params, 0), self.param(params, 1)), self.event_dims)


@register_likelihood("discretized-logistic")
class DiscretizedLogisticHead(_DiscretizedHead):
    """Per-pixel discretised logistic over the 256 levels: decoder gives μ (data units) and log s."""

    def output_params(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        log_s = (std.clamp_min(1e-2) * math.sqrt(3) / math.pi).log()  # a logistic's std is s π / √3
        return torch.stack([mean, log_s.clamp(LOG_PARAM_MIN, LOG_PARAM_MAX)])

    def forward(self, params: torch.Tensor) -> Distribution:
        return Independent(DiscretizedLogistic(self.param(params, 0), self.param(params, 1)), self.event_dims)
