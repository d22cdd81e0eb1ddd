"""Bits-back coding with ANS (Townsend et al. 2019), a batch of examples at a time.

Compressing one batch, on the ANS stack: decode z from the stack with q(z|x) (taking bits off),
encode x with p(x|z), encode z with p(z). Net, a batch costs -log p(x|z) - log p(z) + log q(z|x)
bits: the negative ELBO with one posterior sample. Decompressing undoes each step in reverse
order, batch by batch from the last. The first decode needs bits already on the stack: the stack
starts with ``initial_words`` fixed pseudo-random words (the initial bits, counted in the file), and
batches start at one example and grow only as the stack holds enough bits for the next one.

A hierarchical model's z = [z_1, ..., z_L] is coded layer by layer (BB-ANS over the layers, as
HiLLoC and Bit-Swap's baseline do): every layer of q is decoded in q's order, each given its parent's
bucket, then x, then every layer of p encoded children first, so that decompression decodes p's top
layer first. A layer whose prior parent q decodes before it (every layer of a top-down ``skip``
hierarchy) is discretised in its prior's own frame: buckets of equal mass under p(z_l|z_{l+1}) =
N(μ, σ²), centres μ + σ c_j, so p codes it in exactly P bits and q's bucket masses are those of
N((μ_q − μ)/σ, (σ_q/σ)²) under the standard buckets. Other layers (the ``chain`` wiring's z_1, whose
prior parent q decodes after it) keep the buckets of N(0, 1) and code them with the Gaussian masses
of p(z_l|·) and q(z_l|·), which costs more where those are much narrower than a bucket.

Bit-Swap ordering (Kingma, Abbeel & Ho 2019) where the model allows it: when q is a bottom-up Markov
chain q(z_1|x) q(z_2|z_1) ... whose upper layers do not read x, p a top-down one and p(x|·) reads z_1
alone (the ``chain`` wiring), each layer's bits go back on the stack as soon as it is decoded: decode
z_1 ~ q(z_1|x), encode x with p(x|z_1), decode z_2 ~ q(z_2|z_1), encode z_1 with p(z_1|z_2), ...,
encode z_L with p(z_L). The stack then needs initial bits for the largest layer, not for all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import constriction
import numpy as np

from vaekit.compression.exact import ACTIVATION_BITS, ExactModel, GaussianLayers
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
        prior_parents, self.sizes = exact.prior_wiring()
        q_order = exact.posterior_order()
        q_parents, q_sees_x, decoder_layers = exact.posterior_wiring()
        n = len(q_parents)
        self.bit_swap = (
            n >= 2
            and q_parents == (None, *range(n - 1))
            and not any(q_sees_x[1:])
            and prior_parents == (*range(1, n), None)
            and tuple(decoder_layers) == (0,)
        )
        # the stack's initial words: enough to decode every layer (BB-ANS order) or the largest one (Bit-Swap)
        self.initial_dims = max(self.sizes) if self.bit_swap else latent_dim
        # the layers coded in their prior's frame: those whose prior parent q decodes before them, and a
        # conditional prior's p(z|y) (its label is known first)
        self.adapted = {i for i, p in enumerate(prior_parents) if p is not None and q_order.index(p) < q_order.index(i)}
        if exact.latent.conditional_prior:
            self.adapted.add(0)
        # a label-conditional model codes each example's label, uniformly over its classes, after its z
        self.classes = exact.latent.label_classes
        self.label_model = constriction.stream.model.Uniform(self.classes) if self.classes else None

    def _code(self, i: int, j: list, frames: dict, n: int, size: int) -> np.ndarray:
        """Layer i's code (n, L_i) on the decoder's input grid: its buckets' centres, in its prior's frame where it has one."""
        c = self.buckets.centres[j[i]]
        if i in frames:
            mu, sigma = frames[i]
            c = np.round((mu + sigma * c) * 2.0**ACTIVATION_BITS) / 2.0**ACTIVATION_BITS
        return c.reshape(n, size)

    def _gaussian(self, layers: GaussianLayers, i: int, codes: list, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Layer i's (μ, σ) (n · L_i,) given its parent's code."""
        parent = layers.parents[i]
        mu, logvar = layers.gaussian(i, None if parent is None else codes[parent])
        return mu.reshape(-1), self.buckets.sigma(logvar.reshape(-1))

    def _frame(self, prior: GaussianLayers, i: int, codes: list, n: int, frames: dict) -> None:
        """Record layer i's prior frame (μ_p, σ_p) in ``frames`` when its buckets follow p(z_i|parent) (see the module docstring)."""
        if i in self.adapted:
            frames[i] = self._gaussian(prior, i, codes, n)

    def _in_frame(self, i: int, frames: dict, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q's (μ, σ) of layer i in the coordinates its buckets are equal-mass in."""
        if i not in frames:
            return mu, sigma
        mu_p, sigma_p = frames[i]
        return (mu - mu_p) / sigma_p, sigma / sigma_p

    def _pop_gaussian(self, ans, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        coarse = ans.decode(_CATEGORICAL, self.buckets.coarse_probs(mu, sigma))
        fine = ans.decode(_CATEGORICAL, self.buckets.fine_probs(mu, sigma, coarse))
        return (coarse.astype(np.int64) << self.buckets.fine_bits) | fine  # (n · L_i,) bucket indices

    def _push_gaussian(self, ans, j: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> None:
        coarse, fine = (j >> self.buckets.fine_bits).astype(np.int32), (j & (2**self.buckets.fine_bits - 1)).astype(np.int32)
        ans.encode_reverse(fine, _CATEGORICAL, self.buckets.fine_probs(mu, sigma, coarse))
        ans.encode_reverse(coarse, _CATEGORICAL, self.buckets.coarse_probs(mu, sigma))

    def _q(self, k: np.ndarray, y: np.ndarray | None) -> GaussianLayers:
        return self.exact.posterior_layers(self.likelihood.encoder_input(k, self.shape), y)

    def _pop_posterior(self, ans, k: np.ndarray, y: np.ndarray | None, prior: GaussianLayers) -> tuple[list, list, dict]:
        """Decode every layer's buckets from ``ans`` with q(z|x) for symbols k (n, D), in q's order ->
        (bucket indices, codes, prior frames) per layer."""
        q, n = self._q(k, y), len(k)
        j: list = [None] * len(q.sizes)
        codes: list = [None] * len(q.sizes)
        frames: dict = {}
        for i in q.order:
            self._frame(prior, i, codes, n, frames)
            j[i] = self._pop_gaussian(ans, *self._in_frame(i, frames, *self._gaussian(q, i, codes, n)))
            codes[i] = self._code(i, j, frames, n, q.sizes[i])
        return j, codes, frames

    def _push_posterior(self, ans, k: np.ndarray, y: np.ndarray | None, j: list, codes: list, frames: dict) -> None:
        """The inverse of ``_pop_posterior``: encode the buckets back with q(z|x), in reverse order."""
        q = self._q(k, y)
        for i in reversed(q.order):
            self._push_gaussian(ans, j[i], *self._in_frame(i, frames, *self._gaussian(q, i, codes, len(k))))

    def _likelihood(self, codes: list, y: np.ndarray | None) -> np.ndarray:
        """p(x|z)'s decoder outputs at the layers' codes [z_1, ..., z_L] (n, Σ L_i); a layer not yet known
        (None: one the decoder does not read) as zeros."""
        n = next(len(c) for c in codes if c is not None)
        full = [np.zeros((n, size)) if c is None else c for c, size in zip(codes, self.sizes)]
        return self.exact.decoder_params(np.concatenate(full, 1), y)

    def _encode_bit_swap(self, ans, k: np.ndarray, y: np.ndarray | None, prior: GaussianLayers):
        """One batch in Bit-Swap order (module docstring) on ``ans``; False (``ans`` then spoilt) when a
        decode would run the stack dry."""
        q, n, top = self._q(k, y), len(k), len(self.sizes) - 1
        j: list = [None] * len(self.sizes)
        codes: list = [None] * len(self.sizes)
        for i in range(top + 1):
            j[i] = self._pop_gaussian(ans, *self._gaussian(q, i, codes, n))  # z_i ~ q(z_i|x or z_{i-1})
            if ans.num_bits() < 2 * WORD_BITS and n > 1:
                return False
            codes[i] = self._code(i, j, {}, n, self.sizes[i])
            if i == 0:
                self.likelihood.push(ans, k.reshape(-1), self._likelihood(codes, y))  # x with p(x|z_1)
            else:
                self._push_gaussian(ans, j[i - 1], *self._gaussian(prior, i - 1, codes, n))  # z_{i-1} with p(z_{i-1}|z_i)
        ans.encode_reverse(j[top].astype(np.int32), self.uniform)  # the top with N(0, 1)
        return True

    def _decode_bit_swap(self, ans, n: int, y: np.ndarray | None, prior: GaussianLayers) -> np.ndarray:
        """The inverse of ``_encode_bit_swap`` for a batch of n -> symbols (n, D)."""
        top = len(self.sizes) - 1
        q_up = self.exact.posterior_layers_above_x(n)  # q(z_i|z_{i-1}) for i >= 1 reads no x (checked for Bit-Swap)
        j: list = [None] * len(self.sizes)
        codes: list = [None] * len(self.sizes)
        j[top] = ans.decode(self.uniform, n * self.sizes[top]).astype(np.int64)
        codes[top] = self._code(top, j, {}, n, self.sizes[top])
        for i in range(top, 0, -1):
            j[i - 1] = self._pop_gaussian(ans, *self._gaussian(prior, i - 1, codes, n))
            codes[i - 1] = self._code(i - 1, j, {}, n, self.sizes[i - 1])
            self._push_gaussian(ans, j[i], *self._gaussian(q_up, i, codes, n))
        k = self.likelihood.pop(ans, self._likelihood([codes[0]] + [None] * top, y)).reshape(n, -1)
        q = self._q(k, y)
        self._push_gaussian(ans, j[0], *self._gaussian(q, 0, codes, n))
        return k

    def encode(
        self, symbols: np.ndarray, max_batch: int, progress: Callable[[int], None] | None = None, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """symbols (N, D) int32 (and a label-conditional model's labels (N,)) -> (the ANS stack's words, the batch sizes used)."""
        ans = constriction.stream.stack.AnsCoder(initial_words(self.initial_dims))
        per_example = 12 * self.latent_dim  # a typical posterior decode, in bits; a guess, checked below
        sizes, i, n_total = [], 0, len(symbols)
        while i < n_total:
            n = min(max_batch, n_total - i, max(1, ans.num_bits() // per_example))
            while True:  # decode z ~ q(z|x); if that would run the stack dry, try a smaller batch
                k, y = symbols[i : i + n], None if labels is None else labels[i : i + n]
                prior = self.exact.prior_layers(y)
                trial = ans.clone()
                if self.bit_swap:
                    if self._encode_bit_swap(trial, k, y, prior):
                        break
                else:
                    j, codes, frames = self._pop_posterior(trial, k, y, prior)
                    if trial.num_bits() >= 2 * WORD_BITS or n == 1:
                        break
                n = max(1, n // 2)
            ans = trial
            if not self.bit_swap:
                self.likelihood.push(ans, k.reshape(-1), self._likelihood(codes, y))
                for layer in reversed(prior.order):  # p(z), children first: decompression decodes the top first
                    if prior.parents[layer] is None or layer in frames:  # N(0, 1), or its own prior's frame: P bits a unit
                        ans.encode_reverse(j[layer].astype(np.int32), self.uniform)
                    else:
                        self._push_gaussian(ans, j[layer], *self._gaussian(prior, layer, codes, n))
            if self.classes:  # the labels last: decompression needs them first
                ans.encode_reverse(y.astype(np.int32), self.label_model)
            sizes.append(n)
            i += n
            if progress is not None:
                progress(i)
        return ans.get_compressed(), sizes

    def decode(
        self, words: np.ndarray, sizes: list[int], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """The inverse of ``encode`` -> (symbols (N, D) int32, the labels (N,) or None, whether the stack
        ended at the initial words)."""
        ans = constriction.stream.stack.AnsCoder(words)
        total, dims = sum(sizes), int(np.prod(self.shape))
        out = np.empty((total, dims), dtype=np.int32)
        labels = np.empty(total, dtype=np.int64) if self.classes else None
        end = total
        for n in reversed(sizes):
            y = ans.decode(self.label_model, n).astype(np.int64) if self.classes else None
            prior = self.exact.prior_layers(y)
            out[end - n : end] = self._decode_bit_swap(ans, n, y, prior) if self.bit_swap else self._decode_layers(ans, n, y, prior)
            if labels is not None:
                labels[end - n : end] = y
            end -= n
            if progress is not None:
                progress(total - end)
        rest = ans.get_compressed()
        seed = initial_words(self.initial_dims)
        return out, labels, bool(len(rest) == len(seed) and np.array_equal(rest, seed))

    def _decode_layers(self, ans, n: int, y: np.ndarray | None, prior: GaussianLayers) -> np.ndarray:
        """One batch of n in BB-ANS order: p's layers top first, then x, then q's layers back -> symbols (n, D)."""
        j: list = [None] * len(prior.sizes)
        codes: list = [None] * len(prior.sizes)
        frames: dict = {}
        for layer in prior.order:
            self._frame(prior, layer, codes, n, frames)
            if prior.parents[layer] is None or layer in frames:
                j[layer] = ans.decode(self.uniform, n * prior.sizes[layer]).astype(np.int64)
            else:
                j[layer] = self._pop_gaussian(ans, *self._gaussian(prior, layer, codes, n))
            codes[layer] = self._code(layer, j, frames, n, prior.sizes[layer])
        k = self.likelihood.pop(ans, self._likelihood(codes, y)).reshape(n, -1)
        self._push_posterior(ans, k, y, j, codes, frames)
        return k
