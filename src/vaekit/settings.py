"""A run's settings read with the parts they pick: whether each setting fits them (``check``), and
which take effect (``TAKES_EFFECT``).

``check`` is ``vaekit.config.validate`` (each value alone) and then what the parts' facts and the
objective's own checks require; it lives here, above the parts' registries, because those build on
``vaekit.config``.

A setting that only one kind of part reads (a mixture prior's component count, a flow's step count,
the IW bound's groups, ...) is inert elsewhere. The CLI refuses a flag for an inert setting with one
line; the report's configuration block shows only the settings that took effect. One table serves both.
"""

from __future__ import annotations

from collections.abc import Callable

from vaekit.config import RunConfig, validate
from vaekit.errors import ConfigError
from vaekit.models import ENCODERS, LIKELIHOODS, MODEL_KINDS, PRIORS
from vaekit.models.condition import ColumnsCondition
from vaekit.models.model import check_channels
from vaekit.objectives import (
    DIPVAEI,
    DIPVAEII,
    ELBO,
    AnnealedVAE,
    BetaTCVAE,
    FactorVAE,
    ImportanceWeighted,
    SemiSupervisedBound,
    objective_from_config,
)


def check(config: RunConfig) -> None:
    """Raise ``ConfigError`` naming the first setting of ``config`` that does not fit: a value
    (``validate``), a convolutional network without channels, context columns without
    ``--condition columns``, or what the objective the run trains with refuses."""
    validate(config)
    check_channels(config.model)
    if config.data.context_columns and config.model.condition != ColumnsCondition.name:
        raise ConfigError(
            f"context columns are the context of --condition {ColumnsCondition.name}, not --condition {config.model.condition}"
        )
    objective_from_config(config)


def _stochastic(c: RunConfig) -> bool:
    return not MODEL_KINDS[c.model.kind].deterministic


def _layered(c: RunConfig) -> bool:
    return bool(c.model.latent_layers)


def _iw(c: RunConfig) -> bool:
    return c.train.objective == ImportanceWeighted.name


def _semi_supervised(c: RunConfig) -> bool:
    return c.train.objective == SemiSupervisedBound.name or MODEL_KINDS[c.model.kind].objective == SemiSupervisedBound.name


def _kl_weighted(c: RunConfig) -> bool:
    return _stochastic(c) and c.train.objective != AnnealedVAE.name


def _elbo(c: RunConfig) -> bool:
    return _stochastic(c) and c.train.objective == ELBO.name and MODEL_KINDS[c.model.kind].objective in (None, ELBO.name)


def _objective(*objectives: type) -> Callable[[RunConfig], bool]:
    """Whether the run trains with one of ``objectives``."""
    names = {o.name for o in objectives}
    return lambda c: c.train.objective in names


def _plateau(c: RunConfig) -> bool:
    return c.train.lr_patience > 0


_TCVAE, _FACTOR, _DIP, _ANNEALED = _objective(BetaTCVAE), _objective(FactorVAE), _objective(DIPVAEI, DIPVAEII), _objective(AnnealedVAE)
_KL_WEIGHT = f"--model vae (a plain autoencoder has no KL term) and an objective with a KL weight (not --objective {AnnealedVAE.name})"

# (section, field) -> (whether the config uses it, what it needs, in the CLI's words)
TAKES_EFFECT: dict[tuple[str, str], tuple[Callable[[RunConfig], bool], str]] = {
    ("train", "iw_groups"): (_iw, "--iw-samples"),
    ("train", "iw_elbo_mix"): (_iw, "--iw-samples"),
    ("train", "piwae"): (_iw, "--iw-samples"),
    ("train", "noise_level"): (lambda c: c.train.noise != "none", "--noise"),
    ("train", "lr_factor"): (_plateau, "--lr-patience"),
    ("train", "min_lr"): (_plateau, "--lr-patience"),
    ("model", "flow_steps"): (lambda c: c.model.flow != "none", "--flow"),
    ("model", "prior_components"): (lambda c: PRIORS[c.model.prior].has_components, "a mixture prior (--prior mixture or vampprior)"),
    ("model", "likelihood_scale"): (lambda c: LIKELIHOODS[c.model.likelihood].takes_scale, "--likelihood gaussian or gaussian-shared"),
    ("model", "hierarchy"): (_layered, "several latent layers (--latent-dim L1 L2 ...)"),
    ("model", "latent_hidden"): (_layered, "several latent layers (--latent-dim L1 L2 ...)"),
    ("model", "conv_dense"): (
        lambda c: ENCODERS[c.model.arch].needs_images and not ENCODERS[c.model.arch].fixed_layout,
        "a convolutional network (--arch conv or resnet)",
    ),
    ("train", "beta"): (_kl_weighted, _KL_WEIGHT),
    ("train", "warmup_epochs"): (_kl_weighted, _KL_WEIGHT),
    ("train", "free_bits"): (_elbo, "--model vae and the ELBO (--objective elbo)"),
    **{
        ("train", name): (_TCVAE, f"--objective {BetaTCVAE.name}")
        for name in ("tc_estimator", "mi_weight", "dimkl_weight", "tc_dataset_size")
    },
    **{
        ("train", name): (_FACTOR, f"--objective {FactorVAE.name}")
        for name in ("factor_gamma", "discriminator_hidden", "discriminator_lr", "discriminator_betas")
    },
    **{("train", name): (_DIP, f"--objective {DIPVAEI.name} or {DIPVAEII.name}") for name in ("dip_lambda_od", "dip_lambda_d")},
    **{("train", name): (_ANNEALED, f"--objective {AnnealedVAE.name}") for name in ("capacity_gamma", "capacity_max", "capacity_steps")},
    ("model", "logvar_range"): (_stochastic, "--model vae (a plain autoencoder has no variance)"),
    ("model", "context_dim"): (lambda c: c.model.condition != "none" or MODEL_KINDS[c.model.kind].condition is not None, "--condition"),
    ("train", "alpha"): (_semi_supervised, "--model m2"),
    ("train", "class_balance"): (_semi_supervised, "--model m2"),
    ("model", "classifier_hidden"): (_semi_supervised, "--model m2"),
    ("model", "classifier_dropout"): (_semi_supervised, "--model m2"),
    ("model", "auxiliary_dim"): (_semi_supervised, "--model m2"),
    ("data", "labelled"): (_semi_supervised, "--model m2 (a model that learns from partly labelled data)"),
    ("data", "context_columns"): (lambda c: c.model.condition != "none", "--condition columns"),
    ("data", "truncate"): (lambda c: c.data.max_length is not None, "--max-length"),
}


def takes_effect(config: RunConfig, section: str, name: str) -> bool:
    """Whether ``config`` uses its setting ``section.name`` (every setting not in ``TAKES_EFFECT`` does)."""
    used = TAKES_EFFECT.get((section, name))
    return used is None or used[0](config)
