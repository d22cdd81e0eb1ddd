"""The inference side of a hierarchical model: q(z|x) over the layers, a ``LayeredGaussian``, from
the encoder's features, in one of the wirings registered in ``HIERARCHIES`` (``ModelConfig.hierarchy``):

- ``skip`` (Tomczak & Welling 2018's HVAE): q(z_L|x) Π q(z_l|x, z_{l+1}); p(x|z_1, ..., z_L). The
  layers read the shared encoder's features h, and each network joins its inputs first.
- ``branched``: the same factorisation with the networks of the HVAE paper's code: no shared
  encoder (q(z_L|x) has the encoder's stack to itself), and q(z_l|x, z_{l+1}) and p(x|z_1, ..., z_L)
  pass each input through a layer of its own before the joint layers.
- ``chain`` (Burda et al. 2016's two-layer model): q(z_1|x) Π q(z_{l+1}|z_l); p(x|z_1).

A wiring also says which layers p(x|·) reads, so it builds the decoder (``build_decoder``).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.errors import ConfigError
from vaekit.models.distributions import LayeredGaussian
from vaekit.models.hierarchy.networks import (
    LayerDecoder,
    LayerNet,
    bridge_hidden,
    dense_stack,
    layer_sizes,
    top_down,
    with_parameters_stopped,
)
from vaekit.models.networks import DECODERS, ENCODERS
from vaekit.models.posteriors import GaussianPosterior, PosteriorHead
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class Hierarchy(PosteriorHead):
    """Interface: encoder features h (B, F) -> q(z|x), a ``LayeredGaussian`` over the L layers.

    parents: each layer's parent in q (None: the layer sees h alone). sees_x: whether each layer's
    network also takes h. decoder_layers: the layers p(x|·) is given. branched: whether each
    network passes each of its inputs through a layer of its own (``BranchedNet``) and the encoder
    is x itself, its hidden layers moved into q(z_L|x)'s network (``encoder_config``).

    q is a density whose layers are diagonal Gaussians given their parents; together they do not
    factorise over the units, and the KL to p(z) is Monte Carlo.
    """

    factorises = False
    gaussian = True
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
