"""The likelihood p(x|z) as the entropy coder's model: one class per discrete likelihood head.

Each coder maps data to integer symbols and back (bit for bit), and turns the exact decoder outputs
(``ExactModel.decoder_params``) into a constriction model with per-symbol parameters, computed
elementwise in float64 from grid-rounded inputs so that every process builds the same numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

import constriction
import numpy as np
import torch
from scipy.special import expit, gammaln

from vaekit.compression.errors import CompressionError
from vaekit.models.distributions import LEVELS, LOG_PARAM_MAX, LOG_PARAM_MIN

PARAM_GRID = 2**8  # logits and log-parameters are rounded to multiples of 1/256 before a table look-up
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


def build_coder(name: str) -> LikelihoodCoder:
    if name not in _CODERS:
        raise CompressionError(
            f"lossless coding needs a discrete likelihood ({', '.join(coder_names())}); this model's is {name!r}: "
            "train one with --likelihood beta-binomial or discretized-logistic for 8-bit data"
        )
    return _CODERS[name]()


def _table(lo: float, hi: float, fn) -> np.ndarray:
    """fn at every multiple of 1/PARAM_GRID in [lo, hi], computed once on the same array everywhere."""
    return fn(np.arange(round(lo * PARAM_GRID), round(hi * PARAM_GRID) + 1, dtype=np.float64) / PARAM_GRID)


def _lookup(table: np.ndarray, lo: float, hi: float, v: np.ndarray) -> np.ndarray:
    return table[np.round(np.clip(v, lo, hi) * PARAM_GRID).astype(np.int64) - round(lo * PARAM_GRID)]


class LikelihoodCoder(ABC):
    """Interface: ``levels`` symbols per value (2 or 256)."""

    name: str
    levels: int

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
    levels = LEVELS
    off_levels = "a discretised likelihood codes 8-bit data (values k / 255, or uint8), but the data has other values"


@register_coder("discretized-logistic")
class DiscretizedLogisticCoder(_LevelsCoder):
    @cached_property
    def _inv_scale(self) -> np.ndarray:
        return _table(LOG_PARAM_MIN, LOG_PARAM_MAX, lambda v: np.exp(-v))

    @cached_property
    def _edges(self) -> np.ndarray:
        e = (np.arange(LEVELS + 1, dtype=np.float64) - 0.5) / (LEVELS - 1)
        e[0], e[-1] = -np.inf, np.inf
        return e  # (257,) bin edges of the levels in data units; the outer bins take the tails

    def model(self, params):
        loc = params[:, 0].reshape(-1, 1)
        inv_s = _lookup(self._inv_scale, LOG_PARAM_MIN, LOG_PARAM_MAX, params[:, 1].reshape(-1, 1))
        cdf = expit((self._edges - loc) * inv_s)  # (n * D, 257)
        return constriction.stream.model.Categorical(perfect=False), (_nonempty(cdf[:, 1:] - cdf[:, :-1]),)


@register_coder("beta-binomial")
class BetaBinomialCoder(_LevelsCoder):
    """log P(k) = log Γ(k + α) + log Γ(n - k + β) - log Γ(k + 1) - log Γ(n - k + 1) + a per-pixel constant, n = 255.
    α and β come from the 1/256 grid of their logs, so log Γ(k + α) is a (grid, 256) table built once:
    a pixel's 256 log-probabilities are two gathers and a sum."""

    @cached_property
    def _log_gamma(self) -> np.ndarray:
        a = _table(LOG_PARAM_MIN, LOG_PARAM_MAX, np.exp)[:, None]  # (G, 1) every α (or β) on the grid
        return gammaln(np.arange(LEVELS, dtype=np.float64) + a)  # (G, 256): log Γ(k + α)

    @cached_property
    def _log_choose(self) -> np.ndarray:
        k = np.arange(LEVELS, dtype=np.float64)
        return -(gammaln(k + 1) + gammaln(LEVELS - 1 - k + 1))  # (256,)

    def _index(self, v: np.ndarray) -> np.ndarray:
        return np.round(np.clip(v, LOG_PARAM_MIN, LOG_PARAM_MAX) * PARAM_GRID).astype(np.int64) - round(LOG_PARAM_MIN * PARAM_GRID)

    @cached_property
    def _log_gamma_reversed(self) -> np.ndarray:
        return np.ascontiguousarray(self._log_gamma[:, ::-1])  # (G, 256): log Γ(n - k + β)

    def model(self, params):
        ia, ib = self._index(params[:, 0].reshape(-1)), self._index(params[:, 1].reshape(-1))
        log_p = np.take(self._log_gamma, ia, axis=0)  # (n * D, 256), in place from here on
        log_p += np.take(self._log_gamma_reversed, ib, axis=0)
        log_p += self._log_choose
        log_p -= log_p.max(1, keepdims=True)
        return constriction.stream.model.Categorical(perfect=False), (np.exp(log_p, out=log_p),)


def _nonempty(p: np.ndarray) -> np.ndarray:
    p[~(p.sum(1) > 0)] = 1.0
    return p
