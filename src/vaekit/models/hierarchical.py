"""Hierarchical latents: two or more stochastic layers z = [z_1, ..., z_L] (z_1 nearest the data).

The model stays a ``LatentVariableModel``: its posterior head returns q(z|x) and its prior p(z) as
distributions over the concatenated code (event (Σ L_l,)), each a ``LayeredGaussian`` that samples
layer by layer (ancestrally) and sums the layers' log-densities. The one objective
(``vaekit.objectives.elbo``) therefore trains and evaluates them unchanged: the KL has no closed
form, so it is the Monte Carlo mean of log q(z|x) − log p(z), and the importance-weighted bound
uses both log-densities exactly. Three wirings are registered in ``HIERARCHIES``
(``ModelConfig.hierarchy``); the generative side is p(z_L) Π p(z_l|z_{l+1}) for all of them:

- ``skip`` (Tomczak & Welling 2018's HVAE): q(z_L|x) Π q(z_l|x, z_{l+1}); p(x|z_1, ..., z_L). The
  layers read the shared encoder's features h, and each network joins its inputs first.
- ``branched``: the same factorisation with the networks of the HVAE paper's code: no shared
  encoder (q(z_L|x) has the encoder's stack to itself), and q(z_l|x, z_{l+1}) and p(x|z_1, ..., z_L)
  pass each input through a layer of its own before the joint layers.
- ``chain`` (Burda et al. 2016's two-layer model): q(z_1|x) Π q(z_{l+1}|z_l); p(x|z_1).

p(z_L) is any registered prior over the top layer (a VampPrior uses q(z_L|u_k), so it needs the
``skip`` wiring, whose top posterior sees x alone). ``LayerView`` shows one layer as a one-layer
model, so every latent view (traversal, manifold, interpolation, embedding, the explorer) works
on any layer.
"""

from __future__ import annotations

import dataclasses
import itertools
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints, kl_divergence

from vaekit.errors import ConfigError
from vaekit.models.condition import Context, batch_context
from vaekit.models.gated import GatedEncoder, gated_stack
from vaekit.models.networks import DECODERS, ENCODERS, Decoder, DecoderNetwork, mlp
from vaekit.models.posteriors import DiagonalNormal, GaussianPosterior, PosteriorHead
from vaekit.models.priors import PRIORS, Prior, marginals
from vaekit.objectives import PathDerivative, StandardNormalDraws
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


def layer_sizes(config: ModelConfig) -> tuple[int, ...]:
    """(L_1, ..., L_L): the layers of a hierarchical model, or (latent_dim,) for a one-layer model."""
    return tuple(config.latent_layers) or (config.latent_dim,)


def is_hierarchical(config: ModelConfig) -> bool:
    return len(config.latent_layers) > 1


def bridge_hidden(config: ModelConfig) -> tuple[int, ...]:
    """Hidden sizes of the networks between stochastic layers: ``latent_hidden``, or by default two
    layers as wide as the encoder's output (``hidden[-1]``; ``conv_dense`` for a conv network)."""
    if config.latent_hidden is not None:
        return tuple(config.latent_hidden)
    width = config.conv_dense if ENCODERS[config.arch].needs_images and config.conv_dense else config.hidden[-1]
    return (width, width)


def dense_stack(sizes: list[int], arch: str, act: str) -> nn.Sequential:
    """Dense layers through ``sizes``, each followed by its nonlinearity: GatedDense for ``gated``, else Linear + ``act``."""
    return gated_stack(sizes) if arch == GatedEncoder.name else mlp(sizes, act, final_activation=True)


class BranchedNet(nn.Module):
    """Inputs (*, in_i), each through a dense layer of its own (width hidden[0]); their outputs joined
    and passed through the dense layers hidden[1:]: (*, out_features). The HVAE paper's code wires
    q(z_1|x, z_2) and p(x|z_1, z_2) so: GatedDense(in_i, 300) per input, then GatedDense(600, 300).

    Each branch runs on its input's own leading shape, so an input without the sample dimension
    (x's features (B, F) beside z (S, B, L)) is computed once, not once per sample.
    """

    def __init__(self, in_features: tuple[int, ...], hidden: tuple[int, ...], arch: str, act: str):
        super().__init__()
        self.branches = nn.ModuleList(dense_stack([n, hidden[0]], arch, act) for n in in_features)
        sizes = [hidden[0] * len(in_features), *hidden[1:]]
        self.joint = dense_stack(sizes, arch, act)
        self.out_features = sizes[-1]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.joint(join(*(branch(t) for branch, t in zip(self.branches, inputs, strict=True))))


class LayerNet(nn.Module):
    """One stochastic layer's conditional: inputs (*, in_i) -> dense layers -> N(μ, diag σ²) over (*, L_l).

    The inputs are joined before the first layer, or with ``branched`` each has its first layer to
    itself (``BranchedNet``)."""

    def __init__(
        self,
        in_features: tuple[int, ...],
        hidden: tuple[int, ...],
        latent_dim: int,
        arch: str,
        act: str,
        logvar_range: tuple[float, float],
        branched: bool = False,
    ):
        super().__init__()
        self.branched = branched and len(in_features) > 1
        if self.branched:
            self.net = BranchedNet(in_features, hidden, arch, act)
            width = self.net.out_features
        else:
            sizes = [sum(in_features), *hidden]
            self.net, width = dense_stack(sizes, arch, act), sizes[-1]
        self.head = GaussianPosterior(width, latent_dim, logvar_range)

    def forward(self, *inputs: torch.Tensor) -> DiagonalNormal:
        """N over (*batch, L_l) from inputs (*batch, in_i) (broadcast over their leading dimensions)."""
        return self.head(self.net(*inputs) if self.branched else self.net(join(*inputs)))


def join(*inputs: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting the leading ones: h (B, F) with z (S, B, L) -> (S, B, F + L)."""
    if len(inputs) == 1:
        return inputs[0]
    lead = torch.broadcast_shapes(*(t.shape[:-1] for t in inputs))
    return torch.cat([t.expand(*lead, t.shape[-1]) for t in inputs], -1)


class LayeredGaussian(Distribution, StandardNormalDraws, PathDerivative):
    """A distribution over z = [z_1, ..., z_L] (event (Σ L_l,)) given layer by layer: layer i is
    ``layer(i, parent)``, a distribution over z_l given the code of its parent layer (None for a
    layer without one), sampled in ``order`` (each parent before its children).

    log_prob(z) = Σ_l log p_l(z_l | z_parent(i)). ``mean`` is the mean pass: each layer's mean given
    its parent at its own mean (E[z] itself for the layers without a parent; a point summary for codes
    and reconstructions below them). The log-density of the distribution's own last draw reuses the
    layer distributions of the draw. ``stopped_layer``, where given, is ``layer`` with the networks'
    parameters (and their inputs other than the parent's code) stopped: ``parameters_stopped``.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        sizes: tuple[int, ...],
        parents: tuple[int | None, ...],
        layer: Callable[[int, torch.Tensor | None], Distribution],
        batch_shape: torch.Size,
        stopped_layer: Callable[[int, torch.Tensor | None], Distribution] | None = None,
    ):
        self.sizes, self.parents, self.layer, self.stopped_layer = tuple(sizes), tuple(parents), layer, stopped_layer
        self.order = topological_order(parents)
        self.offsets = tuple(itertools.accumulate(sizes, initial=0))
        self._last: tuple[torch.Tensor, list[Distribution]] | None = None
        super().__init__(batch_shape, torch.Size([sum(sizes)]), validate_args=False)

    def map_layers(self, fn: Callable[[Distribution], Distribution]) -> LayeredGaussian:
        """The same layering with every layer's distribution passed through ``fn`` (e.g. tempered: each
        layer's spread given its parent scaled, as hierarchical models are sampled at a temperature)."""
        return LayeredGaussian(self.sizes, self.parents, lambda i, parent: fn(self.layer(i, parent)), self.batch_shape)

    def parameters_stopped(self) -> LayeredGaussian:
        """log q(z) with no gradient to the networks' parameters: each layer's parameters are computed
        from its parent's code in z by the networks with their weights held fixed, so z_{l+1} still
        acts on log q(z_l|x, z_{l+1}) (without that path the gradient stays unbiased but is no longer
        zero at the true posterior)."""
        if self.stopped_layer is None:
            raise ValueError("this layered distribution (a prior, or a tempered posterior) has no stopped form for stl")
        return LayeredGaussian(self.sizes, self.parents, self.stopped_layer, self.batch_shape)

    def part(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """z_l (*, L_l) from the concatenated code z (*, Σ L)."""
        return z[..., self.offsets[i] : self.offsets[i + 1]]

    def layers(self, z: torch.Tensor) -> list[Distribution]:
        """The L layer distributions at the parents' codes in z (*S, *batch, Σ L): batch (*S, *batch) below a parent."""
        if self._last is not None and self._last[0] is z:
            return self._last[1]
        return [self.layer(i, None if p is None else self.part(z, p)) for i, p in enumerate(self.parents)]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density at z (*S, *batch, Σ L) -> (*S, *batch)."""
        return sum(d.log_prob(self.part(z, i)) for i, d in enumerate(self.layers(z)))

    def _ancestral(self, draw: Callable[[int, Distribution, bool], torch.Tensor], fixed: dict[int, torch.Tensor] | None = None):
        """Codes of every layer in ``order``: ``fixed[i]`` where given, else ``draw(i, dist, has_parent)``."""
        codes: list[torch.Tensor | None] = [None] * len(self.sizes)
        dists: list[Distribution | None] = [None] * len(self.sizes)
        for i in self.order:
            p = self.parents[i]
            dists[i] = self.layer(i, None if p is None else codes[p])
            codes[i] = fixed[i] if fixed and i in fixed else draw(i, dists[i], p is not None)
        return codes, dists

    def _concat(self, codes: list[torch.Tensor]) -> torch.Tensor:
        lead = torch.broadcast_shapes(*(c.shape[:-1] for c in codes))
        return torch.cat([c.expand(*lead, c.shape[-1]) for c in codes], -1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """(*sample_shape, *batch, Σ L), each layer drawn given its parent's draw."""
        shape = torch.Size(sample_shape)
        codes, dists = self._ancestral(lambda i, d, has_parent: d.rsample() if has_parent else d.rsample(shape))
        z = self._concat(codes)
        self._last = (z, dists)
        return z

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """As ``rsample``, without gradients; works for a top layer without ``rsample`` (a mixture)."""
        shape = torch.Size(sample_shape)
        codes, _ = self._ancestral(lambda i, d, has_parent: d.sample() if has_parent else d.sample(shape))
        return self._concat(codes)

    def from_standard_normal(self, eps: torch.Tensor) -> torch.Tensor:
        """z from standard-normal draws ε (*S, B or 1, Σ L): z_l = μ_l + σ_l ε_l, layer by layer."""
        codes, _ = self._ancestral(lambda i, d, _: d.mean + d.stddev * self.part(eps, i))
        return self._concat(codes)

    @property
    def mean(self) -> torch.Tensor:
        return self.mean_pass()

    def mean_pass(self, fixed: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """The mean pass with the layers in ``fixed`` held at the given codes: (*batch, Σ L)."""
        codes, _ = self._ancestral(lambda i, d, _: d.mean, fixed)
        return self._concat(codes)

    def layer_at(self, i: int, fixed: dict[int, torch.Tensor] | None = None) -> Distribution:
        """Layer i's distribution in the mean pass with ``fixed`` layers held (a one-layer view of the hierarchy)."""
        return self._ancestral(lambda k, d, _: d.mean, fixed)[1][i]


def with_parameters_stopped(module: nn.Module, *inputs: torch.Tensor):
    """``module(*inputs)`` with its parameters detached: the output's gradient reaches the inputs only."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, inputs)


def top_down(n: int) -> tuple[int | None, ...]:
    """The parents of n layers conditioned each on the one above (z_l on z_{l+1}; the top on none)."""
    return tuple(i + 1 if i + 1 < n else None for i in range(n))


def topological_order(parents: tuple[int | None, ...]) -> tuple[int, ...]:
    """The layers in an order that puts each parent before its children."""
    order: list[int] = []
    while len(order) < len(parents):
        order += [i for i, p in enumerate(parents) if i not in order and (p is None or p in order)]
    return tuple(order)


# ----- the inference side: registered wirings ---------------------------------------------------------


class Hierarchy(PosteriorHead):
    """Interface: encoder features h (B, F) -> q(z|x), a ``LayeredGaussian`` over the L layers.

    parents: each layer's parent in q (None: the layer sees h alone). sees_x: whether each layer's
    network also takes h. decoder_layers: the layers p(x|·) is given. branched: whether each
    network passes each of its inputs through a layer of its own (``BranchedNet``) and the encoder
    is x itself, its hidden layers moved into q(z_L|x)'s network (``encoder_config``).
    """

    parents: tuple[int | None, ...]
    sees_x: tuple[bool, ...]
    branched: ClassVar[bool] = False

    def __init__(
        self,
        features: int,
        sizes: tuple[int, ...],
        hidden: tuple[int, ...],
        arch: str,
        act: str,
        logvar_range: tuple[float, float],
        top_hidden: tuple[int, ...] = (),
    ):
        super().__init__()
        self.sizes = tuple(sizes)
        self.parents, self.sees_x = self.wiring(len(sizes))
        self.nets = nn.ModuleList()
        for i, size in enumerate(sizes):
            p = self.parents[i]
            if p is not None:
                inputs = ((features,) if self.sees_x[i] else ()) + (sizes[p],)
                self.nets.append(LayerNet(inputs, hidden, size, arch, act, logvar_range, branched=self.branched))
            elif top_hidden:  # the layers a branched wiring moves from the encoder, then the Gaussian head
                self.nets.append(LayerNet((features,), top_hidden, size, arch, act, logvar_range))
            else:  # a layer on the encoder's features alone: a Gaussian head, as in a one-layer VAE
                self.nets.append(GaussianPosterior(features, size, logvar_range))

    @classmethod
    def from_config(cls, config: ModelConfig, features: int) -> Hierarchy:
        top_hidden = tuple(config.hidden) if cls.branched else ()
        return cls(features, layer_sizes(config), bridge_hidden(config), config.arch, config.activation, config.logvar_range, top_hidden)

    @classmethod
    def encoder_config(cls, config: ModelConfig) -> ModelConfig:
        """The config the shared encoder is built from: ``config``, or for a branched wiring one without
        hidden layers (the encoder flattens x; q(z_L|x) has those layers to itself)."""
        if not cls.branched:
            return config
        if ENCODERS[config.arch].needs_images:
            raise ConfigError(f"the {cls.name} hierarchy reads x with dense layers; it needs --arch mlp or gated, not {config.arch}")
        return dataclasses.replace(config, hidden=())

    def build_decoder(self, config: ModelConfig, params_per_output: int, extra: int = 0) -> LayerDecoder:
        """p(x|·)'s network on the codes of ``decoder_layers`` and ``extra`` context columns: the
        registered decoder of ``config.arch`` on their concatenation, or (branched) one dense layer per
        layer's code, of the decoder's first width, then the decoder's remaining layers."""
        layers = self.decoder_layers()
        if not (self.branched and len(layers) > 1):
            width = sum(self.sizes[i] for i in layers) + extra
            decoder = DECODERS[config.arch].from_config(dataclasses.replace(config, latent_dim=width), params_per_output)
            return LayerDecoder(decoder, self.sizes, layers, extra)
        first = config.hidden[-1]  # the decoder's layers run through reversed(hidden)
        branches = nn.ModuleList(dense_stack([self.sizes[i], first], config.arch, config.activation) for i in layers)
        inner = dataclasses.replace(config, latent_dim=first * len(layers) + extra, hidden=tuple(config.hidden[:-1]))
        return LayerDecoder(DECODERS[config.arch].from_config(inner, params_per_output), self.sizes, layers, extra, branches)

    @staticmethod
    @abstractmethod
    def wiring(n: int) -> tuple[tuple[int | None, ...], tuple[bool, ...]]:
        """(parents, sees_x) of the n layers."""

    @abstractmethod
    def decoder_layers(self) -> tuple[int, ...]:
        """The layers whose codes p(x|·) takes."""

    def forward(self, h: torch.Tensor) -> LayeredGaussian:
        return LayeredGaussian(self.sizes, self.parents, self.layers(h), h.shape[:-1], self.layers(h.detach(), stopped=True))

    def layers(self, h: torch.Tensor, stopped: bool = False) -> Callable[[int, torch.Tensor | None], Distribution]:
        """layer(i, parent code) -> q(z_l|x, z_parent) on features h (B, F); ``stopped``: the networks
        run with their parameters detached (``with_parameters_stopped``)."""

        def layer(i: int, parent: torch.Tensor | None) -> Distribution:
            inputs = (h,) if parent is None else (h, parent) if self.sees_x[i] else (parent,)
            return with_parameters_stopped(self.nets[i], *inputs) if stopped else self.nets[i](*inputs)

        return layer

    @classmethod
    def top_sees_x_alone(cls, n: int) -> bool:
        """Whether q(z_L|x) is a Gaussian of x alone (what a VampPrior's components are)."""
        return cls.wiring(n)[0][-1] is None

    def top(self, h: torch.Tensor) -> Distribution:
        """q(z_L|x) (B, L_L), where the top layer sees x alone."""
        if not self.top_sees_x_alone(len(self.sizes)):
            raise ConfigError(f"the {self.name} hierarchy's q(z_L|x) is not a Gaussian of x alone; a vampprior needs skip or branched")
        return self.nets[-1](h)


HIERARCHIES: Registry[type[Hierarchy]] = Registry("hierarchy")


@HIERARCHIES.register("skip")
class SkipHierarchy(Hierarchy):
    """q(z_L|x) Π q(z_l|x, z_{l+1}), decoder p(x|z_1, ..., z_L): Tomczak & Welling 2018's HVAE, every
    layer on the shared encoder's features, each network on its inputs joined."""

    @staticmethod
    def wiring(n: int):
        return top_down(n), (True,) * n

    def decoder_layers(self) -> tuple[int, ...]:
        return tuple(range(len(self.sizes)))


@HIERARCHIES.register("branched")
class BranchedHierarchy(SkipHierarchy):
    """The skip factorisation with the networks of the HVAE paper's code: q(z_L|x) the encoder's
    dense stack on x; q(z_l|x, z_{l+1}) one layer on x and one on z_{l+1}, then the joint layers;
    p(x|z_1, ..., z_L) one layer per layer's code, then the decoder's remaining layers."""

    branched = True


@HIERARCHIES.register("chain")
class ChainHierarchy(Hierarchy):
    """q(z_1|x) Π q(z_{l+1}|z_l), decoder p(x|z_1): Burda et al. 2016's two-layer model (784-200-200-100 / 100-100-50)."""

    @staticmethod
    def wiring(n: int):
        return (None, *range(n - 1)), (True,) + (False,) * (n - 1)

    def decoder_layers(self) -> tuple[int, ...]:
        return (0,)


# ----- the generative side ----------------------------------------------------------------------------


class HierarchicalPrior(Prior):
    """p(z) = p(z_L) Π_{l<L} p(z_l|z_{l+1}): ``top`` is a registered prior over z_L (normal, mixture,
    vampprior), each conditional a ``LayerNet`` on the layer above."""

    def __init__(
        self,
        top: Prior,
        sizes: tuple[int, ...],
        hidden: tuple[int, ...],
        arch: str,
        act: str,
        logvar_range: tuple[float, float],
    ):
        super().__init__()
        self.top, self.sizes = top, tuple(sizes)
        self.conditionals = nn.ModuleList(
            LayerNet((sizes[i + 1],), hidden, sizes[i], arch, act, logvar_range) for i in range(len(sizes) - 1)
        )

    @classmethod
    def from_config(cls, config: ModelConfig) -> HierarchicalPrior:
        sizes = layer_sizes(config)
        top = PRIORS[config.prior].from_config(dataclasses.replace(config, latent_dim=sizes[-1]))  # over z_L
        return cls(top, sizes, bridge_hidden(config), config.arch, config.activation, config.logvar_range)

    def forward(self, model: nn.Module) -> LayeredGaussian:
        top = self.top(model)

        def layer(i: int, parent: torch.Tensor | None) -> Distribution:
            return top if parent is None else self.conditionals[i](parent)

        return LayeredGaussian(self.sizes, top_down(len(self.sizes)), layer, torch.Size())


class LayerDecoder(DecoderNetwork):
    """A decoder given only some layers of z (Σ L,): it takes their codes, concatenated, from the full
    code, and the ``extra`` columns after it (a conditional model's context). With ``branches`` (one
    network per layer taken), each layer's code passes through its own branch first."""

    def __init__(
        self, decoder: Decoder, sizes: tuple[int, ...], layers: tuple[int, ...], extra: int = 0, branches: nn.ModuleList | None = None
    ):
        super().__init__()
        self.decoder, self.branches = decoder, branches
        offsets = list(itertools.accumulate(sizes, initial=0))
        self.spans = [(offsets[i], offsets[i + 1]) for i in layers] + [(offsets[-1], offsets[-1] + extra)]
        self.register_buffer("index", torch.cat([torch.arange(a, b) for a, b in self.spans]), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.branches is None:
            return self.decoder(z.index_select(-1, self.index))
        codes = [z[..., a:b] for a, b in self.spans]
        return self.decoder(torch.cat([branch(c) for branch, c in zip(self.branches, codes)] + codes[-1:], -1))

    def set_output_bias(self, params: torch.Tensor) -> None:
        self.decoder.set_output_bias(params)


# ----- one layer seen as a one-layer model -------------------------------------------------------------


class LayerView(nn.Module):
    """Layer l of a hierarchical model seen as a one-layer model: ``encode``, ``decode`` and ``prior``
    over z_l (L_l,), for the latent views.

    The layers above l are held at the prior's mean pass (the ``context``; none for the top layer),
    or at an input's codes (``held_at``).
    encode(x): q(z_l|x, context) in the mean pass of q (for the top layer of the ``skip`` wiring,
    q(z_L|x) exactly). prior(): p(z_L) for the top layer, p(z_l|context) below it. decode(z_l): the
    layers below at the means of p(z_k|z_{k+1}), then p(x|z).
    """

    def __init__(self, model: nn.Module, layer: int, held: dict[int, torch.Tensor] | None = None):
        super().__init__()
        sizes = layer_sizes(model.config)
        if not -len(sizes) <= layer < len(sizes):
            raise ConfigError(f"layer {layer} is out of range: the model has {len(sizes)} stochastic layers (0 to {len(sizes) - 1})")
        self.model, self.layer, self.sizes, self.held = model, layer % len(sizes), sizes, held
        self.config = dataclasses.replace(model.config, latent_dim=sizes[self.layer], latent_layers=())

    latent_dim = property(lambda self: self.sizes[self.layer])
    input_shape = property(lambda self: self.model.input_shape)
    device = property(lambda self: self.model.device)
    condition = property(lambda self: self.model.condition)
    conditional = property(lambda self: self.model.conditional)
    prior_module = property(lambda self: self.model.prior_module)
    deterministic = False

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
    def held_at(self, x: torch.Tensor, context: Context = None) -> LayerView:
        """This layer with the layers above held at the posterior mean pass of the input x (*input_shape,)
        instead of the prior's: a traversal or manifold around x then decodes x's own upper codes."""
        q = self.model.encode(x.unsqueeze(0).to(self.device), context)
        z = q.mean_pass()[0]
        return LayerView(self.model, self.layer, {k: q.part(z, k) for k in range(self.layer + 1, len(self.sizes))})

    def _fixed(self, lead: torch.Size, p: LayeredGaussian | None = None) -> dict[int, torch.Tensor]:
        return {k: c.expand(*lead, c.shape[-1]) for k, c in self.context(p).items()}

    def encode(self, x: torch.Tensor, context: Context = None) -> Distribution:
        """q(z_l|x, ...) (B, L_l); ``context``: a conditional model's context (labels (B,) or vectors (B, K), or one for all)."""
        return self.model.encode(x, context).layer_at(self.layer, self._fixed(torch.Size([len(x)])))

    def prior(self, context: Context = None) -> Distribution:
        """p(z_L), or p(z_l|context) below the top (a hierarchical model's prior takes no class)."""
        p = self.model.prior()
        return p.layer_at(self.layer, self.context(p))

    def decode(self, z: torch.Tensor, context: Context = None) -> Distribution:
        """p(x|·) for z_l (*batch, L_l): batch ``batch``; ``context``: a conditional model's context (one for all, labels or vectors)."""
        p = self.model.prior()
        fixed = {**self._fixed(z.shape[:-1], p), self.layer: z}
        return self.model.decode(p.mean_pass(fixed), context)

    def forward(self, *args, **kwargs):  # pragma: no cover - a view is not trained
        raise TypeError("a LayerView is a view for the latent tools; train the model itself")


def latent_view(model: nn.Module, layer: int | None = None) -> nn.Module:
    """What the latent views work on: ``model`` itself for a one-layer model, else ``LayerView`` of
    ``layer`` (default: the top layer). ``ConfigError`` when a one-layer model is given a layer other than 0."""
    if not is_hierarchical(model.config):
        if layer not in (None, 0, -1):
            raise ConfigError(f"layer {layer} is out of range: the model has one stochastic layer")
        return model
    return LayerView(model, -1 if layer is None else layer)


@torch.inference_mode()
def layer_statistics(
    model: nn.Module, x: torch.Tensor, *, samples: int = 16, batch_size: int = 500, seed: int = 0, context: Context = None
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Per layer i of a hierarchical model over the examples x (N, *shape): (KL per unit (L_i,), the
    units' activity Cov_x(E_q[z_i,u]) (L_i,), the layer's KL term), from ``samples`` seeded draws z ~ q(z|x).

    The layer's KL term is E_q[log q(z_i|parent) − log p(z_i|z_{i+1})]; summed over the layers it is
    the model's KL. Per unit it is closed form given the draws of the layers a unit is conditioned
    on, and sums to the layer's term; against a top prior that does not factorise (a mixture or
    VampPrior) it is the Monte Carlo KL to the prior's per-unit marginals, which need not sum to
    it. E_q[z_i] is the mean over the draws of q(z_i|parent)'s mean. context: a conditional model's labels (N,) or vectors (N, K).
    """
    sizes, device = layer_sizes(model.config), model.device
    kl = [torch.zeros(s, dtype=torch.float64) for s in sizes]
    layer_kl = [0.0 for _ in sizes]
    means: list[list[torch.Tensor]] = [[] for _ in sizes]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            yb = batch_context(context, start, start + batch_size)
            given = () if yb is None else (yb.to(device) if isinstance(yb, torch.Tensor) else yb,)
            q, p = model.encode(x[start : start + batch_size].to(device), *given), model.prior()
            z = q.sample((samples,))  # (S, B, Σ L)
            for i, (qi, pi) in enumerate(zip(q.layers(z), p.layers(z))):
                zi, qd = q.part(z, i), qi.base_dist  # (S, B, L_i); per-unit Normal of batch (S or 1.., B, L_i)
                if isinstance(pi, Independent) and isinstance(pi.base_dist, Normal):
                    unit_kl = kl_divergence(qd, pi.base_dist).expand_as(zi)
                else:  # a mixture over the top layer: Monte Carlo per unit against its marginals
                    unit_kl = qd.log_prob(zi) - marginals(pi).log_prob(zi)
                kl[i] += unit_kl.double().mean(0).sum(0).cpu()
                layer_kl[i] += float((qi.log_prob(zi) - pi.log_prob(zi)).double().mean(0).sum())
                means[i].append(qd.mean.expand_as(zi).double().mean(0).cpu())  # (B, L_i): E_q[z_i] per example
    n = max(len(x), 1)
    activity = [torch.cat(m).var(0, unbiased=False) if len(x) > 1 else torch.zeros_like(k) for k, m in zip(kl, means)]
    return [(k / n, a, total / n) for k, a, total in zip(kl, activity, layer_kl)]


def describe_latent(config: ModelConfig) -> str:
    """'latent dim 16', or 'latent layers 40+40 (skip)' for a hierarchical model."""
    if not is_hierarchical(config):
        return f"latent dim {config.latent_dim}"
    return f"latent layers {'+'.join(map(str, config.latent_layers))} ({config.hierarchy})"


def view_at_input(view: nn.Module, x: torch.Tensor, context: Context = None) -> nn.Module:
    """``view`` for views around the input x: a lower layer's ``LayerView`` with the layers above held
    at x's codes (``LayerView.held_at``); any other view (a one-layer model, a top layer) as it is."""
    return view.held_at(x, context) if isinstance(view, LayerView) and view.layer < len(view.sizes) - 1 else view
