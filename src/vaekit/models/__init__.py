"""Model parts: networks, posterior heads, likelihood heads, priors and the model that joins them.

Each kind of part has an abstract base class and a registry of named implementations, chosen by
a field of ``ModelConfig``:

- encoder and decoder networks: ``Encoder`` / ``Decoder``, in ``ENCODERS`` / ``DECODERS`` (``arch``);
- the model kind (VAE, AE, the semi-supervised M2): ``ModelKind``, in ``MODEL_KINDS`` (``kind``);
- the posterior head q(z|x): ``PosteriorHead``, in ``POSTERIORS`` (named by the model kind);
- the likelihood head p(x|z): ``LikelihoodHead``, in ``LIKELIHOODS`` (``likelihood``);
- the prior p(z): ``Prior``, in ``PRIORS`` (``prior``);
- flow steps on top of the posterior: ``FlowStep``, in ``FLOWS`` (``flow``);
- the wiring of hierarchical latents: ``Hierarchy``, in ``HIERARCHIES`` (``hierarchy``);
- the context of a conditional model: ``Condition``, in ``CONDITIONS`` (``condition``).

``Model`` is the interface every model offers the tools (``encode``, ``decode``, ``prior`` and
``latent``, the ``LatentSpec`` declaring its latent space), in ``vaekit.models.contract``.

Modules that only add registered parts (``gated``, ``resnet``, ``vampprior``) are imported here once, so their names register.
"""

from vaekit.models import discretized, gated, resnet  # noqa: F401 -- importing registers the discretised likelihoods and the gated and resnet networks
from vaekit.models.classifier import Classifier
from vaekit.models.condition import CONDITIONS, Condition, ConditionalPrior, LabelCondition
from vaekit.models.contract import LatentSpec, Model
from vaekit.models.distributions import (
    DiagonalGaussianMixture,
    DiagonalNormal,
    FlowDistribution,
    LayeredGaussian,
    PointMass,
    StandardNormal,
)
from vaekit.models.flows import FLOWS, FlowPosterior, FlowStep
from vaekit.models.hierarchy import HIERARCHIES, HierarchicalPrior, Hierarchy
from vaekit.models.kinds import MODEL_KINDS, ModelKind
from vaekit.models.likelihoods import LIKELIHOODS, LikelihoodHead, register_likelihood
from vaekit.models.model import LatentVariableModel, build_model, check_parts
from vaekit.models.networks import ACTIVATIONS, DECODERS, ENCODERS, Decoder, Encoder
from vaekit.models.posteriors import POSTERIORS, DeterministicPosterior, GaussianPosterior, PosteriorHead
from vaekit.models.priors import PRIORS, MixturePrior, Prior, StandardNormalPrior
from vaekit.models.vampprior import VampPrior

__all__ = [
    "Model",
    "LatentSpec",
    "LatentVariableModel",
    "build_model",
    "check_parts",
    "MODEL_KINDS",
    "ModelKind",
    "Classifier",
    "Encoder",
    "Decoder",
    "ENCODERS",
    "DECODERS",
    "ACTIVATIONS",
    "PosteriorHead",
    "POSTERIORS",
    "GaussianPosterior",
    "DeterministicPosterior",
    "PointMass",
    "DiagonalNormal",
    "LikelihoodHead",
    "LIKELIHOODS",
    "register_likelihood",
    "FlowStep",
    "FLOWS",
    "FlowPosterior",
    "FlowDistribution",
    "Prior",
    "PRIORS",
    "StandardNormal",
    "StandardNormalPrior",
    "MixturePrior",
    "VampPrior",
    "DiagonalGaussianMixture",
    "Hierarchy",
    "HIERARCHIES",
    "HierarchicalPrior",
    "LayeredGaussian",
    "Condition",
    "CONDITIONS",
    "LabelCondition",
    "ConditionalPrior",
]
