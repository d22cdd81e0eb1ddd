"""Flow posteriors: q(z|x) = the Gaussian posterior pushed through T invertible steps.

Each step is a ``torch.distributions.Transform`` with its own ``log_abs_det_jacobian``, made per
batch from the encoder features h (the context), and the steps are composed with
``TransformedDistribution``; ``rsample`` and ``log_prob`` come from the library, and the KL to the
prior falls back to Monte Carlo. Steps are registered in ``FLOWS`` (``ModelConfig.flow``):

- ``iaf``: inverse autoregressive flow (Kingma et al. 2016): (m, s) = MADE(z, h), σ = sigmoid(s),
  z' = σ ⊙ z + (1 − σ) ⊙ m, log|det| = Σ log σ; successive steps alternate the autoregressive order.
- ``planar``: planar flow (Rezende & Mohamed 2015): z' = z + û tanh(wᵀz + b), its (u, w, b) computed
  from h; û keeps wᵀû ≥ −1 so the step is invertible.

``build_model`` wraps the posterior head in a ``FlowPosterior`` when ``config.flow`` is not ``none``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Transform, constraints

from vaekit.errors import ConfigError
from vaekit.models.distributions import FlowDistribution
from vaekit.models.posteriors import PosteriorHead, full_precision
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

MADE_WIDTH = 4  # hidden units of an IAF step's MADE per latent dimension (at least 32)
IAF_GATE_BIAS = 2.0  # σ starts near sigmoid(2) ≈ 0.88: each IAF step starts close to the identity (Kingma et al.)


class FlowStep(nn.Module, ABC):
    """Interface: the learned part of one flow step; ``transform(h)`` -> the step's ``Transform`` for
    the batch whose encoder features are h (B, F)."""

    @classmethod
    def build(cls, features: int, latent_dim: int, index: int) -> FlowStep:
        """Step ``index`` (from 0) of a flow on z (B, ``latent_dim``) fed encoder features (B, ``features``)."""
        return cls(features, latent_dim)

    @abstractmethod
    def transform(self, h: torch.Tensor) -> Transform:
        """The step for this batch, acting on z (*S, B, L)."""


FLOWS: Registry[type[FlowStep]] = Registry("flow")


class FlowPosterior(PosteriorHead):
    """A Gaussian posterior head followed by flow steps, all fed the same encoder features h: a density
    that does not factorise over the units, whose KL to any prior is Monte Carlo."""

    factorises = False

    def __init__(self, base: PosteriorHead, steps: list[FlowStep]):
        super().__init__()
        self.base, self.steps = base, nn.ModuleList(steps)
        self.sizes = base.sizes

    @classmethod
    def from_config(cls, config: ModelConfig, features: int, base: PosteriorHead | None = None) -> FlowPosterior:
        """``base`` (the head ``config.kind`` names) followed by ``config.flow_steps`` steps of ``config.flow``."""
        if base is None or not base.density:
            raise ConfigError("a flow needs a stochastic posterior (--model vae)")
        step = FLOWS[config.flow]
        return cls(base, [step.build(features, config.latent_dim, i) for i in range(config.flow_steps)])

    def forward(self, h: torch.Tensor) -> Distribution:
        q0 = self.base(h)  # (B,), event (L,)
        h = full_precision(h)
        return FlowDistribution(q0, [step.transform(h) for step in self.steps])


# ----- inverse autoregressive flow -------------------------------------------------------------------


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in) (MADE, Germain et al. 2015)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


@FLOWS.register("iaf")
class IAFStep(FlowStep):
    """One IAF step: a MADE with one hidden layer (plus the context h) gives (m, s) for every dimension,
    output d depending only on the inputs before d in this step's order (reversed on odd steps)."""

    @classmethod
    def build(cls, features: int, latent_dim: int, index: int) -> IAFStep:
        return cls(features, latent_dim, reverse=index % 2 == 1)

    def __init__(self, features: int, latent_dim: int, reverse: bool = False):
        super().__init__()
        L, width = latent_dim, max(32, MADE_WIDTH * latent_dim)
        order = torch.arange(1, L + 1)
        self.register_buffer("order", order.flip(0) if reverse else order)  # the degree of each input
        hidden_deg = torch.arange(width) % max(1, L - 1) + 1  # (H,) in [1, L-1]
        self.hidden = MaskedLinear(L, width, hidden_deg[:, None] >= self.order[None, :])
        self.context = nn.Linear(features, width)
        out_deg = self.order.repeat(2)  # (2L,): m then s, each in the input order
        self.out = MaskedLinear(width, 2 * L, out_deg[:, None] > hidden_deg[None, :])
        with torch.no_grad():
            self.out.weight.mul_(0.01)
            self.out.bias.zero_()
            self.out.bias[L:] = IAF_GATE_BIAS

    def made(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, log σ) for z (*S, B, L) and context h (B, F): (*S, B, L) each."""
        a = F.elu(self.hidden(z) + self.context(h))  # (*S, B, H)
        m, s = self.out(a).chunk(2, dim=-1)
        return m, F.logsigmoid(s)

    def transform(self, h: torch.Tensor) -> Transform:
        return IAFTransform(self, h)


class IAFTransform(Transform):
    """z' = σ ⊙ z + (1 − σ) ⊙ m with (m, log σ) = MADE(z, h); log|det ∂z'/∂z| = Σ log σ (the Jacobian is triangular)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, step: IAFStep, h: torch.Tensor):
        super().__init__(cache_size=1)
        self.step, self.h = step, h
        self._log_sigma: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, log σ) of the last call

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        m, log_sigma = self.step.made(z, self.h)
        self._log_sigma = (z, log_sigma)
        sigma = log_sigma.exp()
        return sigma * z + (1 - sigma) * m

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Solved one dimension at a time in the step's order (L passes of the MADE)."""
        z = torch.zeros_like(y)
        for d in torch.argsort(self.step.order).tolist():
            m, log_sigma = self.step.made(z, self.h)
            sigma = log_sigma[..., d].exp()
            z = z.clone()
            z[..., d] = (y[..., d] - (1 - sigma) * m[..., d]) / sigma
        return z

    def log_abs_det_jacobian(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._log_sigma is not None and self._log_sigma[0] is z:
            log_sigma = self._log_sigma[1]
        else:
            log_sigma = self.step.made(z, self.h)[1]
        return log_sigma.sum(-1)  # (*S, B)


# ----- planar flow ---------------------------------------------------------------------------------


@FLOWS.register("planar")
class PlanarStep(FlowStep):
    """One planar step whose (u, w, b) are a linear function of the encoder features (amortised, as in
    Rezende & Mohamed)."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.params = nn.Linear(features, 2 * latent_dim + 1)
        with torch.no_grad():
            self.params.weight.mul_(0.1)

    def transform(self, h: torch.Tensor) -> Transform:
        u, w, b = self.params(h).split([self.latent_dim, self.latent_dim, 1], dim=-1)  # (B, L), (B, L), (B, 1)
        return PlanarTransform(u, w, b)


class PlanarTransform(Transform):
    """z' = z + û tanh(wᵀz + b), û = u + (m(wᵀu) − wᵀu) w / ||w||², m(a) = −1 + softplus(a), so wᵀû > −1
    and the map is invertible; log|det| = log|1 + ûᵀψ(z)|, ψ(z) = (1 − tanh²(wᵀz + b)) w.
    The inverse has no closed form (``Transform._inverse`` is left unimplemented): ``log_prob`` works on
    the flow's own draws (the cached forward)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
        super().__init__(cache_size=1)
        wu = (w * u).sum(-1, keepdim=True)  # (B, 1)
        self.u_hat = u + (F.softplus(wu) - 1 - wu) * w / w.square().sum(-1, keepdim=True).clamp_min(1e-12)
        self.w, self.b = w, b

    def _activation(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh((z * self.w).sum(-1, keepdim=True) + self.b)  # (*S, B, 1)

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.u_hat * self._activation(z)

    def log_abs_det_jacobian(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        psi_u = (1 - self._activation(z).square()) * (self.w * self.u_hat).sum(-1, keepdim=True)  # (*S, B, 1)
        return torch.log((1 + psi_u).abs().clamp_min(1e-12)).squeeze(-1)  # (*S, B)
