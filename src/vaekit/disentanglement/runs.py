"""A trained run as the metrics and views read it: the factor space of its data and its representation.

``score(run)`` is what ``vaekit disentanglement RUN`` prints: every metric of ``evaluate`` on the
run's factor space, with the model's posterior means (or one draw per image) as the codes.
``unit_information`` measures how much each latent unit says about each factor, for the traversal
labelled by factor and the heat map of the report.

The study's sample counts draw about 2.9 million images (the BetaVAE score alone 1.9 million pairs'
worth), four times dSprites' 737,280; so where the metrics would draw more images than the grid
holds and the codes are the posterior means (a function of the image), every image is encoded once
(``EncodedGrid``) and the metrics look their codes up: the same codes, a quarter of the encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.data.base import Dataset
from vaekit.data.dsprites import VARIANTS, factor_space
from vaekit.disentanglement.base import VaryingFactors, discretize, draw_codes
from vaekit.disentanglement.information import entropies, mutual_info_matrix
from vaekit.disentanglement.metrics import METRICS, evaluate, images_drawn, resolve_settings
from vaekit.errors import ConfigError, DataError
from vaekit.latent import encode

log = logging.getLogger(__name__)

CODES = ("mean", "sample")  # what a run's representation of an image is: its posterior mean, or one draw z ~ q(z|x)
INFORMATION_SAMPLE = 10_000  # images the units' information about the factors is measured on (MIG's count)
BINS = 20  # each unit's histogram bins for it (MIG's)
CAPTURES = 0.1  # a unit "captures" a factor when it holds at least this share of the factor's entropy
# images per forward pass on a CPU: a conv net's activations for 64 images stay in the caches, so the
# study's network encodes 2x faster than 1,000 at a time (7,917 against 3,990 images/s, 2 threads, the
# best of four); a GPU is fed larger batches
CPU_BATCH, GPU_BATCH = 64, 4096


def factor_space_of(data):
    """The ``FactorSpace`` of loaded data (``DataSplits``); a one-line ``DataError`` for data not made
    from known factors of variation."""
    if not data.info.get("factors"):
        name = data.info.get("source")
        raise DataError(
            f"{name} has no known factors of variation: the disentanglement metrics and views need data made from them "
            f"({', '.join(VARIANTS)})"
        )
    return factor_space(data)


def representation(model, codes: str = "mean", seed: int = 0, batch_size: int | None = None) -> Callable[[torch.Tensor], np.ndarray]:
    """images (n, *shape) -> codes (n, L): the posterior means, or one seeded draw z ~ q(z|x) (``codes="sample"``),
    ``batch_size`` images at a time (default: ``CPU_BATCH`` or ``GPU_BATCH`` by the model's device)."""
    if codes not in CODES:
        raise ConfigError(f"codes must be one of {', '.join(CODES)}, got {codes!r}")
    if codes == "sample" and model.latent.deterministic:
        raise ConfigError("a plain autoencoder has no posterior to draw codes from: score its codes (--codes mean)")
    draws = 0
    if batch_size is None:
        batch_size = GPU_BATCH if model.device.type == "cuda" else CPU_BATCH

    def encode_images(images: torch.Tensor) -> np.ndarray:
        nonlocal draws
        draws += 1  # each call its own seed: the same images in another call get other draws
        out = encode(model, Dataset(images), sample=codes == "sample", seed=seed + draws, batch_size=batch_size)
        return out.double().numpy()  # (n, L)

    return encode_images


def score(
    run,
    metrics: Sequence[str] | None = None,
    *,
    codes: str = "mean",
    source: str | None = None,
    seed: int = 0,
    threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """The disentanglement metrics (``vaekit.disentanglement.evaluate``) of a loaded run on its factor space.

    codes: the representation scored, ``mean`` (posterior means, as Locatello et al. 2019) or ``sample``.
    source: another dataset made from the same factors (``color-dsprites`` for a dsprites run, say).
    seed, threads, settings: as ``evaluate`` (``num_train=2000``, ``dci={"estimator": "sklearn-default"}``, ...).
    progress: called as (images encoded, of how many) while the whole grid is encoded (``EncodedGrid``).
    Returns ``evaluate``'s record with the run's directory, the data and the representation added.
    """
    encode = representation(run.model, codes, seed)  # a representation the model cannot give is refused before the data are read
    space = factor_space_of(run.load_data(source))
    names = list(METRICS.names() if metrics is None else metrics)
    for name in names:
        METRICS.check(name)
    resolved = resolve_settings(names, settings)
    drawn = images_drawn(names, resolved)
    if codes == "mean" and drawn > len(space):
        log.info("encoding every one of the %d images once (the metrics draw %d)", len(space), drawn)
        space = EncodedGrid.of(space, encode, progress=progress)
        encode = space.encode
    result = evaluate(space, encode, metrics, seed=seed, threads=threads, **settings)
    return {"run": str(run.path), "data": source or run.data_info.get("source"), "codes": codes, **result}


@dataclass(frozen=True)
class EncodedGrid:
    """A factor grid whose every example is encoded once (``codes`` (N, L), row by row): to the
    metrics, a factor space whose "images" are row numbers (n,) and whose ``encode`` looks their codes up."""

    space: Any
    codes: np.ndarray

    @classmethod
    def of(cls, space, encode: Callable[[torch.Tensor], np.ndarray], chunk: int = 4096, progress=None) -> EncodedGrid:
        """Encode the N examples of ``space`` (a ``FactorSpace``) in row order, ``chunk`` at a time (sequential
        reads); ``progress(done, N)`` after each chunk."""
        codes = []
        for start in range(0, len(space), chunk):
            codes.append(np.asarray(encode(space.x[start : start + chunk])))  # (chunk, L)
            if progress is not None:
                progress(min(start + chunk, len(space)), len(space))
        return cls(space, np.concatenate(codes))

    names = property(lambda self: self.space.names)
    sizes = property(lambda self: self.space.sizes)

    def __len__(self) -> int:
        return len(self.codes)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.sample(n, rng)

    def images(self, factors: np.ndarray) -> torch.Tensor:
        """The rows (n,) of the examples with factor classes ``factors`` (n, F), in place of their images."""
        return torch.from_numpy(self.space.indices(factors))

    def encode(self, rows: torch.Tensor) -> np.ndarray:
        """The codes (n, L) of rows (n,)."""
        return self.codes[rows.numpy()]


@dataclass
class UnitInformation:
    """What each latent unit says about each factor, on a sample of images drawn from the factor space.

    mutual_info: (L, F) nats between each unit's binned posterior means and each factor.
    normalized: (L, F) the same divided by each factor's entropy (1: the unit determines the factor).
    factors: the F factor names (those with two classes or more). images: the sample's size.
    """

    mutual_info: np.ndarray
    normalized: np.ndarray
    factors: tuple[str, ...]
    images: int

    def best(self, unit: int) -> tuple[str, float]:
        """The factor unit ``unit`` says most about, and its normalised information."""
        f = int(np.argmax(self.normalized[unit]))
        return self.factors[f], float(self.normalized[unit, f])

    def captured(self, unit: int) -> str | None:
        """``"shape 0.62"``: the factor unit ``unit`` says most about and the share of its entropy,
        or None where that share is under ``CAPTURES`` (the unit captures no factor)."""
        name, share = self.best(unit)
        return f"{name} {share:.2f}" if share >= CAPTURES else None


def unit_information(model, space, n: int = INFORMATION_SAMPLE, seed: int = 0, bins: int = BINS) -> UnitInformation:
    """The mutual information between each latent unit and each factor (``UnitInformation``), measured as
    MIG measures it: ``n`` uniformly drawn images, their posterior means binned into ``bins`` per unit."""
    varying = VaryingFactors(space)
    sample = draw_codes(varying, representation(model, "mean", seed), n, 0, seed)
    mi = mutual_info_matrix(discretize(sample.train_codes, bins), sample.train_factors)  # (L, F)
    return UnitInformation(mi, mi / entropies(sample.train_factors), varying.names, n)
