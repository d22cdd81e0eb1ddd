"""The objective: one ``elbo`` function for the VAE, β-VAE, IWAE (and its MIWAE / CIWAE / PIWAE variants) and the plain autoencoder.

Training, validation, evaluation over a split, per-example (anomaly) scores and the
importance-weighted log-likelihood estimate all call ``elbo``; they differ only in its arguments
(β, the number of samples, importance weighting, fixed draws, chunking over samples).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, kl_divergence


@dataclass
class ELBOTerms:
    """Per-example terms, each of shape (B,).

    loss: what training minimises: -(reconstruction_ll - β·KL), or -IW bound when ``iw``.
    reconstruction: E_q[log p(x|z)] (nats; higher is better).
    kl: KL(q(z|x) || p(z)) (nats; closed form where registered, else Monte Carlo).
    squared_error: E_q ||x - E[x|z]||² of the decoder mean, when ``elbo`` was asked for it.
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    squared_error: torch.Tensor | None = None

    @property
    def neg_elbo(self) -> torch.Tensor:
        return self.kl - self.reconstruction  # (B,)


class StandardNormalDraws(ABC):
    """A posterior that maps standard-normal draws ε to z itself (a flow: z = f(μ + σ·ε)). The
    fixed-draws path of ``elbo`` (``noise``) uses ``from_standard_normal``; for any other posterior
    it takes z = E_q[z] + std_q[z]·ε, which holds for location-scale families."""

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


def elbo(
    model,
    x: torch.Tensor,
    target: torch.Tensor | None = None,
    *,
    beta: float | torch.Tensor = 1.0,
    n_samples: int = 1,
    iw: bool = False,
    noise: torch.Tensor | None = None,
    chunk: int | None = None,
    squared_error: bool = False,
    iw_groups: int = 1,
    iw_elbo_mix: float = 0.0,
    piwae: bool = False,
    context: torch.Tensor | int | None = None,
    stl: bool = False,
) -> ELBOTerms:
    """Evidence lower bound terms for a batch.

    model: a ``LatentVariableModel`` (``encode``, ``decode``, ``prior``).
    x: (B, *shape) encoder input (possibly corrupted, for denoising).
    target: (B, *shape) what the decoder must explain; defaults to ``x``.
    beta: KL weight (β-VAE), a float or a 0-d tensor; ignored for a deterministic encoder (a plain autoencoder).
    n_samples: S latent samples per example, z = μ + σ·ε via ``rsample``.
    iw: the loss is the importance-weighted bound -log (1/S) Σ_s p(x|z_s) (p(z_s) / q(z_s|x))^β
        (Burda et al.; β = 1 is the IWAE bound, and -loss then estimates log p(x)).
    noise: fixed standard-normal draws ε (S, 1, L) or (S, B, L) instead of fresh ones: z_s = E_q[z] +
        std_q[z]·ε_s, or the posterior's own map of ε for a ``StandardNormalDraws`` posterior (a flow)
        (common random numbers; zeros give the posterior mean). S = len(noise).
    chunk: samples decoded together (default: all S); the terms are accumulated over chunks (a
        running sum of log p(x|z), a running logsumexp of the weights), so memory is bounded whatever S is.
    squared_error: also return E_q ||x - E[x|z]||² over the same draws.
    iw_groups: with ``iw``, M: the S samples form M groups of K = S / M and the loss is the mean of the
        M groups' IW bounds, MIWAE(M, K) of Rainforth et al. 2018 (M = 1: IWAE; M = S: the S-sample ELBO).
    iw_elbo_mix: with ``iw``, c in [0, 1]: the loss is -(c·ELBO + (1 − c)·IW bound) over the same
        samples, CIWAE of Rainforth et al. 2018 (their β; 0: the IW bound). With M > 1 or c > 0 the
        log-weights (S, B) are kept until the end; the plain IW bound is a running logsumexp.
    piwae: with ``iw`` and M = ``iw_groups``, PIWAE of Rainforth et al. 2018: the loss is the IW bound
        over all S samples, but its gradient reaches the encoder as MIWAE(M, K)'s does, from the same
        samples (two gradient routes in one backward pass: the draws z pass to the decoder and the
        prior through a gradient rescaled per group by w̃_MIWAE / w̃_IWAE, which is per-group constant).
    context: the examples' context y for a conditional model, labels (B,) (or one label for all):
        the terms are then those of log p(x|y) (``vaekit.models.condition``); ignored by an unconditional model.
    stl: the path-derivative ("sticking the landing") gradient of Roeder et al. 2017: the KL is the
        Monte Carlo mean of log q(z|x) − log p(z) (even where a closed form exists) with log q taken
        with the posterior's parameters stopped (``PathDerivative``); the values are unchanged, the
        encoder's gradient loses the zero-mean score term. For the averaged ELBO, not with ``iw``.
    """
    target = x if target is None else target
    given = () if context is None else (context,)  # without a context, the model is called as any model (encode(x), decode(z))
    q = model.encode(x, *given)
    if model.deterministic:
        px = model.decode(q.mean, *given)
        rec = px.log_prob(target)  # (B,)
        error = _squared_error(px, target).squeeze(0) if squared_error else None
        return ELBOTerms(loss=-rec, reconstruction=rec, kl=torch.zeros_like(rec), squared_error=error)
    p = model.prior(*given)  # batch () or, for p(z|y), (B,)
    if stl and iw:
        raise ValueError("stl is the path-derivative gradient of the averaged ELBO; with iw it would be biased")
    q_log = _parameters_stopped(q) if stl else q  # whose log-density enters the KL
    if n_samples == 1 and not iw and noise is None and not squared_error:  # the training step: one draw
        z = q.rsample((1,))  # (1, B, L): the same tensor reaches the KL, so a flow's log q(z) reuses its forward pass
        rec = model.decode(z[0], *given).log_prob(target)  # (B,)
        kl = kl_to_prior(q_log, p, z, closed_form=not stl)
        return ELBOTerms(loss=_weighted(kl, beta) - rec, reconstruction=rec, kl=kl)
    s_total = n_samples if noise is None else len(noise)
    if iw_groups < 1 or s_total % iw_groups or not 0 <= iw_elbo_mix <= 1:
        raise ValueError(f"iw_groups must divide the {s_total} samples and iw_elbo_mix lie in [0, 1]; got {iw_groups}, {iw_elbo_mix}")
    if piwae and (not iw or iw_elbo_mix > 0):
        raise ValueError("piwae needs iw and no iw_elbo_mix")
    keep_weights = iw and (iw_groups > 1 or iw_elbo_mix > 0 or piwae)
    log_ws: list[torch.Tensor] = []  # the (c, B) log-weights of each chunk, when the variant needs them all
    route = _GroupGradient() if piwae and torch.is_grad_enabled() else None
    log_qs: list[torch.Tensor] = []  # PIWAE: β·log q(z|x) (c, B) of each chunk
    chunk = s_total if chunk is None else max(1, chunk)
    closed = None if stl else closed_form_kl(q, p)
    rec_sum = log_ratio_sum = error_sum = 0.0
    log_w_sum = None  # running logsumexp of the importance log-weights (B,)
    for s0 in range(0, s_total, chunk):
        c = min(chunk, s_total - s0)
        z = q.rsample((c,)) if noise is None else _from_noise(q, noise[s0 : s0 + c])  # (c, B, L)
        zg = z if route is None else route.pass_on(z, s0)  # what the decoder and the prior see
        px = model.decode(zg, *given)  # batch (c, B)
        log_px = px.log_prob(target)  # (c, B); the target broadcasts over the samples
        rec_sum = rec_sum + log_px.sum(0)
        if squared_error:
            error_sum = error_sum + _squared_error(px, target).sum(0)
        if iw or closed is None:
            log_q = q_log.log_prob(z)  # (c, B)
            log_ratio = p.log_prob(zg) - log_q  # (c, B): log p(z) - log q(z|x)
            log_ratio_sum = log_ratio_sum + log_ratio.sum(0)
            if route is not None:
                log_qs.append(beta * log_q)
        if keep_weights:
            log_ws.append(log_px + beta * log_ratio)
        elif iw:
            chunk_lse = torch.logsumexp(log_px + beta * log_ratio, 0)
            log_w_sum = chunk_lse if log_w_sum is None else torch.logaddexp(log_w_sum, chunk_lse)
    rec = rec_sum / s_total
    kl = closed if closed is not None else -log_ratio_sum / s_total
    if piwae:
        log_w = torch.cat(log_ws)  # (S, B)
        loss = -_iw_variant_bound(log_w, 1, 0.0)
        if route is not None:
            loss = loss.detach() + route.surrogate(log_w, torch.cat(log_qs), iw_groups)
    elif keep_weights:
        loss = -_iw_variant_bound(torch.cat(log_ws), iw_groups, iw_elbo_mix)
    else:
        loss = -(log_w_sum - math.log(s_total)) if iw else _weighted(kl, beta) - rec
    return ELBOTerms(loss=loss, reconstruction=rec, kl=kl, squared_error=error_sum / s_total if squared_error else None)


def _parameters_stopped(q: Distribution) -> Distribution:
    if not isinstance(q, PathDerivative):
        raise ValueError(f"stl needs a Gaussian posterior (one or several layers), not {type(q).__name__}")
    return q.parameters_stopped()


def _iw_variant_bound(log_w: torch.Tensor, groups: int, elbo_mix: float) -> torch.Tensor:
    """c·mean_s log w_s + (1 − c)·(1/M) Σ_m log (1/K) Σ_k w_mk from log-weights (S, B), S = M·K -> (B,)."""
    k = len(log_w) // groups
    miwae = (torch.logsumexp(log_w.view(groups, k, -1), 1) - math.log(k)).mean(0)  # (B,)
    return miwae if elbo_mix == 0 else elbo_mix * log_w.mean(0) + (1 - elbo_mix) * miwae


class _GroupGradient:
    """PIWAE's two gradient routes from one set of log-weights log w = A − log q, A = log p(x, z).

    The draws z reach the decoder and the prior through ``pass_on``, whose gradient is multiplied,
    per sample, by r = w̃_MIWAE / w̃_IWAE = exp(LSE_all(log w) − LSE_group(log w) − log M) (one
    value per group, known once every chunk is decoded). With the surrogate −Σ w̃_IWAE·A + Σ w̃_MIWAE·log q
    (the weights held constant), the decoder and prior parameters get the IWAE gradient
    −Σ w̃_IWAE ∇A and the encoder, through z and log q, the MIWAE gradient −Σ w̃_MIWAE ∇ log w.
    """

    def __init__(self):
        self.scale: torch.Tensor | None = None  # (S, B), set by ``surrogate`` before the backward pass

    def pass_on(self, z: torch.Tensor, s0: int) -> torch.Tensor:
        """z (c, B, L) of samples s0 .. s0 + c − 1, as the decoder sees it."""
        zg = z.view_as(z)
        if zg.requires_grad:
            zg.register_hook(lambda g: g * self.scale[s0 : s0 + len(g)].unsqueeze(-1).to(g.dtype))
        return zg

    def surrogate(self, log_w: torch.Tensor, log_q: torch.Tensor, groups: int) -> torch.Tensor:
        """Per example (B,), zero in value: its gradient is PIWAE's. log_w = A − log_q and log_q
        (the posterior's term, β·log q(z|x)): (S, B)."""
        s, b = log_w.shape
        lw = log_w.detach()
        w_iwae = torch.softmax(lw, 0)  # (S, B)
        grouped = lw.view(groups, s // groups, b)
        w_miwae = (torch.softmax(grouped, 1) / groups).reshape(s, b)
        lse_group = torch.logsumexp(grouped, 1, keepdim=True).expand_as(grouped).reshape(s, b)
        self.scale = torch.exp(torch.logsumexp(lw, 0) - lse_group - math.log(groups))  # (S, B)
        a = log_w + log_q  # A = log p(x|z) + β log p(z): the log q terms cancel, in value and gradient
        value = -(w_iwae * a).sum(0) + (w_miwae * log_q).sum(0)
        return value - value.detach()


def _from_noise(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """z (c, B, L) from fixed standard-normal draws ε: the posterior's own map where it has one (a flow), else E_q[z] + std_q[z]·ε."""
    if isinstance(q, StandardNormalDraws):
        return q.from_standard_normal(eps)
    return q.mean + q.stddev * eps


def _squared_error(px: Distribution, target: torch.Tensor) -> torch.Tensor:
    """||x - E[x|z]||² per draw: (S, B) for p(x|z) of batch (S, B), (1, B) for batch (B,)."""
    diff = (px.mean - target).pow(2)
    return diff.reshape(*px.batch_shape, -1).sum(-1).reshape(-1, target.shape[0])


def _weighted(kl: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """β·KL; β may be a 0-d tensor (a compiled loss takes it so, to avoid a recompile per value)."""
    plain = not isinstance(beta, torch.Tensor) and beta == 1.0
    return kl if plain else beta * kl  # no multiply (and autograd node) for the plain ELBO
