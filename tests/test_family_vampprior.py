"""The VampPrior: its mixture density by hand, gradients through the prior term, training, save/load, latent views."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.distributions import Normal

import vaekit
from vaekit import latent
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.data import Dataset, load_data
from vaekit.errors import ConfigError
from vaekit.evaluation import iw_log_likelihood
from vaekit.generation import sample
from vaekit.models import DiagonalGaussianMixture, VampPrior, build_model
from vaekit.objectives import elbo
from vaekit.report import RunViews
from vaekit.training import train

from helpers import small_config


def vamp_config(**fields) -> ModelConfig:
    return ModelConfig(**{"latent_dim": 3, "hidden": (16,), "prior": "vampprior", "prior_components": 5, **fields})


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_log_prob_is_the_uniform_mixture_of_the_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    model = build_model(vamp_config())
    p = model.prior()
    u = model.prior_module.pseudo_inputs()  # (K, 1, 8, 8)
    assert u.shape == (5, 1, 8, 8) and bool(((u >= 0) & (u <= 1)).all())
    q = model.encode(u)
    z = torch.randn(7, 2, 3)
    by_hand = torch.stack([Normal(q.mean[k], q.stddev[k]).log_prob(z).sum(-1) for k in range(5)])  # (K, 7, 2)
    expected = torch.logsumexp(by_hand, 0) - math.log(5)
    torch.testing.assert_close(p.log_prob(z), expected, rtol=1e-5, atol=1e-5)
    assert p.batch_shape == () and p.event_shape == (3,)
    assert p.sample((4,)).shape == (4, 3)


def test_fast_log_prob_matches_torch_mixture_even_for_narrow_components():
    torch.manual_seed(0)
    loc, logvar = torch.randn(50, 4), torch.empty(50, 4).uniform_(-12, 2)
    p = DiagonalGaussianMixture(loc, logvar)
    z = torch.cat([loc[:10] + 1e-3 * torch.randn(10, 4), 3 * torch.randn(20, 4)])  # near narrow components and far away
    generic = torch.distributions.MixtureSameFamily(p.mixture_distribution, p.component_distribution)
    torch.testing.assert_close(p.log_prob(z), generic.log_prob(z), rtol=1e-5, atol=1e-4)


def test_gradient_reaches_pseudo_inputs_and_encoder_through_the_prior_term():
    torch.manual_seed(0)
    model = build_model(vamp_config())
    z = torch.randn(6, 3)
    model.prior().log_prob(z).sum().backward()
    assert model.prior_module.pseudo_weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.posterior.params.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.decoder.parameters())  # the prior never runs the decoder
    model.zero_grad()
    elbo(model, torch.rand(4, 1, 8, 8).round()).loss.sum().backward()  # the Monte Carlo KL term carries it too
    assert model.prior_module.pseudo_weight.grad.abs().sum() > 0


def test_vampprior_needs_a_gaussian_posterior():
    with pytest.raises(ConfigError, match="vampprior"):
        build_model(vamp_config(kind="ae"))


def test_real_valued_data_keeps_unclipped_pseudo_inputs():
    model = build_model(vamp_config(input_shape=(6,), likelihood="gaussian"))
    assert not model.prior_module.unit_range
    assert model.prior().log_prob(torch.zeros(2, 3)).shape == (2,)


def test_tiny_vampprior_model_trains_saves_loads_and_serves_the_latent_views(tmp_path, digits):
    config = small_config(epochs=4, latent_dim=3, threads=1)
    config.model.prior, config.model.prior_components = "vampprior", 20
    run = train(config, tmp_path / "run", data=digits)
    rows = run.metrics()
    assert rows[-1]["valid_neg_elbo"] < rows[0]["valid_neg_elbo"]
    assert all(math.isfinite(r["valid_kl"]) for r in rows)

    again = vaekit.load(tmp_path / "run")
    assert isinstance(again.model.prior_module, VampPrior)
    x = digits.test.x[:20]
    with torch.no_grad():
        torch.testing.assert_close(again.model.prior().log_prob(torch.zeros(3)), run.model.prior().log_prob(torch.zeros(3)), rtol=0, atol=0)
    log_px = iw_log_likelihood(again.model, Dataset(x), k=50)
    terms = elbo(again.model, x, n_samples=50)
    assert bool((log_px >= -terms.neg_elbo - 1.0).all())  # the IW bound sits above the ELBO (up to noise)

    marg = latent.marginals(again.model.prior())  # batch (L,): per-dimension mixtures of the 20 components
    assert marg.batch_shape == (3,)
    values = latent.grid_values(marg, 5)
    assert values.shape == (5, 3) and bool(torch.isfinite(values).all())
    assert latent.kl_per_dim(again.model, Dataset(x)).shape == (3,)
    assert sample(again.model, 4, temperature=0.5).shape == (4, 1, 8, 8)

    out = tmp_path / "pseudo.png"
    assert main(["pseudo-inputs", str(tmp_path / "run"), "-n", "20", "-o", str(out)]) == 0
    picture = np.asarray(Image.open(out).convert("L")).astype(float)
    assert picture.shape[0] >= 2 * 8 and picture.std() > 10  # pseudo-inputs above their decodings, not blank
    view = RunViews(again).pseudo_inputs(20)
    u = again.model.prior_module.pseudo_inputs()[:20].detach()
    torch.testing.assert_close(view.result, u)  # the view shows the prior's own pseudo-inputs
    assert bool(((u >= 0) & (u <= 1)).all()) and u.std() > 0.01  # hardtanh-clipped and learned, not the flat start
    assert main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "report.html")]) == 0
    assert "VampPrior pseudo-inputs" in (tmp_path / "report.html").read_text()


def test_pseudo_inputs_need_a_vampprior(tmp_path, capsys):
    config = small_config(epochs=1, latent_dim=2, threads=1)
    train(config, tmp_path / "run", data=load_data("digits"))
    capsys.readouterr()
    assert main(["pseudo-inputs", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pseudo-inputs" in err[0] and "'normal'" in err[0]
