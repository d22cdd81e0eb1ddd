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
from torch.distributions import Distribution

from vaekit.errors import ConfigError
from vaekit.models.distributions import DiagonalGaussianMixture
from vaekit.models.hierarchy import HIERARCHIES, is_hierarchical
from vaekit.models.kinds import MODEL_KINDS
from vaekit.models.likelihoods import LIKELIHOODS
from vaekit.models.posteriors import POSTERIORS
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

    has_components = True

    def __init__(self, input_shape: tuple[int, ...], components: int = 500, unit_range: bool = True):
        super().__init__()
        self.input_shape, self.unit_range = tuple(input_shape), unit_range
        mean, std = PSEUDO_INIT["unit" if unit_range else "real"]
        g = torch.Generator().manual_seed(0)
        self.pseudo_weight = nn.Parameter(mean + std * torch.randn(components, math.prod(input_shape), generator=g))  # (K, D)

    @classmethod
    def from_config(cls, config: ModelConfig) -> VampPrior:
        if not POSTERIORS[MODEL_KINDS[config.kind].posterior].gaussian or config.flow != "none":
            raise ConfigError("the vampprior's components are the model's Gaussian posteriors: it needs --model vae without a flow")
        if is_hierarchical(config) and not HIERARCHIES[config.hierarchy].top_sees_x_alone(len(config.latent_layers)):
            raise ConfigError(
                f"the vampprior's components are q(z_L|u), which the {config.hierarchy} hierarchy lacks: use --hierarchy skip (or branched)"
            )
        unit = LIKELIHOODS[config.likelihood].support == "unit"
        return cls(tuple(config.input_shape), config.prior_components, unit_range=unit)

    def pseudo_inputs(self) -> torch.Tensor:
        """u (K, *input_shape)."""
        u = F.hardtanh(self.pseudo_weight, 0.0, 1.0) if self.unit_range else self.pseudo_weight
        return u.view(-1, *self.input_shape)

    def forward(self, model: nn.Module) -> Distribution:
        u = self.pseudo_inputs()
        # a conditional model: u_k gets contexts(K)[k] (class k mod C, or the mean context)
        context = None if model.condition is None else model.condition.contexts(len(u))
        if not model.posterior.gaussian:  # the head's declared fact (a class attribute: cheap in the compiled step)
            raise ConfigError("the vampprior needs a diagonal Gaussian posterior (no flow, not a point mass)")
        q = model.encode_top(u, context)  # a DiagonalNormal, batch (K,), event (L,): for a hierarchical model, q(z_L|u)
        return DiagonalGaussianMixture(q.mean, q.logvar)


def vampprior_of(model) -> VampPrior:
    """The VampPrior of ``model`` (over z, or over a hierarchical model's top layer); a one-line
    ``ConfigError`` for a model with another prior."""
    top = model.prior_module.top_prior()
    if not isinstance(top, VampPrior):
        raise ConfigError(f"this model has no pseudo-inputs: its prior is {model.config.prior!r}, not the vampprior")
    return top
