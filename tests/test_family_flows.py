"""Flow posteriors (IAF, planar): Jacobians against autograd, log-densities by change of variables,
invertibility, autoregressive structure, and a tiny model that trains and is scored."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import Independent, Normal

from vaekit import latent
from vaekit.config import ModelConfig
from vaekit.data import Dataset, load_data
from vaekit.errors import ConfigError
from vaekit.evaluation import example_scores, iw_log_likelihood, latent_diagnostics
from vaekit.models import FLOWS, FlowDistribution, build_model
from vaekit.models.flows import IAFStep, PlanarStep
from vaekit.objectives import elbo
from vaekit.training import train

from helpers import small_config

L, F = 3, 5


def step_transform(cls, index=0, seed=0):
    torch.manual_seed(seed)
    step = cls.build(F, L, index)
    with torch.no_grad():  # move away from the near-identity start so the test sees a real map
        for p in step.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return step, torch.randn(1, F)


@pytest.mark.parametrize("cls,index", [(IAFStep, 0), (IAFStep, 1), (PlanarStep, 0)])
def test_log_abs_det_jacobian_matches_autograd(cls, index):
    step, h = step_transform(cls, index)
    t = step.transform(h)
    for _ in range(3):
        z = torch.randn(1, L)
        jac = jacobian(lambda v: t._call(v.view(1, L)).view(L), z.view(L))  # (L, L)
        expected = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(t.log_abs_det_jacobian(z, t._call(z))[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("index", [0, 1])
def test_iaf_jacobian_is_triangular_in_the_steps_order(index):
    step, h = step_transform(IAFStep, index)
    t = step.transform(h)
    jac = jacobian(lambda v: t._call(v.view(1, L)).view(L), torch.randn(L))
    order = step.order  # output d depends only on inputs of lower degree (and itself)
    for i in range(L):
        for j in range(L):
            if order[j] > order[i]:
                assert jac[i, j] == 0


def test_iaf_is_invertible():
    step, h = step_transform(IAFStep, 1)
    t = step.transform(h)
    z = torch.randn(4, 1, L)
    torch.testing.assert_close(t._inverse(t._call(z)), z, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["iaf", "planar"])
def test_log_prob_of_samples_is_the_change_of_variables(name):
    torch.manual_seed(0)
    steps = [FLOWS[name].build(F, L, i) for i in range(3)]
    h = torch.randn(2, F)
    base = Independent(Normal(torch.randn(2, L), torch.rand(2, L) + 0.5), 1)
    q = FlowDistribution(base, [s.transform(h) for s in steps])
    z = q.rsample((4,))  # (4, 2, L)
    eps = torch.randn(5, 2, L)
    x = base.mean + base.stddev * eps  # base draws; log q(z) = log q0(x) - Σ_t log|det J_t| along the path, J_t by autograd
    log_q = base.log_prob(x)
    y = x
    for t in [s.transform(h) for s in steps]:
        fn = t._call
        for s in range(5):
            for b in range(2):
                jac = jacobian(lambda v, b=b, fn=fn: fn(v.view(1, L).expand(2, L))[b], y[s, b].detach())
                log_q[s, b] = log_q[s, b] - torch.linalg.slogdet(jac).logabsdet
        y = fn(y)
    q2 = FlowDistribution(base, [s.transform(h) for s in steps])
    z2 = q2.from_standard_normal(eps)
    torch.testing.assert_close(z2, y)
    torch.testing.assert_close(q2.log_prob(z2), log_q, rtol=1e-4, atol=1e-4)
    assert q.log_prob(z).shape == (4, 2) and bool(torch.isfinite(q.log_prob(z)).all())


def test_flow_config_builds_and_refuses_a_point_mass_and_a_vampprior():
    model = build_model(ModelConfig(flow="iaf", flow_steps=2, latent_dim=2, hidden=(8,)))
    assert len(model.posterior.steps) == 2
    with pytest.raises(ConfigError, match="stochastic posterior"):
        build_model(ModelConfig(kind="ae", flow="planar"))
    with pytest.raises(ConfigError, match="vampprior"):
        build_model(ModelConfig(flow="iaf", prior="vampprior", prior_components=3))
    with pytest.raises(ConfigError, match="unknown flow 'nope'"):
        build_model(ModelConfig(flow="nope"))
    with pytest.raises(ConfigError, match="flow steps"):
        build_model(ModelConfig(flow="iaf", flow_steps=0))


def test_kl_monte_carlo_gradient_reaches_every_flow_parameter():
    torch.manual_seed(0)
    model = build_model(ModelConfig(flow="iaf", flow_steps=2, latent_dim=3, hidden=(8,)))
    elbo(model, torch.rand(4, 1, 8, 8).round()).loss.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.posterior.named_parameters() if "mask" not in n)


@pytest.mark.parametrize("name", ["iaf", "planar"])
def test_tiny_flow_model_trains_and_is_scored(tmp_path, name):
    config = small_config(epochs=3, latent_dim=3, threads=1)
    config.model.flow, config.model.flow_steps = name, 2
    run = train(config, None, data=load_data("digits"))
    rows = run.metrics()
    assert rows[-1]["valid_neg_elbo"] < rows[0]["valid_neg_elbo"]
    model, x = run.model, load_data("digits").test.x[:16]
    log_px = iw_log_likelihood(model, Dataset(x), k=20)
    assert log_px.shape == (16,) and bool(torch.isfinite(log_px).all())
    scores = example_scores(model, Dataset(x), samples=4)
    assert scores.neg_elbo.shape == (16,) and bool(torch.isfinite(scores.neg_elbo).all())
    assert bool((-log_px <= scores.neg_elbo + 5.0).all())  # the IW bound is the tighter one (up to noise)
    again = example_scores(model, Dataset(x), samples=4)
    torch.testing.assert_close(again.neg_elbo, scores.neg_elbo)  # fixed draws: deterministic per example
    diag = latent_diagnostics(model, Dataset(x))
    assert diag.kl_per_dim is None and diag.activity.shape == (3,)
    assert latent.rank_dims(model, Dataset(x)).measure == "variance"
    with torch.no_grad():
        assert math.isfinite(float(elbo(model, x, n_samples=3, iw=True).loss.mean()))


def test_flow_flags_reach_the_config_and_list_the_registry():
    from vaekit.cli import build_parser
    from vaekit.cli.train import config_from_args

    parser = build_parser()
    config = config_from_args(
        parser.parse_args(["train", "--flow", "iaf", "--flow-steps", "2", "--iw-samples", "6", "--iw-groups", "3", "--iw-elbo-mix", "0.5"])
    )
    assert (config.model.flow, config.model.flow_steps) == ("iaf", 2)
    assert (config.train.n_samples, config.train.objective, config.train.iw_groups, config.train.iw_elbo_mix) == (6, "iw", 3, 0.5)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--flow", "nope"])
    help_text = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "flow").help
    assert "iaf" in help_text and "planar" in help_text
