"""Which models the coders serve: ``check_model`` refuses the others with a one-line reason, read from
the model's declaration of its latent space (``model.latent``, a ``vaekit.models.LatentSpec``)."""

from __future__ import annotations

from vaekit.compression.errors import CompressionError
from vaekit.compression.likelihoods import build_coder


def check_model(model, lossy: bool = False) -> None:
    """Refuse models the coding is not defined for here, with a one-line reason (lossy: any likelihood).

    The coders need Gaussian layers: q(z|x) a diagonal Gaussian layer by layer (no flow, no point
    mass), p(z) too (N(0, I) or a label-conditional p(z|y) at the top, not a mixture), one layer for
    lossy codes, and a context that is a class label the file can carry."""
    latent = model.latent
    if latent.conditional and (lossy or not latent.label_classes):
        raise CompressionError(
            "compression of a conditional model needs class labels (--condition label) and lossless coding; "
            "context columns would have to travel in the file"
        )
    if not latent.gaussian_posterior:
        raise CompressionError(
            "compression needs a VAE with Gaussian latent layers (no flow; a plain autoencoder has no likelihood to code with)"
        )
    if latent.hierarchical and lossy:
        raise CompressionError("lossy compression needs one latent layer; a hierarchical model compresses losslessly")
    if not latent.gaussian_prior:
        where = " on the top layer" if latent.hierarchical else ""
        raise CompressionError(f"compression supports the standard normal prior{where}; this model has {model.config.prior!r}")
    if not lossy:
        build_coder(model.config.likelihood)
