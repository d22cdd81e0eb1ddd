"""The likelihood p(x|z) as the entropy coder's model: one class per discrete likelihood head.

Each coder maps data to integer symbols and back (bit for bit), and codes them on an ANS stack under
the exact decoder outputs (``ExactModel.decoder_params``), with probabilities computed elementwise
from grid-rounded inputs so that every process builds the same numbers.

8-bit likelihoods code each level k as two symbols of 16 (format version 2): its group g = k // 16
under the group masses, then k's place in the group under the 16 masses inside it; the constriction
coder then scans 32 entries a value instead of 256, and only the 16 masses of the group coded are
computed value by value. Version-1 files (one symbol of 256 a value) decode with ``model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import cache, cached_property

import constriction
import numpy as np
import torch
from scipy.special import expit, gammaln

from vaekit.compression.errors import CompressionError
from vaekit.models.distributions import LEVELS, LOG_PARAM_MAX, LOG_PARAM_MIN

PARAM_GRID = 2**8  # logits and log-parameters are rounded to multiples of 1/256 before a table look-up
GROUP = 16  # an 8-bit level is coded as (k // GROUP, k % GROUP) from format version 2 on
TWO_SYMBOL_VERSION = 2  # the first .vkz format version whose 8-bit levels are coded in two symbols
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
DTYPES = {"float32": torch.float32, "float64": torch.float64, "uint8": torch.uint8}

_CODERS: dict[str, type[LikelihoodCoder]] = {}


def register_coder(name: str):
    def wrap(cls):
        _CODERS[name] = cls
        cls.name = name
        return cls

    return wrap


def coder_names() -> list[str]:
    return sorted(_CODERS)


def build_coder(name: str, version: int = TWO_SYMBOL_VERSION) -> LikelihoodCoder:
    """The coder of likelihood ``name`` for streams of .vkz format ``version`` (decoding an older file: its own)."""
    if name not in _CODERS:
        raise CompressionError(
            f"lossless coding needs a discrete likelihood ({', '.join(coder_names())}); this model's is {name!r}: "
            "train one with --likelihood beta-binomial or discretized-logistic for 8-bit data"
        )
    return _CODERS[name](version)


def _table(lo: float, hi: float, fn) -> np.ndarray:
    """fn at every multiple of 1/PARAM_GRID in [lo, hi], computed once on the same array everywhere."""
    return fn(np.arange(round(lo * PARAM_GRID), round(hi * PARAM_GRID) + 1, dtype=np.float64) / PARAM_GRID)


def _lookup(table: np.ndarray, lo: float, hi: float, v: np.ndarray) -> np.ndarray:
    return table[np.round(np.clip(v, lo, hi) * PARAM_GRID).astype(np.int64) - round(lo * PARAM_GRID)]


class LikelihoodCoder(ABC):
    """Interface: ``levels`` symbols per value (2 or 256), coded on the stack by ``push`` and ``pop``
    for streams of .vkz format ``version``; ``format_version``: the oldest version a new file of this
    likelihood can say it is (the version that introduced its coding)."""

    name: str
    levels: int
    format_version = 1

    def __init__(self, version: int = TWO_SYMBOL_VERSION):
        self.version = version

    def symbols(self, x: torch.Tensor) -> np.ndarray:
        """x (N, *shape) -> (N, D) int32 symbols; a ``CompressionError`` for values off the levels."""
        flat = x.reshape(len(x), -1)
        if x.dtype == torch.uint8:
            k = flat.numpy().astype(np.int32)
        elif x.dtype in (torch.float32, torch.float64):
            k = torch.round(flat * (self.levels - 1)).clamp(0, self.levels - 1).to(torch.int64)
            if not torch.equal(self.values(k.numpy(), x.dtype), flat):
                raise CompressionError(self.off_levels)
            k = k.numpy().astype(np.int32)
        else:
            raise CompressionError(f"cannot compress data of dtype {x.dtype}; use float32, float64 or uint8")
        if k.size and (k.min() < 0 or k.max() >= self.levels):
            raise CompressionError(self.off_levels)
        return k

    def values(self, k: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """Symbols (N, D) -> the data values they stand for (uint8: the level; floats: level / (levels - 1))."""
        k = torch.from_numpy(np.ascontiguousarray(k, dtype=np.int64))
        if dtype == torch.uint8:
            return k.to(torch.uint8)
        return k.to(dtype) / (self.levels - 1) if self.levels > 2 else k.to(dtype)

    def encoder_input(self, k: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """Symbols (n, D) -> the encoder's float64 input (n, *shape), x in [0, 1]."""
        return torch.from_numpy(k.astype(np.float64) / (self.levels - 1)).reshape(len(k), *shape)

    @abstractmethod
    def model(self, params: np.ndarray) -> tuple[object, tuple[np.ndarray, ...]]:
        """Decoder outputs (n, k, *shape) -> (constriction model family, per-symbol parameters for n * D symbols)."""

    def push(self, ans, k: np.ndarray, params: np.ndarray) -> None:
        """Encode symbols k (n * D,) int32 on ``ans`` under decoder outputs ``params`` (n, k, *shape)."""
        family, args = self.model(params)
        ans.encode_reverse(k, family, *args)

    def pop(self, ans, params: np.ndarray) -> np.ndarray:
        """The inverse of ``push``: decode n * D symbols from ``ans``."""
        family, args = self.model(params)
        return ans.decode(family, *args)


@register_coder("bernoulli")
class BernoulliCoder(LikelihoodCoder):
    levels = 2
    off_levels = "the bernoulli likelihood codes binary data, but the data has values other than 0 and 1"
    LOGIT_RANGE = (-40.0, 40.0)

    @cached_property
    def _probs(self) -> np.ndarray:
        return _table(*self.LOGIT_RANGE, expit)

    def model(self, params):
        p = _lookup(self._probs, *self.LOGIT_RANGE, params[:, 0].reshape(-1))
        return constriction.stream.model.Bernoulli(perfect=False), (p,)


class _LevelsCoder(LikelihoodCoder):
    """An 8-bit likelihood: from format version 2, each level in two symbols (module docstring); ``model``
    (one symbol of 256 a value) serves version-1 files."""

    levels = LEVELS
    off_levels = "a discretised likelihood codes 8-bit data (values k / 255, or uint8), but the data has other values"
    format_version = TWO_SYMBOL_VERSION

    @abstractmethod
    def groups(self, params: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Decoder outputs (n, k, *shape) -> (the group masses (n * D, 16), a function from each value's
        group (n * D,) to the masses of the 16 levels in it (n * D, 16)); rows need not be normalised."""

    def push(self, ans, k, params):
        if self.version < TWO_SYMBOL_VERSION:
            return super().push(ans, k, params)
        coarse, fine = self.groups(params)
        g = k // GROUP
        ans.encode_reverse((k % GROUP).astype(np.int32), _CATEGORICAL, fine(g))
        ans.encode_reverse(g.astype(np.int32), _CATEGORICAL, coarse)

    def pop(self, ans, params):
        if self.version < TWO_SYMBOL_VERSION:
            return super().pop(ans, params)
        coarse, fine = self.groups(params)
        g = ans.decode(_CATEGORICAL, coarse)
        return g * GROUP + ans.decode(_CATEGORICAL, fine(g))


@register_coder("discretized-logistic")
class DiscretizedLogisticCoder(_LevelsCoder):
    """The logistic mass of each level's bin: differences of the logistic CDF at the bins' edges, so a
    group's mass is one difference of two CDF values (17 a value for the groups, 17 for the levels in one)."""

    @cached_property
    def _inv_scale(self) -> np.ndarray:
        return _table(LOG_PARAM_MIN, LOG_PARAM_MAX, lambda v: np.exp(-v))

    @cached_property
    def _edges(self) -> np.ndarray:
        e = (np.arange(LEVELS + 1, dtype=np.float64) - 0.5) / (LEVELS - 1)
        e[0], e[-1] = -np.inf, np.inf
        return e  # (257,) bin edges of the levels in data units; the outer bins take the tails

    @cached_property
    def _group_edges(self) -> np.ndarray:
        return self._edges[np.arange(0, LEVELS, GROUP)[:, None] + np.arange(GROUP + 1)]  # (16, 17) group g's bins' edges

    def _location_scale(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loc = params[:, 0].reshape(-1, 1)
        return loc, _lookup(self._inv_scale, LOG_PARAM_MIN, LOG_PARAM_MAX, params[:, 1].reshape(-1, 1))  # (n * D, 1) each

    @staticmethod
    def _masses(loc: np.ndarray, inv_s: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """The bins' masses between ``edges`` (m + 1,) or (n * D, m + 1) -> (n * D, m)."""
        cdf = expit((edges - loc) * inv_s)  # (n * D, m + 1)
        return _nonempty(cdf[:, 1:] - cdf[:, :-1])

    def model(self, params):
        return _CATEGORICAL, (self._masses(*self._location_scale(params), self._edges),)

    @staticmethod
    def _in_chunks(loc: np.ndarray, inv_s: np.ndarray, edges) -> np.ndarray:
        """``_masses`` _FINE_CHUNK values at a time (its temporaries stay small), as float32 -> (n * D, 16);
        ``edges``: (17,), or a function of a slice of the values giving their (r, 17)."""
        out = np.empty((len(loc), GROUP), np.float32)
        for s in range(0, len(loc), _FINE_CHUNK):
            part = slice(s, s + _FINE_CHUNK)
            out[part] = DiscretizedLogisticCoder._masses(loc[part], inv_s[part], edges if isinstance(edges, np.ndarray) else edges(part))
        return _nonempty(out)  # again: a far tail's masses can vanish in float32

    def groups(self, params):
        loc, inv_s = self._location_scale(params)

        def fine(g: np.ndarray) -> np.ndarray:
            return self._in_chunks(loc, inv_s, lambda part: np.take(self._group_edges, g[part], axis=0))  # (r, 17) their groups' edges

        return self._in_chunks(loc, inv_s, self._edges[::GROUP]), fine


LOG_PROB_GRID = 2**8  # version 2's beta-binomial log-probabilities: integers, in units of 1/256 nats
LOG_PROB_FLOOR = 40 * LOG_PROB_GRID  # levels more than 40 nats below a value's likeliest get mass 0 (the coder's least, 2^-24)
_CHUNK = 512  # (α, β) pairs whose 256 levels are computed at once: (256, 512) arrays of a few hundred KiB, in cache
_FINE_CHUNK = 2**16  # values whose group's 16 levels are computed at once


@cache
def _log_gamma() -> np.ndarray:
    a = _table(LOG_PARAM_MIN, LOG_PARAM_MAX, np.exp)[:, None]  # (G, 1) every α (or β) on the grid
    return gammaln(np.arange(LEVELS, dtype=np.float64) + a)  # (G, 256): log Γ(k + α)


@cache
def _log_choose() -> np.ndarray:
    k = np.arange(LEVELS, dtype=np.float64)
    return -(gammaln(k + 1) + gammaln(LEVELS - 1 - k + 1))  # (256,)


@cache
def _fixed_point_tables(levels_last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Version 2's beta-binomial tables, built once on the same arrays everywhere: log Γ(k + α) - log k! -
    log (n - k)! and log Γ(n - k + β) as int32 multiples of 1/LOG_PROB_GRID nats (below 2^23 in size),
    level-major (256, G) or with ``levels_last`` (G, 256); and the mass exp(-d / LOG_PROB_GRID) at
    d = 0 .. LOG_PROB_FLOOR, the last 0, float32."""
    a = np.round((_log_gamma() + _log_choose()) * LOG_PROB_GRID).astype(np.int32)
    b = np.round(_log_gamma()[:, ::-1] * LOG_PROB_GRID).astype(np.int32)
    masses = np.exp(-np.arange(LOG_PROB_FLOOR + 1, dtype=np.float64) / LOG_PROB_GRID).astype(np.float32)
    masses[-1] = 0.0
    return (a, b, masses) if levels_last else (np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), masses)


def _group_sums(w: np.ndarray) -> np.ndarray:
    """w (256, r) level-major -> (16, r) sums of each group of 16 levels, always in the same order (a fixed tree of adds)."""
    v = w.reshape(LEVELS // GROUP, GROUP, -1)
    while v.shape[1] > 1:
        half = v.shape[1] // 2
        v = v[:, :half] + v[:, half:]
    return v[:, 0]


@register_coder("beta-binomial")
class BetaBinomialCoder(_LevelsCoder):
    """log P(k) = log Γ(k + α) + log Γ(n - k + β) - log Γ(k + 1) - log Γ(n - k + 1) + a per-pixel constant, n = 255.
    α and β come from the 1/256 grid of their logs, so log Γ(k + α) is a (grid, 256) table built once:
    a pixel's 256 log-probabilities are two gathers and a sum.

    Version 2 keeps those tables in integers (1/256 nats), so that a sum, the pixel's maximum and each
    level's distance d from it are exact, and a level's mass is exp(-d/256) from a table: no exp a level,
    and the same numbers in any process. Version 1 (``model``): float64 sums and numpy's exp of every level."""

    def _index(self, v: np.ndarray) -> np.ndarray:
        return np.round(np.clip(v, LOG_PARAM_MIN, LOG_PARAM_MAX) * PARAM_GRID).astype(np.int64) - round(LOG_PARAM_MIN * PARAM_GRID)

    def model(self, params):
        ia, ib = self._index(params[:, 0].reshape(-1)), self._index(params[:, 1].reshape(-1))
        log_p = np.take(_log_gamma(), ia, axis=0)  # (n * D, 256), in place from here on
        log_p += np.take(_log_gamma()[:, ::-1], ib, axis=0)
        log_p += _log_choose()
        log_p -= log_p.max(1, keepdims=True)
        return _CATEGORICAL, (np.exp(log_p, out=log_p),)

    def groups(self, params):
        a_rows, b_rows, masses = _fixed_point_tables(levels_last=True)
        ia, ib = self._index(params[:, 0].reshape(-1)), self._index(params[:, 1].reshape(-1))
        grid = len(a_rows)
        pairs, inverse = np.unique(ia * grid + ib, return_inverse=True)  # each (α, β) once: pixels share many
        coarse, top = self._group_masses(pairs // grid, pairs % grid)
        coarse, top = np.take(coarse, inverse, axis=0), np.take(top, inverse)  # (n * D, 16), (n * D,)

        a_groups, b_groups = a_rows.reshape(-1, GROUP), b_rows.reshape(-1, GROUP)  # (G · 16, 16): row ia · 16 + g, group g of α's row
        ia, ib, top = ia * (LEVELS // GROUP), ib * (LEVELS // GROUP), top[:, None].astype(np.int64)

        def fine(g: np.ndarray) -> np.ndarray:
            out = np.empty((len(g), GROUP), np.float32)
            for s in range(0, len(g), _FINE_CHUNK):
                part = slice(s, s + _FINE_CHUNK)
                x = np.take(a_groups, ia[part] + g[part], axis=0)  # (r, 16) the log-probabilities of each value's group's levels
                x += np.take(b_groups, ib[part] + g[part], axis=0)
                np.take(masses, top[part] - x, mode="clip", out=out[part])
            return _nonempty(out)

        return coarse, fine

    @staticmethod
    def _group_masses(ia: np.ndarray, ib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) grid indices (u,) -> (the group masses (u, 16), the largest log-probability (u,) in 1/256 nats),
        _CHUNK pairs at a time, level-major so that the maximum and the group sums add whole rows."""
        a, b, masses = _fixed_point_tables()
        coarse, top = np.empty((len(ia), LEVELS // GROUP), np.float32), np.empty(len(ia), np.int32)
        d = np.empty((LEVELS, _CHUNK), np.int64)  # intp: np.take's own index type
        for s in range(0, len(ia), _CHUNK):
            x = a[:, ia[s : s + _CHUNK]]  # (256, r) log-probabilities
            x += b[:, ib[s : s + _CHUNK]]
            top[s : s + _CHUNK] = t = x.max(0)
            dx = np.subtract(t, x, out=d[:, : x.shape[1]])  # beyond the table: its last entry, 0
            coarse[s : s + _CHUNK] = _group_sums(np.take(masses, dx, mode="clip")).T
        return coarse, top


def _nonempty(p: np.ndarray) -> np.ndarray:
    """Rows (masses of a value's symbols) whose sum is zero or subnormal, which the coder cannot normalise, made uniform:
    any table works for a value the model gives no mass, as long as both sides use it."""
    p[~(p.sum(1) >= np.finfo(p.dtype).tiny)] = 1.0
    return p
