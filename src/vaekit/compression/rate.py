"""Code lengths in bits per dimension, and where a negative ELBO is not one.

- A discrete likelihood (bernoulli on binary data, beta-binomial or discretized-logistic on 8-bit
  data) gives probabilities: the negative ELBO in bits is the expected bits-back code length.
- A continuous likelihood (gaussian, continuous-bernoulli) gives a density, and -log of a density
  is no code length (it can be negative). For 8-bit data the literature's convention is uniform
  dequantization: code level k as y = (k + u) / 256, u ~ U(0, 1), and add log 256 per dimension
  for the bin width; by Jensen, the result bounds the code length of a discretised version of the
  same model from above.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from vaekit.compression.errors import CompressionError
from vaekit.compression.likelihoods import coder_names
from vaekit.compression.support import check_model
from vaekit.data.base import Dataset
from vaekit.evaluation import elbo_terms
from vaekit.models import LIKELIHOODS

LEVELS = 256


BLOCK = 4096  # examples checked or dequantized at a time (a memory-mapped dataset is never read whole)


def _blocks(x) -> Iterator[torch.Tensor]:
    """``x`` (N, *shape), a tensor or a memory-mapped array, as tensors of at most BLOCK examples."""
    for start in range(0, len(x), BLOCK):
        yield torch.as_tensor(x[start : start + BLOCK])


def is_8bit(x) -> bool:
    """True when every value of ``x`` (N, *shape; floats in [0, 1]) is a level k / 255."""
    return len(x) > 0 and all(b.is_floating_point() and torch.equal(torch.round(b * (LEVELS - 1)) / (LEVELS - 1), b) for b in _blocks(x))


def is_binary(x) -> bool:
    """True when every value of ``x`` (N, *shape) is 0 or 1."""
    return len(x) > 0 and all(bool(((b == 0) | (b == 1)).all()) for b in _blocks(x))


def dequantize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Levels k / 255 -> (k + u) / 256 with u ~ U(0, 1): a point uniformly inside level k's bin of width 1/256."""
    k = torch.round(x * (LEVELS - 1))
    return (k + torch.rand(x.shape, generator=generator, dtype=x.dtype)) / LEVELS


@torch.inference_mode()
def dequantized_neg_log_likelihood(model, x: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> torch.Tensor:
    """Per-example negative ELBO (N,) in nats of uniformly dequantized 8-bit data ``x`` (N, *shape),
    on the scale of the 256 levels (the density's log-Jacobian, D log 256, added)."""
    g = torch.Generator().manual_seed(seed)
    dims = math.prod(x.shape[1:])
    parts = [
        elbo_terms(model, Dataset(dequantize(b.cpu(), g)), batch_size=batch_size, seed=seed + i).neg_elbo.double()
        for i, b in enumerate(_blocks(x))
    ]
    return torch.cat(parts) + dims * math.log(LEVELS)


def code_kind(model, x) -> tuple[str, str]:
    """Whether the model's negative ELBO on ``x`` (N, *shape), in bits, is a code length: ``(kind, note)``.

    The one place this is decided: ``code_length``, ``vaekit evaluate``'s lines and JSON (the
    negative ELBO's and the IW estimate's bits/dim) and the report's metrics table ask it. ``kind``:
    ``bits-back`` (a discrete likelihood on data it codes: the negative ELBO, or an IW estimate of
    -log p(x), in bits is a code length), ``dequantized`` (a continuous likelihood on 8-bit data: only
    the dequantized negative ELBO of ``code_length`` is one), ``none`` (no code length). ``note``: why, in words.
    """
    name, latent = model.config.likelihood, model.latent
    if latent.deterministic:
        return "none", "a plain autoencoder has no likelihood to code with"
    if latent.conditional and not latent.label_classes:
        return "none", "a model of context columns: its negative ELBO is of x given the context, which no coder carries yet"
    if LIKELIHOODS[name].support == "tokens":
        return "none", (
            "token sequences: the negative ELBO is a bits-back code length per sequence, "
            "but 'vaekit compress' codes images and arrays, not sequences"
        )
    if name in coder_names():
        binary = LIKELIHOODS[name].binary
        if not (is_binary(x) if binary else is_8bit(x)):
            return "none", (
                f"the {name} likelihood codes {'binary' if binary else '8-bit'} data, and this data is not: "
                "its negative ELBO is not a code length"
            )
        return "bits-back", f"expected bits-back code length under the {name} likelihood"
    if is_8bit(x):
        return "dequantized", (
            f"8-bit data under the continuous {name} likelihood: uniformly dequantized (x = (k + u)/256, "
            "plus log 256 per dimension); for a lossless code, train with --likelihood beta-binomial or discretized-logistic"
        )
    return "none", f"the {name} likelihood is a density on continuous data: its negative ELBO is not a code length"


def code_length(model, x: torch.Tensor, neg_elbo: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> dict:
    """The model's expected code length for ``x`` (N, *shape), given its per-example negative ELBO (N,) in nats.

    Returns a JSON-ready dict: ``kind`` (``code_kind``'s: ``bits-back``: the negative ELBO is the code
    length; ``dequantized``: a continuous likelihood on 8-bit data, after uniform dequantization;
    ``none``: no code length), ``bits_per_dim`` (None for ``none``) and ``note``.
    """
    dims = math.prod(x.shape[1:])
    kind, note = code_kind(model, x)
    if kind == "none":
        return {"kind": kind, "bits_per_dim": None, "note": note}
    if kind == "bits-back":
        classes = model.latent.label_classes
        label_nats = math.log(classes) if classes else 0.0  # a CVAE's file carries each label, uniform over the classes
        bpd = (neg_elbo.double().mean().item() + label_nats) / (dims * math.log(2))
        try:
            check_model(model)
            coder = "'vaekit compress' stores about this"
        except CompressionError as exc:
            coder = f"'vaekit compress' does not code this model: {exc}"
        labels = f", plus log2 {classes} bits a label" if classes else ""
        return {"kind": kind, "bits_per_dim": bpd, "note": f"{note}{labels} ({coder})"}
    nll = dequantized_neg_log_likelihood(model, x, batch_size=batch_size, seed=seed)
    return {"kind": kind, "bits_per_dim": nll.mean().item() / (dims * math.log(2)), "note": note}
