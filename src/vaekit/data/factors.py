"""Factors of variation: data made from every combination of known factors (dsprites), read by factor.

A ``FactorSpace`` is a complete grid of examples: one example for every combination of F factor
classes, stored in mixed-radix order (the last factor fastest), so the example with classes
(c_1, ..., c_F) is row ``sum_f c_f * stride_f``, with ``stride_f`` the product of the sizes after f.
Disentanglement metrics draw factor classes (``sample``), find their rows (``indices``) and read
their examples (``images``) through it, without knowing which dataset is behind it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.errors import DataError


@dataclass(frozen=True)
class Factor:
    """One factor of variation: its ``name``, the value of each of its classes (``values``, e.g. the
    scale 0.5 ... 1), and for a categorical factor the names of its classes (``classes``, e.g.
    square, ellipse, heart; None for an ordinal one)."""

    name: str
    values: tuple[float, ...]
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.values:
            raise DataError(f"factor {self.name!r} has no classes")
        if self.classes is not None and len(self.classes) != len(self.values):
            raise DataError(f"factor {self.name!r} has {len(self.values)} values but {len(self.classes)} class names")

    @property
    def size(self) -> int:
        return len(self.values)

    def record(self) -> dict[str, Any]:
        """The factor as a JSON-serialisable dict (an entry of ``info["factors"]``)."""
        classes = None if self.classes is None else list(self.classes)
        return {"name": self.name, "values": [float(v) for v in self.values], "classes": classes}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Factor:
        classes = record.get("classes")
        return cls(str(record["name"]), tuple(float(v) for v in record["values"]), None if classes is None else tuple(classes))


def grid_strides(sizes: Sequence[int]) -> np.ndarray:
    """(F,) int64 row strides of a mixed-radix grid of ``sizes`` (the last factor fastest)."""
    return np.array([math.prod(sizes[f + 1 :]) for f in range(len(sizes))], dtype=np.int64)


def grid_classes(rows: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """The factor classes (n, F) int64 of grid rows (n,): their mixed-radix digits (``grid_strides``)."""
    rows = np.asarray(rows, dtype=np.int64)
    return (rows[:, None] // grid_strides(sizes)) % np.asarray(sizes, dtype=np.int64)  # (n, F)


class FactorSpace:
    """Every combination of ``factors`` once, as the examples ``x`` (N, C, H, W) in mixed-radix row order.

    Args:
        factors: the F factors, slowest first (the row order: the last one varies fastest).
        x: the N = prod(sizes) examples, a tensor or a ``streaming.MappedArray`` (read only as asked):
            anything indexed by a sorted int64 tensor that returns float32 examples.

    ``names`` and ``sizes`` (classes per factor) describe the grid; ``sample(n, rng)`` draws factor
    classes uniformly, ``indices(factors)`` gives their rows and ``images(factors)`` their examples.
    """

    def __init__(self, factors: Sequence[Factor], x: Any):
        self.factors = tuple(factors)
        self.x = x
        self.strides = grid_strides(self.sizes)  # (F,)
        if len(x) != math.prod(self.sizes):
            raise DataError(f"a grid of factors {dict(zip(self.names, self.sizes))} has {math.prod(self.sizes)} examples, not {len(x)}")

    @classmethod
    def grid(cls, names: Sequence[str], sizes: Sequence[int], x: Any) -> FactorSpace:
        """A space over ordinal factors whose class c has value c (a small synthetic grid, for tests)."""
        return cls([Factor(name, tuple(float(c) for c in range(size))) for name, size in zip(names, sizes)], x)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(f.size for f in self.factors)

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"FactorSpace({', '.join(f'{n}={s}' for n, s in zip(self.names, self.sizes))})"

    def record(self) -> list[dict[str, Any]]:
        """The factors as ``info["factors"]`` records them (``Factor.record``)."""
        return [f.record() for f in self.factors]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, F) int64 factor classes, each factor drawn uniformly and independently by ``rng``."""
        return rng.integers(0, np.asarray(self.sizes), size=(n, len(self.sizes)), dtype=np.int64)

    def indices(self, factors: np.ndarray) -> np.ndarray:
        """The rows (n,) int64 of the examples with factor classes ``factors`` (n, F)."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(self.sizes) or factors.dtype.kind not in "iu":
            raise DataError(f"factor classes must be integers of shape (n, {len(self.sizes)}), got {factors.dtype} {factors.shape}")
        if len(factors) and ((factors < 0).any() or (factors >= np.asarray(self.sizes)).any()):
            raise DataError(f"factor classes out of range for sizes {self.sizes}")
        return factors.astype(np.int64) @ self.strides  # (n,)

    def images(self, factors: np.ndarray) -> torch.Tensor:
        """The examples (n, C, H, W) float32 with factor classes ``factors`` (n, F), in that order; read
        in sorted row order (sequential reads from a memory-mapped file) and put back in the order asked."""
        rows = self.indices(factors)  # (n,)
        order = np.argsort(rows, kind="stable")  # (n,)
        x = self.x[torch.from_numpy(rows[order])]  # (n, C, H, W), sorted by row
        out = torch.empty_like(x)
        out[torch.from_numpy(order)] = x
        return out

    def classes_of(self, rows: np.ndarray) -> np.ndarray:
        """The factor classes (n, F) int64 of rows (n,) (the inverse of ``indices``)."""
        return grid_classes(rows, self.sizes)
