"""The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) Σ_k q(z|u_k), the model's own posterior at K
learned pseudo-inputs u_k.

The prior is called with the model (``prior(model)``), runs ``model.encode`` on its pseudo-inputs and
returns the mixture of the K Gaussian posteriors (for a conditional model, pseudo-input k is encoded
with the context ``model.condition.contexts(K)[k]``: the classes in turn). It holds no reference to the encoder, so the module
tree and ``state_dict`` stay a tree. No closed-form KL exists, so the objective uses Monte Carlo
(``vaekit.objectives.kl_to_prior``); the importance-weighted estimate uses log p(z) exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily

from vaekit.errors import ConfigError
from vaekit.models.likelihoods import LIKELIHOODS
from vaekit.models.posteriors import DiagonalNormal
from vaekit.models.priors import PRIORS, Prior

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

# Pseudo-inputs start as N(mean, std²) pixels. For data in [0, 1] the start lies inside the clip range
# near the (mostly black) background, so every pixel gets a gradient from the first step.
PSEUDO_INIT = {"unit": (0.05, 0.01), "real": (0.0, 0.01)}


@PRIORS.register("vampprior")
class VampPrior(Prior):
    """p(z) = (1/K) Σ_k q(z|u_k), K = ``prior_components``, u_k = clip(W e_k): the paper's linear map
    W (D, K) from the K one-hot vectors e_k, whose image of e_k is W's k-th column, held here as the
    (K, D) matrix of those columns. clip is hardtanh to [0, 1] for data in [0, 1] (Bernoulli-type
    likelihoods), the identity for real-valued data."""

    def __init__(self, input_shape: tuple[int, ...], components: int = 500, unit_range: bool = True):
        super().__init__()
        self.input_shape, self.unit_range = tuple(input_shape), unit_range
        mean, std = PSEUDO_INIT["unit" if unit_range else "real"]
        g = torch.Generator().manual_seed(0)
        self.pseudo_weight = nn.Parameter(mean + std * torch.randn(components, math.prod(input_shape), generator=g))  # (K, D)

    @classmethod
    def from_config(cls, config: ModelConfig) -> VampPrior:
        if config.kind != "vae" or config.flow != "none":
            raise ConfigError("the vampprior's components are the model's Gaussian posteriors: it needs --model vae without a flow")
        unit = LIKELIHOODS[config.likelihood].support == "unit"
        return cls(tuple(config.input_shape), config.prior_components, unit_range=unit)

    def pseudo_inputs(self) -> torch.Tensor:
        """u (K, *input_shape)."""
        u = F.hardtanh(self.pseudo_weight, 0.0, 1.0) if self.unit_range else self.pseudo_weight
        return u.view(-1, *self.input_shape)

    def forward(self, model: nn.Module) -> Distribution:
        u = self.pseudo_inputs()
        context = None if model.condition is None else model.condition.contexts(len(u))  # a conditional model: u_k gets class k mod C
        q = model.encode(u, context)  # batch (K,), event (L,)
        if not isinstance(q, DiagonalNormal):
            raise ConfigError(f"the vampprior needs a diagonal Gaussian posterior, got {type(q).__name__}")
        return DiagonalGaussianMixture(q.mean, q.logvar)


class DiagonalGaussianMixture(MixtureSameFamily):
    """(1/K) Σ_k N(μ_k, diag exp(logvar_k)) over (L,): batch shape (), event (L,).

    ``log_prob`` computes the K log-densities with one matrix product instead of materialising
    z − μ_k for every pair (N, K, L) (the IW estimate evaluates it at millions of z):
    log N(z; μ_k, σ_k²) = −½ [z²·(1/σ_k²) − 2 z·(μ_k/σ_k²)] + c_k, with [z², z] (N, 2L) against a
    (K, 2L) matrix, in float64 so that the expanded square does not cancel for narrow components.
    """

    def __init__(self, loc: torch.Tensor, logvar: torch.Tensor):
        mix = Categorical(logits=torch.zeros(len(loc), device=loc.device, dtype=loc.dtype), validate_args=False)
        super().__init__(mix, DiagonalNormal(loc, logvar), validate_args=False)
        loc64, logvar64 = loc.double(), logvar.double()  # (K, L) each
        prec = torch.exp(-logvar64)
        self._weight = -0.5 * torch.cat([prec, -2 * loc64 * prec], 1)  # (K, 2L)
        norm = (loc64.square() * prec).sum(-1) + logvar64.sum(-1) + loc.shape[-1] * math.log(2 * math.pi)  # (K,)
        self._bias = -0.5 * norm - math.log(len(loc))  # (K,): the constants and the mixture weight 1/K

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z (*S, L) -> (*S,)."""
        zd = z.double().reshape(-1, z.shape[-1])  # (N, L)
        log_comp = torch.addmm(self._bias, torch.cat([zd.square(), zd], -1), self._weight.T)  # (N, K): log (1/K) N(z; μ_k, σ_k²)
        return torch.logsumexp(log_comp, -1).view(z.shape[:-1]).to(z.dtype)
