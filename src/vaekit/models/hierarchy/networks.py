"""The layers of a hierarchical model and the networks between them: the layer sizes a config gives,
each layer's conditional N(μ, diag σ²) on its inputs (``LayerNet``, ``BranchedNet``), and the decoder
given the codes of some layers (``LayerDecoder``)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
from torch import nn

from vaekit.models.distributions import DiagonalNormal
from vaekit.models.gated import GatedEncoder, gated_stack
from vaekit.models.networks import ENCODERS, Decoder, DecoderNetwork, mlp
from vaekit.models.posteriors import GaussianPosterior

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


def layer_sizes(config: ModelConfig) -> tuple[int, ...]:
    """(L_1, ..., L_L): the layers of a hierarchical model, or (latent_dim,) for a one-layer model."""
    return tuple(config.latent_layers) or (config.latent_dim,)


def is_hierarchical(config: ModelConfig) -> bool:
    return len(config.latent_layers) > 1


def top_down(n: int) -> tuple[int | None, ...]:
    """The parents of n layers conditioned each on the one above (z_l on z_{l+1}; the top on none)."""
    return tuple(i + 1 if i + 1 < n else None for i in range(n))


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


def join(*inputs: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting the leading ones: h (B, F) with z (S, B, L) -> (S, B, F + L)."""
    if len(inputs) == 1:
        return inputs[0]
    lead = torch.broadcast_shapes(*(t.shape[:-1] for t in inputs))
    return torch.cat([t.expand(*lead, t.shape[-1]) for t in inputs], -1)


def with_parameters_stopped(module: nn.Module, *inputs: torch.Tensor):
    """``module(*inputs)`` with its parameters detached: the output's gradient reaches the inputs only."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, inputs)


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
