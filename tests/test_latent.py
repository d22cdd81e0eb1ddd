"""Latent-space tools (``vaekit.latent``) and generation (``vaekit.generation``): numbers, not pictures.

``tiny_run`` trains the small runs every latent/report/CLI test file shares, once per session
(into pytest's session temp directory), with one torch thread so 2 cores are enough.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal, kl_divergence

from vaekit import latent
from vaekit.config import ModelConfig, RunConfig
from vaekit.data import Dataset
from vaekit.errors import ConfigError
from vaekit.generation import denoise, psnr, reconstruct, sample, tempered
from vaekit.models import build_model

# name -> (data, model and train settings); every run is small enough to train in a second or two
RUNS = {
    "vae2": dict(model=dict(latent_dim=2, hidden=(128,)), train=dict(epochs=25, lr=3e-3)),
    "vae4": dict(model=dict(latent_dim=4, hidden=(128,)), train=dict(epochs=15, lr=3e-3)),
    "ae2": dict(model=dict(kind="ae", latent_dim=2, hidden=(128,)), train=dict(epochs=15, lr=3e-3)),
    "dae": dict(model=dict(kind="ae", latent_dim=8, hidden=(128,)), train=dict(epochs=15, lr=3e-3, noise="gaussian", noise_level=0.3)),
    "mixture": dict(model=dict(latent_dim=3, hidden=(64,), prior="mixture", prior_components=4), train=dict(epochs=5, lr=3e-3)),
    "cvae": dict(model=dict(latent_dim=2, hidden=(128,), condition="label", prior="conditional"), train=dict(epochs=15, lr=3e-3)),
    "conv_rgb": dict(data="rgb", model=dict(arch="conv", latent_dim=3, hidden=(8, 16)), train=dict(epochs=6, lr=3e-3)),
    "table": dict(
        data="table", model=dict(latent_dim=3, hidden=(32,), likelihood="gaussian"), train=dict(epochs=20, lr=3e-3, batch_size=32)
    ),
    "hvae": dict(
        model=dict(latent_dim=6, latent_layers=(4, 2), hidden=(64,), prior="vampprior", prior_components=8), train=dict(epochs=6, lr=3e-3)
    ),
}


def _dataset(base: Path, kind: str) -> str:
    """The file behind a non-default dataset: tinted RGB digits (.npz, NHWC uint8) or the wine table (.csv)."""
    from sklearn.datasets import load_digits, load_wine

    if kind == "rgb":
        path = base / "rgb-digits.npz"
        if not path.exists():
            d = load_digits()
            tints = np.array([[1, 0.3, 0.3], [0.3, 1, 0.3], [0.3, 0.3, 1]])
            rgb = (d.images[..., None] / 16 * tints[d.target % 3][:, None, None, :] * 255).round().astype(np.uint8)  # (N, 8, 8, 3)
            np.savez(path, x=rgb, y=d.target)
        return str(path)
    path = base / "wine.csv"
    if not path.exists():
        w = load_wine()
        lines = [",".join([n.replace("/", "_") for n in w.feature_names] + ["label"])]
        lines += [",".join([f"{v:g}" for v in row] + [str(int(t))]) for row, t in zip(w.data, w.target)]
        path.write_text("\n".join(lines) + "\n")
    return str(path)


def tiny_run(tmp_path_factory, name: str):
    """The trained run ``name`` of ``RUNS`` (trained on first use in this session, then loaded)."""
    from vaekit.runs import load
    from vaekit.training import train

    base = tmp_path_factory.getbasetemp() / "vaekit-tiny-runs"
    base.mkdir(exist_ok=True)
    out = base / name
    if (out / "state.json").exists():
        return load(out)
    spec = RUNS[name]
    cfg = RunConfig()
    if "data" in spec:
        cfg.data.source = _dataset(base, spec["data"])
    cfg.train.batch_size, cfg.train.threads = 64, 1
    for section in ("model", "train"):
        for k, v in spec[section].items():
            setattr(getattr(cfg, section), k, v)
    return train(cfg, out)


@pytest.fixture(scope="module")
def vae2(tmp_path_factory):
    return tiny_run(tmp_path_factory, "vae2")


@pytest.fixture(scope="module")
def vae4(tmp_path_factory):
    return tiny_run(tmp_path_factory, "vae4")


@pytest.fixture(scope="module")
def ae2(tmp_path_factory):
    return tiny_run(tmp_path_factory, "ae2")


@pytest.fixture(scope="module")
def digits(vae2):
    return vae2.load_data()


# ----- encode and rank ------------------------------------------------------------------------


def test_encode_gives_posterior_means_and_seeded_samples(vae2, digits):
    x = digits.test.x[:50]
    means = latent.encode(vae2.model, Dataset(x), batch_size=16)
    with torch.no_grad():
        q = vae2.model.encode(x)
    torch.testing.assert_close(means, q.mean)
    a = latent.encode(vae2.model, Dataset(x), sample=True, seed=1)
    b = latent.encode(vae2.model, Dataset(x), sample=True, seed=1)
    c = latent.encode(vae2.model, Dataset(x), sample=True, seed=2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # the samples scatter around the means by about the posterior's standard deviation
    z = (a - q.mean) / q.stddev
    assert 0.5 < z.std().item() < 1.5 and abs(z.mean().item()) < 0.3


def test_kl_per_dim_sums_to_the_model_kl(vae4, digits):
    x = digits.test.x[:200]
    per_dim = latent.kl_per_dim(vae4.model, Dataset(x), batch_size=64)
    assert per_dim.shape == (4,) and (per_dim >= 0).all()
    with torch.no_grad():
        total = kl_divergence(vae4.model.encode(x), vae4.model.prior()).mean()
    assert per_dim.sum().item() == pytest.approx(total.item(), rel=1e-4)


def test_kl_per_dim_for_a_mixture_prior_matches_the_closed_form_with_one_component():
    # a 1-component mixture prior is a Gaussian, so the Monte Carlo marginal KL must agree with the closed form
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3, hidden=(16,), prior="mixture", prior_components=1)).eval()
    x = torch.rand(64, 1, 8, 8)
    mc = latent.kl_per_dim(model, Dataset(x), n_samples=4000)
    comp = model.prior().component_distribution.base_dist
    with torch.no_grad():
        exact = kl_divergence(model.encode(x).base_dist, Normal(comp.loc[0], comp.scale[0])).mean(0)
    torch.testing.assert_close(mc, exact, atol=0.02, rtol=0.02)


def test_rank_dims_orders_by_kl_and_by_code_variance_for_an_autoencoder(vae4, ae2, digits):
    x = digits.test.x
    r = latent.rank_dims(vae4.model, Dataset(x))
    assert r.measure == "KL" and sorted(r.dims.tolist()) == [0, 1, 2, 3]
    assert (r.score[:-1] >= r.score[1:]).all()
    torch.testing.assert_close(r.score, latent.kl_per_dim(vae4.model, Dataset(x))[r.dims])
    assert r.label(0).startswith(f"z{int(r.dims[0])}  KL ")
    a = latent.rank_dims(ae2.model, Dataset(x))
    assert a.measure == "variance"
    torch.testing.assert_close(a.score, latent.encode(ae2.model, Dataset(x)).var(0, unbiased=False)[a.dims])
    with pytest.raises(ConfigError, match="no KL"):
        latent.kl_per_dim(ae2.model, Dataset(x))


# ----- marginals and quantiles ------------------------------------------------------------------


def test_quantiles_of_a_normal_are_its_inverse_cdf():
    marg = latent.marginals(Independent(Normal(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])), 1))
    q = latent.quantiles(marg, torch.tensor([0.05, 0.5, 0.975]))
    torch.testing.assert_close(q, torch.tensor([[-1.6449, 1 - 2 * 1.6449], [0.0, 1.0], [1.9600, 1 + 2 * 1.9600]]), atol=1e-3, rtol=0)
    with pytest.raises(ConfigError):
        latent.quantiles(marg, torch.tensor([0.0, 0.5]))


def test_quantiles_of_a_mixture_invert_its_cdf():
    mix = MixtureSameFamily(
        Categorical(probs=torch.tensor([0.3, 0.7])),
        Independent(Normal(torch.tensor([[-3.0, 0.0], [2.0, 5.0]]), torch.tensor([[0.5, 1.0], [1.0, 0.2]])), 1),
    )
    marg = latent.marginals(mix)
    assert marg.batch_shape == (2,)
    probs = torch.tensor([0.01, 0.3, 0.5, 0.9])
    q = latent.quantiles(marg, probs)  # (4, 2)
    torch.testing.assert_close(marg.cdf(q), probs.unsqueeze(1).expand(-1, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(marg.mean, mix.mean)


def test_marginals_of_full_covariance_gaussians_and_their_mixtures():
    cov = torch.tensor([[4.0, 1.0], [1.0, 1.0]])
    mvn = MultivariateNormal(torch.tensor([1.0, -1.0]), covariance_matrix=cov)
    m = latent.marginals(mvn)
    torch.testing.assert_close(m.scale, torch.tensor([2.0, 1.0]))
    gmm = MixtureSameFamily(
        Categorical(probs=torch.tensor([0.5, 0.5])),
        MultivariateNormal(torch.tensor([[0.0, 0.0], [2.0, 4.0]]), covariance_matrix=torch.stack([cov, cov])),
    )
    torch.testing.assert_close(latent.marginals(gmm).mean, torch.tensor([1.0, 2.0]))


def test_grid_values_span_quantiles_or_sigmas():
    marg = Normal(torch.zeros(3), torch.tensor([1.0, 2.0, 0.5]))
    v = latent.grid_values(marg, 5, "sigma", width=3)
    torch.testing.assert_close(v[:, 1], torch.tensor([-6.0, -3.0, 0.0, 3.0, 6.0]))
    q = latent.grid_values(marg, 3, "quantile", (0.1, 0.9))
    torch.testing.assert_close(q[:, 0], torch.tensor([-1.2816, 0.0, 1.2816]), atol=1e-4, rtol=0)
    for bad in [dict(steps=1), dict(span="bogus"), dict(p_range=(0.5, 0.2))]:
        with pytest.raises(ConfigError):
            latent.grid_values(marg, **{"steps": 5, **bad})


# ----- interpolation ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=6, max_size=6), st.integers(3, 12))
def test_slerp_moves_at_constant_angular_speed(coords, steps):
    a, b = torch.tensor(coords[:3], dtype=torch.float64), torch.tensor(coords[3:], dtype=torch.float64)
    path = latent.latent_path(a, b, steps, "slerp")
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    na, nb = a.norm(), b.norm()
    if na < 1e-3 or nb < 1e-3:
        return
    cos = torch.clamp(torch.dot(a, b) / (na * nb), -1, 1)
    omega = torch.arccos(cos)
    if math.sin(omega) < 1e-3:
        return
    # the angle to a grows linearly in t, the norm goes linearly from |a| to |b|, and every point lies in the plane of a and b
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    torch.testing.assert_close(path.norm(dim=1), (1 - t) * na + t * nb)
    angles = torch.arccos(torch.clamp((path @ a) / (path.norm(dim=1).clamp_min(1e-12) * na), -1, 1))
    torch.testing.assert_close(angles, torch.linspace(0, 1, steps, dtype=torch.float64) * omega, atol=1e-5, rtol=0)
    normal = torch.linalg.cross(a, b)
    torch.testing.assert_close(path @ normal, torch.zeros(steps, dtype=torch.float64), atol=1e-6 * (1 + normal.norm().item() * 10), rtol=0)


def test_linear_path_is_evenly_spaced():
    a, b = torch.tensor([0.0, 1.0]), torch.tensor([4.0, -3.0])
    path = latent.latent_path(a, b, 5, "linear")
    torch.testing.assert_close(path[2], (a + b) / 2)
    steps = (path[1:] - path[:-1]).norm(dim=1)
    torch.testing.assert_close(steps, torch.full((4,), (b - a).norm().item() / 4))
    with pytest.raises(ConfigError):
        latent.latent_path(a, b, 5, "cubic")


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_decode_to_the_reconstructions(vae2, digits, method):
    xa, xb = digits.test.x[0], digits.test.x[3]
    result = latent.interpolate(vae2.model, xa, xb, steps=8, method=method)
    assert result.images.shape == (8, 1, 8, 8) and result.z.shape == (8, 2)
    rec = reconstruct(vae2.model, Dataset(torch.stack([xa, xb])))
    torch.testing.assert_close(result.images[0], rec[0])
    torch.testing.assert_close(result.images[-1], rec[1])
    # the path moves: each step changes the image a little, never a jump as big as the whole change
    diffs = (result.images[1:] - result.images[:-1]).abs().mean(dim=(1, 2, 3))
    total = (result.images[-1] - result.images[0]).abs().mean()
    assert (diffs > 0).all() and diffs.max() < total


# ----- traversal and manifold ----------------------------------------------------------------------


def test_traversal_varies_only_the_traversed_dimension_and_the_images_follow(vae4, digits):
    model = vae4.model
    base = latent.encode(model, Dataset(digits.test.x[:1]))[0]
    values = latent.grid_values(latent.marginals(model.prior()), 7)
    ranking = latent.rank_dims(model, Dataset(digits.test.x))
    result = latent.traverse(model, ranking.dims[:2], base, values)
    assert result.images.shape == (2, 7, 1, 8, 8) and result.values.shape == (2, 7)
    for row, d in enumerate(result.dims.tolist()):
        others = [k for k in range(4) if k != d]
        assert torch.equal(result.z[row][:, others], base[others].expand(7, -1))
        torch.testing.assert_close(result.z[row][:, d], values[:, d])
        # an informative dimension changes the picture from one end of its row to the other
        imgs = result.images[row]
        assert (imgs[0] - imgs[-1]).abs().mean() > 0.05
        assert ((imgs[1:] - imgs[:-1]).abs().mean(dim=(1, 2, 3)) > 1e-4).all()


def test_manifold_grid_layout_and_smoothness(vae2):
    model = vae2.model
    values = latent.grid_values(latent.marginals(model.prior()), 12)
    m = latent.manifold(model, (0, 1), torch.zeros(2), values)
    assert m.images.shape == (12, 12, 1, 8, 8)
    torch.testing.assert_close(m.z[0, :, 0], values[:, 0])  # columns: z0 increasing
    torch.testing.assert_close(m.z[:, 0, 1], values.flip(0)[:, 1])  # rows: z1 decreasing downwards
    assert m.y_values[0] > m.y_values[-1] and m.x_values[0] < m.x_values[-1]
    imgs = m.images.flatten(2)  # (n, n, D)
    right = (imgs[:, 1:] - imgs[:, :-1]).abs().mean(-1)
    down = (imgs[1:] - imgs[:-1]).abs().mean(-1)
    far = (imgs[:, -1] - imgs[:, 0]).abs().mean(-1).mean()
    # neighbours are close, the grid as a whole is not constant: it varies smoothly
    assert far > 0.05
    assert right.max() < far / 2 and down.max() < far / 2
    assert right.mean() < far / 4 and down.mean() < far / 4
    with pytest.raises(ConfigError):
        latent.manifold(model, (0, 0), torch.zeros(2), values)
    with pytest.raises(ConfigError, match="out of range"):
        latent.manifold(model, (0, 2), torch.zeros(2), values)


# ----- densities over codes, projection ----------------------------------------------------------


def test_gaussian_code_density_has_the_codes_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 3, generator=g) @ torch.tensor([[2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 0.1]]) + torch.tensor([1.0, -2.0, 0.5])
    d = latent.fit_code_density(codes, "gaussian")
    torch.testing.assert_close(d.mean, codes.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.covariance_matrix, torch.from_numpy(np.cov(codes.numpy().T)).float(), atol=1e-4, rtol=1e-4)


def test_mixture_code_density_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-5.0, 0.0], [5.0, 3.0]])
    codes = torch.cat([c + 0.3 * torch.randn(200, 2, generator=g) for c in centres])
    d = latent.fit_code_density(codes, "gmm", components=2, seed=0)
    found = d.component_distribution.mean[d.component_distribution.mean[:, 0].argsort()]
    torch.testing.assert_close(found, centres, atol=0.1, rtol=0)
    torch.manual_seed(0)
    z = d.sample((1000,))
    assert (z[:, 0].abs() > 3).float().mean() > 0.99  # samples stay in the clusters, not between them
    with pytest.raises(ConfigError):
        latent.fit_code_density(codes, "kde")


def test_projection_is_the_latent_itself_in_2d_and_pca_otherwise():
    g = torch.Generator().manual_seed(0)
    two = torch.randn(40, 2, generator=g)
    p = latent.project_2d(two)
    assert p.method == "latent" and np.allclose(p.xy, two.numpy())
    five = torch.randn(60, 5, generator=g) * torch.tensor([5.0, 0.1, 0.1, 0.1, 2.0])
    p = latent.project_2d(five)
    assert p.method == "pca" and p.xy.shape == (60, 2) and "PC1" in p.axes[0]
    assert p.xy[:, 0].var() >= p.xy[:, 1].var() > 0
    # PCA's first axis is (up to sign) the high-variance first coordinate
    assert abs(np.corrcoef(p.xy[:, 0], five[:, 0].numpy())[0, 1]) > 0.95
    one = latent.project_2d(torch.randn(10, 1, generator=g))
    assert one.xy.shape == (10, 2) and one.axes[0] == "z0"


def test_tsne_projection_is_seeded():
    g = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randn(30, 4, generator=g) + 6 * k for k in range(2)])
    a, b = latent.project_2d(codes, "tsne", seed=3), latent.project_2d(codes, "tsne", seed=3)
    assert a.method == "tsne" and np.allclose(a.xy, b.xy)
    # the two clusters stay apart
    gap = np.linalg.norm(a.xy[:30].mean(0) - a.xy[30:].mean(0))
    spread = max(a.xy[:30].std(0).max(), a.xy[30:].std(0).max())
    assert gap > 2 * spread


# ----- generation ------------------------------------------------------------------------------------


def test_temperature_scales_the_prior_and_fitted_densities():
    normal = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    assert torch.allclose(tempered(normal, 0.5).base_dist.scale, torch.full((3,), 0.5))
    mvn = MultivariateNormal(torch.zeros(2), covariance_matrix=torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    torch.testing.assert_close(tempered(mvn, 0.5).covariance_matrix, mvn.covariance_matrix / 4)
    mix = MixtureSameFamily(Categorical(probs=torch.tensor([0.5, 0.5])), Independent(Normal(torch.zeros(2, 2), torch.ones(2, 2)), 1))
    torch.testing.assert_close(tempered(mix, 2.0).component_distribution.base_dist.scale, torch.full((2, 2), 2.0))
    with pytest.raises(ConfigError):
        tempered(normal, 0)


def test_sample_uses_a_given_density_and_is_seeded(ae2, digits):
    model = ae2.model
    codes = latent.encode(model, Dataset(digits.train.x))
    density = latent.fit_code_density(codes, "gaussian")
    a = sample(model, 16, prior=density, seed=4)
    b = sample(model, 16, prior=density, seed=4)
    assert a.shape == (16, 1, 8, 8) and torch.equal(a, b)
    # the same draws decoded by hand
    with torch.random.fork_rng():
        torch.manual_seed(4)
        z = density.sample((16,))
    torch.testing.assert_close(a, model.decode(z).mean.detach())
    cold = sample(model, 16, prior=density, seed=4, temperature=0.1)
    mean_image = model.decode(density.mean.unsqueeze(0)).mean.detach()
    assert (cold - mean_image).abs().mean() < (a - mean_image).abs().mean()


def test_denoise_reports_mse_and_psnr_and_a_denoising_model_reduces_the_error(tmp_path_factory, digits):
    dae = tiny_run(tmp_path_factory, "dae")
    x = digits.test.x[:64]
    r = denoise(dae.model, Dataset(x), "gaussian", 0.3, seed=0)
    again = denoise(dae.model, Dataset(x), "gaussian", 0.3, seed=0)
    assert torch.equal(r.noisy, again.noisy)
    torch.testing.assert_close(r.mse_noisy, (r.noisy - x).pow(2).flatten(1).mean(1))
    torch.testing.assert_close(r.psnr_denoised, 10 * torch.log10(1 / r.mse_denoised))
    torch.testing.assert_close(r.denoised, reconstruct(dae.model, Dataset(r.noisy)))
    assert r.mse_denoised.mean() < 0.6 * r.mse_noisy.mean()
    assert psnr(torch.tensor(0.01)).item() == pytest.approx(20.0)
