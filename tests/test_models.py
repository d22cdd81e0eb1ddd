"""Closed forms against Monte Carlo, gradients through rsample, likelihoods against torch.distributions, shapes."""

import math
import re

import pytest
import torch
from torch.distributions import Bernoulli, ContinuousBernoulli, Independent, Normal, kl_divergence

from vaekit.config import ModelConfig
from vaekit.models import LIKELIHOODS, DiagonalNormal, PointMass, StandardNormalPrior, build_model
from vaekit.models.posteriors import GaussianPosterior
from vaekit.objectives import elbo, kl_to_prior


def test_closed_form_kl_is_the_seed_formula_and_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    q = DiagonalNormal(mu, logvar)
    p = StandardNormalPrior(4)(None)
    closed = kl_divergence(q, p)  # the registered (DiagonalNormal, StandardNormal) closed form
    seed_formula = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)
    torch.testing.assert_close(closed, seed_formula)
    generic = kl_divergence(Independent(Normal(mu, torch.exp(0.5 * logvar)), 1), Independent(Normal(torch.zeros(4), torch.ones(4)), 1))
    torch.testing.assert_close(closed, generic)  # torch's generic Normal-Normal KL agrees
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    stderr = (q.log_prob(z) - p.log_prob(z)).std(0) / math.sqrt(len(z))
    assert torch.all((mc - closed).abs() < 5 * stderr)


def test_monte_carlo_fallback_for_mixture_prior_is_unbiased():
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(input_shape=(6,), latent_dim=3, hidden=(8,), prior="mixture", prior_components=4, likelihood="gaussian")
    )
    q = model.encode(torch.randn(2, 6))
    p = model.prior()
    with pytest.raises(NotImplementedError):
        kl_divergence(q, p)
    z = q.sample((100_000,))
    exact_mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    estimates = torch.stack([kl_to_prior(q, p, q.rsample((1,))) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(estimates, exact_mc, atol=0.1, rtol=0.05)


def test_gradients_reach_encoder_mean_and_variance_through_the_sample():
    torch.manual_seed(0)
    head = GaussianPosterior(features=5, latent_dim=3)
    h = torch.randn(4, 5)
    z = head(h).rsample()
    (z**2).sum().backward()
    grad = head.params.weight.grad  # rows [:3] give the mean, rows [3:] the log-variance
    assert grad[:3].abs().sum() > 0
    assert grad[3:].abs().sum() > 0
    # d z / d mu = 1 exactly for the reparameterized sample
    mu = torch.zeros(3, requires_grad=True)
    Normal(mu, torch.ones(3)).rsample().sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(3))


def test_gradient_of_elbo_matches_finite_differences():
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_shape=(4,), latent_dim=2, hidden=(5,), likelihood="gaussian", activation="tanh")).double()
    x = torch.randn(3, 4, dtype=torch.float64)

    def loss():
        torch.manual_seed(1)
        return elbo(model, x).loss.sum()

    w, row = model.posterior.params.weight, 2  # rows 2 and 3 give the log-variance
    loss().backward()
    analytic = w.grad[row, 0].item()
    eps = 1e-6
    with torch.no_grad():
        w[row, 0] += eps
        up = loss().item()
        w[row, 0] -= 2 * eps
        down = loss().item()
        w[row, 0] += eps
    assert analytic == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("name", ["bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned", "gaussian-shared"])
def test_likelihood_log_prob_matches_torch_distributions(name):
    torch.manual_seed(0)
    shape = (1, 3, 2)
    head = LIKELIHOODS[name](shape, **({"scale": 0.7} if LIKELIHOODS[name].takes_scale else {}))
    params = torch.randn(5, head.params_per_output, *shape)
    x = torch.rand(5, *shape)
    if name == "bernoulli":
        x = x.round()
        ref = Bernoulli(logits=params[:, 0])
    elif name == "continuous-bernoulli":
        ref = ContinuousBernoulli(logits=params[:, 0])
    elif name == "gaussian":
        ref = Normal(params[:, 0], 0.7)
    elif name == "gaussian-learned":
        ref = Normal(params[:, 0], params[:, 1].exp())
    else:
        ref = Normal(params[:, 0], torch.full(shape, 0.7))
    dist = head(params)
    assert dist.batch_shape == (5,) and dist.event_shape == shape
    torch.testing.assert_close(dist.log_prob(x), ref.log_prob(x).sum((1, 2, 3)))
    torch.testing.assert_close(dist.mean, ref.mean.expand_as(dist.mean))


def test_all_registered_likelihoods_are_tested():
    """The continuous heads are checked above against torch.distributions; the discretised ones, whose
    probabilities are what the compressor codes with, in tests/test_compress.py; the categorical one over
    token sequences against a hand-written masked sum in tests/test_sequence_model.py."""
    continuous = {"bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned", "gaussian-shared"}
    assert set(LIKELIHOODS.names()) == continuous | {"beta-binomial", "discretized-logistic", "categorical"}


@pytest.mark.parametrize(
    "arch,shape,hidden",
    [
        ("mlp", (7,), (16, 8)),
        ("mlp", (1, 8, 8), (32,)),
        ("mlp", (3, 5, 6), (16, 16)),
        ("conv", (1, 28, 28), (8, 16)),
        ("conv", (3, 32, 32), (8, 16, 16)),
        ("conv", (1, 8, 8), (4, 8)),
        ("conv", (3, 7, 13), (4, 8)),
        ("conv", (2, 9, 9), (4,)),
    ],
)
@pytest.mark.parametrize("kind", ["vae", "ae"])
@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian-learned"])
def test_shapes(arch, shape, hidden, kind, likelihood):
    model = build_model(
        ModelConfig(
            kind=kind,
            arch=arch,
            input_shape=shape,
            hidden=hidden,
            latent_dim=3,
            likelihood=likelihood,
            conv_dense=12 if arch == "conv" else 0,
        )
    )
    x = torch.rand(4, *shape)
    q = model.encode(x)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    assert isinstance(q, PointMass) == (kind == "ae")
    px = model.decode(q.rsample())
    assert px.batch_shape == (4,) and px.event_shape == shape
    assert px.mean.shape == x.shape
    terms = elbo(model, x, n_samples=3)
    assert terms.loss.shape == terms.kl.shape == terms.reconstruction.shape == (4,)
    terms.loss.mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("prior"))


def test_autoencoder_has_no_kl_and_ignores_beta():
    model = build_model(ModelConfig(kind="ae", input_shape=(5,), hidden=(4,), likelihood="gaussian"))
    x = torch.randn(3, 5)
    a, b = elbo(model, x, beta=0.0), elbo(model, x, beta=10.0)
    assert torch.equal(a.kl, torch.zeros(3))
    torch.testing.assert_close(a.loss, b.loss)


def test_importance_weighted_bound_is_tighter_and_equals_elbo_for_one_sample():
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_shape=(10,), hidden=(16,), latent_dim=2, likelihood="bernoulli"))
    x = torch.rand(64, 10).round()
    torch.manual_seed(3)
    one = elbo(model, x, n_samples=1, iw=True)
    torch.manual_seed(3)
    q, p = model.encode(x), model.prior()
    z = q.rsample((1,))[0]
    single_sample_elbo = model.decode(z).log_prob(x) + p.log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(one.loss, -single_sample_elbo)
    with torch.no_grad():
        torch.manual_seed(4)
        elbo_avg = elbo(model, x, n_samples=500).loss.mean()
        iw = elbo(model, x, n_samples=500, iw=True).loss.mean()
    assert iw < elbo_avg  # -IW bound < -ELBO


def test_beta_weights_only_the_kl():
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_shape=(6,), hidden=(8,), latent_dim=2, likelihood="gaussian"))
    x = torch.randn(4, 6)
    torch.manual_seed(1)
    t1 = elbo(model, x, beta=1.0)
    torch.manual_seed(1)
    t4 = elbo(model, x, beta=4.0)
    torch.testing.assert_close(t4.loss - t1.loss, 3 * t1.kl)


@pytest.mark.parametrize("arch,likelihood", [("mlp", "bernoulli"), ("conv", "bernoulli"), ("mlp", "gaussian"), ("mlp", "gaussian-learned")])
def test_decoder_starts_at_the_data_mean(arch, likelihood):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, input_shape=(1, 8, 8), hidden=(8,), latent_dim=2, likelihood=likelihood))
    x = torch.rand(500, 1, 8, 8) * torch.linspace(0.1, 0.9, 8)  # a column-dependent mean
    model.init_output_bias(x)
    for layer in model.decoder.net:  # zero the last weights: the output is the bias alone
        last = layer
    with torch.no_grad():
        last.weight.zero_()
        mean = model.decode(torch.zeros(1, 2)).mean[0]
    if arch == "mlp":
        torch.testing.assert_close(mean, x.mean(0), atol=2e-3, rtol=0)
    else:  # one bias per channel: the spatial mean of the per-pixel start
        start = model.likelihood.output_params(x.mean(0), x.std(0))
        torch.testing.assert_close(last.bias, start.mean((-2, -1)).flatten())


@pytest.mark.parametrize("arch,kind", [("mlp", "vae"), ("conv", "vae"), ("mlp", "ae")])
def test_bf16_autocast_runs_the_networks_in_bf16_and_the_densities_in_fp32(arch, kind):
    """--precision bf16: matrix products in bfloat16, every distribution parameter and log-density
    in float32, gradients float32; the loss within bfloat16 rounding of the float32 one."""
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            kind=kind, arch=arch, input_shape=(1, 8, 8), hidden=(8, 16) if arch == "conv" else (32,), latent_dim=3, likelihood="bernoulli"
        )
    )
    x = (torch.rand(16, 1, 8, 8) < 0.4).float()
    seen = []
    hook = model.decoder.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    torch.manual_seed(1)
    full = elbo(model, x).loss
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = model.encode(x)
        px = model.decode(q.rsample())
        torch.manual_seed(1)
        half = elbo(model, x).loss
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16, torch.bfloat16]
    assert q.mean.dtype == px.mean.dtype == half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0.02, atol=0.05)
    half.mean().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_conv_parameter_names_are_stable_and_kernels_channels_last():
    """Parameter names are part of the model-file format (runs saved by earlier versions must load);
    the convolution kernels are channels-last, and so are the activations they produce."""
    model = build_model(ModelConfig(arch="conv", hidden=(4, 8), input_shape=(1, 8, 8), latent_dim=2, likelihood="bernoulli"))
    assert sorted(model.state_dict()) == [
        "decoder.net.0.bias",
        "decoder.net.0.weight",
        "decoder.net.3.bias",
        "decoder.net.3.weight",
        "decoder.net.5.bias",
        "decoder.net.5.weight",
        "encoder.net.0.bias",
        "encoder.net.0.weight",
        "encoder.net.2.bias",
        "encoder.net.2.weight",
        "posterior.params.bias",
        "posterior.params.weight",
        "prior_module.loc",
        "prior_module.scale",
    ]
    kernels = [p for p in model.parameters() if p.dim() == 4]
    assert len(kernels) == 4 and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert model.encoder.net[:2](torch.rand(3, 1, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_registries_name_every_part_and_refuse_unknown_names_with_the_choices():
    from vaekit.config import ModelConfig
    from vaekit.errors import ConfigError
    from vaekit.models import ACTIVATIONS, CONDITIONS, ENCODERS, POSTERIORS, PRIORS

    assert ENCODERS.names() == ["conv", "gated", "gru", "mlp", "resnet", "study-conv"] and POSTERIORS.names() == ["ae", "vae"]
    assert PRIORS.names() == ["conditional", "mixture", "normal", "vampprior"] and CONDITIONS.names() == ["columns", "label"]
    assert "identity" in ACTIVATIONS.names()
    for field, words in (
        ("prior", "unknown prior 'vamp'; choose one of conditional, mixture, normal, vampprior"),
        ("condition", "unknown condition 'vamp'; choose one of columns, label"),
        ("arch", "unknown architecture 'vamp'"),
        ("likelihood", "unknown likelihood 'vamp'"),
        ("kind", "unknown model kind 'vamp'; choose one of ae, m2, vae"),
        ("activation", "unknown activation 'vamp'"),
    ):
        config = ModelConfig(input_shape=(1, 8, 8))
        setattr(config, field, "vamp")
        with pytest.raises(ConfigError, match=re.escape(words)):
            build_model(config)


def test_a_new_part_is_one_registered_class(monkeypatch):
    """A prior added by registering one class is built from the config, gets the model when called and trains through elbo."""
    from torch.distributions import Independent, Normal

    from vaekit.config import ModelConfig
    from vaekit.models import PRIORS, Prior
    from vaekit.objectives import elbo

    class ShiftedPrior(Prior):
        def __init__(self, latent_dim: int):
            super().__init__()
            self.shift = torch.nn.Parameter(torch.full((latent_dim,), 0.5))

        @classmethod
        def from_config(cls, config):
            return cls(config.latent_dim)

        def forward(self, model):
            assert model.latent_dim == len(self.shift)  # the prior sees the model it belongs to
            return Independent(Normal(self.shift, torch.ones_like(self.shift)), 1)

    monkeypatch.setitem(PRIORS._entries, "shifted", ShiftedPrior)
    model = build_model(ModelConfig(input_shape=(1, 8, 8), latent_dim=3, prior="shifted"))
    assert isinstance(model.prior_module, ShiftedPrior)
    x = torch.rand(5, 1, 8, 8)
    elbo(model, x).loss.sum().backward()
    assert model.prior_module.shift.grad is not None and model.prior_module.shift.grad.abs().sum() > 0
