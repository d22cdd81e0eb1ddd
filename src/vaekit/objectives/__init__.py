"""Objectives: registered objects called as ``objective(model, batch) -> Terms``.

``base`` holds the interface (``Objective``, ``OBJECTIVES``, ``Terms``, ``Draws``, the default
training step); ``elbo`` the ELBO family (VAE, β-VAE, several samples, STL, the plain AE);
``importance`` the importance-weighted family (IWAE, MIWAE, CIWAE, PIWAE); ``semisupervised`` the
M2 bound for partly labelled data; ``tcvae``, ``factorvae``, ``dipvae`` and ``capacity`` the
disentangling objectives of Locatello et al. 2019's study (β-TCVAE, FactorVAE, DIP-VAE-I and -II,
AnnealedVAE), on the pieces of ``regularised``; ``estimate`` the pieces the bounds share. A new
objective is one file with one registered class (docs/contributing.md).
"""

from __future__ import annotations

import torch

from vaekit.data.base import Batch
from vaekit.errors import ConfigError
from vaekit.objectives.base import FRESH, OBJECTIVES, Draws, NamedTerms, Objective, StepContext, Terms, concatenated, objective_from_config
from vaekit.objectives.capacity import AnnealedVAE
from vaekit.objectives.dipvae import DIPVAE, DIPVAEI, DIPVAEII
from vaekit.objectives.elbo import ELBO, ELBOTerms
from vaekit.objectives.estimate import PathDerivative, StandardNormalDraws, closed_form_kl, kl_to_prior
from vaekit.objectives.factorvae import FactorVAE
from vaekit.objectives.importance import ImportanceWeighted
from vaekit.objectives.semisupervised import SemiSupervisedBound
from vaekit.objectives.tcvae import BetaTCVAE

__all__ = [
    "DIPVAE",
    "DIPVAEI",
    "DIPVAEII",
    "ELBO",
    "FRESH",
    "OBJECTIVES",
    "AnnealedVAE",
    "BetaTCVAE",
    "Draws",
    "ELBOTerms",
    "FactorVAE",
    "ImportanceWeighted",
    "NamedTerms",
    "Objective",
    "PathDerivative",
    "SemiSupervisedBound",
    "StandardNormalDraws",
    "StepContext",
    "Terms",
    "closed_form_kl",
    "concatenated",
    "elbo",
    "kl_to_prior",
    "objective_from_config",
]


def elbo(model, x: torch.Tensor, target: torch.Tensor | None = None, *, context=None, **settings) -> ELBOTerms:
    """The bound's per-example terms (B,) for inputs ``x`` (B, *shape), in one call.

    target: what the decoder explains (default ``x``; the clean data for a denoising model).
    context: a conditional model's context (labels (B,) or one label, vectors (B, K)).
    settings: the objective's keyword arguments (``ELBO``: ``beta``, ``n_samples``, ``stl``, ``free_bits``; with
        ``iw=True``, ``ImportanceWeighted``'s, with ``iw_groups``, ``iw_elbo_mix``, ``piwae`` for its
        ``groups``, ``elbo_mix``, ``partial``) and the ``Draws``' (``noise``, ``chunk``, ``squared_error``).
    """
    draws = Draws(**{k: settings.pop(k) for k in ("noise", "chunk", "squared_error") if k in settings})
    if draws.noise is not None:
        settings["n_samples"] = len(draws.noise)  # S fixed draws
    if settings.pop("iw", False):
        if settings.pop("stl", False):
            raise ConfigError("stl is the path-derivative gradient of the averaged ELBO; with iw it would be biased")
        renamed = {"iw_groups": "groups", "iw_elbo_mix": "elbo_mix", "piwae": "partial"}
        objective = ImportanceWeighted(**{renamed.get(k, k): v for k, v in settings.items()})
    else:
        objective = ELBO(**settings)
    batch = Batch(x, x if target is None else target, context=context)
    return objective(model, batch, draws=draws)
