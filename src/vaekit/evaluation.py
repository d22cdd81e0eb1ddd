"""Evaluation under ``torch.inference_mode``: the same ``elbo`` as training over a whole split, the
importance-weighted log-likelihood estimate, latent diagnostics and per-example scores at fixed draws.

Every function takes ``(model, data)``, ``data`` a ``Dataset`` (a split, or ``Dataset(x)`` for a tensor
of examples), and reads it as the model does (``vaekit.examples.for_model``): a conditional model's
examples each with their label or context, so its numbers are those of log p(x|y)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaekit.data.base import Dataset
from vaekit.errors import ConfigError
from vaekit.examples import for_model
from vaekit.latent import kl_per_dim
from vaekit.latent_layers import layer_statistics
from vaekit.models.contract import in_eval_mode
from vaekit.objectives import ELBO, Draws, ELBOTerms, ImportanceWeighted, Objective, Terms, concatenated

log = logging.getLogger(__name__)

ACTIVITY_THRESHOLD = 0.01  # a unit is active when Cov_x(E_q[z_u]) exceeds this (Burda et al. 2015)


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


@torch.inference_mode()
@in_eval_mode
def elbo_terms(model, data: Dataset, *, objective: Objective | None = None, batch_size: int = 1000, seed: int = 0) -> Terms:
    """Per-example terms (N,) of ``objective`` (default: the ELBO, one draw) for all of ``data`` (N
    examples), in batches, with a fixed seed for the latent samples (so the numbers are reproducible
    and the caller's RNG is untouched). With a run's training objective, ``loss`` is its validation loss."""
    objective = ELBO() if objective is None else objective
    device = model.device
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        return concatenated([objective(model, batch) for batch in for_model(model, data).batches(batch_size, device)])


def summarize(terms: ELBOTerms, dims: int) -> dict[str, float]:
    """Means over examples in nats: ``neg_elbo`` = ``reconstruction`` + ``kl``, where
    ``reconstruction`` is -E_q[log p(x|z)]; per-dimension values and bits/dim alongside."""
    neg_elbo = terms.neg_elbo.double()
    n = len(neg_elbo)
    out = {
        "neg_elbo": neg_elbo.mean().item(),
        "neg_elbo_stderr": (neg_elbo.std().item() / math.sqrt(n)) if n > 1 else 0.0,
        "reconstruction": -terms.reconstruction.double().mean().item(),
        "kl": terms.kl.double().mean().item(),
        "examples": n,
        "dims": dims,
    }
    out["neg_elbo_per_dim"] = out["neg_elbo"] / dims
    out["bits_per_dim"] = out["neg_elbo"] / (dims * math.log(2))
    return out


# ----- fixed draws: common random numbers ------------------------------------------------------
def fixed_noise(model, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` standard-normal draws (n, 1, L) from a private generator, shared by every example.

    With these "common random numbers" an example's score depends on the example alone, not on
    the batch it is scored in or the rows around it. z = E_q[z] + std_q[z] · ε needs a
    location-scale posterior (every posterior in vaekit is one: Gaussian or point mass)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 1, model.latent_dim), generator=g).to(model.device)  # (n, 1, L)


@dataclass
class ExampleScores:
    """Per-example values (N,) at fixed latent draws.

    neg_elbo: KL(q||p) - mean_s log p(x|z_s) (nats; the KL is closed form where registered).
    squared_error: mean_s ||x - E[x|z_s]||², the squared reconstruction error of the decoder mean (NaN for a
        model of token sequences, whose p(x|z) has no mean).
    """

    neg_elbo: torch.Tensor
    squared_error: torch.Tensor


def has_decoder_mean(model) -> bool:
    """Whether p(x|z) has a mean E[x|z] to measure a squared error with: not a distribution over token sequences."""
    return not getattr(getattr(model, "decoder", None), "autoregressive", False)


@torch.inference_mode()
@in_eval_mode
def example_scores(
    model, data: Dataset, *, samples: int = 0, seed: int = 0, batch_size: int = 1000, progress: Callable[[int], None] | None = None
) -> ExampleScores:
    """Negative ELBO and squared reconstruction error per example of ``data`` (N examples), deterministic per example.

    samples: 0 evaluates at the posterior mean z = E_q[z] (for a prior without a
    closed-form KL the KL is then log q(z) - log p(z) at that point); S > 0 averages over S fixed
    draws z_s = E_q[z] + std_q[z] · ε_s with ε from ``fixed_noise(model, S, seed)``.
    progress: called with the number of examples done after each batch.
    """
    device = model.device
    noise = fixed_noise(model, samples, seed) if samples > 0 else torch.zeros(1, 1, model.latent_dim, device=device)  # (S, 1, L)
    measured = has_decoder_mean(model)
    neg_elbo, sq, done = [], [], 0
    for batch in for_model(model, data).batches(batch_size, device):
        terms = ELBO()(model, batch, draws=Draws(noise=noise, squared_error=measured))
        neg_elbo.append(terms.neg_elbo)
        sq.append(terms.squared_error if measured else torch.full_like(terms.neg_elbo, torch.nan))
        done += len(batch.inputs)
        if progress is not None:
            progress(done)
    empty = torch.zeros(0, device=device)
    return ExampleScores(torch.cat(neg_elbo) if neg_elbo else empty, torch.cat(sq) if sq else empty)


def reconstruction_error(model, data: Dataset, *, batch_size: int = 1000) -> torch.Tensor:
    """||x - E[x | z = E_q[z]]||² per example (N,) of ``data``: the decoder mean at the posterior mean."""
    return example_scores(model, data, samples=0, batch_size=batch_size).squared_error


# ----- importance-weighted log-likelihood -----------------------------------------------------
CPU_IW_ROWS, GPU_IW_ROWS = 2048, 32768


def default_iw_rows(device: torch.device) -> int:
    """Decoder rows per chunk of the IW estimate: on a CPU, few enough that a chunk's decoder
    outputs (rows × data dims) stay in the L2/L3 cache; on a GPU, enough to fill the device."""
    return CPU_IW_ROWS if device.type == "cpu" else GPU_IW_ROWS


@torch.inference_mode()
@in_eval_mode
def iw_log_likelihood(
    model,
    data: Dataset,
    *,
    k: int = 5000,
    batch_size: int = 100,
    max_rows: int | None = None,
    seed: int = 0,
    common_noise: bool = False,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per example (N,) in nats (Burda et al. 2015):

        log p(x) ≈ log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x).

    Uses the model's own distributions (``encode(x).log_prob``, ``prior().log_prob``,
    ``decode(z).log_prob``). The K samples go through the decoder in chunks of at most ``max_rows``
    (samples × examples) rows at a time, accumulated with a running logsumexp, so memory is bounded
    whatever K is. K = 1 is the single-sample ELBO; the estimate rises towards log p(x) with K.
    ``max_rows`` defaults to ``default_iw_rows(device)``: small chunks on a CPU, whose decoder
    outputs then stay in cache (measured in bench/README.md), large ones on a GPU.

    data: the N examples (a conditional model's estimate is then of log p(x|y)).
    batch_size: examples encoded together (capped at ``max_rows``).
    seed: the draws are reproducible and the caller's RNG is untouched.
    common_noise: use the same K standard-normal draws for every example (``fixed_noise``), so an
        example's estimate does not depend on which batch it is in (for anomaly scores); by default
        every example gets independent draws.
    progress: called with the number of examples done after each batch.
    """
    if model.latent.deterministic:
        raise ConfigError("a plain autoencoder has no likelihood to estimate: importance weighting needs a VAE (a stochastic encoder)")
    if k < 1:
        raise ConfigError(f"the number of importance samples must be at least 1, got {k}")
    device = model.device
    max_rows = default_iw_rows(device) if max_rows is None else max_rows
    batch_size = max(1, min(batch_size, max_rows))
    chunk = max(1, min(k, max_rows // batch_size))  # samples per decoder call, fixed for every batch
    noise = fixed_noise(model, k, seed) if common_noise else None  # (K, 1, L)
    bound = ImportanceWeighted(k)
    out, done = [], 0
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        for batch in for_model(model, data).batches(batch_size, device):
            out.append(-bound(model, batch, draws=Draws(noise=noise, chunk=chunk)).loss)  # (B,)
            done += len(batch.inputs)
            if progress is not None:
                progress(done)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def summarize_log_likelihood(log_px: torch.Tensor, dims: int) -> dict[str, float]:
    """Mean negative log-likelihood in nats per example with its standard error over examples,
    per dimension and in bits per dimension, from per-example estimates ``log_px`` (N,)."""
    nll = -log_px.double()
    n = len(nll)
    mean = nll.mean().item()
    return {
        "nll": mean,
        "nll_stderr": (nll.std().item() / math.sqrt(n)) if n > 1 else 0.0,
        "nll_per_dim": mean / dims,
        "bits_per_dim": mean / (dims * math.log(2)),
        "examples": n,
        "dims": dims,
    }


# ----- latent diagnostics --------------------------------------------------------------------
@dataclass
class LatentDiagnostics:
    """How the latent units are used over a set of examples.

    kl_per_dim: (L,) mean KL(q(z_u|x) || p(z_u)) per unit in nats (``vaekit.latent.kl_per_dim``:
        closed form, or Monte Carlo against a mixture prior's marginals); None for an autoencoder and
        for a posterior that does not factorise over units (a flow).
    activity: (L,) Cov_x(E_q[z_u]), the variance over examples of each unit's posterior mean.
    threshold: a unit is active when its activity exceeds this.
    layers: for a hierarchical model, the same per stochastic layer (z_1 first); the model's
        ``kl_per_dim`` and ``activity`` are theirs concatenated. None for a one-layer model.
    kl: a layer's KL term E_q[log q(z_i|·) − log p(z_i|·)] in nats (the layers' sum is the model's KL); None otherwise.
    """

    kl_per_dim: torch.Tensor | None
    activity: torch.Tensor
    threshold: float = ACTIVITY_THRESHOLD
    layers: list[LatentDiagnostics] | None = None
    kl: float | None = None

    @property
    def active(self) -> torch.Tensor:
        return self.activity > self.threshold  # (L,) bool

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    def to_dict(self) -> dict:
        return {
            "latent_dim": len(self.activity),
            "active_units": self.n_active,
            "activity_threshold": self.threshold,
            "activity": self.activity.tolist(),
            "kl_per_dim": None if self.kl_per_dim is None else self.kl_per_dim.tolist(),
            **({} if self.kl is None else {"kl": self.kl}),
            **({} if self.layers is None else {"layers": [layer.to_dict() for layer in self.layers]}),
        }


@torch.inference_mode()
@in_eval_mode
def latent_diagnostics(model, data: Dataset, *, threshold: float = ACTIVITY_THRESHOLD, batch_size: int = 1000) -> LatentDiagnostics:
    """KL per latent dimension and active units over the examples of ``data``; per layer too for a
    hierarchical model (``vaekit.latent_layers.layer_statistics``)."""
    data = for_model(model, data)
    if model.latent.hierarchical:
        stats = layer_statistics(model, data, batch_size=batch_size)
        layers = [LatentDiagnostics(kl, act, threshold, kl=total) for kl, act, total in stats]
        cat = [torch.cat([getattr(layer, name) for layer in layers]) for name in ("kl_per_dim", "activity")]
        return LatentDiagnostics(kl_per_dim=cat[0], activity=cat[1], threshold=threshold, layers=layers)
    means = [model.encode(b.inputs, b.context).mean.double() for b in data.batches(batch_size, model.device)]  # (B, L) each
    mu = torch.cat(means)  # (N, L)
    activity = mu.var(0, unbiased=False) if len(mu) > 1 else torch.zeros(mu.shape[1], dtype=mu.dtype, device=mu.device)
    kl = kl_per_dim(model, data, batch_size=batch_size).double() if model.latent.unit_kl else None
    return LatentDiagnostics(kl_per_dim=kl, activity=activity.cpu(), threshold=threshold)


def collapse_message(diag: LatentDiagnostics, *, min_active_fraction: float = 0.1) -> str | None:
    """A warning when no unit, or fewer than ``min_active_fraction`` of them, is active; else None."""
    n, total = diag.n_active, len(diag.activity)
    kl = "" if diag.kl_per_dim is None else f", mean KL {float(diag.kl_per_dim.sum()):.3g} nats"
    advice = "the decoder is ignoring z; try KL warm-up (--warmup), a smaller beta or a weaker decoder"
    if n == 0:
        return f"posterior collapse: none of the {total} latent units is active (Cov_x E_q[z_u] <= {diag.threshold:g}{kl}); {advice}"
    if n < max(1, round(min_active_fraction * total)):
        return (
            f"partial posterior collapse: only {n} of {total} latent units are active (Cov_x E_q[z_u] > {diag.threshold:g}{kl}); {advice}"
        )
    return None


def posterior_collapse_warning(
    model, data: Dataset, *, threshold: float = ACTIVITY_THRESHOLD, min_active_fraction: float = 0.1
) -> str | None:
    """A one-line warning when the posterior has collapsed on the examples of ``data``: no active unit, or
    fewer than ``min_active_fraction`` of the units active. None when it has not, and for a plain
    autoencoder (no posterior to collapse). For training logs and ``vaekit evaluate``."""
    if model.latent.deterministic:
        return None
    return collapse_message(latent_diagnostics(model, data, threshold=threshold), min_active_fraction=min_active_fraction)
