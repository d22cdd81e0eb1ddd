"""What every disentanglement metric shares: the factor space it reads, the codes it scores, its result.

The ground truth reaches the metrics as a ``FactorSpaceLike`` (``vaekit.data.FactorSpace`` is one,
structurally), the representation as ``encode(images) -> codes`` (the posterior means). Images are
always made and encoded in chunks of ``chunk`` examples, never one example at a time; metrics that
only need (codes, factors) pairs read prefixes of one ``CodeSample`` drawn and encoded once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from vaekit.errors import DataError

Encoder = Callable[[torch.Tensor], Any]  # images (n, *shape) -> codes (n, L), an array or a tensor

DEFAULT_CHUNK = 4096  # images made and encoded together


@runtime_checkable
class FactorSpaceLike(Protocol):
    """The ground truth a metric draws from: F factors with ``sizes[f]`` classes each.

    ``sample(n, rng)`` draws (n, F) int64 factor classes uniformly; ``images(factors)`` returns the
    examples (n, *shape) float32 made from them.
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def images(self, factors: np.ndarray) -> torch.Tensor: ...


@dataclass(frozen=True)
class MetricResult:
    """One metric's answer: ``scores`` (name -> number), the ``settings`` it ran with (every one,
    JSON-ready), and ``details`` (per-factor or per-unit values, matrices as nested lists)."""

    metric: str
    scores: dict[str, float]
    settings: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "scores": dict(self.scores), "settings": dict(self.settings), "details": dict(self.details)}


@dataclass(frozen=True)
class CodeSample:
    """Codes of examples drawn from a factor space: ``train_codes`` (N, L) with their ``train_factors``
    (N, F), and a held-out ``test_codes`` (M, L) / ``test_factors`` (M, F) (M may be 0)."""

    train_codes: np.ndarray
    train_factors: np.ndarray
    test_codes: np.ndarray
    test_factors: np.ndarray

    @classmethod
    def of(cls, train_codes, train_factors, test_codes=None, test_factors=None) -> CodeSample:
        """A sample from user arrays, checked (``check_codes``); no test part when ``test_codes`` is None."""
        train_codes, train_factors = check_codes(train_codes, train_factors, "train")
        if test_codes is None and test_factors is None:
            test_codes = np.zeros((0, train_codes.shape[1]))
            test_factors = np.zeros((0, train_factors.shape[1]), dtype=np.int64)
        else:
            test_codes, test_factors = check_codes(test_codes, test_factors, "test")
        if test_codes.shape[1] != train_codes.shape[1] or test_factors.shape[1] != train_factors.shape[1]:
            raise DataError(
                f"test codes/factors have {test_codes.shape[1]} units / {test_factors.shape[1]} factors, "
                f"train ones {train_codes.shape[1]} / {train_factors.shape[1]}"
            )
        return cls(train_codes, train_factors, test_codes, test_factors)

    def head(self, num_train: int, num_test: int, metric: str) -> CodeSample:
        """The first ``num_train`` / ``num_test`` examples; a one-line ``DataError`` if there are fewer."""
        for part, need, have in (("train", num_train, len(self.train_codes)), ("test", num_test, len(self.test_codes))):
            if need > have:
                raise DataError(f"{metric} needs {need} {part} examples, got {have}: pass more codes or {metric}={{'num_{part}': {have}}}")
        return CodeSample(
            self.train_codes[:num_train], self.train_factors[:num_train], self.test_codes[:num_test], self.test_factors[:num_test]
        )


def check_codes(codes: Any, factors: Any, part: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``codes`` as (n, L) float64 and ``factors`` as (n, F) int64, or a one-line ``DataError``."""
    where = f" ({part})" if part else ""
    if factors is None:
        raise DataError(f"factors are missing{where}: the metrics need the factor classes of every code")
    codes = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise DataError(f"codes{where} must be (n, L) and factors (n, F) with the same n; got {codes.shape} and {factors.shape}")
    if not np.all(np.isfinite(codes)):
        raise DataError(f"codes{where} hold non-finite values")
    if not np.issubdtype(factors.dtype, np.integer):
        if not np.all(factors == np.round(factors)):
            raise DataError(f"factors{where} must be integer classes")
    return codes, factors.astype(np.int64)


def check_factors_vary(factors: np.ndarray, metric: str) -> None:
    """A ``DataError`` if a factor takes a single class (nothing to predict; a zero entropy)."""
    for f in range(factors.shape[1]):
        if len(np.unique(factors[:, f])) < 2:
            raise DataError(f"{metric}: factor {f} takes a single class in the sample; drop it (a constant factor cannot be scored)")


def encode_factors(space: FactorSpaceLike, encode: Encoder, factors: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """The codes (n, L) float64 of the examples made from ``factors`` (n, F), ``chunk`` at a time."""
    parts = []
    with torch.inference_mode():
        for start in range(0, len(factors), chunk):
            codes = encode(space.images(factors[start : start + chunk]))
            if isinstance(codes, torch.Tensor):
                codes = codes.detach().cpu().numpy()
            parts.append(np.asarray(codes, dtype=np.float64).reshape(len(factors[start : start + chunk]), -1))
    codes = np.concatenate(parts) if parts else np.zeros((0, 0))
    if not np.all(np.isfinite(codes)):
        raise DataError("the encoder returned non-finite codes")
    return codes


def encode_groups(
    space: FactorSpaceLike,
    encode: Encoder,
    factors: np.ndarray,
    reduce: Callable[[np.ndarray], np.ndarray],
    chunk: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """``reduce`` applied to the codes of groups of examples: ``factors`` (n, B, F) -> codes (m, B, L)
    for m whole groups at a time (about ``chunk`` images per call) -> ``reduce`` -> (m, ...), joined (n, ...)."""
    n, group = factors.shape[:2]
    step = max(1, chunk // group)
    parts = []
    for start in range(0, n, step):
        block = factors[start : start + step]  # (m, B, F)
        codes = encode_factors(space, encode, block.reshape(-1, block.shape[-1]), chunk=len(block) * group)
        parts.append(reduce(codes.reshape(len(block), group, -1)))  # (m, B, L) -> (m, ...)
    return np.concatenate(parts)


def draw_codes(space: FactorSpaceLike, encode: Encoder, num_train: int, num_test: int, seed: int, chunk: int = DEFAULT_CHUNK) -> CodeSample:
    """``num_train`` + ``num_test`` uniformly drawn examples and their codes (train and test from
    separate streams of ``seed``, so the train part does not depend on ``num_test``)."""
    train = space.sample(num_train, np.random.default_rng([seed, 1]))
    test = space.sample(num_test, np.random.default_rng([seed, 2]))
    return CodeSample(encode_factors(space, encode, train, chunk), train, encode_factors(space, encode, test, chunk), test)


def grid(sizes: tuple[int, ...]) -> np.ndarray:
    """Every combination of factor classes once (prod(sizes), F) int64, the last factor fastest."""
    total = math.prod(sizes)
    strides = np.array([math.prod(sizes[f + 1 :]) for f in range(len(sizes))], dtype=np.int64)
    return (np.arange(total, dtype=np.int64)[:, None] // strides) % np.asarray(sizes, dtype=np.int64)


@contextmanager
def estimator_threads(threads: int) -> Iterator[None]:
    """Run scikit-learn fits (OpenMP, BLAS) with exactly ``threads`` threads, whatever the machine has."""
    with threadpool_limits(limits=threads):
        yield


def discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each unit (column) of ``codes`` (n, L) as the index of its bin among ``bins`` equal-width bins
    spanning the unit's range (a histogram per unit); (n, L) int64 in 1..bins."""
    out = np.empty(codes.shape, dtype=np.int64)
    for unit in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, unit], bins)
        out[:, unit] = np.digitize(codes[:, unit], edges[:-1])
    return out


@dataclass(frozen=True)
class VaryingFactors:
    """``space`` without its single-class factors (dSprites' colour): nothing can be predicted of a
    factor that never changes, so the metrics see only the others; ``images`` puts class 0 back."""

    space: FactorSpaceLike

    @property
    def keep(self) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.space.sizes) > 1)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.space.names[f] for f in self.keep)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(self.space.sizes[f]) for f in self.keep)

    @property
    def dropped(self) -> tuple[str, ...]:
        return tuple(name for name, size in zip(self.space.names, self.space.sizes) if size <= 1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.space.sample(n, rng), dtype=np.int64)[:, self.keep]

    def images(self, factors: np.ndarray) -> torch.Tensor:
        full = np.zeros((len(factors), len(self.space.sizes)), dtype=np.int64)
        full[:, self.keep] = factors
        return self.space.images(full)
