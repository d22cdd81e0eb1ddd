"""Model parts: networks, posterior heads, likelihood heads, priors and the model that joins them."""

from vaekit.models.likelihoods import LikelihoodHead, build_likelihood, likelihood_names, register_likelihood
from vaekit.models import discretized  # noqa: F401  (registers beta-binomial and discretized-logistic)
from vaekit.models.model import LatentVariableModel, build_model
from vaekit.models.posteriors import DeterministicPosterior, DiagonalNormal, GaussianPosterior, PointMass
from vaekit.models.priors import MixturePrior, StandardNormal, StandardNormalPrior, build_prior

__all__ = [
    "LatentVariableModel",
    "build_model",
    "GaussianPosterior",
    "DeterministicPosterior",
    "PointMass",
    "DiagonalNormal",
    "StandardNormal",
    "LikelihoodHead",
    "build_likelihood",
    "likelihood_names",
    "register_likelihood",
    "StandardNormalPrior",
    "MixturePrior",
    "build_prior",
]
