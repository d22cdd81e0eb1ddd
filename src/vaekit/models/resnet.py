"""A residual convolutional network, registered as ``resnet``, for images of any size and channel count.

Encoder: a 3x3 stem, then one pre-activation residual block per stage of ``hidden`` channels, each
halving the size (stride 2; the skip path a strided 1x1 convolution), then flatten [-> dense].
Decoder: the mirror: [dense ->] a linear map to the smallest feature map, then per stage a
nearest-neighbour upsampling to exactly the encoder's size at that stage and a residual block, then
a 3x3 convolution to the likelihood's parameters. Sizes follow ``networks.conv_sizes``, so odd
sizes round-trip as in ``conv``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from vaekit.models.networks import DECODERS, ENCODERS, Encoder, ImageDecoder, activation, check_image_shape, conv_sizes, latent_to_grid

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class ResidualBlock(nn.Module):
    """y = skip(x) + conv3x3(act(conv3x3_stride(act(x)))): (B, c_in, H, W) -> (B, c_out, ceil(H/s), ceil(W/s)).

    skip is the identity when shapes agree, else a 1x1 convolution with the same stride."""

    def __init__(self, c_in: int, c_out: int, act: str, stride: int = 1):
        super().__init__()
        self.main = nn.Sequential(
            activation(act),
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
            activation(act),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out and stride == 1 else nn.Conv2d(c_in, c_out, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.main(x)


@ENCODERS.register("resnet")
class ResNetEncoder(Encoder):
    """x (B, C, H, W) -> stem -> strided residual block per stage -> act -> flatten [-> Linear dense] -> (B, F)."""

    needs_images = True

    def __init__(self, input_shape: tuple[int, ...], channels: tuple[int, ...], act: str, dense: int = 0):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = [nn.Conv2d(c, channels[0], 3, padding=1)]
        c = channels[0]
        for out in channels:
            layers.append(ResidualBlock(c, out, act, stride=2))
            c = out
        hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
        layers += [activation(act), nn.Flatten()]
        features = c * hs[-1] * ws[-1]
        if dense:
            layers += [nn.Linear(features, dense), activation(act)]
            features = dense
        self.net = nn.Sequential(*layers)
        self.out_features = features
        self.to(memory_format=torch.channels_last)  # as ConvEncoder: the fastest layout for the convolution libraries

    @classmethod
    def from_config(cls, config: ModelConfig) -> ResNetEncoder:
        check_image_shape(cls, tuple(config.input_shape))
        return cls(tuple(config.input_shape), tuple(config.hidden), config.activation, config.conv_dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, F)


@DECODERS.register("resnet")
class ResNetDecoder(ImageDecoder):
    """z (B, L) [-> Linear dense] -> Linear -> (B, C_last, h, w) -> per stage: upsample to the encoder's
    size there, residual block -> act -> conv3x3 -> (B, k, C, H, W)."""

    needs_images = True

    def __init__(self, latent_dim: int, channels: tuple[int, ...], act: str, output_shape: tuple[int, ...], k: int, dense: int = 0):
        super().__init__()
        c_out, h, w = output_shape
        self.output_shape, self.k = output_shape, k
        hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
        rev = list(reversed(channels))
        layers = latent_to_grid(latent_dim, dense, act, (rev[0], hs[-1], ws[-1]), activate=False)
        for i, c in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            layers += [nn.Upsample(size=(hs[-2 - i], ws[-2 - i]), mode="nearest"), ResidualBlock(c, nxt, act)]
        layers += [activation(act), nn.Conv2d(rev[-1], k * c_out, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> ResNetDecoder:
        check_image_shape(cls, tuple(config.input_shape))
        return cls(
            config.latent_dim, tuple(config.hidden), config.activation, tuple(config.input_shape), params_per_output, config.conv_dense
        )
