"""vaekit's own ``torch.distributions`` classes and their closed-form KLs (``@register_kl``).

The model's parts return these (or the library's own classes); the objectives only use the
distribution interface: ``rsample``, ``log_prob``, ``mean``, and ``kl_divergence`` where a closed
form is registered, with a Monte Carlo fallback otherwise. One class per concept:

- over z: ``DiagonalNormal`` (a Gaussian posterior, keeping its log-variance), ``StandardNormal``
  (N(0, I)), the closed-form KL between them, ``PointMass`` (a plain autoencoder's code),
  ``DiagonalGaussianMixture`` (a mixture or VampPrior prior), ``LayeredGaussian`` (the layers of a
  hierarchical model) and ``FlowDistribution`` (a Gaussian pushed through flow steps);
- over x: ``FastBernoulli``, and ``BetaBinomial`` and ``DiscretizedLogistic`` over 8-bit levels;
- ``marginals``: the per-dimension marginals of a distribution over z.
- ``StandardNormalDraws`` and ``PathDerivative``: what a posterior can do beyond that interface
  (map fixed standard-normal draws to z; give its log-density with its parameters' gradients
  stopped), which the objectives ask for with ``isinstance``.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    Transform,
    TransformedDistribution,
    constraints,
    register_kl,
)

from vaekit.errors import ConfigError

# ----- what a posterior can do beyond the distribution interface (the objectives ask for it) ------


class StandardNormalDraws(ABC):
    """A posterior that maps standard-normal draws ε to z itself (a flow: z = f(μ + σ·ε)). The
    fixed-draws path (``Draws.noise``) uses ``from_standard_normal``; for any other posterior it
    takes z = E_q[z] + std_q[z]·ε, which holds for location-scale families."""

    @abstractmethod
    def from_standard_normal(self, eps: torch.Tensor) -> torch.Tensor:
        """z (*S, B, L) for draws ε (*S, B, L) or (*S, 1, L)."""


class PathDerivative(ABC):
    """A posterior whose log-density can be taken with its parameters' gradients stopped, for the
    path-derivative ("sticking the landing") gradient of Roeder et al. 2017: in log q(z|x) the
    encoder's parameters then act only through the draw z, so the score term ∇_φ log q_φ(z), zero in
    expectation, leaves the gradient (and the gradient is zero when q is the true posterior)."""

    @abstractmethod
    def parameters_stopped(self) -> Distribution:
        """The same distribution with no gradient to its parameters: log_prob(z) depends on z alone
        (through the fixed networks, for a layer whose parameters are computed from a parent layer's code)."""


# ----- Gaussians over z -----------------------------------------------------------------------


class DiagonalNormal(Independent, PathDerivative):
    """N(loc, diag exp(logvar)) as ``Independent(Normal(loc, exp(logvar / 2)), 1)`` that keeps its
    log-variance, so the KL to a standard normal is the closed form on (μ, log σ²) below."""

    def __init__(self, loc: torch.Tensor, logvar: torch.Tensor):
        self.logvar = logvar  # (B, L)
        super().__init__(Normal(loc, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)

    def parameters_stopped(self) -> DiagonalNormal:
        return DiagonalNormal(self.mean.detach(), self.logvar.detach())


class StandardNormal(Independent):
    """N(0, I) over (L,): ``Independent(Normal(0, 1), 1)``, a type of its own so that the KL from a
    ``DiagonalNormal`` is registered in closed form. loc, scale: zeros and ones (L,) (a prior's buffers,
    so that p(z) lives on the model's device and dtype)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Normal(loc, scale, validate_args=False), 1, validate_args=False)


@register_kl(DiagonalNormal, StandardNormal)
def _kl_diagonal_standard(q: DiagonalNormal, p: StandardNormal) -> torch.Tensor:
    """KL(N(μ, diag σ²) || N(0, I)) = ½ Σ (σ² + μ² − 1 − log σ²), per example (B,)."""
    return 0.5 * (q.logvar.exp() + q.mean.square() - 1 - q.logvar).sum(-1)


class PointMass(Distribution):
    """A point mass at ``loc`` (batch (B,), event (L,)): the 'posterior' of a plain autoencoder.
    ``rsample`` returns ``loc`` (expanded to the sample shape) with its gradient."""

    arg_constraints = {"loc": constraints.real_vector}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor):
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros(value.shape[:-1], device=value.device, dtype=value.dtype)


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


# ----- the layers of a hierarchical model -----------------------------------------------------


class LayeredGaussian(Distribution, StandardNormalDraws, PathDerivative):
    """A distribution over z = [z_1, ..., z_L] (event (Σ L_l,)) given layer by layer: layer i is
    ``layer(i, parent)``, a distribution over z_l given the code of its parent layer (None for a
    layer without one), sampled in ``order`` (each parent before its children).

    log_prob(z) = Σ_l log p_l(z_l | z_parent(i)). ``mean`` is the mean pass: each layer's mean given
    its parent at its own mean (E[z] itself for the layers without a parent; a point summary for codes
    and reconstructions below them). The log-density of the distribution's own last draw reuses the
    layer distributions of the draw. ``stopped_layer``, where given, is ``layer`` with the networks'
    parameters (and their inputs other than the parent's code) stopped: ``parameters_stopped``.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        sizes: tuple[int, ...],
        parents: tuple[int | None, ...],
        layer: Callable[[int, torch.Tensor | None], Distribution],
        batch_shape: torch.Size,
        stopped_layer: Callable[[int, torch.Tensor | None], Distribution] | None = None,
    ):
        self.sizes, self.parents, self.layer, self.stopped_layer = tuple(sizes), tuple(parents), layer, stopped_layer
        self.order = topological_order(parents)
        self.offsets = tuple(itertools.accumulate(sizes, initial=0))
        self._last: tuple[torch.Tensor, list[Distribution]] | None = None
        super().__init__(batch_shape, torch.Size([sum(sizes)]), validate_args=False)

    def map_layers(self, fn: Callable[[Distribution], Distribution]) -> LayeredGaussian:
        """The same layering with every layer's distribution passed through ``fn`` (e.g. tempered: each
        layer's spread given its parent scaled, as hierarchical models are sampled at a temperature)."""
        return LayeredGaussian(self.sizes, self.parents, lambda i, parent: fn(self.layer(i, parent)), self.batch_shape)

    def parameters_stopped(self) -> LayeredGaussian:
        """log q(z) with no gradient to the networks' parameters: each layer's parameters are computed
        from its parent's code in z by the networks with their weights held fixed, so z_{l+1} still
        acts on log q(z_l|x, z_{l+1}) (without that path the gradient stays unbiased but is no longer
        zero at the true posterior)."""
        if self.stopped_layer is None:
            raise ValueError("this layered distribution (a prior, or a tempered posterior) has no stopped form for stl")
        return LayeredGaussian(self.sizes, self.parents, self.stopped_layer, self.batch_shape)

    def part(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """z_l (*, L_l) from the concatenated code z (*, Σ L)."""
        return z[..., self.offsets[i] : self.offsets[i + 1]]

    def layers(self, z: torch.Tensor) -> list[Distribution]:
        """The L layer distributions at the parents' codes in z (*S, *batch, Σ L): batch (*S, *batch) below a parent."""
        if self._last is not None and self._last[0] is z:
            return self._last[1]
        return [self.layer(i, None if p is None else self.part(z, p)) for i, p in enumerate(self.parents)]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density at z (*S, *batch, Σ L) -> (*S, *batch)."""
        return sum(d.log_prob(self.part(z, i)) for i, d in enumerate(self.layers(z)))

    def _ancestral(self, draw: Callable[[int, Distribution, bool], torch.Tensor], fixed: dict[int, torch.Tensor] | None = None):
        """Codes of every layer in ``order``: ``fixed[i]`` where given, else ``draw(i, dist, has_parent)``."""
        codes: list[torch.Tensor | None] = [None] * len(self.sizes)
        dists: list[Distribution | None] = [None] * len(self.sizes)
        for i in self.order:
            p = self.parents[i]
            dists[i] = self.layer(i, None if p is None else codes[p])
            codes[i] = fixed[i] if fixed and i in fixed else draw(i, dists[i], p is not None)
        return codes, dists

    def _concat(self, codes: list[torch.Tensor]) -> torch.Tensor:
        lead = torch.broadcast_shapes(*(c.shape[:-1] for c in codes))
        return torch.cat([c.expand(*lead, c.shape[-1]) for c in codes], -1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """(*sample_shape, *batch, Σ L), each layer drawn given its parent's draw."""
        shape = torch.Size(sample_shape)
        codes, dists = self._ancestral(lambda i, d, has_parent: d.rsample() if has_parent else d.rsample(shape))
        z = self._concat(codes)
        self._last = (z, dists)
        return z

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """As ``rsample``, without gradients; works for a top layer without ``rsample`` (a mixture)."""
        shape = torch.Size(sample_shape)
        codes, _ = self._ancestral(lambda i, d, has_parent: d.sample() if has_parent else d.sample(shape))
        return self._concat(codes)

    def from_standard_normal(self, eps: torch.Tensor) -> torch.Tensor:
        """z from standard-normal draws ε (*S, B or 1, Σ L): z_l = μ_l + σ_l ε_l, layer by layer."""
        codes, _ = self._ancestral(lambda i, d, _: d.mean + d.stddev * self.part(eps, i))
        return self._concat(codes)

    @property
    def mean(self) -> torch.Tensor:
        return self.mean_pass()

    def mean_pass(self, fixed: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """The mean pass with the layers in ``fixed`` held at the given codes: (*batch, Σ L)."""
        codes, _ = self._ancestral(lambda i, d, _: d.mean, fixed)
        return self._concat(codes)

    def layer_at(self, i: int, fixed: dict[int, torch.Tensor] | None = None) -> Distribution:
        """Layer i's distribution in the mean pass with ``fixed`` layers held (a one-layer view of the hierarchy)."""
        return self._ancestral(lambda k, d, _: d.mean, fixed)[1][i]


def topological_order(parents: tuple[int | None, ...]) -> tuple[int, ...]:
    """The layers in an order that puts each parent before its children."""
    order: list[int] = []
    while len(order) < len(parents):
        order += [i for i, p in enumerate(parents) if i not in order and (p is None or p in order)]
    return tuple(order)


# ----- a flow posterior -----------------------------------------------------------------------


class FlowDistribution(TransformedDistribution, StandardNormalDraws):
    """q(z|x) = base (a diagonal Gaussian, event (L,)) pushed through the steps; batch (B,), event (L,).

    mean: the steps applied to the base mean, a point summary for codes and reconstructions (the
    exact mean of the flow has no closed form). ``log_prob`` of the distribution's own draws reuses
    the forward pass (each step caches its last input and output), so a step needs no closed-form
    inverse there.
    """

    def __init__(self, base: Distribution, transforms: list[Transform]):
        super().__init__(base, transforms, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.from_standard_normal(torch.zeros_like(self.base_dist.mean))

    def from_standard_normal(self, eps: torch.Tensor) -> torch.Tensor:
        """z = f_T(... f_1(μ + σ·ε)) for standard-normal draws ε (*S, B, L) -> (*S, B, L)."""
        z = self.base_dist.mean + self.base_dist.stddev * eps
        for t in self.transforms:
            z = t(z)
        return z


# ----- over x ---------------------------------------------------------------------------------


class FastBernoulli(Bernoulli):
    """``Bernoulli`` whose ``log_prob`` is x·l − softplus(l): the same value as torch's
    (−BCE-with-logits), accepting soft targets in [0, 1], in two elementwise passes into one buffer,
    the target broadcast rather than copied (BCE-with-logits takes about seven passes)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.logits
        out = F.softplus(logits).neg_()  # softplus's gradient needs only its input, so its output may be reused
        return out.addcmul_(value, logits)  # one (*batch, *shape) buffer for the whole computation


LEVELS = 256  # 8-bit data
LOG_PARAM_MIN, LOG_PARAM_MAX = -7.0, 7.0  # a numerically safe range for the discretised distributions' log-parameters


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


# ----- per-dimension views --------------------------------------------------------------------


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
