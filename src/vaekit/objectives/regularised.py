"""What the disentangling objectives of Locatello et al. 2019's study share (β-TCVAE, FactorVAE,
DIP-VAE, AnnealedVAE): each is the ELBO (``ELBO.estimate``) plus a regulariser, so each is a
``LatentBound`` whose ``estimate`` adds to the ELBO's terms. Here: the checks of the posterior they
need and of their weights, the batch's codes, and a batch-level value as per-example terms."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from vaekit.config import RunConfig
from vaekit.errors import ConfigError
from vaekit.models import MODEL_KINDS
from vaekit.objectives.base import Draws
from vaekit.objectives.estimate import chunks, sample_count


def check_nonnegative(**settings: float) -> None:
    """A one-line ``ConfigError`` naming the first setting (by its flag) that is not >= 0."""
    for name, value in settings.items():
        if not value >= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


def require_density(config: RunConfig, objective: str) -> None:
    """q(z|x) must have a density (a KL term, draws): not the plain autoencoder's point mass."""
    kind = MODEL_KINDS[config.model.kind]
    if kind.deterministic:
        raise ConfigError(f"--objective {objective} needs a posterior with a density (--model vae), not --model {kind.name}")


def require_gaussian(config: RunConfig, objective: str) -> None:
    """q(z|x) must be one diagonal Gaussian layer: the objectives that need the densities log q(z_j|x)
    of single units, or the posterior's variances (not a point mass, a flow or a hierarchy)."""
    m = config.model
    require_density(config, objective)
    if m.flow != "none" or m.latent_layers:
        raise ConfigError(
            f"--objective {objective} needs a diagonal Gaussian posterior q(z|x) of one layer (--model vae, no --flow, one --latent-dim)"
        )


def codes(q: Distribution, draws: Draws) -> torch.Tensor:
    """z (S, B, L) of the batch: one fresh draw in training (S = 1), or the evaluation's fixed draws."""
    return torch.cat([z for _, z in chunks(q, sample_count(1, draws), draws)])


def per_example(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A batch-level value (0-d) as per-example terms (B,) shaped ``like``. The step averages the
    per-example losses (``loss.sum() * batch.weight``), so every example carries the whole value:
    the batch's mean, and its gradient, is then the value's (under DDP: the processes' mean of it)."""
    return value.expand_as(like)
