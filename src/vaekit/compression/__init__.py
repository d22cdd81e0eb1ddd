"""Compression with a trained VAE: lossless bits-back ANS coding and lossy latent codes.

``compress(model, x) -> bytes`` / ``decompress(model, data) -> x`` (bit for bit); the parts:
``exact`` (a model copy with reproducible outputs), ``latents`` (equal-mass buckets under the
prior), ``likelihoods`` (p(x|z) as the coder's model), ``bitsback`` (the coding order),
``format`` (the ``.vkz`` file), ``lossy`` (quantised posterior means) and ``rate`` (code lengths).
"""

from vaekit.compression.codec import check_model, compress, decompress
from vaekit.compression.errors import CompressionError, FormatError

__all__ = ["compress", "decompress", "check_model", "CompressionError", "FormatError"]
