"""Model parts: networks, posterior heads, likelihood heads, priors and the model that joins them."""

from vaekit.models.likelihoods import LikelihoodHead, build_likelihood, likelihood_names, register_likelihood
from vaekit.models.model import LatentVariableModel, build_model
from vaekit.models.posteriors import DeterministicPosterior, GaussianPosterior, PointMass
from vaekit.models.priors import MixturePrior, StandardNormalPrior, build_prior

__all__ = [
    "LatentVariableModel",
    "build_model",
    "GaussianPosterior",
    "DeterministicPosterior",
    "PointMass",
    "LikelihoodHead",
    "build_likelihood",
    "likelihood_names",
    "register_likelihood",
    "StandardNormalPrior",
    "MixturePrior",
    "build_prior",
]
