"""The gated dense network of the VampPrior paper (Tomczak & Welling 2018), registered as ``gated``.

A ``GatedDense`` layer computes h = (W1 x + b1) ⊙ sigmoid(W2 x + b2): the gate takes the place of an
activation, so ``ModelConfig.activation`` is not used by this network. The paper's static-MNIST
models use two such layers of 300 units (``--arch gated --hidden 300 300``).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from vaekit.models.networks import DECODERS, ENCODERS, Decoder, Encoder

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class GatedDense(nn.Module):
    """h = (W1 x + b1) ⊙ sigmoid(W2 x + b2), (B, in) -> (B, out); W1 and W2 are one (in, 2·out) matrix
    product rather than two thin ones. ``dropout``: h's units are zeroed with this probability in training."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out_features)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.linear(x).chunk(2, dim=-1)  # (B, out) each
        return self.dropout(h * torch.sigmoid(gate))


def gated_stack(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """GatedDense layers through ``sizes`` (with ``dropout`` after each)."""
    return nn.Sequential(*(GatedDense(a, b, dropout) for a, b in itertools.pairwise(sizes)))


@ENCODERS.register("gated")
class GatedEncoder(Encoder):
    """x (B, *shape) -> flatten -> GatedDense (+ dropout) per hidden size -> features (B, hidden[-1])."""

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        d = math.prod(input_shape)
        self.net = gated_stack([d, *hidden], dropout)
        self.out_features = hidden[-1] if hidden else d

    @classmethod
    def from_config(cls, config: ModelConfig) -> GatedEncoder:
        return cls(tuple(config.input_shape), tuple(config.hidden), config.dropout[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, F)


@DECODERS.register("gated")
class GatedDecoder(Decoder):
    """z (B, L) -> GatedDense (+ dropout) per hidden size (reversed) -> Linear -> (B, k, *shape) likelihood parameters."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], output_shape: tuple[int, ...], k: int, dropout: float = 0.0):
        super().__init__()
        self.output_shape, self.k = output_shape, k
        sizes = [latent_dim, *reversed(hidden)]
        self.net = nn.Sequential(gated_stack(sizes, dropout), nn.Linear(sizes[-1], k * math.prod(output_shape)))

    @classmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> GatedDecoder:
        return cls(config.latent_dim, tuple(config.hidden), tuple(config.input_shape), params_per_output, config.dropout[1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), self.k, *self.output_shape)  # (B, k, *shape)

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Make the output at zero pre-activation equal ``params`` (k, *shape)."""
        self.net[-1].bias.copy_(params.flatten())
