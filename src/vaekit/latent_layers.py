"""One stochastic layer of a hierarchical model, for the tools: views and statistics per layer.

The latent tools (traversal, manifold, interpolation, embedding, the report, the explorer) work on a
one-layer model's ``encode``, ``decode`` and ``prior``; ``latent_view`` gives them the model itself,
or ``LayerView``, one layer of a hierarchical model seen as a one-layer model, so every view works
on any layer. ``layer_statistics`` gives each layer's KL and active units (``vaekit evaluate``),
``describe_latent`` the latent space in words (the report's title).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution, kl_divergence

from vaekit.data.base import Dataset
from vaekit.errors import ConfigError
from vaekit.examples import for_model
from vaekit.models.contract import Context, LatentSpec, Model
from vaekit.models.distributions import LayeredGaussian, marginals

if TYPE_CHECKING:
    from vaekit.models import LatentVariableModel


class LayerView(Model):
    """Layer l of a hierarchical model seen as a one-layer model: ``encode``, ``decode`` and ``prior``
    over z_l (L_l,), for the latent views. A view of the model, not a module: it holds no parameters
    and is not trained. Its ``latent`` declares one layer: a diagonal Gaussian given the layers above.

    The layers above l are held at the prior's mean pass (the ``context``; none for the top layer),
    or at an input's codes (``held_at``).
    encode(x): q(z_l|x, context) in the mean pass of q (for the top layer of the ``skip`` wiring,
    q(z_L|x) exactly). prior(): p(z_L) for the top layer, p(z_l|context) below it. decode(z_l): the
    layers below at the means of p(z_k|z_{k+1}), then p(x|z).
    """

    def __init__(self, model: LatentVariableModel, layer: int, held: dict[int, torch.Tensor] | None = None):
        sizes = model.latent.layers
        if not -len(sizes) <= layer < len(sizes):
            raise ConfigError(f"layer {layer} is out of range: the model has {len(sizes)} stochastic layers (0 to {len(sizes) - 1})")
        self.model, self.layer, self.sizes, self.held = model, layer % len(sizes), sizes, held
        self.config = dataclasses.replace(model.config, latent_dim=sizes[self.layer], latent_layers=())

    latent_dim = property(lambda self: self.sizes[self.layer])
    input_shape = property(lambda self: self.model.input_shape)
    device = property(lambda self: self.model.device)
    condition = property(lambda self: self.model.condition)
    conditional = property(lambda self: self.model.conditional)
    classifier = property(lambda self: self.model.classifier)
    prior_module = property(lambda self: self.model.prior_module)
    deterministic = property(lambda self: self.latent.deterministic)

    @property
    def latent(self) -> LatentSpec:
        """The model's declaration narrowed to this layer: q(z_l|·) is one of the hierarchy's Gaussian layers,
        so it factorises; p(z_l|z_{l+1}) below the top is a Gaussian layer (closed-form KL), the top's
        p(z_L) is the top prior, as it declares. The prior is unconditional (a hierarchy's is)."""
        whole, top = self.model.latent, self.model.prior_module.top_prior()
        gaussian, at_top = whole.gaussian_posterior, self.layer == len(self.sizes) - 1
        return dataclasses.replace(
            whole,
            layers=(self.latent_dim,),
            factorises=gaussian,
            closed_form_kl=gaussian and (top.closed_form_kl if at_top else True),
            gaussian_prior=top.gaussian if at_top else True,
            conditional_prior=False,
        )

    def context(self, p: LayeredGaussian | None = None) -> dict[int, torch.Tensor]:
        """The codes of the layers above this one, {k: (L_k,)}: the mean pass of the prior (``p``, or the
        model's), or those ``held_at`` gave."""
        if self.layer == len(self.sizes) - 1:
            return {}
        if self.held is not None:
            return self.held
        p = self.model.prior() if p is None else p
        with torch.no_grad():
            z = p.mean_pass()
        return {k: p.part(z, k) for k in range(self.layer + 1, len(self.sizes))}

    @torch.no_grad()
    def held_at(self, example: Dataset) -> LayerView:
        """This layer with the layers above held at the posterior mean pass of the one input of ``example``
        instead of the prior's: a traversal or manifold around it then decodes its own upper codes."""
        batch = for_model(self.model, example).batch(self.device)
        q = self.model.encode(batch.inputs, batch.context)
        z = q.mean_pass()[0]
        return LayerView(self.model, self.layer, {k: q.part(z, k) for k in range(self.layer + 1, len(self.sizes))})

    def _fixed(self, lead: torch.Size, p: LayeredGaussian | None = None) -> dict[int, torch.Tensor]:
        return {k: c.expand(*lead, c.shape[-1]) for k, c in self.context(p).items()}

    def encode(self, x: torch.Tensor, context: Context = None) -> Distribution:
        """q(z_l|x, ...) (B, L_l); ``context``: a conditional model's context (labels (B,) or vectors (B, K), or one for all)."""
        return self.model.encode(x, context).layer_at(self.layer, self._fixed(torch.Size([len(x)])))

    def prior(self, context: Context = None) -> Distribution:
        """p(z_L), or p(z_l|z_{l+1}, ...) below the top with the layers above at ``context()``; the
        argument ``context`` is the model's interface (a hierarchical model's prior is unconditional)."""
        p = self.model.prior()
        return p.layer_at(self.layer, self.context(p))

    def decode(self, z: torch.Tensor, context: Context = None) -> Distribution:
        """p(x|·) for z_l (*batch, L_l): batch ``batch``; ``context``: a conditional model's context (labels or vectors, or one for all)."""
        p = self.model.prior()
        fixed = {**self._fixed(z.shape[:-1], p), self.layer: z}
        return self.model.decode(p.mean_pass(fixed), context)


def latent_view(model: LatentVariableModel, layer: int | None = None) -> LatentVariableModel | LayerView:
    """What the latent views work on: ``model`` itself for a one-layer model, else ``LayerView`` of
    ``layer`` (default: the top layer). ``ConfigError`` when a one-layer model is given a layer other than 0."""
    if not model.latent.hierarchical:
        if layer not in (None, 0, -1):
            raise ConfigError(f"layer {layer} is out of range: the model has one stochastic layer")
        return model
    return LayerView(model, -1 if layer is None else layer)


@torch.inference_mode()
def layer_statistics(
    model: LatentVariableModel, data: Dataset, *, samples: int = 16, batch_size: int = 500, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Per layer i of a hierarchical model over the examples of ``data``: (KL per unit (L_i,), the
    units' activity Cov_x(E_q[z_i,u]) (L_i,), the layer's KL term), from ``samples`` seeded draws z ~ q(z|x).

    The layer's KL term is E_q[log q(z_i|parent) − log p(z_i|z_{i+1})]; summed over the layers it is
    the model's KL. Per unit it is closed form given the draws of the layers a unit is conditioned
    on, and sums to the layer's term; against a top prior that does not factorise (a mixture or
    VampPrior) it is the Monte Carlo KL to the prior's per-unit marginals, which need not sum to
    it. E_q[z_i] is the mean over the draws of q(z_i|parent)'s mean. A conditional model reads each
    example with its context.
    """
    sizes, device = model.latent.layers, model.device
    gaussian = [LayerView(model, i).latent.gaussian_prior for i in range(len(sizes))]  # p(z_i|·) diagonal Gaussian: closed-form KL per unit
    kl = [torch.zeros(s, dtype=torch.float64) for s in sizes]
    layer_kl = [0.0 for _ in sizes]
    means: list[list[torch.Tensor]] = [[] for _ in sizes]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in for_model(model, data).batches(batch_size, device):
            q, p = model.encode(batch.inputs, batch.context), model.prior()
            z = q.sample((samples,))  # (S, B, Σ L)
            for i, (qi, pi) in enumerate(zip(q.layers(z), p.layers(z))):
                zi, qd = q.part(z, i), qi.base_dist  # (S, B, L_i); per-unit Normal of batch (S or 1.., B, L_i)
                if gaussian[i]:
                    unit_kl = kl_divergence(qd, pi.base_dist).expand_as(zi)
                else:  # a mixture over the top layer: Monte Carlo per unit against its marginals
                    unit_kl = qd.log_prob(zi) - marginals(pi).log_prob(zi)
                kl[i] += unit_kl.double().mean(0).sum(0).cpu()
                layer_kl[i] += float((qi.log_prob(zi) - pi.log_prob(zi)).double().mean(0).sum())
                means[i].append(qd.mean.expand_as(zi).double().mean(0).cpu())  # (B, L_i): E_q[z_i] per example
    n = max(len(data), 1)
    activity = [torch.cat(m).var(0, unbiased=False) if len(data) > 1 else torch.zeros_like(k) for k, m in zip(kl, means)]
    return [(k / n, a, total / n) for k, a, total in zip(kl, activity, layer_kl)]


def describe_latent(model: LatentVariableModel) -> str:
    """'latent dim 16', or 'latent layers 40+40 (skip)' for a hierarchical model (its wiring in brackets)."""
    latent = model.latent
    if not latent.hierarchical:
        return f"latent dim {latent.dim}"
    return f"latent layers {'+'.join(map(str, latent.layers))} ({model.config.hierarchy})"


def view_at_input(view: LatentVariableModel | LayerView, example: Dataset) -> LatentVariableModel | LayerView:
    """``view`` for views around the one input of ``example``: a lower layer's ``LayerView`` with the layers
    above held at its codes (``LayerView.held_at``); any other view (a one-layer model, a top layer) as it is."""
    return view.held_at(example) if isinstance(view, LayerView) and view.layer < len(view.sizes) - 1 else view
