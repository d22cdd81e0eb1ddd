"""``compress(model, x) -> bytes`` and ``decompress(model, data) -> x``: the public entry points."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vaekit.compression import format as vkz
from vaekit.compression.bitsback import BitsBackCoder, initial_words
from vaekit.compression.errors import CompressionError, FormatError
from vaekit.compression.exact import ACTIVATION_BITS, WEIGHT_BITS, ExactModel, weights_sha256
from vaekit.compression.latents import LatentBuckets
from vaekit.compression.likelihoods import DTYPES, build_coder

DEFAULT_LATENT_BITS = 12


def default_batch(levels: int, dims: int) -> int:
    """Examples per batch: 1000 for binary data; for 256 levels, as many as keep the (n·D, 256) tables near 32 MiB."""
    return 1000 if levels == 2 else max(1, 2**22 // (dims * levels))


def check_model(model, lossy: bool = False) -> None:
    """Refuse models the coding is not defined for here, with a one-line reason (lossy: any likelihood)."""
    from vaekit.models.condition import ConditionalPrior
    from vaekit.models.hierarchical import HierarchicalPrior, Hierarchy
    from vaekit.models.posteriors import GaussianPosterior
    from vaekit.models.priors import StandardNormalPrior

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


def data_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(x.detach().cpu().numpy()).tobytes()).hexdigest()


@dataclass
class _Parts:
    exact: ExactModel
    coder: BitsBackCoder


def _parts(model, latent_bits: int) -> _Parts:
    check_model(model)
    exact = ExactModel(model)
    lik = build_coder(model.config.likelihood)
    return _Parts(exact, BitsBackCoder(exact, lik, LatentBuckets(latent_bits), tuple(model.input_shape), model.latent_dim))


def compress(
    model,
    x: torch.Tensor,
    *,
    latent_bits: int = DEFAULT_LATENT_BITS,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    labels: torch.Tensor | None = None,
) -> bytes:
    """Code ``x`` (N, *model.input_shape) losslessly with bits-back ANS under ``model``.

    x: binary data for a bernoulli model; 8-bit data (k / 255 as float32/float64, or uint8) for a
        discretised likelihood. latent_bits: buckets per latent dimension, 2^latent_bits.
    batch_size: examples coded together (default 1000; fewer for 256-level likelihoods).
    progress: called with the number of examples coded so far.
    labels: a label-conditional model's (``--condition label``) labels of x (N,): the file carries them
        (log2 C bits each, uniform over the C classes) and x is coded given them.
    Returns the ``.vkz`` file's bytes; ``decompress(model, data)`` gives back ``x`` bit for bit.
    """
    if not isinstance(x, torch.Tensor):
        raise CompressionError(f"expected a tensor, got {type(x).__name__}")
    shape = tuple(model.input_shape)
    if x.dim() < 1 or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise CompressionError(f"expected examples of shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    if not 2 <= latent_bits <= 16:
        raise CompressionError(f"latent_bits must be in 2..16, got {latent_bits}")
    dtype = {v: k for k, v in DTYPES.items()}.get(x.dtype)
    if dtype is None:
        raise CompressionError(f"cannot compress data of dtype {x.dtype}; use float32, float64 or uint8")
    x = x.detach().cpu().contiguous()
    parts = _parts(model, latent_bits)
    y = _check_labels(labels, len(x), parts.coder.classes)
    symbols = parts.coder.likelihood.symbols(x)
    batch = batch_size or default_batch(parts.coder.likelihood.levels, math.prod(shape))
    words, sizes = parts.coder.encode(symbols, batch, progress, y)
    return write_file(
        "lossless",
        model,
        x,
        shape,
        dtype,
        latent_bits,
        words,
        batches=sizes,
        initial_bits=32 * len(initial_words(parts.coder.initial_dims)),
        classes=parts.coder.classes,
    )


def _check_labels(labels: torch.Tensor | None, n: int, classes: int) -> np.ndarray | None:
    """A label-conditional model's labels (N,) as int64 in 0..classes-1; None for other models."""
    if not classes:
        if labels is not None:
            raise CompressionError("labels were given, but the model is not conditioned on a class label")
        return None
    if labels is None:
        raise CompressionError("the model is conditioned on the class label: give the examples' labels")
    y = torch.as_tensor(labels)
    if y.shape != (n,) or y.is_floating_point() or y.dtype == torch.bool:
        raise CompressionError(f"expected {n} integer labels, got {tuple(y.shape)} of {y.dtype}")
    if n and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise CompressionError(f"labels must be classes 0..{classes - 1}, the model's")
    return y.cpu().numpy().astype(np.int64)


def write_file(mode: str, model, x: torch.Tensor, shape, dtype: str, latent_bits: int, words: np.ndarray, **extra) -> bytes:
    """The .vkz bytes of a coded stream: the header names the model (its weights' SHA-256), the data
    (shape, dtype, count, SHA-256) and the coding's precisions; ``extra``: the mode's own fields."""
    header = vkz.Header(
        mode=mode,
        weights_sha256=weights_sha256(model),
        likelihood=model.config.likelihood,
        shape=list(shape),
        dtype=dtype,
        count=len(x),
        latent_dim=model.latent_dim,
        latent_bits=latent_bits,
        weight_bits=WEIGHT_BITS,
        activation_bits=ACTIVATION_BITS,
        words=len(words),
        data_sha256=data_sha256(x),
        **extra,
    )
    return vkz.write(header, words)


def check_header(model, header: vkz.Header, where: str) -> None:
    """A file must have been written with this model's weights, shape and coding settings."""
    sha = weights_sha256(model)
    if header.weights_sha256 != sha:
        raise FormatError(
            f"{where} was written with another model (weights SHA-256 {header.weights_sha256[:12]}..., this model's {sha[:12]}...)"
        )
    if (
        tuple(header.shape) != tuple(model.input_shape)
        or header.latent_dim != model.latent_dim
        or header.likelihood != model.config.likelihood
    ):
        raise FormatError(f"{where} does not match the model (shape, latent size or likelihood)")
    classes = model.condition.classes if model.conditional else 0
    if header.mode == "lossless" and header.classes != classes:
        raise FormatError(f"{where} does not match the model (it carries labels of {header.classes} classes, the model takes {classes})")
    if (header.weight_bits, header.activation_bits) != (WEIGHT_BITS, ACTIVATION_BITS):
        raise FormatError(
            f"{where} uses {header.weight_bits}/{header.activation_bits}-bit arithmetic grids; "
            f"this vaekit uses {WEIGHT_BITS}/{ACTIVATION_BITS}"
        )


def decompress(model, data: bytes, *, where: str = "the data", progress: Callable[[int], None] | None = None, with_labels: bool = False):
    """The inverse of ``compress`` (or of ``compress_lossy``: then the decoder means).

    Returns x (N, *shape) in the original dtype; with ``with_labels``, (x, labels): the labels (N,)
    int64 a label-conditional model's file carries, or None. ``FormatError`` for a file that is not a
    vaekit compressed file, is truncated or corrupted, or was written with another model.
    """
    header, words = vkz.read(data, where)
    check_header(model, header, where)
    if header.mode == "lossy":
        from vaekit.compression.lossy import decode_lossy

        x = decode_lossy(model, header, words)
        return (x, None) if with_labels else x
    if not 2 <= header.latent_bits <= 16:
        raise FormatError(f"{where} is corrupted (header field latent_bits = {header.latent_bits})")
    parts = _parts(model, header.latent_bits)
    try:
        symbols, labels, clean_end = parts.coder.decode(words, header.batches, progress)
    except (ValueError, RuntimeError, OverflowError) as exc:  # the coder refusing a damaged stream
        raise FormatError(f"{where} is corrupted (the coded stream does not decode: {exc})") from None
    x = parts.coder.likelihood.values(symbols, DTYPES[header.dtype]).reshape(header.count, *header.shape)
    if not clean_end or data_sha256(x) != header.data_sha256:
        raise FormatError(
            f"{where} does not decode to the data it was written from (checksum mismatch): "
            "a damaged file, or a different vaekit or platform arithmetic"
        )
    if with_labels:
        return x, None if labels is None else torch.from_numpy(labels)
    return x
