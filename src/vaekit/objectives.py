"""The objective: one ``elbo`` function for the VAE, β-VAE, IWAE and the plain autoencoder."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, kl_divergence


@dataclass
class ELBOTerms:
    """Per-example terms, each of shape (B,).

    loss: what training minimises: -(reconstruction_ll - β·KL), or -IW bound when ``iw``.
    reconstruction: E_q[log p(x|z)] (nats; higher is better).
    kl: KL(q(z|x) || p(z)) (nats; closed form where registered, else Monte Carlo).
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def neg_elbo(self) -> torch.Tensor:
        return self.kl - self.reconstruction  # (B,)


def kl_to_prior(q: Distribution, p: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) per example (B,): closed form from ``torch.distributions``' registry when one
    exists, else the Monte Carlo mean of log q(z) - log p(z) over samples z (S, B, L)."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        if z is None:
            z = q.rsample((1,))
        return (q.log_prob(z) - p.log_prob(z)).mean(0)


def elbo(model, x: torch.Tensor, target: torch.Tensor | None = None, *, beta: float = 1.0, n_samples: int = 1, iw: bool = False) -> ELBOTerms:
    """Evidence lower bound terms for a batch.

    model: a ``LatentVariableModel`` (``encode``, ``decode``, ``prior``).
    x: (B, *shape) encoder input (possibly corrupted, for denoising).
    target: (B, *shape) what the decoder must explain; defaults to ``x``.
    beta: KL weight (β-VAE), a float or a 0-d tensor; ignored for a deterministic encoder (a plain autoencoder).
    n_samples: S latent samples per example, z = μ + σ·ε via ``rsample``.
    iw: use the importance-weighted bound log (1/S) Σ_s p(x, z_s) / q(z_s|x) (Burda et al.) as the loss.
    """
    target = x if target is None else target
    q = model.encode(x)
    if model.deterministic:
        px = model.decode(q.mean)
        rec = px.log_prob(target)  # (B,)
        zero = torch.zeros_like(rec)
        return ELBOTerms(loss=-rec, reconstruction=rec, kl=zero)
    p = model.prior()
    if n_samples == 1 and not iw:
        z = q.rsample()  # (B, L)
        rec = model.decode(z).log_prob(target)  # (B,)
        kl = kl_to_prior(q, p, z.unsqueeze(0))
        return ELBOTerms(loss=_weighted(kl, beta) - rec, reconstruction=rec, kl=kl)
    z = q.rsample((n_samples,))  # (S, B, L)
    log_px = model.decode(z).log_prob(target)  # batch (S, B); the target broadcasts over samples
    rec = log_px.mean(0)  # (B,)
    if iw:
        log_pz, log_qz = p.log_prob(z), q.log_prob(z)  # (S, B)
        kl = kl_to_prior(q, p, z)
        bound = torch.logsumexp(log_px + beta * (log_pz - log_qz), 0) - math.log(n_samples)  # (B,)
        return ELBOTerms(loss=-bound, reconstruction=rec, kl=kl)
    kl = kl_to_prior(q, p, z)
    return ELBOTerms(loss=_weighted(kl, beta) - rec, reconstruction=rec, kl=kl)


def _weighted(kl: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """β·KL; β may be a 0-d tensor (a compiled loss takes it so, to avoid a recompile per value)."""
    plain = not isinstance(beta, torch.Tensor) and beta == 1.0
    return kl if plain else beta * kl  # no multiply (and autograd node) for the plain ELBO
