"""Baselines to put beside a trained model. ``PCABaseline``: principal component analysis with as many
components as the model has latent units -- the best any linear encoder/decoder pair can reconstruct
in squared error (Eckart-Young), which a linear autoencoder trained on squared error reaches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal

from vaekit.data.base import Dataset
from vaekit.errors import ConfigError
from vaekit.evaluation import reconstruction_error
from vaekit.models.contract import Context, LatentSpec, Model
from vaekit.models.distributions import PointMass

PCA_FIT_EXAMPLES = 60_000  # the PCA baseline is fitted to at most this many training examples
EIGH_MAX_DIMS = 4096  # above this many dimensions, fit with a randomized SVD instead of the covariance


@dataclass
class PCABaseline(Model):
    """PCA fitted to a training split, and as a ``Model`` probabilistic PCA's (Tipping & Bishop 1999)
    in the components' coordinates: ``encode`` gives the point mass at x's coordinates, ``prior`` the
    Gaussian N(0, diag explained_variance) the training coordinates follow, ``decode`` N(x̂, σ² I) about
    the reconstruction, σ² the variance the components leave out per dimension.

    mean: (D,) training mean. components: (k, D) orthonormal principal directions, largest first.
    explained_variance: (k,) variance of the training data along each direction.
    input_shape: shape of one example, so reconstructions come back as (N, *input_shape).
    noise_variance: σ², the mean variance along the D - k directions left out (0 when none are).
    """

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor
    input_shape: tuple[int, ...]
    noise_variance: float = 0.0

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
        total = float(centred.square().sum()) / max(n - 1, 1)  # the covariance's trace: all the variance
        if d <= EIGH_MAX_DIMS:
            values, vectors = torch.linalg.eigh(centred.T @ centred / max(n - 1, 1))  # ascending
            values, vectors = values.flip(0)[:n_components], vectors.flip(1)[:, :n_components]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _, s, vectors = torch.svd_lowrank(centred, q=min(n_components + 10, n, d), niter=6)
            values, vectors = (s**2 / max(n - 1, 1))[:n_components], vectors[:, :n_components]
        dtype = x.dtype if x.is_floating_point() else torch.float32
        left_out = max(total - float(values.clamp_min(0).sum()), 0.0) / (d - n_components) if d > n_components else 0.0
        return cls(mean.to(dtype), vectors.T.contiguous().to(dtype), values.clamp_min(0).to(dtype), tuple(x.shape[1:]), left_out)

    @property
    def n_components(self) -> int:
        return len(self.components)

    @property
    def latent_dim(self) -> int:
        return self.n_components

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def latent(self) -> LatentSpec:
        """One layer of k coordinates, a point mass (no density, no KL) under a Gaussian prior."""
        return LatentSpec(
            layers=(self.n_components,), factorises=True, density=False, closed_form_kl=False, gaussian_posterior=False, gaussian_prior=True
        )

    def coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates (N, k) of x (N, *shape) along the components."""
        return (x.flatten(1).to(self.mean) - self.mean) @ self.components.T

    def encode(self, x: torch.Tensor, context: Context = None) -> Distribution:
        """The point mass at x's coordinates: batch (N,), event (k,)."""
        return PointMass(self.coordinates(x))

    def decode(self, z: torch.Tensor, context: Context = None) -> Distribution:
        """N(x̂, σ² I) about the points x̂ with coordinates z (*batch, k): batch ``batch``, event ``input_shape``."""
        loc = (z @ self.components + self.mean).view(*z.shape[:-1], *self.input_shape)
        scale = torch.full_like(loc, math.sqrt(self.noise_variance))
        return Independent(Normal(loc, scale, validate_args=False), len(self.input_shape), validate_args=False)

    def prior(self, context: Context = None) -> Distribution:
        """N(0, diag explained_variance) over the coordinates (event (k,)): the training coordinates' Gaussian."""
        return Independent(Normal(torch.zeros_like(self.explained_variance), self.explained_variance.sqrt(), validate_args=False), 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x's projection (N, *shape) onto the components."""
        return self.decode(self.coordinates(x)).mean

    def squared_error(self, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
        """||x - reconstruct(x)||² per example (N,)."""
        parts = []
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(self.mean)
            parts.append((xb - self.reconstruct(xb)).flatten(1).pow(2).sum(1))
        return torch.cat(parts)


def compare_reconstruction(model, train_x: torch.Tensor, data: Dataset, *, batch_size: int = 1000) -> dict[str, float]:
    """Mean squared reconstruction error per example on the examples x of ``data``: the model's (decoder
    mean at the posterior mean; a conditional model's given each its label or context) beside PCA's with
    ``model.latent_dim`` components fitted to ``train_x`` (or to a seeded subset of ``PCA_FIT_EXAMPLES`` of it, when larger)."""

    if len(train_x) > PCA_FIT_EXAMPLES:  # a seeded subset: bounded memory, also for memory-mapped data
        g = torch.Generator().manual_seed(0)
        train_x = train_x[torch.randperm(len(train_x), generator=g)[:PCA_FIT_EXAMPLES].sort().values]
    else:
        train_x = train_x[torch.arange(len(train_x))]  # a tensor, also from memory-mapped data
    pca = PCABaseline.fit(train_x, min(model.latent_dim, len(train_x), math.prod(train_x.shape[1:])))
    dims = math.prod(data.shape)
    model_err = reconstruction_error(model, data, batch_size=batch_size).double().mean().item()
    pca_err = pca.squared_error(data.x).double().mean().item()
    return {
        "components": pca.n_components,
        "model_squared_error": model_err,
        "pca_squared_error": pca_err,
        "model_mse_per_dim": model_err / dims,
        "pca_mse_per_dim": pca_err / dims,
        "ratio": model_err / pca_err if pca_err > 0 else math.inf,
    }
