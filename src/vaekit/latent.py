"""Latent-space tools: tensors in, tensors out (pictures are drawn by ``vaekit.plotting``).

Shapes: x (N, *input_shape); z (N, L). The grids below are built from a distribution over z:
the prior p(z) for a VAE; for a plain autoencoder, whose codes were never asked to follow a
prior, a density fitted to its training codes (``fit_code_density(encode(model, x_train))``).

- ``encode``: posterior means (or seeded samples) of a dataset (a ``Dataset``, read as the model does:
  ``vaekit.examples.for_model``), in batches.
- ``kl_per_dim`` / ``rank_dims``: how much each latent dimension is used (average KL to the
  prior per dimension; the variance of the codes for a deterministic encoder).
- ``marginals`` (``vaekit.models.distributions``), ``quantiles``, ``sigma_values``: per-dimension views of a distribution over z.
- ``latent_path`` / ``interpolate``: linear and spherical paths between two posterior means.
- ``traverse``: one dimension at a time over a range of values, the others held fixed.
- ``manifold``: a grid of decoded z over two dimensions (Kingma & Welling 2014, fig. 4).
- ``fit_code_density``: a full-covariance Gaussian or a Gaussian mixture fitted to codes.
- ``project_2d``: codes to two coordinates for a scatter plot (identity, PCA or t-SNE).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import (
    Categorical,
    Distribution,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from vaekit.data.base import Dataset
from vaekit.errors import ConfigError
from vaekit.examples import for_model, with_context
from vaekit.models.condition import Context
from vaekit.models.distributions import marginals

log = logging.getLogger(__name__)

DEFAULT_P_RANGE = (0.05, 0.95)  # probability range of the quantile grids (as in Kingma & Welling's manifold)


# ----- encoding and ranking -----------------------------------------------------------------


@torch.inference_mode()
def encode(
    model, data: Dataset, *, sample: bool = False, seed: int = 0, batch_size: int = 1000, index: torch.Tensor | None = None
) -> torch.Tensor:
    """Codes of the N examples of ``data`` -> (N, L) on the CPU: posterior means, or one draw z ~ q(z|x)
    per example when ``sample`` (seeded, so the same call gives the same codes); a conditional model
    encodes each example with its context. index: (N,) encode only these examples, read a batch at a
    time (a sample of a memory-mapped split is never held in memory whole)."""
    device = model.device
    data = for_model(model, data)
    if index is None:
        batches = data.batches(batch_size, device)
    else:
        batches = (data.subset(index[s : s + batch_size]).batch(device) for s in range(0, len(index), batch_size))
    parts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in batches:
            q = model.encode(batch.inputs, batch.context)
            parts.append((q.sample() if sample else q.mean).cpu())  # (B, L)
    return torch.cat(parts) if parts else torch.zeros(0, model.latent_dim)


@torch.inference_mode()
def kl_per_dim(model, data: Dataset, *, batch_size: int = 1000, n_samples: int = 16, seed: int = 0) -> torch.Tensor:
    """Average over the examples of ``data`` of KL(q(z_d|x) || p(z_d)) for each latent dimension d: (L,) in nats.

    Closed form for a Gaussian posterior and a normal prior; a Monte Carlo mean over
    ``n_samples`` seeded draws against the prior's per-dimension marginal otherwise (a mixture
    prior). Summed over d this is the model's KL term for a factorised prior. Raises
    ``ConfigError`` for a deterministic encoder (a plain autoencoder has no KL term). A conditional
    model's examples are read with their contexts, for q(z|x, y) and p(z|y).
    """
    latent = model.latent
    if latent.deterministic:
        raise ConfigError("a plain autoencoder has no KL term; rank its dimensions with rank_dims (code variance)")
    if not latent.unit_kl:
        raise ConfigError(
            "the posterior does not factorise over latent dimensions (a flow): no KL per dimension; "
            "rank its dimensions with rank_dims (code variance)"
        )
    data = for_model(model, data)
    device = model.device
    conditional_prior = latent.conditional_prior
    p = None if conditional_prior else marginals(model.prior())  # batch (L,)
    total = torch.zeros(model.latent_dim, dtype=torch.float64)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in data.batches(batch_size, device):
            q = model.encode(batch.inputs, batch.context)
            if conditional_prior:
                p = marginals(model.prior(batch.context))  # batch (B, L)
            qd = q.base_dist  # batch (B, L): q factorises, Independent over z
            try:
                kl = kl_divergence(qd, p)  # (B, L)
            except NotImplementedError:
                z = qd.sample((n_samples,))  # (S, B, L)
                kl = (qd.log_prob(z) - p.log_prob(z)).mean(0)  # (B, L)
            total += kl.double().sum(0).cpu()
    return (total / max(len(data), 1)).float()


@dataclass
class DimRanking:
    """Latent dimensions in decreasing order of use.

    dims: (L,) dimension indices, most used first. score: (L,) the matching scores.
    measure: what the score is: ``"KL"`` (nats, average KL to the prior) or ``"variance"``
    (variance of the codes over the data, for a deterministic encoder).
    """

    dims: torch.Tensor
    score: torch.Tensor
    measure: str

    def label(self, i: int) -> str:
        """A short label for the i-th ranked dimension, e.g. ``z3  KL 1.25``."""
        unit = "KL" if self.measure == "KL" else "var"
        return f"z{int(self.dims[i])}  {unit} {float(self.score[i]):.2f}"


def rank_dims(model, data: Dataset, *, batch_size: int = 1000) -> DimRanking:
    """Rank latent dimensions by average KL to the prior over the examples of ``data`` (a VAE), or by
    the variance of their posterior means (a plain autoencoder, or a flow posterior, which has no
    per-dimension KL: the "active units" measure)."""
    data = for_model(model, data)
    if not model.latent.unit_kl:
        score, measure = encode(model, data, batch_size=batch_size).var(0, unbiased=False), "variance"
    else:
        score, measure = kl_per_dim(model, data, batch_size=batch_size), "KL"
    order = torch.argsort(score, descending=True, stable=True)
    return DimRanking(dims=order, score=score[order], measure=measure)


# ----- per-dimension views of a distribution over z -----------------------------------------


@torch.no_grad()
def quantiles(marg: Distribution, probs: torch.Tensor) -> torch.Tensor:
    """Quantiles of per-dimension marginals (batch (L,)) at ``probs`` (P,) -> (P, L).

    Exact for a normal marginal; for a mixture, the CDF is inverted by bisection (to ~1e-6).
    """
    probs = torch.as_tensor(probs, dtype=torch.float32)
    if not bool(((probs > 0) & (probs < 1)).all()):
        raise ConfigError("quantile probabilities must lie strictly between 0 and 1")
    p = probs.unsqueeze(-1)  # (P, 1)
    if isinstance(marg, Normal):
        return marg.icdf(p.expand(-1, marg.batch_shape[-1]).to(marg.loc))  # (P, L)
    mean, std = marg.mean, marg.stddev  # (L,)
    lo = (mean - 40 * std).expand(len(probs), -1).clone()  # (P, L)
    hi = (mean + 40 * std).expand(len(probs), -1).clone()
    for _ in range(60):
        mid = (lo + hi) / 2
        below = marg.cdf(mid) < p
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


@torch.no_grad()
def sigma_values(marg: Distribution, steps: int, width: float = 3.0) -> torch.Tensor:
    """``steps`` evenly spaced values from mean - width·σ to mean + width·σ of each marginal: (steps, L)."""
    t = torch.linspace(-width, width, steps).unsqueeze(-1)  # (S, 1)
    return marg.mean + t * marg.stddev


def grid_values(
    marg: Distribution, steps: int, span: str = "quantile", p_range: tuple[float, float] = DEFAULT_P_RANGE, width: float = 3.0
) -> torch.Tensor:
    """Values to vary each dimension over: (steps, L).

    span: ``quantile`` -- the marginal's quantiles at probabilities evenly spaced over ``p_range``
    (the inverse-CDF grid); ``sigma`` -- mean ± ``width`` standard deviations.
    """
    if steps < 2:
        raise ConfigError(f"need at least 2 steps, got {steps}")
    if span == "quantile":
        lo, hi = p_range
        if not 0 < lo < hi < 1:
            raise ConfigError(f"the probability range must satisfy 0 < low < high < 1, got {lo} and {hi}")
        return quantiles(marg, torch.linspace(lo, hi, steps))
    if span == "sigma":
        if width <= 0:
            raise ConfigError(f"the range in standard deviations must be positive, got {width}")
        return sigma_values(marg, steps, width)
    raise ConfigError(f"span must be 'quantile' or 'sigma', got {span!r}")


# ----- interpolation ------------------------------------------------------------------------


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between a and b (L,) at t (S,) -> (S, L).

    The direction moves along the great circle from a's to b's at constant angular speed
    (Shoemake 1985), and the norm goes linearly from |a| to |b|; for |a| = |b| this is the slerp
    of White (2016). Falls back to the straight line when a and b are (anti)parallel or zero.
    """
    t = t.unsqueeze(-1).to(a)  # (S, 1)
    na, nb = a.norm(), b.norm()
    if na < 1e-12 or nb < 1e-12:
        return (1 - t) * a + t * b
    ua, ub = a / na, b / nb
    omega = torch.arccos(torch.clamp(torch.dot(ua, ub), -1.0, 1.0))
    so = torch.sin(omega)
    if so < 1e-6:
        return (1 - t) * a + t * b
    direction = (torch.sin((1 - t) * omega) / so) * ua + (torch.sin(t * omega) / so) * ub  # (S, L), unit norm
    return ((1 - t) * na + t * nb) * direction


def latent_path(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "linear") -> torch.Tensor:
    """``steps`` points from a to b (L,), both ends included: (steps, L).
    method: ``linear`` (straight line) or ``slerp`` (spherical)."""
    if steps < 2:
        raise ConfigError(f"an interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0, 1, steps)
    if method == "linear":
        path = (1 - t).unsqueeze(-1) * a + t.unsqueeze(-1) * b
    elif method == "slerp":
        path = slerp(a, b, t)
    else:
        raise ConfigError(f"interpolation must be 'linear' or 'slerp', got {method!r}")
    path[0], path[-1] = a, b  # exact ends, whatever the rounding of the formula
    return path


@dataclass
class Interpolation:
    """z: (S, L) the latent path; images: (S, *input_shape) the decoder means along it."""

    z: torch.Tensor
    images: torch.Tensor


@torch.inference_mode()
def interpolate(
    model,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    steps: int = 10,
    method: str = "linear",
    *,
    labels: tuple[Context, Context] | None = None,
    context: Context = None,
) -> Interpolation:
    """Decode the path between the posterior means of x_a and x_b (each (*input_shape,)).
    The first and last images are the reconstructions of x_a and x_b.

    A conditional model encodes each input with its context (``labels`` = (y_a, y_b): labels or (K,) vectors) and decodes the
    path with ``context`` (one class, e.g. to carry both inputs' style into it), or by default
    with the context vectors mixed as the path goes, (1 − t)·y_a + t·y_b."""
    ends = None if labels is None else torch.stack([torch.as_tensor(y) for y in labels])  # (2,) labels or (2, K) vectors
    z = encode(model, with_context(model, torch.stack([x_a, x_b]), ends))  # (2, L)
    path = latent_path(z[0], z[1], steps, method)  # (S, L)
    if context is None and model.latent.conditional and ends is not None:
        y = model.condition(ends).cpu()  # (2, K)
        t = torch.linspace(0, 1, steps).unsqueeze(1)  # (S, 1)
        context = (1 - t) * y[0] + t * y[1]  # (S, K)
    return Interpolation(z=path, images=decode_mean(model, path, context=context))


@torch.inference_mode()
def decode_mean(model, z: torch.Tensor, batch_size: int = 1000, *, context: Context = None) -> torch.Tensor:
    """Decoder means of z (N, L) -> (N, *input_shape) on the CPU; ``context``: a conditional
    model's context, one for all (a label, a vector (K,)) or one per code ((N,) labels, (N, K) vectors)."""
    device = model.device
    vectors = model.condition(context, z.shape[:1]) if model.latent.conditional else None  # (N, K): one context vector per code
    parts = [
        model.decode(z[s : s + batch_size].to(device), None if vectors is None else vectors[s : s + batch_size]).mean.cpu()
        for s in range(0, len(z), batch_size)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, *model.input_shape)


# ----- traversal and manifold -------------------------------------------------------------


@dataclass
class Traversal:
    """One row per traversed dimension.

    dims: (K,) the dimensions. values: (K, S) the values each one took.
    z: (K, S, L) the decoded codes. images: (K, S, *input_shape) their decoder means.
    """

    dims: torch.Tensor
    values: torch.Tensor
    z: torch.Tensor
    images: torch.Tensor


def traverse(model, dims, base: torch.Tensor, values: torch.Tensor, *, context: Context = None) -> Traversal:
    """Vary each dimension in ``dims`` (K,) over its column of ``values`` (S, L) while the others
    stay at ``base`` (L,) -- e.g. an encoded input's mean, or the reference's mean (0 for N(0, I)).
    ``context``: the one class a conditional model decodes with."""
    dims = torch.as_tensor(dims, dtype=torch.long).reshape(-1)
    _check_dims(dims, model.latent_dim)
    steps = values.shape[0]
    z = base.reshape(1, 1, -1).repeat(len(dims), steps, 1)  # (K, S, L)
    for row, d in enumerate(dims.tolist()):
        z[row, :, d] = values[:, d]
    images = decode_mean(model, z.flatten(0, 1), context=context).view(len(dims), steps, *model.input_shape)
    return Traversal(dims=dims, values=values[:, dims].T.contiguous(), z=z, images=images)


@dataclass
class Manifold:
    """A decoded grid over two latent dimensions.

    dims: (2,) = (horizontal, vertical) dimensions. x_values: (n,) left to right;
    y_values: (n,) top to bottom (decreasing, so "up" is larger, as on a plot).
    z: (n, n, L) and images: (n, n, *input_shape), row-major from the top-left.
    """

    dims: tuple[int, int]
    x_values: torch.Tensor
    y_values: torch.Tensor
    z: torch.Tensor
    images: torch.Tensor


def manifold(model, dims: tuple[int, int], base: torch.Tensor, values: torch.Tensor, *, context: Context = None) -> Manifold:
    """Decode z over the grid ``values[:, dims[0]] x values[:, dims[1]]`` ((n, L) values, e.g. the
    inverse-CDF grid of ``grid_values``) with the other dimensions at ``base`` (L,); ``context``:
    the one class a conditional model decodes with."""
    i, j = (int(d) for d in dims)
    _check_dims(torch.tensor([i, j]), model.latent_dim)
    if i == j:
        raise ConfigError(f"the manifold needs two different dimensions, got {i} twice")
    n = values.shape[0]
    xs, ys = values[:, i], values[:, j].flip(0)  # (n,), (n,)
    z = base.reshape(1, 1, -1).repeat(n, n, 1)  # (n, n, L)
    z[:, :, i] = xs.unsqueeze(0)
    z[:, :, j] = ys.unsqueeze(1)
    images = decode_mean(model, z.flatten(0, 1), context=context).view(n, n, *model.input_shape)
    return Manifold(dims=(i, j), x_values=xs, y_values=ys, z=z, images=images)


def _check_dims(dims: torch.Tensor, latent_dim: int) -> None:
    bad = [int(d) for d in dims if not 0 <= int(d) < latent_dim]
    if bad:
        raise ConfigError(f"latent dimension(s) {bad} out of range: the model has {latent_dim} (0 to {latent_dim - 1})")


# ----- densities over codes -----------------------------------------------------------------


def fit_code_density(codes: torch.Tensor, kind: str = "gaussian", *, components: int = 10, seed: int = 0) -> Distribution:
    """Fit a density to codes (N, L) and return it as a distribution over z (event (L,)).

    kind: ``gaussian`` -- one full-covariance Gaussian (mean and covariance of the codes);
    ``gmm`` -- a mixture of ``components`` full-covariance Gaussians (scikit-learn EM, seeded).
    Sampling a plain autoencoder's decoder from these is the usual way to "generate" with it.
    """
    codes = codes.detach().double().cpu()
    n, dim = codes.shape
    if n < 2:
        raise ConfigError(f"need at least 2 codes to fit a density, got {n}")
    eye = torch.eye(dim, dtype=torch.float64)
    if kind == "gaussian":
        mean = codes.mean(0)
        cov = torch.cov(codes.T).reshape(dim, dim) + 1e-6 * eye
        return MultivariateNormal(mean.float(), covariance_matrix=cov.float())
    if kind == "gmm":
        from sklearn.mixture import GaussianMixture

        k = max(1, min(components, n // 2))
        gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-6, init_params="k-means++", random_state=seed).fit(
            codes.numpy()
        )
        weights = torch.as_tensor(gm.weights_, dtype=torch.float32)
        means = torch.as_tensor(gm.means_, dtype=torch.float32)  # (K, L)
        covs = torch.as_tensor(gm.covariances_, dtype=torch.float64) + 1e-6 * eye  # (K, L, L)
        return MixtureSameFamily(Categorical(probs=weights), MultivariateNormal(means, covariance_matrix=covs.float()))
    raise ConfigError(f"code density must be 'gaussian' or 'gmm', got {kind!r}")


# ----- projection to 2-D ------------------------------------------------------------------------


@dataclass
class Projection:
    """xy: (N, 2) coordinates; method: ``latent``, ``pca`` or ``tsne``; axes: the two axis names."""

    xy: np.ndarray
    method: str
    axes: tuple[str, str]


def project_2d(codes: torch.Tensor | np.ndarray, method: str = "auto", *, seed: int = 0) -> Projection:
    """Two coordinates per code (N, L) for a scatter plot.

    method: ``auto`` -- the codes themselves when L = 2 (a 1-D latent gets a seeded vertical
    jitter), PCA otherwise; ``pca``; ``tsne`` (scikit-learn, PCA-initialised, seeded).
    """
    z = np.asarray(torch.as_tensor(codes).detach().cpu().double().numpy())
    n, dim = z.shape
    if method not in ("auto", "pca", "tsne"):
        raise ConfigError(f"projection must be 'auto', 'pca' or 'tsne', got {method!r}")
    if dim == 1:
        jitter = np.random.default_rng(seed).uniform(-1, 1, n)
        return Projection(np.stack([z[:, 0], jitter], 1), "latent", ("z0", "jitter"))
    if method == "auto" and dim == 2:
        return Projection(z.copy(), "latent", ("z0", "z1"))
    if method in ("auto", "pca"):
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(z)
        ratio = pca.explained_variance_ratio_
        return Projection(pca.transform(z), "pca", (f"PC1 ({100 * ratio[0]:.0f}% of variance)", f"PC2 ({100 * ratio[1]:.0f}%)"))
    from sklearn.manifold import TSNE

    if n < 5:
        raise ConfigError(f"t-SNE needs at least 5 points, got {n}")
    if n > 5000:
        log.warning("t-SNE of %d points may take minutes; PCA (--method pca) is instant", n)
    perplexity = float(min(30.0, (n - 1) / 3))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    return Projection(xy, "tsne", ("t-SNE 1", "t-SNE 2"))
