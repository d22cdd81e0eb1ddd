"""``compress(model, x) -> bytes`` and ``decompress(model, data) -> x``: the public entry points."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from vaekit.compression import format as vkz
from vaekit.compression.bitsback import BitsBackCoder, initial_words
from vaekit.compression.errors import CompressionError, FormatError
from vaekit.compression.exact import ExactModel
from vaekit.compression.format import check_header, data_sha256, write_file
from vaekit.compression.latents import LatentBuckets
from vaekit.compression.likelihoods import DTYPES, build_coder
from vaekit.compression.lossy import decode_lossy
from vaekit.compression.support import check_model

DEFAULT_LATENT_BITS = 12


def default_batch(levels: int, dims: int) -> int:
    """Examples per batch: 1000 for binary data; for 256 levels, at most 1000 and 2^19 values (the (n·D, 16)
    group tables near 32 MiB)."""
    return 1000 if levels == 2 else max(1, min(1000, 2**19 // dims))


@contextmanager
def one_thread():
    """Torch on one thread while coding: a batch's networks are small and the coding itself is serial, so
    more threads only wait on each other, and on a busy machine far longer than they help (the outputs
    are the same bits on any number of threads: ``exact``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Parts:
    exact: ExactModel
    coder: BitsBackCoder


def _parts(model, latent_bits: int, version: int = vkz.VERSION) -> _Parts:
    """The coder for ``model``, for streams of .vkz format ``version`` (a file's own when decoding)."""
    check_model(model)
    exact = ExactModel(model)
    lik = build_coder(model.config.likelihood, version)
    return _Parts(exact, BitsBackCoder(exact, lik, LatentBuckets(latent_bits), tuple(model.input_shape), model.latent_dim))


def compress(
    model,
    x: torch.Tensor,
    *,
    latent_bits: int = DEFAULT_LATENT_BITS,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    labels: torch.Tensor | None = None,
    original: dict | None = None,
) -> bytes:
    """Code ``x`` (N, *model.input_shape) losslessly with bits-back ANS under ``model``.

    x: binary data for a bernoulli model; 8-bit data (k / 255 as float32/float64, or uint8) for a
        discretised likelihood. latent_bits: buckets per latent dimension, 2^latent_bits.
    batch_size: examples coded together (default 1000; fewer for 256-level likelihoods).
    progress: called with the number of examples coded so far.
    labels: a label-conditional model's (``--condition label``) labels of x (N,): the file carries them
        (log2 C bits each, uniform over the C classes) and x is coded given them.
    original: the form of the array x was read from (``compression.original.describe``), kept in the
        file for a reader to give that array back (``original.restore``).
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
    with one_thread():
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
        original=original,
        version=parts.coder.likelihood.format_version,
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


def decompress(model, data: bytes, *, where: str = "the data", progress: Callable[[int], None] | None = None, with_labels: bool = False):
    """The inverse of ``compress`` (or of ``compress_lossy``: then the decoder means).

    Returns x (N, *shape) in the original dtype; with ``with_labels``, (x, labels): the labels (N,)
    int64 a label-conditional model's file carries, or None. ``FormatError`` for a file that is not a
    vaekit compressed file, is truncated or corrupted, or was written with another model.
    """
    header, words = vkz.read(data, where)
    check_header(model, header, where)
    if header.mode == "lossy":
        x = decode_lossy(model, header, words)
        return (x, None) if with_labels else x
    if not 2 <= header.latent_bits <= 16:
        raise FormatError(f"{where} is corrupted (header field latent_bits = {header.latent_bits})")
    parts = _parts(model, header.latent_bits, header.version)
    try:
        with one_thread():
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
