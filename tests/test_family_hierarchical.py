"""Hierarchical latents: the two-layer ELBO by hand, the exact IW estimate of a linear-Gaussian model,
per-layer diagnostics, layer views, wrong combinations, and every CLI command on a small run."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli_latent import one_line_error

from vaekit import latent
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.data import Dataset
from vaekit.errors import ConfigError
from vaekit.evaluation import elbo_terms, iw_log_likelihood, latent_diagnostics
from vaekit.generation import sample, tempered
from vaekit.latent_layers import LayerView, latent_view
from vaekit.models import DiagonalGaussianMixture, LayeredGaussian, build_model
from vaekit.objectives import ELBO, elbo
from vaekit.runs import load

from helpers import SMALL_RUN_FLAGS


def hvae_config(**fields) -> ModelConfig:
    return ModelConfig(**{"latent_dim": 5, "latent_layers": (3, 2), "hidden": (16,), "latent_hidden": (8,), **fields})


@pytest.mark.parametrize("prior", ["normal", "vampprior"])
def test_every_gaussian_layer_keeps_its_log_variance_in_logvar_range(prior):
    """logvar_range (-6, 2) (the VampPrior paper's heads): q(z_2|x), q(z_1|x, z_2), p(z_1|z_2) and the
    VampPrior's components all clamp log σ² to it, however far the networks push it."""
    torch.manual_seed(0)
    model = build_model(hvae_config(arch="gated", prior=prior, prior_components=3, input_shape=(6,), logvar_range=(-6.0, 2.0)))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(1e3)  # pre-activations far outside the range, both ways
    q, p = model.encode(torch.rand(64, 6)), model.prior()
    z = q.sample()
    layers = q.layers(z) + p.layers(z)[:-1]  # q(z_1|x, z_2), q(z_2|x), p(z_1|z_2)
    top = p.layers(z)[-1]
    top_logvar = [2 * top.component_distribution.base_dist.scale.log().flatten()] if prior == "vampprior" else []
    logvars = torch.cat([d.logvar.flatten() for d in layers] + top_logvar)
    assert torch.allclose(logvars.min(), torch.tensor(-6.0)) and torch.allclose(logvars.max(), torch.tensor(2.0))
    default = build_model(hvae_config(arch="gated", input_shape=(6,)))
    assert {m.logvar_range for m in default.modules() if hasattr(m, "logvar_range")} == {(-16.0, 10.0)}


@pytest.mark.parametrize("hierarchy", ["skip", "branched", "chain"])
def test_elbo_is_the_hand_written_two_layer_bound(hierarchy):
    torch.manual_seed(0)
    model = build_model(hvae_config(hierarchy=hierarchy))
    x = torch.rand(4, 1, 8, 8).bernoulli()
    eps = torch.randn(3, 4, 5)  # (S, B, Σ L): z_1 is the first 3 columns, z_2 the last 2
    terms = elbo(model, x, noise=eps)
    h = model.encoder(x)
    q_nets, p_top, p_cond = model.posterior.nets, torch.distributions.Normal(0.0, 1.0), model.prior_module.conditionals[0]
    e1, e2 = eps[..., :3], eps[..., 3:]
    if hierarchy == "skip":  # q(z_2|x) q(z_1|x, z_2)
        q2 = q_nets[1](h)
        z2 = q2.mean + q2.stddev * e2
        q1 = q_nets[0].head(q_nets[0].net(torch.cat([h.expand(3, 4, -1), z2], -1)))
        z1 = q1.mean + q1.stddev * e1
        decoder_input = torch.cat([z1, z2], -1)
    elif hierarchy == "branched":  # the encoder is x itself; q(z_1|x, z_2): a layer on x, one on z_2, then the joint layers
        assert torch.equal(h, x.flatten(1))
        q2 = q_nets[1](h)
        z2 = q2.mean + q2.stddev * e2
        net = q_nets[0].net
        q1 = q_nets[0].head(net.joint(torch.cat([net.branches[0](h).expand(3, 4, -1), net.branches[1](z2)], -1)))
        z1 = q1.mean + q1.stddev * e1
        decoder_input = torch.cat([branch(z) for branch, z in zip(model.decoder.branches, (z1, z2))], -1)  # a layer per code
    else:  # q(z_1|x) q(z_2|z_1)
        q1 = q_nets[0](h)
        z1 = q1.mean + q1.stddev * e1
        q2 = q_nets[1].head(q_nets[1].net(z1))
        z2 = q2.mean + q2.stddev * e2
        decoder_input = z1
    log_q = q1.log_prob(z1) + q2.log_prob(z2)  # (S, B)
    p1 = p_cond.head(p_cond.net(z2))
    log_p = p_top.log_prob(z2).sum(-1) + p1.log_prob(z1)
    logits = model.decoder.decoder(decoder_input.reshape(12, -1)).view(3, 4, -1)
    log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x.flatten(1)).sum(-1)
    torch.testing.assert_close(terms.reconstruction, log_px.mean(0), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.kl, (log_q - log_p).mean(0), rtol=1e-5, atol=1e-4)
    iw = elbo(model, x, noise=eps, iw=True)
    torch.testing.assert_close(-iw.loss, torch.logsumexp(log_px + log_p - log_q, 0) - math.log(3), rtol=1e-5, atol=1e-4)


def linear_gaussian_model():
    """A skip-wired model with 1-D layers whose posterior is set to the exact one:
    z_2 ~ N(0, 1), z_1 | z_2 ~ N(a z_2, s²), x | z ~ N(b z_1 + c z_2 + d, σ² I) over 2 dimensions."""
    a, s, sigma = 0.8, 0.6, 0.5
    b, c, d = (torch.tensor(v, dtype=torch.float64) for v in ([1.2, -0.7], [0.3, 0.9], [0.1, -0.2]))
    cfg = ModelConfig(
        input_shape=(2,), latent_dim=2, latent_layers=(1, 1), hidden=(), latent_hidden=(), likelihood="gaussian", likelihood_scale=sigma
    )
    model = build_model(cfg).double()
    # the joint Gaussian of v = (z_2, z_1, x_1, x_2)
    var_z1 = a * a + s * s
    cov = torch.zeros(4, 4, dtype=torch.float64)
    cov[0, 0], cov[0, 1], cov[1, 1] = 1.0, a, var_z1
    cov[0, 2:] = b * a + c
    cov[1, 2:] = b * var_z1 + c * a
    cov[2:, 2:] = torch.outer(b, b) * var_z1 + (torch.outer(b, c) + torch.outer(c, b)) * a + torch.outer(c, c) + sigma**2 * torch.eye(2)
    cov = torch.triu(cov) + torch.triu(cov, 1).T
    gain2 = cov[0, 2:] @ torch.linalg.inv(cov[2:, 2:])  # p(z_2|x) = N(gain2 (x - d), v2)
    v2 = cov[0, 0] - gain2 @ cov[2:, 0]
    w = [0, 2, 3]  # p(z_1|z_2, x) = N(g (z_2, x - d), v1)
    g = cov[1, w] @ torch.linalg.inv(cov[w][:, w])
    v1 = cov[1, 1] - g @ cov[w, 1]
    with torch.no_grad():
        top, low = model.posterior.nets[1].params, model.posterior.nets[0].head.params  # Linear(2, 2), Linear(3, 2): (μ, log σ²)
        top.weight.zero_()
        low.weight.zero_()
        top.weight[0] = gain2
        top.bias.copy_(torch.stack([-gain2 @ d, v2.log()]))
        low.weight[0] = torch.cat([g[1:], g[:1]])  # inputs (x_1, x_2, z_2)
        low.bias.copy_(torch.stack([-g[1:] @ d, v1.log()]))
        cond = model.prior_module.conditionals[0].head.params  # Linear(1, 2)
        cond.weight.copy_(torch.tensor([[a], [0.0]]))
        cond.bias.copy_(torch.tensor([0.0, math.log(s * s)]))
        dec = model.decoder.decoder.net[-1]  # Linear(2, 2) on (z_1, z_2)
        dec.weight.copy_(torch.stack([b, c], 1))
        dec.bias.copy_(d)
    marginal = torch.distributions.MultivariateNormal(d.double(), cov[2:, 2:])
    return model, marginal


def test_iw_estimate_is_exact_when_the_posterior_is_the_true_one():
    model, marginal = linear_gaussian_model()
    x = marginal.sample((6,)) * 1.5
    exact = marginal.log_prob(x)  # (6,)
    for k in (1, 50):
        torch.testing.assert_close(iw_log_likelihood(model, Dataset(x), k=k), exact, rtol=0, atol=1e-6)
    terms = elbo(model, x, n_samples=20)  # the ELBO is tight: KL(q || p(z|x)) = 0
    torch.testing.assert_close(-terms.neg_elbo, exact, rtol=0, atol=1e-6)
    with torch.no_grad():  # a wrong posterior gives a bound strictly below, and IW closer to log p(x) than the ELBO
        model.posterior.nets[1].params.bias[1] += 1.0
    loose = -elbo(model, x, n_samples=2000).neg_elbo
    iw = iw_log_likelihood(model, Dataset(x), k=2000)
    assert bool((loose < exact - 0.1).all()) and bool((iw > loose).all())
    assert float((iw - exact).abs().max()) < 0.05  # a consistent estimate: K = 2000 draws close the gap to within noise


@pytest.mark.parametrize("hierarchy", ["skip", "branched", "chain"])
@pytest.mark.parametrize("prior", ["normal", "mixture", "vampprior"])
def test_every_prior_and_wiring_trains_and_samples(hierarchy, prior):
    if hierarchy == "chain" and prior == "vampprior":
        with pytest.raises(ConfigError, match="hierarchy skip"):
            build_model(hvae_config(hierarchy=hierarchy, prior=prior, prior_components=4))
        return
    torch.manual_seed(0)
    model = build_model(hvae_config(hierarchy=hierarchy, prior=prior, prior_components=4))
    x = torch.rand(8, 1, 8, 8).bernoulli()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = elbo(model, x).loss.mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(elbo(model, x, n_samples=8).loss.mean().detach()) < first
    assert all(p.grad is not None for p in model.prior_module.conditionals.parameters())
    z = model.prior().sample((5,))
    assert z.shape == (5, 5) and model.decode(z).mean.shape == (5, 1, 8, 8)
    q = model.encode(x)
    assert isinstance(q, LayeredGaussian) and q.mean.shape == (8, 5)


def test_the_branched_wiring_is_the_hvae_papers_network_layer_for_layer():
    """--hierarchy branched with the preset's sizes has the weights of Tomczak & Welling's HVAE (L = 2)
    code: GatedDense(in, out) is one (2·out, in) matrix, each Gaussian head one (2·L, 300)."""
    config = ModelConfig(
        arch="gated", input_shape=(1, 28, 28), hidden=(300, 300), latent_dim=80, latent_layers=(40, 40), hierarchy="branched",
        latent_hidden=(300, 300), prior="vampprior", prior_components=500,
    )  # fmt: skip
    model = build_model(config)
    head = (80, 300)
    paper = [
        (600, 784), (600, 300), head,  # q(z_2|x): two GatedDense(., 300)
        (600, 784), (600, 40), (600, 600), head,  # q(z_1|x, z_2): GatedDense(784, 300) and (40, 300), joint (600, 300)
        (600, 40), (600, 300), head,  # p(z_1|z_2)
        (600, 40), (600, 40), (600, 600), (784, 300),  # p(x|z_1, z_2): one per layer, joint (600, 300), Linear(300, 784)
        (500, 784),  # the pseudo-inputs
    ]  # fmt: skip
    shapes = [tuple(p.shape) for name, p in model.named_parameters() if not name.endswith("bias")]
    assert sorted(shapes) == sorted(paper)
    assert model.encoder.out_features == 784 and not list(model.encoder.parameters())  # x itself
    with pytest.raises(ConfigError, match="branched hierarchy reads x with dense layers"):
        build_model(hvae_config(arch="conv", hierarchy="branched", hidden=(4,)))


@pytest.mark.parametrize("prior", ["normal", "vampprior"])
def test_a_hierarchical_prior_is_tempered_layer_by_layer(prior):
    """At temperature T each layer's spread given its parent is T times the prior's, at the same parent code."""
    torch.manual_seed(0)
    model = build_model(hvae_config(prior=prior, prior_components=4))
    pz, t = model.prior(), 0.3
    cold = tempered(pz, t)
    assert isinstance(cold, LayeredGaussian)
    z = pz.sample((64,))  # (64, 5)
    for warm_layer, cold_layer in zip(pz.layers(z), cold.layers(z)):
        if isinstance(warm_layer, torch.distributions.MixtureSameFamily):  # the top: each component's spread
            warm_layer, cold_layer = warm_layer.component_distribution, cold_layer.component_distribution
        torch.testing.assert_close(cold_layer.mean, warm_layer.mean)
        torch.testing.assert_close(cold_layer.stddev, t * warm_layer.stddev)
    torch.manual_seed(1)
    spread = {temp: tempered(pz, temp).sample((4000,)).std(0) for temp in (1.0, t)}
    assert (spread[t] < 0.6 * spread[1.0]).all()  # every unit, in every layer, nearer the mean pass
    images = sample(model, 6, temperature=t, seed=0)
    assert images.shape == (6, 1, 8, 8) and torch.isfinite(images).all()


def test_mixture_log_density_with_learned_weights_matches_torch():
    torch.manual_seed(0)
    loc, logvar, logits = torch.randn(30, 4), torch.empty(30, 4).uniform_(-6, 2), torch.randn(30)
    p = DiagonalGaussianMixture(loc, logvar, logits)
    generic = torch.distributions.MixtureSameFamily(p.mixture_distribution, p.component_distribution)
    z = torch.randn(3, 17, 4) * 2
    torch.testing.assert_close(p.log_prob(z), generic.log_prob(z), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("prior", ["normal", "mixture"])
def test_layer_diagnostics_add_up_to_the_models_kl(prior):
    torch.manual_seed(0)
    model = build_model(hvae_config(prior=prior, prior_components=3))
    x = torch.rand(64, 1, 8, 8).bernoulli()
    diag = latent_diagnostics(model, Dataset(x))
    assert [len(layer.activity) for layer in diag.layers] == [3, 2] and len(diag.activity) == 5
    mc = float(elbo_terms(model, Dataset(x), objective=ELBO(n_samples=4000), seed=1).kl.mean())
    per_layer = [layer.kl for layer in diag.layers]
    assert abs(sum(per_layer) - mc) < 0.05 * mc + 0.02, (per_layer, mc)
    if prior == "normal":  # a factorised prior: the units' KLs add up to their layer's
        for layer in diag.layers:
            assert abs(float(layer.kl_per_dim.sum()) - layer.kl) < 0.05 * layer.kl + 0.02
    out = diag.to_dict()
    assert len(out["layers"]) == 2 and out["active_units"] == sum(layer["active_units"] for layer in out["layers"])


def test_layer_views_decode_through_the_layers_below():
    torch.manual_seed(0)
    model = build_model(hvae_config())
    top, bottom = latent_view(model), latent_view(model, 0)
    assert isinstance(top, LayerView) and (top.latent_dim, bottom.latent_dim) == (2, 3)
    x = torch.rand(4, 1, 8, 8)
    assert top.encode(x).mean.shape == (4, 2) and bottom.encode(x).mean.shape == (4, 3)
    z2 = torch.randn(6, 2)
    z1 = model.prior_module.conditionals[0](z2).mean  # the layer below at its conditional mean
    expected = model.decode(torch.cat([z1, z2], -1)).mean
    torch.testing.assert_close(top.decode(z2).mean, expected)
    assert latent.rank_dims(top, Dataset(x)).measure == "KL" and len(latent.kl_per_dim(bottom, Dataset(x))) == 3
    around = bottom.held_at(Dataset(x[1:2]))  # the layer above held at x's own code: the view decodes x's mean-pass reconstruction
    torch.testing.assert_close(around.decode(around.encode(x[1:2]).mean).mean, model.decode(model.encode(x[1:2]).mean).mean)
    assert not torch.allclose(bottom.decode(bottom.encode(x[1:2]).mean).mean, model.decode(model.encode(x[1:2]).mean).mean)
    with pytest.raises(ConfigError, match="out of range"):
        latent_view(model, 2)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "ae"}, "model vae"),
        ({"flow": "iaf"}, "without a flow"),
        ({"latent_layers": (3, 3)}, "sum of the layer sizes"),
        ({"latent_layers": (5,), "latent_dim": 5}, "two or more"),
    ],
)
def test_wrong_combinations_are_one_line_errors(fields, words):
    with pytest.raises(ConfigError, match=words):
        build_model(hvae_config(**fields))


def flags_without_latent_dim() -> list[str]:
    i = SMALL_RUN_FLAGS.index("--latent-dim")
    return SMALL_RUN_FLAGS[:i] + SMALL_RUN_FLAGS[i + 2 :]


@pytest.fixture(scope="module")
def hvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hvae") / "run"
    code = main(
        [
            "train",
            *flags_without_latent_dim(),
            "--latent-dim",
            "4",
            "2",
            "--prior",
            "vampprior",
            "--prior-components",
            "10",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_cli_trains_evaluates_and_views_a_hierarchical_model(hvae_run, tmp_path, capsys):
    run = load(hvae_run)
    assert run.config.model.latent_layers == (4, 2) and run.config.model.latent_dim == 6
    assert main(["evaluate", str(hvae_run), "--iw-samples", "20", "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    layers = result["latent"]["layers"]
    assert [layer["latent_dim"] for layer in layers] == [4, 2]
    assert result["iw"]["nll"] <= result["neg_elbo"] + 0.05
    assert "layer z2" in capsys.readouterr().out
    for cmd, extra, name in [
        ("sample", ["-n", "16"], "s.png"),
        ("reconstruct", [], "r.png"),
        ("interpolate", ["--between", "0", "1"], "i.png"),
        ("traverse", ["--dims", "0", "1"], "t.png"),
        ("traverse", ["--layer", "0", "--dims", "0", "3"], "t0.png"),
        ("manifold", ["-n", "5"], "m.png"),
        ("manifold", ["--layer", "0", "-n", "5"], "m0.png"),
        ("embed", [], "e.png"),
        ("pseudo-inputs", ["-n", "8"], "p.png"),  # its VampPrior, on the top layer
    ]:
        assert main([cmd, str(hvae_run), *extra, "-o", str(tmp_path / name)]) == 0, cmd
        pic = np.asarray(Image.open(tmp_path / name).convert("L")).astype(float)
        assert pic.std() > 5, f"{cmd} drew a blank picture"
    assert main(["report", str(hvae_run), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "latent layers 4+2 (skip)" in page and "VampPrior pseudo-inputs" in page
    assert main(["anomaly", str(hvae_run), "--score", "iw-nll", "-o", str(tmp_path / "a.png")]) == 0


def test_cli_layer_out_of_range_and_hierarchical_ae_are_one_line_errors(hvae_run, capsys):
    one_line_error(capsys, main(["traverse", str(hvae_run), "--layer", "5"]), "layer 5", "out of range")
    one_line_error(capsys, main(["train", *flags_without_latent_dim(), "--latent-dim", "4", "2", "--model", "ae"]), "hierarchical")


def test_a_hierarchical_model_can_be_conditioned_on_the_label():
    torch.manual_seed(0)
    for hierarchy, prior in (("skip", "vampprior"), ("branched", "vampprior"), ("chain", "normal")):
        model = build_model(hvae_config(condition="label", context_dim=10, hierarchy=hierarchy, prior=prior, prior_components=10))
        x, y = torch.rand(6, 1, 8, 8).bernoulli(), torch.arange(6)
        terms = elbo(model, x, context=y, n_samples=3, iw=True)
        terms.loss.mean().backward()
        z = model.prior().sample((4,))
        assert not torch.allclose(model.decode(z, 1).mean, model.decode(z, 7).mean)  # the label reaches the decoder
        assert not torch.allclose(model.encode(x, 1).mean, model.encode(x, 7).mean)  # and the encoder
        view = latent_view(model, 0)
        assert view.decode(torch.randn(2, 3), 4).mean.shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="one latent layer"):
        build_model(hvae_config(condition="label", context_dim=10, prior="conditional"))
