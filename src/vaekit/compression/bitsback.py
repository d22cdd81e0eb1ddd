"""Bits-back coding with ANS (Townsend et al. 2019), a batch of examples at a time.

Compressing one batch, on the ANS stack: decode z from the stack with q(z|x) (taking bits off),
encode x with p(x|z), encode z with p(z). Net, a batch costs -log p(x|z) - log p(z) + log q(z|x)
bits: the negative ELBO with one posterior sample. Decompressing undoes each step in reverse
order, batch by batch from the last. The first decode needs bits already on the stack: the stack
starts with ``initial_words`` fixed pseudo-random words (the initial bits, counted in the file), and
batches start at one example and grow only as the stack holds enough bits for the next one.
"""

from __future__ import annotations

from collections.abc import Callable

import constriction
import numpy as np

from vaekit.compression.exact import ExactModel
from vaekit.compression.latents import LatentBuckets
from vaekit.compression.likelihoods import LikelihoodCoder

WORD_BITS, MODEL_PRECISION = 32, 24  # constriction's default ANS coder: 32-bit words, 24-bit probabilities
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def initial_words(latent_dim: int) -> np.ndarray:
    """The stack's starting content: enough fixed pseudo-random words to decode one example's latents
    even at the smallest probability (two symbols of at most 24 bits per latent dimension)."""
    n = -(-2 * MODEL_PRECISION * latent_dim // WORD_BITS) + 2
    words = np.random.Generator(np.random.PCG64(0x766B7A)).integers(0, 2**32, n, dtype=np.uint32)
    words[-1] |= 1  # a nonzero top word
    return words


class BitsBackCoder:
    """Lossless bits-back coding of symbol arrays (N, D) with an ``ExactModel``."""

    def __init__(self, exact: ExactModel, likelihood: LikelihoodCoder, buckets: LatentBuckets, shape: tuple[int, ...], latent_dim: int):
        self.exact, self.likelihood, self.buckets = exact, likelihood, buckets
        self.shape, self.latent_dim = shape, latent_dim
        self.uniform = constriction.stream.model.Uniform(2**buckets.bits)

    def _posterior(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, logvar = self.exact.posterior(self.likelihood.encoder_input(k, self.shape))  # (n, L) each
        return mu.reshape(-1), self.buckets.sigma(logvar.reshape(-1))

    def _likelihood(self, j: np.ndarray):
        z = self.buckets.centres[j]  # (n, L)
        return self.likelihood.model(self.exact.decoder_params(z))

    def encode(self, symbols: np.ndarray, max_batch: int, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[int]]:
        """symbols (N, D) int32 -> (the ANS stack's words, the batch sizes used)."""
        ans = constriction.stream.stack.AnsCoder(initial_words(self.latent_dim))
        per_example = 12 * self.latent_dim  # a typical posterior decode, in bits; a guess, checked below
        sizes, i, n_total = [], 0, len(symbols)
        while i < n_total:
            n = min(max_batch, n_total - i, max(1, ans.num_bits() // per_example))
            k = symbols[i : i + n]
            mu, sigma = self._posterior(k)
            while True:  # decode z ~ q(z|x); if that would run the stack dry, try a smaller batch
                trial = ans.clone()
                coarse = trial.decode(_CATEGORICAL, self.buckets.coarse_probs(mu, sigma))
                fine = trial.decode(_CATEGORICAL, self.buckets.fine_probs(mu, sigma, coarse))
                if trial.num_bits() >= 2 * WORD_BITS or n == 1:
                    break
                n = max(1, n // 2)
                k, mu, sigma = k[:n], mu[: n * self.latent_dim], sigma[: n * self.latent_dim]
            ans = trial
            j = (coarse.astype(np.int64) << self.buckets.fine_bits) | fine  # (n * L,) bucket indices
            family, params = self._likelihood(j.reshape(n, self.latent_dim))
            ans.encode_reverse(k.reshape(-1), family, *params)
            ans.encode_reverse(j.astype(np.int32), self.uniform)
            sizes.append(n)
            i += n
            if progress is not None:
                progress(i)
        return ans.get_compressed(), sizes

    def decode(self, words: np.ndarray, sizes: list[int], progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, bool]:
        """The inverse of ``encode`` -> (symbols (N, D) int32, whether the stack ended at the initial words)."""
        ans = constriction.stream.stack.AnsCoder(words)
        total, dims = sum(sizes), int(np.prod(self.shape))
        out = np.empty((total, dims), dtype=np.int32)
        fine_mask = 2**self.buckets.fine_bits - 1
        end = total
        for n in reversed(sizes):
            j = ans.decode(self.uniform, n * self.latent_dim).astype(np.int64)
            family, params = self._likelihood(j.reshape(n, self.latent_dim))
            k = ans.decode(family, *params).reshape(n, dims)
            mu, sigma = self._posterior(k)
            coarse, fine = (j >> self.buckets.fine_bits).astype(np.int32), (j & fine_mask).astype(np.int32)
            ans.encode_reverse(fine, _CATEGORICAL, self.buckets.fine_probs(mu, sigma, coarse))
            ans.encode_reverse(coarse, _CATEGORICAL, self.buckets.coarse_probs(mu, sigma))
            out[end - n : end] = k
            end -= n
            if progress is not None:
                progress(total - end)
        rest = ans.get_compressed()
        seed = initial_words(self.latent_dim)
        return out, bool(len(rest) == len(seed) and np.array_equal(rest, seed))
