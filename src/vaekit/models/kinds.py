"""Model kinds: what ``--model NAME`` (``ModelConfig.kind``) builds, registered in ``MODEL_KINDS``.

Every kind is a ``LatentVariableModel`` composed of registered parts; a kind says which posterior
head it has, whether it needs class labels, the parts it adds (a classifier q(y|x)), the objective it
trains with by default and the settings it refuses. ``vae`` and ``ae`` are today's VAE and plain
autoencoder; ``m2`` is the semi-supervised VAE of Kingma et al. 2014. A new kind is one class here
(or in a file of its own) registered with ``@MODEL_KINDS.register(name)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

from vaekit.errors import ConfigError
from vaekit.models.auxiliary import AuxiliaryVariable
from vaekit.models.classifier import Classifier
from vaekit.models.condition import LabelCondition
from vaekit.models.networks import ENCODERS
from vaekit.models.posteriors import DeterministicPosterior, GaussianPosterior
from vaekit.models.priors import PRIORS, StandardNormalPrior
from vaekit.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from vaekit.config import ModelConfig


class ModelKind:
    """Interface of a model kind (class attributes and class methods; never instantiated).

    posterior: the ``POSTERIORS`` head of q(z|x). deterministic: a point-mass posterior (no KL term).
    condition: the ``CONDITIONS`` name the kind always has (the class label of ``m2``), or None: the config's.
    objective: the ``OBJECTIVES`` name it trains with when the run names the default ``elbo``; None: the run's.
    """

    name: ClassVar[str]
    posterior: ClassVar[str]
    deterministic: ClassVar[bool] = False
    condition: ClassVar[str | None] = None
    objective: ClassVar[str | None] = None

    @classmethod
    def resolved(cls, config: ModelConfig) -> ModelConfig:
        """``config`` with what the kind decides filled in (its condition)."""
        if cls.condition is None or config.condition == cls.condition:
            return config
        return dataclasses.replace(config, condition=cls.condition)

    @classmethod
    def check(cls, config: ModelConfig) -> None:
        """A one-line ``ConfigError`` for a setting the kind cannot have."""

    @classmethod
    def parts(cls, config: ModelConfig) -> dict[str, nn.Module]:
        """The modules the kind adds to the model, by attribute name (none by default)."""
        return {}


MODEL_KINDS: Registry[type[ModelKind]] = Registry("model kind")


@MODEL_KINDS.register("vae")
class VAE(ModelKind):
    """The VAE: a Gaussian posterior q(z|x) (pushed through a flow, or over layers, as the config says)."""

    posterior = GaussianPosterior.name


@MODEL_KINDS.register("ae")
class Autoencoder(ModelKind):
    """The plain (or denoising) autoencoder: a point-mass posterior, the reconstruction term alone."""

    posterior = DeterministicPosterior.name
    deterministic = True


@MODEL_KINDS.register("m2")
class SemiSupervised(ModelKind):
    """Kingma et al. 2014's M2: p(y) p(z) p(x|y, z) with q(y|x) q(z|x, y), learned from partly
    labelled data (-1 marks an unlabelled example) by the ``m2`` objective, which sums y out of the
    unlabelled examples' bound. The model is the conditional VAE on the class label (one-hot y beside
    x in the encoder and beside z in the decoder) with a classifier q(y|x) (``Classifier``: the
    ``arch`` network and K logits) and the standard normal prior on z; p(y) is uniform.

    With ``auxiliary_dim`` A > 0 it is Maaløe et al. 2016's ADGM (``vaekit.models.auxiliary``): q(a|x)
    and p(a|x, y, z) are added, and the classifier and the encoder read a draw of a beside x."""

    posterior = GaussianPosterior.name
    condition = LabelCondition.name
    objective = "m2"  # vaekit.objectives.semisupervised

    @classmethod
    def check(cls, config: ModelConfig) -> None:
        if config.condition not in ("none", cls.condition):
            raise ConfigError(f"--model m2 is conditioned on the class label; it cannot take --condition {config.condition}")
        if PRIORS[config.prior] is not StandardNormalPrior:
            raise ConfigError(f"--model m2 has the standard normal prior p(z); it cannot take --prior {config.prior}")
        if config.flow != "none" or config.latent_layers:
            raise ConfigError("--model m2 has one Gaussian latent layer: no --flow, one --latent-dim")
        network = ENCODERS[config.arch]
        if config.auxiliary_dim and (network.needs_images or network.reads_tokens):
            raise ConfigError(
                f"--auxiliary-dim needs a flat network (--arch mlp or gated); the {config.arch} network's inputs are not a vector"
            )

    @classmethod
    def parts(cls, config: ModelConfig) -> dict[str, nn.Module]:
        """The classifier q(y|x) (on [x, a] with an auxiliary variable) and the auxiliary variable's parts."""
        if not config.auxiliary_dim:
            return {"classifier": Classifier.from_config(config)}
        wider = (math.prod(config.input_shape) + config.auxiliary_dim,)
        return {
            "classifier": Classifier.from_config(dataclasses.replace(config, input_shape=wider)),
            "auxiliary": AuxiliaryVariable.from_config(config),
        }
