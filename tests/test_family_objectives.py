"""MIWAE, CIWAE and PIWAE (Rainforth et al. 2018) as arguments of the one elbo: against hand computations on the same draws;
the path-derivative gradient (stl, Roeder et al. 2017): zero at the true posterior, unbiased elsewhere."""

import math

import pytest
import torch
from test_cli_latent import one_line_error
from test_family_hierarchical import linear_gaussian_model

from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.data import load_data
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.objectives import elbo
from vaekit.objectives.estimate import free_bits_kl
from vaekit.runs import load
from vaekit.settings import check
from vaekit.training import train

from helpers import SMALL_RUN_FLAGS, small_config


@pytest.fixture(scope="module")
def model_and_x():
    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=2, hidden=(8,))), torch.rand(3, 1, 8, 8).round()


def log_weights(model, x, noise):
    """log p(x|z_s) + log p(z_s) − log q(z_s|x) at the fixed draws, (S, B)."""
    q = model.encode(x)
    z = q.mean + q.stddev * noise
    return model.decode(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)


def test_miwae_is_the_mean_of_the_groups_iw_bounds(model_and_x):
    model, x = model_and_x
    noise = torch.randn(6, 1, 2)
    with torch.no_grad():
        lw = log_weights(model, x, noise)  # (6, B)
        expected = ((torch.logsumexp(lw[:3], 0) - math.log(3)) + (torch.logsumexp(lw[3:], 0) - math.log(3))) / 2
        got = -elbo(model, x, iw=True, noise=noise, iw_groups=2, chunk=4).loss  # chunks straddle the groups
        torch.testing.assert_close(got, expected)
        iwae = -elbo(model, x, iw=True, noise=noise).loss
        torch.testing.assert_close(-elbo(model, x, iw=True, noise=noise, iw_groups=1).loss, iwae)
        torch.testing.assert_close(-elbo(model, x, iw=True, noise=noise, iw_groups=6).loss, lw.mean(0))  # M = S: the ELBO
        assert bool((got <= iwae + 1e-5).all())  # IWAE(6) >= MIWAE(2, 3)


def test_ciwae_mixes_the_elbo_and_the_iw_bound_over_the_same_samples(model_and_x):
    model, x = model_and_x
    noise = torch.randn(5, 1, 2)
    with torch.no_grad():
        lw = log_weights(model, x, noise)
        expected = 0.3 * lw.mean(0) + 0.7 * (torch.logsumexp(lw, 0) - math.log(5))
        torch.testing.assert_close(-elbo(model, x, iw=True, noise=noise, iw_elbo_mix=0.3).loss, expected)
        torch.testing.assert_close(-elbo(model, x, iw=True, noise=noise, iw_elbo_mix=1.0).loss, lw.mean(0))


def test_bad_variant_settings_are_refused(model_and_x):
    model, x = model_and_x
    with pytest.raises(ValueError, match="iw groups"):
        elbo(model, x, iw=True, n_samples=5, iw_groups=2)
    config = small_config(n_samples=6, objective="iw", iw_groups=4)
    with pytest.raises(ConfigError, match="iw groups"):
        check(config)
    with pytest.raises(ConfigError, match="iw elbo mix"):
        check(small_config(n_samples=6, objective="iw", iw_elbo_mix=1.5))


def test_miwae_trains_and_validates_on_its_own_bound():
    config = small_config(epochs=2, n_samples=4, objective="iw", iw_groups=2, iw_elbo_mix=0.2, threads=1)
    run = train(config, None, data=load_data("digits"))
    rows = run.metrics()
    assert rows[-1]["valid_loss"] < rows[0]["valid_loss"]
    assert rows[-1]["valid_loss"] <= rows[-1]["valid_neg_elbo"] + 1.0  # the bound sits between the ELBO and IWAE


def test_piwae_gives_the_decoder_the_iwae_gradient_and_the_encoder_the_miwae_gradient():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3, hidden=(16,)))
    x = torch.rand(5, 1, 8, 8).bernoulli()
    noise = torch.randn(12, 5, 3)  # S = 12 = M 3 x K 4

    def grads(**objective):
        model.zero_grad()
        terms = elbo(model, x, noise=noise, iw=True, **objective)
        terms.loss.sum().backward()
        enc = [p.grad.clone() for p in [*model.encoder.parameters(), *model.posterior.parameters()]]
        dec = [p.grad.clone() for p in model.decoder.parameters()]
        return terms.loss.detach(), enc, dec

    piwae, enc_p, dec_p = grads(iw_groups=3, piwae=True, chunk=5)  # chunks that cut across the groups
    iwae, _, dec_i = grads()
    _, enc_m, _ = grads(iw_groups=3)
    torch.testing.assert_close(piwae, iwae)  # the value is the IWAE bound
    for a, b in zip(dec_p, dec_i):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(enc_p, enc_m):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(dec_p, grads(iw_groups=3)[2]))  # and the routes do differ


def test_piwae_trains_from_the_command_line_and_needs_iw_samples(tmp_path, capsys):
    out = tmp_path / "piwae"
    assert main(["train", *SMALL_RUN_FLAGS, "--iw-samples", "6", "--iw-groups", "3", "--piwae", "--out", str(out)]) == 0
    run = load(out)
    assert run.config.train.piwae and run.config.train.iw_groups == 3
    rows = run.metrics()
    assert float(rows[-1]["valid_loss"]) < float(rows[0]["valid_loss"])  # it learns; the validation loss is the IW bound
    one_line_error(capsys, main(["train", *SMALL_RUN_FLAGS, "--piwae", "--out", str(tmp_path / "x")]), "piwae", "iw-samples")


def stl_gradients(model, x, n_samples: int, stl: bool, seed: int = 0):
    """The loss (B,) and the gradients of its sum for the posterior's and the generative side's parameters."""
    torch.manual_seed(seed)
    loss = elbo(model, x, n_samples=n_samples, stl=stl).loss
    inference = [*model.encoder.parameters(), *model.posterior.parameters()]
    generative = [*model.decoder.parameters(), *model.prior_module.parameters()]
    grads = torch.autograd.grad(loss.sum(), inference + generative, allow_unused=True)
    flat = [torch.zeros_like(p).flatten() if g is None else g.flatten() for p, g in zip(inference + generative, grads)]
    return loss.detach(), torch.cat(flat[: len(inference)]), torch.cat(flat[len(inference) :])


@pytest.mark.parametrize("n_samples", [1, 3])  # the one-draw training path and the general one
def test_stl_gradient_of_the_posterior_vanishes_where_it_is_the_true_one(n_samples):
    """log p(x, z) − log q(z|x) = log p(x) for every z when q is p(z|x): the path derivative of a
    single draw is zero, the full gradient's score term is not (a two-layer linear-Gaussian model,
    where q(z_1|x, z_2)'s parameters depend on z_2, so the path through z_2 must be kept)."""
    model, marginal = linear_gaussian_model()
    x = marginal.sample((6,)) * 1.5
    loss, enc, _ = stl_gradients(model, x, n_samples, stl=True)
    plain_loss, plain_enc, _ = stl_gradients(model, x, n_samples, stl=False)
    torch.testing.assert_close(loss, plain_loss)  # the same draws, the same values
    torch.testing.assert_close(loss, -marginal.log_prob(x), rtol=0, atol=1e-6)
    assert float(enc.abs().max()) < 1e-5
    assert float(plain_enc.abs().max()) > 0.5


def test_stl_gradient_is_unbiased_and_leaves_the_generative_gradient_alone():
    model, marginal = linear_gaussian_model()
    x = marginal.sample((6,)) * 1.5
    with torch.no_grad():  # a posterior away from the true one
        model.posterior.nets[1].params.bias[1] += 1.0
        model.posterior.nets[0].head.params.weight[0, 0] += 0.5
    loss, enc, gen = stl_gradients(model, x, 50_000, stl=True)
    plain_loss, plain_enc, plain_gen = stl_gradients(model, x, 50_000, stl=False)
    torch.testing.assert_close(loss, plain_loss)
    torch.testing.assert_close(gen, plain_gen)  # only log q's parameters lose their term
    assert float(plain_enc.abs().max()) > 50
    torch.testing.assert_close(enc, plain_enc, rtol=0.01, atol=0.1)  # the same expectation, to within Monte Carlo error


def test_stl_trains_from_the_command_line_and_needs_a_gaussian_elbo(model_and_x, tmp_path, capsys):
    out = tmp_path / "stl"
    flags = [*SMALL_RUN_FLAGS, "--latent-dim", "3", "2", "--prior", "vampprior", "--prior-components", "5", "--samples", "2"]
    assert main(["train", *flags, "--stl", "--out", str(out)]) == 0
    run = load(out)
    assert run.config.train.stl
    rows = run.metrics()
    assert float(rows[-1]["valid_loss"]) < float(rows[0]["valid_loss"])
    for wrong in (["--iw-samples", "4"], ["--flow", "iaf"], ["--model", "ae"]):
        one_line_error(capsys, main(["train", *SMALL_RUN_FLAGS, "--stl", *wrong, "--out", str(tmp_path / "x")]), "stl")
    model, x = model_and_x
    with pytest.raises(ValueError, match="stl"):
        elbo(model, x, iw=True, n_samples=2, stl=True)


def test_free_bits_count_each_dimension_as_at_least_its_nats_and_push_only_the_others():
    torch.manual_seed(0)
    model, x = build_model(ModelConfig(latent_dim=4, hidden=(8,))), torch.rand(16, 1, 8, 8).round()
    with torch.no_grad():
        q = model.encode(x)
    by_hand = 0.5 * (q.mean**2 + q.variance - 1 - q.variance.log())  # (B, L): KL(N(μ, σ²) ‖ N(0, 1)) per dimension
    means = by_hand.mean(0)  # (L,)
    nats = float(means.sort().values[1:3].mean())  # two dimensions below it, two above

    def terms(free_bits, **draws):
        torch.manual_seed(1)  # the same fresh draw for both
        return elbo(model, x, free_bits=free_bits, **draws)

    for draws in ({}, {"noise": torch.randn(2, 16, 4)}):  # the training step's one fresh draw, and fixed draws
        plain, freed = terms(0.0, **draws), terms(nats, **draws)
        torch.testing.assert_close(freed.kl, plain.kl)  # the reported KL and bound stay the true ones
        torch.testing.assert_close(freed.reconstruction, plain.reconstruction)
        penalty = (freed.loss + freed.reconstruction).mean()
        torch.testing.assert_close(penalty, means.clamp_min(nats).sum())  # Σ_j max(nats, mean_b KL_bj)
    # the dimensions below the floor get no gradient from the KL; the others the plain one
    mu = q.mean.detach().requires_grad_()
    per_dimension = 0.5 * (mu**2 + q.variance.detach() - 1 - q.variance.detach().log())
    (grad,) = torch.autograd.grad(free_bits_kl(per_dimension, nats).sum(), mu)
    below = means < nats
    assert int(below.sum()) == 2
    assert float(grad[:, below].abs().max()) == 0.0
    torch.testing.assert_close(grad[:, ~below], q.mean[:, ~below])  # d/dμ of μ²/2


def test_free_bits_train_from_the_command_line_and_need_a_gaussian_elbo(tmp_path, capsys):
    out = tmp_path / "free-bits"
    assert main(["train", *SMALL_RUN_FLAGS, "--free-bits", "0.5", "--out", str(out)]) == 0
    run = load(out)
    assert run.config.train.free_bits == 0.5
    rows = run.metrics()
    assert float(rows[-1]["valid_loss"]) < float(rows[0]["valid_loss"])
    for wrong, words in (
        (["--flow", "iaf"], ["free-bits", "flow"]),
        (["--prior", "vampprior"], ["free-bits", "prior"]),
        (["--stl"], ["free-bits", "stl"]),
        (["--model", "ae"], ["free-bits", "no effect"]),
        (["--iw-samples", "4"], ["free-bits", "no effect"]),
    ):
        one_line_error(capsys, main(["train", *SMALL_RUN_FLAGS, "--free-bits", "0.5", *wrong, "--out", str(tmp_path / "x")]), *words)
    one_line_error(capsys, main(["train", *SMALL_RUN_FLAGS, "--free-bits", "-1", "--out", str(tmp_path / "x")]), "free bits")
