"""The model contract (``vaekit.models.Model``): every model that builds, and every view of one, declares
a latent space (``LatentSpec``) that its own distributions bear out."""

import itertools

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.baselines import PCABaseline
from vaekit.compression.exact import ExactModel
from vaekit.config import ModelConfig
from vaekit.errors import ConfigError
from vaekit.latent_layers import LayerView, latent_view
from vaekit.models import (
    CONDITIONS,
    FLOWS,
    HIERARCHIES,
    MODEL_KINDS,
    PRIORS,
    DiagonalNormal,
    LayeredGaussian,
    Model,
    PointMass,
    build_model,
)

CLASSES, COLUMNS = 3, 2


def _configs():
    """Every registered kind x prior x flow x condition x wiring (one layer, or two of each hierarchy)."""
    layouts = [None, *HIERARCHIES.names()]
    for kind, prior, flow, condition, hierarchy in itertools.product(
        MODEL_KINDS.names(), PRIORS.names(), ["none", *FLOWS.names()], ["none", *CONDITIONS.names()], layouts
    ):
        context_dim = {"none": 0, "label": CLASSES, "columns": COLUMNS}[condition]
        if kind == "m2" and condition == "none":
            context_dim = CLASSES  # m2 is conditioned on the class label whatever the config says
        layers = {} if hierarchy is None else {"latent_layers": (2, 3), "hierarchy": hierarchy}
        yield ModelConfig(
            kind=kind,
            input_shape=(6,),
            latent_dim=5,
            hidden=(8,),
            likelihood="gaussian",
            prior=prior,
            prior_components=3,
            flow=flow,
            flow_steps=2,
            condition=condition,
            context_dim=context_dim,
            **layers,
        )


def _built():
    models = []
    for config in _configs():
        try:
            models.append(build_model(config))
        except ConfigError:
            continue
    return models


MODELS = _built()


def _context(model, n: int):
    if not model.latent.conditional:
        return None
    if model.latent.label_classes:
        return torch.arange(n) % model.latent.label_classes
    return torch.randn(n, COLUMNS)


def _is_gaussian(d) -> bool:
    return isinstance(d, Independent) and isinstance(d.base_dist, Normal) and d.reinterpreted_batch_ndims == 1


def _layers_of(d):
    """A distribution's layers: a hierarchy's, each at a draw of its parent; itself for one layer."""
    if isinstance(d, LayeredGaussian):
        return d.layers(d.sample())
    return [d]


def check_declaration(model: Model, x: torch.Tensor, context) -> None:
    """``model.latent`` against what its ``encode`` and ``prior`` return."""
    spec = model.latent
    q, p = model.encode(x, context), model.prior(context)
    assert spec.dim == model.latent_dim == q.event_shape[-1] == p.event_shape[-1]
    assert spec.kind == "continuous"
    assert spec.hierarchical == isinstance(q, LayeredGaussian) == isinstance(p, LayeredGaussian)
    if spec.hierarchical:
        assert q.sizes == p.sizes == spec.layers
    assert spec.density == (not isinstance(q, PointMass)) and spec.deterministic == isinstance(q, PointMass)
    assert spec.factorises == (isinstance(q, PointMass) or _is_gaussian(q))
    assert spec.unit_kl == _is_gaussian(q)
    assert spec.gaussian_posterior == all(isinstance(d, DiagonalNormal) for d in _layers_of(q))
    assert spec.gaussian_prior == all(_is_gaussian(d) for d in _layers_of(p))
    try:
        kl_divergence(q, p)
        closed = True
    except NotImplementedError:
        closed = False
    assert spec.closed_form_kl == closed


def test_every_combination_that_builds_is_checked():
    kinds = {m.config.kind for m in MODELS}
    assert kinds == set(MODEL_KINDS.names())
    assert any(m.latent.hierarchical for m in MODELS) and any(m.latent.deterministic for m in MODELS)
    assert any(m.latent.conditional_prior for m in MODELS) and any(not m.latent.factorises for m in MODELS)
    assert len(MODELS) > 40


@pytest.mark.parametrize(
    "model",
    MODELS,
    ids=lambda m: (
        f"{m.config.kind}-{m.config.prior}-{m.config.flow}-{m.config.condition}-{m.config.hierarchy if m.config.latent_layers else 'one'}"
    ),
)
def test_declared_latent_space_matches_the_distributions(model):
    torch.manual_seed(0)
    x = torch.rand(4, 6)
    context = _context(model, len(x))
    check_declaration(model, x, context)
    spec, config = model.latent, model.config
    assert spec.layers == (tuple(config.latent_layers) or (config.latent_dim,))
    assert spec.conditional == (model.condition is not None)
    assert spec.label_classes == (CLASSES if config.condition == "label" else 0)
    assert spec.deterministic == model.deterministic
    assert latent_view(model) is model or spec.hierarchical
    if spec.hierarchical:  # every layer, seen as a one-layer model, declares itself too
        for layer in range(len(spec.layers)):
            view = LayerView(model, layer)
            check_declaration(view, x, context)
            assert view.latent.layers == (spec.layers[layer],) and not view.latent.hierarchical
            assert view.latent.conditional == spec.conditional and not view.latent.conditional_prior


def test_declarations_name_the_facts_the_tools_need():
    """A point mass has no density, a flow neither factorises nor has a closed-form KL, a hierarchy declares its layers."""
    by = {
        (m.config.kind, m.config.prior, m.config.flow, m.config.condition, m.config.hierarchy if m.config.latent_layers else None): m
        for m in MODELS
    }
    ae = by["ae", "normal", "none", "none", None].latent
    assert ae.deterministic and not ae.density and not ae.closed_form_kl and ae.factorises and not ae.unit_kl
    flow = by["vae", "normal", "iaf", "none", None].latent
    assert flow.density and not flow.factorises and not flow.closed_form_kl and not flow.gaussian_posterior
    chain = by["vae", "normal", "none", "none", "chain"].latent
    assert chain.layers == (2, 3) and chain.hierarchical and not chain.closed_form_kl and chain.gaussian_posterior
    assert not by["vae", "mixture", "none", "none", None].latent.closed_form_kl
    cvae = by["vae", "conditional", "none", "label", None].latent
    assert cvae.closed_form_kl and cvae.conditional_prior and cvae.label_classes == CLASSES
    assert by["m2", "normal", "none", "label", None].latent.label_classes == CLASSES


def test_pca_baseline_is_a_model():
    torch.manual_seed(0)
    x = torch.rand(50, 2, 3)
    pca = PCABaseline.fit(x, 4)
    assert isinstance(pca, Model) and pca.latent_dim == 4 and pca.input_shape == (2, 3)
    check_declaration(pca, x[:5], None)
    coords = (x.flatten(1) - pca.mean) @ pca.components.T
    torch.testing.assert_close(pca.encode(x).mean, coords)
    torch.testing.assert_close(pca.reconstruct(x), (coords @ pca.components + pca.mean).view(50, 2, 3))
    assert pca.decode(coords[:3]).event_shape == (2, 3) and pca.prior().sample((7,)).shape == (7, 4)
    left_out = x.flatten(1).var(0).sum() - pca.explained_variance.sum()  # the variance the components miss, over D - k = 2 directions
    assert pca.noise_variance == pytest.approx(float(left_out) / 2, rel=1e-4)


def test_exact_copy_declares_the_models_latent_space():
    model = next(
        m
        for m in MODELS
        if m.config.kind == "vae" and m.config.prior == "normal" and m.config.flow == "none" and m.config.condition == "none"
    )
    exact = ExactModel(model)
    assert isinstance(exact, Model) and exact.latent == model.latent
    check_declaration(exact, torch.rand(3, 6, dtype=torch.float64), None)
