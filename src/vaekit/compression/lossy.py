"""Lossy latent codes: the posterior mean of each example, quantised to one of 2^B equal-mass
buckets of the prior per latent dimension and entropy-coded under the prior, which gives every
bucket probability 2^-B (so B bits per coded dimension). Dimensions the posterior never moves
from the prior (mean KL below ``INACTIVE_KL`` nats over the data) are not stored: they decode to
the prior's median, 0. Decoding returns the decoder mean at the bucket medians."""

from __future__ import annotations

import constriction
import numpy as np
import torch
from scipy.special import ndtr

from vaekit.compression import format as vkz
from vaekit.compression.errors import CompressionError, FormatError
from vaekit.compression.format import write_file
from vaekit.compression.latents import LatentBuckets
from vaekit.compression.likelihoods import DTYPES
from vaekit.compression.support import check_model

INACTIVE_KL = 0.01  # nats per example


@torch.inference_mode()
def posterior_means(model, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) posterior means and per-dimension mean KL to N(0, 1) over the data (L,)."""
    mus, kl = [], 0
    for i in range(0, len(x), batch_size):
        q = model.encode(x[i : i + batch_size].to(model.device, torch.float32))
        mu, var = q.mean.double().cpu(), q.variance.double().cpu()
        mus.append(mu)
        kl = kl + 0.5 * (var + mu.square() - 1 - var.log()).sum(0)
    return torch.cat(mus), kl / len(x)


def compress_lossy(model, x: torch.Tensor, *, latent_bits: int = 8, original: dict | None = None) -> bytes:
    """x (N, *shape) -> a ``.vkz`` file of quantised posterior means, ``latent_bits`` bits per active dimension
    (``original``: as for ``compress``)."""
    if not 1 <= latent_bits <= 16:
        raise CompressionError(f"latent_bits must be in 1..16, got {latent_bits}")
    check_model(model, lossy=True)
    shape = tuple(model.input_shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise CompressionError(f"expected examples of shape (N, {', '.join(map(str, shape))})")
    dtype = {v: k for k, v in DTYPES.items()}.get(x.dtype)
    if dtype is None:
        raise CompressionError(f"cannot compress data of dtype {x.dtype}; use float32, float64 or uint8")
    xf = x.float() / 255 if x.dtype == torch.uint8 else x
    mu, kl = posterior_means(model, xf)
    active = [int(i) for i in torch.nonzero(kl > INACTIVE_KL).flatten()]
    j = np.minimum((ndtr(mu[:, active].numpy()) * 2**latent_bits).astype(np.int64), 2**latent_bits - 1)  # (N, A)
    ans = constriction.stream.stack.AnsCoder()
    if j.size:
        ans.encode_reverse(j.reshape(-1).astype(np.int32), constriction.stream.model.Uniform(2**latent_bits))
    words = ans.get_compressed()
    return write_file("lossy", model, x.detach().cpu().contiguous(), shape, dtype, latent_bits, words, active=active, original=original)


@torch.inference_mode()
def decode_lossy(model, header: vkz.Header, words: np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    """The decoder means (N, *shape) at the stored buckets' medians, in the original dtype."""
    n, dims = header.count, len(header.active)
    ans = constriction.stream.stack.AnsCoder(words) if len(words) else constriction.stream.stack.AnsCoder()
    try:
        j = ans.decode(constriction.stream.model.Uniform(2**header.latent_bits), n * dims) if dims else np.zeros(0, np.int64)
    except (ValueError, RuntimeError) as exc:
        raise FormatError(f"the lossy code does not decode: {exc}") from None
    z = torch.zeros(n, header.latent_dim, dtype=torch.float32)
    z[:, header.active] = torch.from_numpy(LatentBuckets(header.latent_bits).centres[j.reshape(n, dims)]).float()
    out = torch.cat([model.decode(z[i : i + batch_size].to(model.device)).mean.float().cpu() for i in range(0, n, batch_size)])
    dtype = DTYPES[header.dtype]
    return (out.clamp(0, 1) * 255).round().to(torch.uint8) if dtype == torch.uint8 else out.to(dtype)
