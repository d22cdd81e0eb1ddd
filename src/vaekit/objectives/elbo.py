"""The evidence lower bound, ELBO = E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)): the VAE, the β-VAE, the
ELBO averaged over several samples, the path-derivative (STL) gradient, and the plain and
denoising autoencoders (a point-mass posterior: the reconstruction term alone)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from vaekit.config import RunConfig
from vaekit.errors import ConfigError
from vaekit.models import MODEL_KINDS
from vaekit.objectives.base import FRESH, OBJECTIVES, Draws, Objective, Terms
from vaekit.objectives.estimate import (
    Posterior,
    chunks,
    closed_form_kl,
    encode,
    free_bits_kl,
    kl_per_dimension,
    kl_to_prior,
    parameters_stopped,
    sample_count,
    squared_error,
    weighted,
)

MAX_SAMPLES = 10_000  # latent samples per example in training (evaluation chunks over K instead)


@dataclass
class ELBOTerms(Terms):
    """Per-example terms, each of shape (B,).

    loss: what training minimises: −(reconstruction − β·KL), or the objective's own loss.
    reconstruction: E_q[log p(x|z)] (nats; higher is better).
    kl: KL(q(z|x) ‖ p(z)) (nats; closed form where registered, else Monte Carlo).
    squared_error: E_q ||x − E[x|z]||² of the decoder mean, when the draws asked for it.
    extra: further named terms of an objective built on the bound (reported beside the others).
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    squared_error: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    names: ClassVar[tuple[str, ...]] = ("loss", "neg_elbo", "reconstruction", "kl")  # what ``reported`` gives (before ``extra``)

    @property
    def neg_elbo(self) -> torch.Tensor:
        return self.kl - self.reconstruction  # (B,)

    def reported(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss, "neg_elbo": self.neg_elbo, "reconstruction": -self.reconstruction, "kl": self.kl, **self.extra}


def autoencoder_terms(model, batch, posterior: Posterior, draws: Draws) -> ELBOTerms:
    """A point-mass posterior's terms: the reconstruction at the code, no KL."""
    px = model.decode(posterior.q.mean, *posterior.given)
    rec = px.log_prob(batch.target)  # (B,)
    error = squared_error(px, batch.target).squeeze(0) if draws.squared_error else None
    return ELBOTerms(loss=-rec, reconstruction=rec, kl=torch.zeros_like(rec), squared_error=error)


def check_samples(n_samples: int, most: int | None = None) -> None:
    """At least one sample (and in training at most ``MAX_SAMPLES``; evaluation chunks over any number)."""
    if n_samples < 1 or (most is not None and n_samples > most):
        raise ConfigError(f"number of latent samples must be in [1, {most or 'any'}], got {n_samples}")


def check_groups(n_samples: int, groups: int) -> None:
    """The importance-weighted family's M groups of K = S / M samples."""
    if groups < 1 or n_samples % groups:
        raise ConfigError(
            f"iw groups must divide the {n_samples} latent samples (M groups of K: --iw-samples M·K --iw-groups M), got {groups}"
        )


def check_beta(beta: float) -> None:
    if not beta >= 0:
        raise ConfigError(f"beta must be >= 0, got {beta}")


class LatentBound(Objective):
    """A bound on log p(x) estimated from the posterior's draws (the ELBO, the importance-weighted
    family): ``forward`` encodes the batch and hands a plain autoencoder (a point-mass posterior) its
    reconstruction term; ``estimate`` is each bound's own."""

    def forward(self, model, batch, *, beta: float | torch.Tensor | None = None, draws: Draws = FRESH) -> ELBOTerms:
        posterior = encode(model, batch)
        if model.deterministic:
            return autoencoder_terms(model, batch, posterior, draws)
        return self.estimate(model, batch, posterior, self.beta if beta is None else beta, draws)

    @abstractmethod
    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        """The bound's terms (B,) from q(z|x) and p(z) of the batch (``posterior``)."""


@OBJECTIVES.register("elbo")
class ELBO(LatentBound):
    """The ELBO averaged over ``n_samples`` draws z = μ + σ·ε per example, with the KL weighted by β.

    beta: the KL weight (β-VAE; 1: the ELBO); ignored by a plain autoencoder.
    n_samples: S latent draws per example (the reconstruction term and a Monte Carlo KL average over them).
    stl: the path-derivative ("sticking the landing") gradient of Roeder et al. 2017: the KL is the
        Monte Carlo mean of log q(z|x) − log p(z) with log q taken with the posterior's parameters
        stopped (``PathDerivative``); same values, the encoder's gradient loses the zero-mean score term.
    free_bits: nats; in the loss, each latent dimension's KL averaged over the batch counts as at least
        this (Kingma et al. 2016, ``free_bits_kl``); the reported KL is the true one. 0: off.
    """

    terms = ELBOTerms.names

    def __init__(self, beta: float = 1.0, n_samples: int = 1, stl: bool = False, free_bits: float = 0.0):
        super().__init__()
        check_beta(beta)
        check_samples(n_samples)
        if not free_bits >= 0:
            raise ConfigError(f"free bits must be >= 0 nats, got {free_bits}")
        self.beta, self.n_samples, self.stl, self.free_bits = beta, n_samples, stl, free_bits

    @classmethod
    def from_config(cls, config: RunConfig) -> ELBO:
        t, m = config.train, config.model
        check_samples(t.n_samples, MAX_SAMPLES)
        if t.stl and (MODEL_KINDS[m.kind].deterministic or m.flow != "none"):
            raise ConfigError(
                "--stl (the path-derivative gradient) needs a Gaussian posterior without a flow (--model vae, no --flow) "
                "and the ELBO, not --iw-samples"
            )
        if t.free_bits and (t.stl or m.flow != "none" or m.latent_layers or m.prior not in ("normal", "conditional")):
            raise ConfigError(
                "--free-bits weighs the closed-form KL of each latent dimension: it needs a diagonal Gaussian posterior and a "
                "Gaussian prior (one latent layer, no --flow, --prior normal) and no --stl"
            )
        if t.piwae:
            raise ConfigError("piwae trains on the IW bound: it needs --iw-samples and no --iw-elbo-mix")
        check_groups(t.n_samples, t.iw_groups)  # (the CLI says a flag that takes no effect here is one)
        return cls(beta=t.beta, n_samples=t.n_samples, stl=t.stl, free_bits=t.free_bits)

    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        q, p, given = posterior.q, posterior.p, posterior.given
        stl = self.stl and torch.is_grad_enabled()  # a gradient's variance; evaluation takes the closed form
        q_log = parameters_stopped(q) if stl else q  # whose log-density enters the KL
        if self.n_samples == 1 and draws.noise is None and not draws.squared_error:  # the training step: one draw
            z = q.rsample((1,))  # (1, B, L): the same tensor reaches the KL, so a flow's log q(z) reuses its forward pass
            rec = model.decode(z[0], *given).log_prob(batch.target)  # (B,)
            kl = kl_to_prior(q_log, p, z, closed_form=not stl)
            return ELBOTerms(loss=weighted(self.penalty(kl, q, p), beta) - rec, reconstruction=rec, kl=kl)
        total = sample_count(self.n_samples, draws)
        closed = None if stl else closed_form_kl(q, p)
        rec_sum = log_ratio_sum = error_sum = 0.0
        for _, z in chunks(q, total, draws):
            px = model.decode(z, *given)  # batch (c, B)
            rec_sum = rec_sum + px.log_prob(batch.target).sum(0)  # the target broadcasts over the samples
            if draws.squared_error:
                error_sum = error_sum + squared_error(px, batch.target).sum(0)
            if closed is None:
                log_q = q_log.log_prob(z)  # (c, B); first: the order of the graph's nodes is the order gradients add up in
                log_ratio_sum = log_ratio_sum + (p.log_prob(z) - log_q).sum(0)  # log p(z) − log q(z|x)
        rec = rec_sum / total
        kl = closed if closed is not None else -log_ratio_sum / total
        error = error_sum / total if draws.squared_error else None
        return ELBOTerms(loss=weighted(self.penalty(kl, q, p), beta) - rec, reconstruction=rec, kl=kl, squared_error=error)

    def penalty(self, kl: torch.Tensor, q, p) -> torch.Tensor:
        """(B,) what the loss weighs by β: the KL (B,), or with free bits each dimension's at least ``free_bits``."""
        if not self.free_bits:
            return kl
        per_dimension = kl_per_dimension(q, p)
        if per_dimension is None:
            raise ConfigError("--free-bits needs a diagonal Gaussian posterior and the standard normal prior (one latent layer, no flow)")
        return free_bits_kl(per_dimension, self.free_bits)
