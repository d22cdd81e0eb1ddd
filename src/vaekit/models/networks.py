"""Encoder and decoder bodies: plain ``nn.Module`` maps between data and feature vectors.

An encoder body maps x (B, *input_shape) to features (B, F) and exposes ``out_features``.
A decoder body maps z (B, L) to (B, k * C, H, W) for images or (B, k * D) for flat data, where
k is the number of parameters per output the likelihood needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]()


def mlp(sizes: list[int], act: str, final_activation: bool) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``act`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (B, *shape) -> flatten -> Linear/act per hidden size -> features (B, hidden[-1])."""

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...], act: str):
        super().__init__()
        d = math.prod(input_shape)
        self.net = mlp([d, *hidden], act, final_activation=True)
        self.out_features = hidden[-1] if hidden else d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, F)


class MLPDecoder(nn.Module):
    """z (B, L) -> Linear/act per hidden size (reversed) -> (B, k, *shape) likelihood parameters."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], act: str, output_shape: tuple[int, ...], k: int):
        super().__init__()
        self.output_shape, self.k = output_shape, k
        self.net = mlp([latent_dim, *reversed(hidden), k * math.prod(output_shape)], act, final_activation=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), self.k, *self.output_shape)  # (B, k, *shape)

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Make the output at zero pre-activation equal ``params`` (k, *shape)."""
        self.net[-1].bias.copy_(params.flatten())


def _conv_sizes(size: int, stages: int) -> list[int]:
    """Spatial size after each stride-2 stage (kernel 3, padding 1): ceil(size / 2) each time."""
    sizes = [size]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> stride-2 Conv2d stages -> flatten [-> Linear dense] -> features (B, F)."""

    def __init__(self, input_shape: tuple[int, ...], channels: tuple[int, ...], act: str, dense: int = 0):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, stride=2, padding=1), activation(act)]
            c = out
        hs, ws = _conv_sizes(h, len(channels)), _conv_sizes(w, len(channels))
        layers.append(nn.Flatten())
        features = c * hs[-1] * ws[-1]
        if dense:
            layers += [nn.Linear(features, dense), activation(act)]
            features = dense
        self.net = nn.Sequential(*layers)
        self.out_features = features
        # channels-last kernels: the convolutions then run (and leave their outputs) in the layout
        # oneDNN and cuDNN are fastest in (CPU, the bench's conv model: 7-15% faster steps)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, F)


class ConvDecoder(nn.Module):
    """z (B, L) [-> Linear dense] -> Linear -> (B, C_last, h, w) -> ConvTranspose2d stages -> (B, k, C, H, W).

    Mirrors ``ConvEncoder`` exactly: each transposed convolution's ``output_padding`` is chosen
    so the output returns to the encoder's size at that stage, so any H and W work.
    """

    def __init__(self, latent_dim: int, channels: tuple[int, ...], act: str, output_shape: tuple[int, ...], k: int, dense: int = 0):
        super().__init__()
        c_out, h, w = output_shape
        self.output_shape, self.k = output_shape, k
        hs, ws = _conv_sizes(h, len(channels)), _conv_sizes(w, len(channels))
        rev = list(reversed(channels))
        head: list[nn.Module] = []
        width = latent_dim
        if dense:
            head += [nn.Linear(latent_dim, dense), activation(act)]
            width = dense
        head += [nn.Linear(width, rev[0] * hs[-1] * ws[-1]), activation(act), nn.Unflatten(1, (rev[0], hs[-1], ws[-1]))]
        layers = head
        for i, c in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else k * c_out
            th, tw = hs[-2 - i], ws[-2 - i]  # target size of this stage
            sh, sw = hs[-1 - i], ws[-1 - i]
            layers.append(
                nn.ConvTranspose2d(c, nxt, kernel_size=3, stride=2, padding=1, output_padding=(th - (2 * sh - 1), tw - (2 * sw - 1)))
            )
            if i + 1 < len(rev):
                layers.append(activation(act))
        self.net = nn.Sequential(*layers)
        self.to(memory_format=torch.channels_last)  # as in ConvEncoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)  # (B, k*C, H, W), channels-last in memory
        return out.reshape(len(z), self.k, *self.output_shape)  # (B, k, C, H, W)

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Set the last layer's per-channel bias to the spatial mean of ``params`` (k, C, H, W)."""
        self.net[-1].bias.copy_(params.mean((-2, -1)).flatten())
