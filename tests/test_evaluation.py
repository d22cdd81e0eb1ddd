"""Evaluation: the importance-weighted estimate against an exact log-likelihood, chunking and seeds,
latent diagnostics, the PCA baseline, the IWAE objective, and ``vaekit evaluate`` end to end."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from vaekit.baselines import PCABaseline, compare_reconstruction
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.data import Dataset, load_data
from vaekit.errors import ConfigError
from vaekit.evaluation import (
    collapse_message,
    elbo_terms,
    example_scores,
    iw_log_likelihood,
    latent_diagnostics,
    posterior_collapse_warning,
    summarize_log_likelihood,
)
from vaekit.latent import kl_per_dim
from vaekit.models import PosteriorHead, build_model
from vaekit.objectives import ELBO, elbo
from vaekit.runs import load

from helpers import SMALL_RUN_FLAGS

D, L, SIGMA = 5, 2, 0.5


class LinearGaussianHead(PosteriorHead):
    """A posterior head set by hand: q(z|x) = N(gain h + bias, diag exp(logvar)), logvar fixed."""

    def __init__(self, gain: torch.Tensor, bias: torch.Tensor, logvar: torch.Tensor):
        super().__init__()
        self.sizes = (gain.shape[0],)
        self.mean = nn.Linear(gain.shape[1], gain.shape[0])
        with torch.no_grad():
            self.mean.weight.copy_(gain), self.mean.bias.copy_(bias)
        self.register_buffer("logvar", logvar)

    def forward(self, h: torch.Tensor):
        mu = self.mean(h)  # (B, L)
        return Independent(Normal(mu, torch.exp(0.5 * self.logvar).expand_as(mu)), 1)


def linear_gaussian(exact_posterior: bool = True):
    """z ~ N(0, I), x | z ~ N(W z + b, σ² I) with orthogonal columns of W, so the true posterior is a
    diagonal Gaussian the encoder can represent; returns the model and the exact marginal p(x)."""
    torch.manual_seed(0)
    config = ModelConfig(input_shape=(D,), latent_dim=L, hidden=(), activation="identity", likelihood="gaussian", likelihood_scale=SIGMA)
    model = build_model(config)
    q_, _ = torch.linalg.qr(torch.randn(D, D))
    w = q_[:, :L] * torch.tensor([1.5, 0.7])  # (D, L), orthogonal columns
    b = torch.randn(D)
    post_var = 1.0 / (1.0 + (w * w).sum(0) / SIGMA**2)  # (L,) diagonal because W^T W is
    gain = post_var[:, None] * w.T / SIGMA**2  # (L, D): E[z|x] = gain (x - b)
    with torch.no_grad():
        dec = model.decoder.net[0]
        dec.weight.copy_(w), dec.bias.copy_(b)
    shift, narrow = (0.0, 0.0) if exact_posterior else (0.3, 1.0)  # a worse proposal: shifted mean, too narrow
    model.posterior = LinearGaussianHead(gain, -gain @ b + shift, post_var.log() - narrow)
    exact = MultivariateNormal(b, w @ w.T + SIGMA**2 * torch.eye(D))
    return model, exact


def test_iw_estimate_is_exact_when_q_is_the_true_posterior():
    model, exact = linear_gaussian(exact_posterior=True)
    x = exact.sample((50,))
    for k in (1, 7):  # every importance weight equals p(x): no variance at all
        torch.testing.assert_close(iw_log_likelihood(model, Dataset(x), k=k), exact.log_prob(x), atol=1e-4, rtol=1e-5)


def test_iw_estimate_rises_with_k_towards_the_exact_log_likelihood():
    model, exact = linear_gaussian(exact_posterior=False)
    x = exact.sample((200,))
    truth = exact.log_prob(x).mean().item()
    means = [iw_log_likelihood(model, Dataset(x), k=k, seed=1).mean().item() for k in (1, 10, 100, 2000)]
    assert all(b > a for a, b in zip(means, means[1:])), means
    assert means[0] < truth - 0.5  # the ELBO is well below
    assert abs(means[-1] - truth) < 0.02 * abs(truth) + 0.05
    elbo = -elbo_terms(model, Dataset(x), seed=1).neg_elbo.mean().item()
    assert means[0] == pytest.approx(elbo, abs=0.3)  # K = 1 is the single-sample ELBO (MC vs closed-form KL)


def test_iw_chunks_bound_decoder_rows_and_do_not_change_the_estimate():
    model, exact = linear_gaussian(exact_posterior=False)
    x = exact.sample((37,))
    rows = []
    decode = model.decode
    model.decode = lambda z: (rows.append(z.shape[:-1].numel()), decode(z))[1]  # rows the decoder sees
    done = []
    small = iw_log_likelihood(model, Dataset(x), k=50, batch_size=8, max_rows=64, common_noise=True, progress=done.append)
    assert max(rows) <= 64
    assert done == [8, 16, 24, 32, 37]
    rows.clear()
    whole = iw_log_likelihood(model, Dataset(x), k=50, batch_size=37, max_rows=10_000, common_noise=True)
    assert rows == [37 * 50]
    torch.testing.assert_close(small, whole, atol=1e-5, rtol=1e-5)
    # independent draws: chunking changes the draws, not the estimate beyond Monte Carlo noise
    a = iw_log_likelihood(model, Dataset(x), k=200, max_rows=100, batch_size=10).mean()
    b = iw_log_likelihood(model, Dataset(x), k=200, max_rows=100_000).mean()
    assert abs(a - b) < 0.05


def test_iw_is_reproducible_and_leaves_the_global_rng_alone():
    model, exact = linear_gaussian(exact_posterior=False)
    x = exact.sample((20,))
    state = torch.get_rng_state()
    a = iw_log_likelihood(model, Dataset(x), k=10, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a, iw_log_likelihood(model, Dataset(x), k=10, seed=3), rtol=0, atol=0)
    assert not torch.equal(a, iw_log_likelihood(model, Dataset(x), k=10, seed=4))
    # common noise: an example's estimate does not depend on the rows scored with it
    full = iw_log_likelihood(model, Dataset(x), k=10, common_noise=True)
    part = iw_log_likelihood(model, Dataset(x[5:9]), k=10, common_noise=True)
    torch.testing.assert_close(full[5:9], part)


def test_iw_summary_and_refusals():
    s = summarize_log_likelihood(torch.tensor([-10.0, -12.0]), dims=4)
    assert s["nll"] == 11.0 and s["nll_stderr"] == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert s["bits_per_dim"] == pytest.approx(11 / (4 * math.log(2)))
    ae = build_model(ModelConfig(kind="ae", input_shape=(D,), latent_dim=L, hidden=(8,), likelihood="gaussian"))
    with pytest.raises(ConfigError, match="autoencoder"):
        iw_log_likelihood(ae, Dataset(torch.randn(3, D)), k=5)


def test_example_scores_at_the_mean_and_at_fixed_draws():
    model, exact = linear_gaussian(exact_posterior=False)
    x = exact.sample((30,))
    at_mean = example_scores(model, Dataset(x), samples=0)
    q = model.encode(x)
    px = model.decode(q.mean)
    torch.testing.assert_close(at_mean.squared_error, (x - px.mean).pow(2).sum(1))
    torch.testing.assert_close(at_mean.neg_elbo, elbo_terms(model, Dataset(x)).kl - px.log_prob(x))
    drawn = example_scores(model, Dataset(x), samples=500, seed=0)
    mc = elbo_terms(model, Dataset(x), objective=ELBO(n_samples=500), seed=0).neg_elbo
    assert (drawn.neg_elbo - mc).abs().mean() < 0.1
    torch.testing.assert_close(
        example_scores(model, Dataset(x[:7]), samples=5).neg_elbo, example_scores(model, Dataset(x), samples=5).neg_elbo[:7]
    )


# ----- latent diagnostics -----------------------------------------------------------------
def small_vae(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(input_shape=(6,), latent_dim=4, hidden=(16,), likelihood="gaussian", **kw))


def test_active_units_and_kl_per_dimension():
    model = small_vae()
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0])  # unit 1 ignores x: its posterior mean is constant
    model.posterior.register_forward_hook(lambda _, __, q: Independent(Normal(q.mean * mask, q.stddev), 1))
    x = torch.randn(500, 6) * 3
    diag = latent_diagnostics(model, Dataset(x), batch_size=128)
    means = model.encode(x).mean.double()
    torch.testing.assert_close(diag.activity, means.var(0, unbiased=False))
    assert not diag.active[1] and diag.n_active == int((diag.activity > 0.01).sum())
    torch.testing.assert_close(diag.kl_per_dim.sum(), elbo_terms(model, Dataset(x)).kl.double().mean(), rtol=1e-5, atol=1e-5)
    assert diag.to_dict()["active_units"] == diag.n_active
    mixture = small_vae(prior="mixture", prior_components=3)  # one definition of the KL per unit, also without a closed form
    torch.testing.assert_close(latent_diagnostics(mixture, Dataset(x)).kl_per_dim, kl_per_dim(mixture, Dataset(x)).double())


def test_posterior_collapse_warning():
    model = small_vae()
    x = torch.randn(200, 6) * 3
    assert posterior_collapse_warning(model, Dataset(x)) is None
    with torch.no_grad():  # q(z|x) = N(0, I) = p(z) for every x: the posterior has collapsed
        for p in model.posterior.parameters():
            p.zero_()
    message = posterior_collapse_warning(model, Dataset(x))
    assert message.startswith("posterior collapse") and "none of the 4" in message
    wide = latent_diagnostics(small_vae(), Dataset(x))
    wide.activity = torch.tensor([0.5] + [0.0] * 19, dtype=torch.float64)  # 1 of 20 active
    assert "only 1 of 20" in collapse_message(wide)
    ae = build_model(ModelConfig(kind="ae", input_shape=(6,), latent_dim=2, hidden=(8,), likelihood="gaussian"))
    assert posterior_collapse_warning(ae, Dataset(x)) is None


# ----- PCA baseline ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_pca_matches_scikit_learn(digits, monkeypatch):
    from sklearn.decomposition import PCA

    x = digits.train.x.flatten(1).numpy().astype(np.float64)
    ref = PCA(7).fit(x)
    pca = PCABaseline.fit(digits.train.x, 7)
    test = digits.test.x
    ref_err = ((test.flatten(1).numpy() - ref.inverse_transform(ref.transform(test.flatten(1).numpy()))) ** 2).sum(1)
    np.testing.assert_allclose(pca.squared_error(test).numpy(), ref_err, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pca.explained_variance.numpy(), ref.explained_variance_, rtol=1e-4)
    assert pca.reconstruct(test).shape == test.shape
    monkeypatch.setattr("vaekit.baselines.EIGH_MAX_DIMS", 10)  # the randomized-SVD path
    approx = PCABaseline.fit(digits.train.x, 7)
    assert approx.squared_error(test).mean().item() == pytest.approx(pca.squared_error(test).mean().item(), rel=1e-3)
    with pytest.raises(ConfigError):
        PCABaseline.fit(digits.train.x, 65)


def test_linear_autoencoder_trained_on_squared_error_reaches_pca(digits):
    """Baldi & Hornik (1989): a linear autoencoder's optimum spans the principal subspace, so its
    squared reconstruction error reaches PCA's with as many components. Trained on the project's
    objective (a plain AE with a fixed-scale Gaussian: -log p(x|z) = ½ squared error + const),
    full batch with L-BFGS so the test converges in seconds."""
    torch.manual_seed(0)
    config = ModelConfig(kind="ae", input_shape=(1, 8, 8), latent_dim=5, hidden=(), activation="identity", likelihood="gaussian")
    model = build_model(config)
    x = digits.train.x
    opt = torch.optim.LBFGS(
        model.parameters(), max_iter=120, history_size=50, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12
    )

    def closure():
        opt.zero_grad()
        loss = elbo(model, x).loss.mean()
        loss.backward()
        return loss

    opt.step(closure)
    on_train = compare_reconstruction(model, x, Dataset(x))
    assert on_train["components"] == 5
    assert 0.999 < on_train["ratio"] < 1.03, on_train  # PCA is optimal on its own training data
    on_test = compare_reconstruction(model, x, Dataset(digits.test.x))
    assert on_test["ratio"] < 1.05, on_test


# ----- IWAE training and the evaluate command ---------------------------------------------------
@pytest.fixture(scope="module")
def iwae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("iwae") / "run"
    code = main(["train", *SMALL_RUN_FLAGS, "--iw-samples", "5", "--out", str(out)])
    assert code == 0
    return out


def test_iwae_objective_trains_on_the_importance_weighted_bound(iwae_run):
    config = json.loads((iwae_run / "config.json").read_text())
    assert config["train"]["objective"] == "iw" and config["train"]["n_samples"] == 5
    m = load(iwae_run).metrics()
    assert m[-1]["train_loss"] < m[0]["train_loss"] - 1  # -IW bound goes down
    assert m[-1]["train_loss"] < m[-1]["train_neg_elbo"]  # the K = 5 bound is tighter than the ELBO
    assert m[-1]["valid_neg_elbo"] < m[0]["valid_neg_elbo"]


def test_evaluate_reports_iw_nll_latent_units_and_pca(iwae_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(iwae_run), "--iw-samples", "200", "--iw-rows", "500", "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "IW-NLL (K=200)" in printed and "active units" in printed and "PCA with 4 components" in printed
    r = json.loads(out.read_text())
    assert r["iw"]["k"] == 200 and r["iw"]["examples"] == r["examples"]
    assert r["iw"]["nll"] < r["neg_elbo"]
    assert r["iw"]["bits_per_dim"] is None  # a bernoulli likelihood of grey digits: -log p(x) is no code length
    assert r["iw"]["nll_stderr"] > 0
    assert len(r["latent"]["kl_per_dim"]) == 4 and sum(r["latent"]["kl_per_dim"]) == pytest.approx(r["kl"], rel=1e-4)
    assert 1 <= r["latent"]["active_units"] <= 4
    assert r["pca"]["components"] == 4 and r["pca"]["pca_squared_error"] > 0


def test_evaluate_warns_on_posterior_collapse(tmp_path, capsys, caplog):
    out = tmp_path / "collapsed"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--beta",
                "200",
                "--epochs",
                "2",
                "--latent-dim",
                "3",
                "--hidden",
                "32",
                "--batch-size",
                "64",
                "--lr",
                "1e-2",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    caplog.clear()
    assert main(["evaluate", str(out), "--no-pca", "--json", str(tmp_path / "e.json")]) == 0
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["latent"]["active_units"] == 0 and "pca" not in r
    assert "posterior collapse" in r["warning"]
    assert any("posterior collapse" in rec.getMessage() for rec in caplog.records)


def test_evaluate_iw_on_an_autoencoder_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "ae"
    assert main(["train", "--dataset", "digits", "--model", "ae", "--epochs", "1", "--hidden", "32", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--iw-samples", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error:") and "VAE" in err[0]
