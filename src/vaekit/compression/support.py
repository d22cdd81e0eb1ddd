"""Which models the coders serve: ``check_model`` refuses the others with a one-line reason."""

from __future__ import annotations

from vaekit.compression.errors import CompressionError
from vaekit.compression.likelihoods import build_coder
from vaekit.models.condition import ConditionalPrior
from vaekit.models.hierarchy import HierarchicalPrior, Hierarchy
from vaekit.models.posteriors import GaussianPosterior
from vaekit.models.priors import StandardNormalPrior


def check_model(model, lossy: bool = False) -> None:
    """Refuse models the coding is not defined for here, with a one-line reason (lossy: any likelihood)."""
    if model.conditional and (lossy or not model.condition.classes):
        raise CompressionError(
            "compression of a conditional model needs class labels (--condition label) and lossless coding; "
            "context columns would have to travel in the file"
        )
    hierarchical = isinstance(model.posterior, Hierarchy)
    if model.deterministic or not isinstance(model.posterior, (GaussianPosterior, Hierarchy)):
        raise CompressionError(
            "compression needs a VAE with Gaussian latent layers (no flow; a plain autoencoder has no likelihood to code with)"
        )
    if hierarchical and lossy:
        raise CompressionError("lossy compression needs one latent layer; a hierarchical model compresses losslessly")
    top = model.prior_module.top if isinstance(model.prior_module, HierarchicalPrior) else model.prior_module
    if not isinstance(top, (StandardNormalPrior, ConditionalPrior)):
        where = " on the top layer" if hierarchical else ""
        raise CompressionError(f"compression supports the standard normal prior{where}; this model has {model.config.prior!r}")
    if not lossy:
        build_coder(model.config.likelihood)
