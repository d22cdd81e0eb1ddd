"""Latent discretisation for bits-back coding: 2^P equal-mass buckets under the N(0, 1) prior.

Under the prior every bucket has mass 2^-P, so coding a latent with p(z) costs exactly P bits. The
posterior q(z|x) = N(μ, σ²) gives bucket j the mass Φ((e_{j+1} - μ)/σ) - Φ((e_j - μ)/σ), e_j = Φ⁻¹(j / 2^P).
A bucket index is coded in two symbols (coarse: its top P_c bits; fine: the rest) so that each
needs a table of 2^P_c or 2^P_f probabilities, not 2^P. Every number here is computed elementwise
in float64 from exactly reproducible inputs (scipy's ``ndtr``, a scalar loop; σ from a table
indexed by the grid-rounded log-variance), so the encoder and the decoder build the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import ndtr, ndtri

from vaekit.compression.exact import ACTIVATION_BITS

LOGVAR_GRID = 2**8  # log-variance rounded to multiples of 1/256 before σ is looked up
LOGVAR_RANGE = (-16.0, 10.0)  # the posterior head's clamp


@dataclass(frozen=True)
class LatentBuckets:
    """Equal-mass buckets under N(0, 1) at ``bits`` bits per latent dimension."""

    bits: int = 12

    @property
    def coarse_bits(self) -> int:
        return self.bits // 2

    @property
    def fine_bits(self) -> int:
        return self.bits - self.coarse_bits

    @cached_property
    def edges(self) -> np.ndarray:
        """(2^P + 1,) bucket edges in z, from -inf to +inf."""
        return ndtri(np.arange(2**self.bits + 1, dtype=np.float64) / 2**self.bits)

    @cached_property
    def centres(self) -> np.ndarray:
        """(2^P,) the prior's median of each bucket, on the decoder's input grid: the z a bucket decodes to."""
        c = ndtri((np.arange(2**self.bits, dtype=np.float64) + 0.5) / 2**self.bits)
        return np.round(c * 2.0**ACTIVATION_BITS) / 2.0**ACTIVATION_BITS

    @cached_property
    def _sigma_table(self) -> np.ndarray:
        lo, hi = LOGVAR_RANGE
        return np.exp(0.5 * np.arange(int(lo * LOGVAR_GRID), int(hi * LOGVAR_GRID) + 1, dtype=np.float64) / LOGVAR_GRID)

    def sigma(self, logvar: np.ndarray) -> np.ndarray:
        """σ from the log-variance rounded to the 1/256 grid (a table look-up: the same bits everywhere)."""
        lo, hi = LOGVAR_RANGE
        idx = np.round(np.clip(logvar, lo, hi) * LOGVAR_GRID).astype(np.int64) - int(lo * LOGVAR_GRID)
        return self._sigma_table[idx]

    def _masses(self, mu: np.ndarray, sigma: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
        """Posterior mass between consecutive edges ``edge_index`` (n, m + 1) -> (n, m), rows never all zero."""
        t = (self.edges[edge_index] - mu[:, None]) / sigma[:, None]
        cdf = ndtr(t)
        p = cdf[:, 1:] - cdf[:, :-1]
        empty = ~(p.sum(1) > 0)
        p[empty] = 1.0  # a bucket the posterior gives no mass: any table works, as long as both sides use it
        return p

    def coarse_probs(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """mu, sigma (n,) -> (n, 2^P_c) posterior masses of the coarse buckets."""
        step = 2**self.fine_bits
        idx = np.broadcast_to(np.arange(0, 2**self.bits + 1, step), (len(mu), 2**self.coarse_bits + 1))
        return self._masses(mu, sigma, idx)

    def fine_probs(self, mu: np.ndarray, sigma: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """(n, 2^P_f) posterior masses of the fine buckets inside coarse bucket ``coarse`` (n,)."""
        step = 2**self.fine_bits
        idx = coarse[:, None].astype(np.int64) * step + np.arange(step + 1)
        return self._masses(mu, sigma, idx)
