"""Compression with a trained VAE: lossless bits-back ANS coding and lossy latent codes.

``compress(model, x) -> bytes`` / ``decompress(model, data) -> x`` (bit for bit); the parts:
``exact`` (a model copy with reproducible outputs), ``latents`` (equal-mass buckets under the
prior), ``likelihoods`` (p(x|z) as the coder's model), ``bitsback`` (the coding order),
``format`` (the ``.vkz`` file, and the model and data it names), ``support`` (which models are
coded), ``lossy`` (quantised posterior means) and ``rate`` (code lengths).
"""

from vaekit.compression.codec import compress, decompress
from vaekit.compression.errors import CompressionError, FormatError
from vaekit.compression.support import check_model

__all__ = ["compress", "decompress", "check_model", "CompressionError", "FormatError"]
