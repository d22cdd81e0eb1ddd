"""Discretised likelihoods for 8-bit data: a probability (not a density) for each of the 256 levels.

Data arrive as x = k / 255 in [0, 1] (k = 0 .. 255, the way vaekit loads 8-bit images); the heads
map x back to the integer level k and return log P(k), so the negative ELBO is a code length and
``vaekit compress`` can code the data losslessly with the same probabilities.

- ``beta-binomial`` (BB-ANS): k ~ BetaBinomial(255, α, β) per pixel, log α and log β from the decoder.
- ``discretized-logistic`` (PixelCNN++ without the mixture): the logistic(μ, s) mass of the bin
  [k - ½, k + ½] / 255, the first and last bins taking the tails.

The distributions themselves are ``BetaBinomial`` and ``DiscretizedLogistic`` of ``vaekit.models.distributions``.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Independent

from vaekit.models.distributions import LOG_PARAM_MAX, LOG_PARAM_MIN, BetaBinomial, DiscretizedLogistic
from vaekit.models.likelihoods import LikelihoodHead, register_likelihood


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
