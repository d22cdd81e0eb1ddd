"""The pieces every bound is estimated from: the KL to the prior, the posterior's draws (fresh or
fixed), and the sample loop over chunks that the ELBO and the importance-weighted family share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, kl_divergence

from vaekit.models.distributions import PathDerivative, StandardNormalDraws
from vaekit.objectives.base import Draws


def closed_form_kl(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """KL(q || p) per example (B,) from ``torch.distributions``' registry, or None where no closed form is registered."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


def kl_to_prior(q: Distribution, p: Distribution, z: torch.Tensor | None = None, closed_form: bool = True) -> torch.Tensor:
    """KL(q || p) per example (B,): closed form when one exists (and ``closed_form``), else the Monte
    Carlo mean of log q(z) - log p(z) over samples z (S, B, L) (one fresh draw when ``z`` is None)."""
    kl = closed_form_kl(q, p) if closed_form else None
    if kl is not None:
        return kl
    if z is None:
        z = q.rsample((1,))
    return (q.log_prob(z) - p.log_prob(z)).mean(0)


def kl_per_dimension(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """(B, L) KL(q_j ‖ p_j) of each latent dimension, for q and p independent over the dimensions of
    a closed-form pair (a diagonal Gaussian and the standard normal); None for any other pair."""
    if not (isinstance(q, Independent) and isinstance(p, Independent)) or (q.reinterpreted_batch_ndims, p.reinterpreted_batch_ndims) != (
        1,
        1,
    ):
        return None
    try:
        return kl_divergence(q.base_dist, p.base_dist).expand(q.base_dist.batch_shape)
    except NotImplementedError:
        return None


def free_bits_kl(per_dimension: torch.Tensor, nats: float) -> torch.Tensor:
    """(B,) each example's KL with free bits (Kingma et al. 2016): a dimension whose KL averaged over the
    batch is below ``nats`` counts as ``nats``, a constant (no gradient), the others as they are; so the
    batch mean is Σ_j max(nats, mean_b KL_bj). per_dimension: (B, L) from ``kl_per_dimension``."""
    active = per_dimension.mean(0) > nats  # (L,)
    return torch.where(active, per_dimension, torch.full_like(per_dimension, nats)).sum(-1)


def parameters_stopped(q: Distribution) -> Distribution:
    """q with its parameters' gradients stopped (``PathDerivative``), for the STL gradient."""
    if not isinstance(q, PathDerivative):
        raise ValueError(f"stl needs a Gaussian posterior (one or several layers), not {type(q).__name__}")
    return q.parameters_stopped()


@dataclass
class Posterior:
    """A batch's encoding: q(z|x), p(z) and how the decoder is called (with the batch's context)."""

    q: Distribution
    p: Distribution | None  # None for a plain autoencoder (no prior enters its loss)
    given: tuple  # () or (context,): what encode, decode and prior take besides x or z


def encode(model, batch) -> Posterior:
    """q(z|x) of the batch's inputs, and p(z) unless the model is a plain autoencoder."""
    given = () if batch.context is None else (batch.context,)  # without a context, the model is called as any model
    q = model.encode(batch.inputs, *given)
    return Posterior(q, None if model.deterministic else model.prior(*given), given)


def sample_count(n_samples: int, draws: Draws) -> int:
    """S: the objective's sample count, or the number of fixed draws."""
    return n_samples if draws.noise is None else len(draws.noise)


def chunks(q: Distribution, total: int, draws: Draws) -> Iterator[tuple[int, torch.Tensor]]:
    """(s0, z) for consecutive chunks of the ``total`` samples: z (c, B, L) drawn with ``rsample``, or
    from the fixed draws ``draws.noise[s0 : s0 + c]``."""
    chunk = total if draws.chunk is None else max(1, draws.chunk)
    for s0 in range(0, total, chunk):
        c = min(chunk, total - s0)
        yield s0, q.rsample((c,)) if draws.noise is None else from_noise(q, draws.noise[s0 : s0 + c])


def from_noise(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """z (c, B, L) from fixed standard-normal draws ε: the posterior's own map where it has one (a flow), else E_q[z] + std_q[z]·ε."""
    if isinstance(q, StandardNormalDraws):
        return q.from_standard_normal(eps)
    return q.mean + q.stddev * eps


def squared_error(px: Distribution, target: torch.Tensor) -> torch.Tensor:
    """||x - E[x|z]||² per draw: (S, B) for p(x|z) of batch (S, B), (1, B) for batch (B,)."""
    diff = (px.mean - target).pow(2)
    return diff.reshape(*px.batch_shape, -1).sum(-1).reshape(-1, target.shape[0])


def weighted(kl: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """β·KL; β may be a 0-d tensor (a compiled loss takes it so, to avoid a recompile per value)."""
    plain = not isinstance(beta, torch.Tensor) and beta == 1.0
    return kl if plain else beta * kl  # no multiply (and autograd node) for the plain ELBO
