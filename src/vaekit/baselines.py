"""Baselines to put beside a trained model. ``PCABaseline``: principal component analysis with as many
components as the model has latent units -- the best any linear encoder/decoder pair can reconstruct
in squared error (Eckart-Young), which a linear autoencoder trained on squared error reaches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.errors import ConfigError
from vaekit.evaluation import reconstruction_error

PCA_FIT_EXAMPLES = 60_000  # the PCA baseline is fitted to at most this many training examples
EIGH_MAX_DIMS = 4096  # above this many dimensions, fit with a randomized SVD instead of the covariance


@dataclass
class PCABaseline:
    """PCA fitted to a training split.

    mean: (D,) training mean. components: (k, D) orthonormal principal directions, largest first.
    explained_variance: (k,) variance of the training data along each direction.
    input_shape: shape of one example, so reconstructions come back as (N, *input_shape).
    """

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor
    input_shape: tuple[int, ...]

    @classmethod
    def fit(cls, x: torch.Tensor, n_components: int, *, seed: int = 0) -> PCABaseline:
        """Fit to x (N, *shape) in float64: an eigendecomposition of the covariance when D <= 4096,
        else a randomized SVD (``torch.svd_lowrank`` with a fixed seed)."""
        flat = x.flatten(1).double()  # (N, D)
        n, d = flat.shape
        if not 1 <= n_components <= min(n, d):
            raise ConfigError(f"PCA needs 1 <= components <= min(examples, dims) = {min(n, d)}, got {n_components}")
        mean = flat.mean(0)
        centred = flat - mean
        if d <= EIGH_MAX_DIMS:
            values, vectors = torch.linalg.eigh(centred.T @ centred / max(n - 1, 1))  # ascending
            values, vectors = values.flip(0)[:n_components], vectors.flip(1)[:, :n_components]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _, s, vectors = torch.svd_lowrank(centred, q=min(n_components + 10, n, d), niter=6)
            values, vectors = (s**2 / max(n - 1, 1))[:n_components], vectors[:, :n_components]
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return cls(mean.to(dtype), vectors.T.contiguous().to(dtype), values.clamp_min(0).to(dtype), tuple(x.shape[1:]))

    @property
    def n_components(self) -> int:
        return len(self.components)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates (N, k) of x (N, *shape) along the components."""
        return (x.flatten(1).to(self.mean) - self.mean) @ self.components.T

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        """Points (N, *shape) with coordinates c (N, k)."""
        return (c @ self.components + self.mean).view(len(c), *self.input_shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def squared_error(self, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
        """||x - reconstruct(x)||² per example (N,)."""
        parts = []
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(self.mean)
            parts.append((xb - self.reconstruct(xb)).flatten(1).pow(2).sum(1))
        return torch.cat(parts)


def compare_reconstruction(model, train_x: torch.Tensor, x: torch.Tensor, *, batch_size: int = 1000, context=None) -> dict[str, float]:
    """Mean squared reconstruction error per example on ``x``: the model's (decoder mean at the
    posterior mean; ``context``: a conditional model's labels or context of ``x``) beside PCA's with ``model.latent_dim``
    components fitted to ``train_x`` (or to a seeded subset of ``PCA_FIT_EXAMPLES`` of it, when larger)."""

    if len(train_x) > PCA_FIT_EXAMPLES:  # a seeded subset: bounded memory, also for memory-mapped data
        g = torch.Generator().manual_seed(0)
        train_x = train_x[torch.randperm(len(train_x), generator=g)[:PCA_FIT_EXAMPLES].sort().values]
    else:
        train_x = train_x[torch.arange(len(train_x))]  # a tensor, also from memory-mapped data
    pca = PCABaseline.fit(train_x, min(model.latent_dim, len(train_x), math.prod(train_x.shape[1:])))
    dims = math.prod(x.shape[1:])
    model_err = reconstruction_error(model, x, batch_size=batch_size, context=context).double().mean().item()
    pca_err = pca.squared_error(x).double().mean().item()
    return {
        "components": pca.n_components,
        "model_squared_error": model_err,
        "pca_squared_error": pca_err,
        "model_mse_per_dim": model_err / dims,
        "pca_mse_per_dim": pca_err / dims,
        "ratio": model_err / pca_err if pca_err > 0 else math.inf,
    }
