"""Encoder and decoder networks: maps between data and feature vectors, chosen by ``arch``.

An ``Encoder`` maps x (B, *input_shape) to features (B, out_features); a ``Decoder`` maps z (B, L)
to likelihood parameters (B, k, *input_shape), k = the likelihood's ``params_per_output``. Each
architecture registers its encoder in ``ENCODERS`` and its decoder in ``DECODERS`` under the same
name; activations are registered in ``ACTIVATIONS``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from vaekit.errors import ConfigError
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")
for _name, _cls in (
    ("relu", nn.ReLU),
    ("gelu", nn.GELU),
    ("silu", nn.SiLU),
    ("tanh", nn.Tanh),
    ("elu", nn.ELU),
    ("leaky_relu", nn.LeakyReLU),
    ("identity", nn.Identity),
):
    ACTIVATIONS.add(_name, _cls)


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


class Encoder(nn.Module, ABC):
    """Interface: x (B, *input_shape) -> features (B, ``out_features``).

    needs_images: the network only works on (C, H, W) data.
    reads_tokens: the network reads token sequences (N, T) of int64 ids (and only those).
    fixed_layout: its layers are a paper's, fixed: it reads none of the size settings (``hidden``,
        ``activation``, ``conv_dense``, ``dropout``).
    """

    needs_images: ClassVar[bool] = False
    reads_tokens: ClassVar[bool] = False
    fixed_layout: ClassVar[bool] = False
    out_features: int

    @classmethod
    @abstractmethod
    def from_config(cls, config: ModelConfig) -> Encoder:
        """The encoder ``config`` describes (its ``input_shape``, ``hidden``, ``activation``, ...)."""

    def with_extra_inputs(self, x: torch.Tensor, rows: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """Features (M, F) of the inputs [x[rows], extra] of a flat encoder built for D + K inputs: x (B, D),
        rows (M,) into x, extra (M, K) (a context per row: the same example with each class). An encoder whose
        first layer is linear computes that layer's x part once per example, not once per row."""
        return self(torch.cat([x[rows], extra], 1))


class DecoderNetwork(nn.Module, ABC):
    """Interface (what the model calls): z (B, L) -> likelihood parameters (B, k, *output_shape).

    autoregressive: the network reads the sequence it explains, x_<t, to give p(x_t | x_<t, z)
        (``vaekit.models.sequence``): the model hands it and z to a ``TokenSequence`` instead of calling it on z.
    """

    autoregressive: ClassVar[bool] = False

    @abstractmethod
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Make the output at zero last pre-activation (about) ``params`` (k, *shape)."""


class Decoder(DecoderNetwork):
    """Interface of a registered decoder (``--arch``): a ``DecoderNetwork`` built from the config."""

    needs_images: ClassVar[bool] = False
    reads_tokens: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> Decoder:
        """The decoder ``config`` describes, producing ``params_per_output`` maps per data value."""


ENCODERS: Registry[type[Encoder]] = Registry("architecture")
DECODERS: Registry[type[Decoder]] = Registry("architecture")


def check_image_shape(cls: type, shape: tuple[int, ...]) -> None:
    if cls.needs_images and len(shape) != 3:
        raise ConfigError(f"the {cls.name} network needs images (C, H, W), got data of shape {tuple(shape)}; use --arch mlp")


def mlp(sizes: list[int], act: str, final_activation: bool, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``act`` between them (and after the last if asked), each
    activation followed by dropout with probability ``dropout`` (if above 0)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(activation(act))
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@ENCODERS.register("mlp")
class MLPEncoder(Encoder):
    """x (B, *shape) -> flatten -> Linear/act (+ dropout) per hidden size -> features (B, hidden[-1])."""

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...], act: str, dropout: float = 0.0):
        super().__init__()
        d = math.prod(input_shape)
        self.net = mlp([d, *hidden], act, final_activation=True, dropout=dropout)
        self.out_features = hidden[-1] if hidden else d

    @classmethod
    def from_config(cls, config: ModelConfig) -> MLPEncoder:
        return cls(tuple(config.input_shape), tuple(config.hidden), config.activation, config.dropout[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, F)

    def with_extra_inputs(self, x: torch.Tensor, rows: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        first, d = self.net[0], x.shape[1]
        if not isinstance(first, nn.Linear):  # no hidden layer: the generic join
            return super().with_extra_inputs(x, rows, extra)
        h = F.linear(x, first.weight[:, :d], first.bias)[rows] + extra @ first.weight[:, d:].T  # W [x; y] + b = W_x x + W_y y + b (M, H)
        return self.net[1:](h)  # (M, F)


@DECODERS.register("mlp")
class MLPDecoder(Decoder):
    """z (B, L) -> Linear/act (+ dropout) per hidden size (reversed) -> (B, k, *shape) likelihood parameters."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], act: str, output_shape: tuple[int, ...], k: int, dropout: float = 0.0):
        super().__init__()
        self.output_shape, self.k = output_shape, k
        self.net = mlp([latent_dim, *reversed(hidden), k * math.prod(output_shape)], act, final_activation=False, dropout=dropout)

    @classmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> MLPDecoder:
        shape, dropout = tuple(config.input_shape), config.dropout[1]
        return cls(config.latent_dim, tuple(config.hidden), config.activation, shape, params_per_output, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), self.k, *self.output_shape)  # (B, k, *shape)

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Make the output at zero pre-activation equal ``params`` (k, *shape)."""
        self.net[-1].bias.copy_(params.flatten())


def conv_sizes(size: int, stages: int) -> list[int]:
    """Spatial size after each stride-2 stage (kernel 3, padding 1): ceil(size / 2) each time."""
    sizes = [size]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


@ENCODERS.register("conv")
class ConvEncoder(Encoder):
    """x (B, C, H, W) -> stride-2 Conv2d stages -> flatten [-> Linear dense] -> features (B, F)."""

    needs_images = True

    def __init__(self, input_shape: tuple[int, ...], channels: tuple[int, ...], act: str, dense: int = 0):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, stride=2, padding=1), activation(act)]
            c = out
        hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
        layers.append(nn.Flatten())
        features = c * hs[-1] * ws[-1]
        if dense:
            layers += [nn.Linear(features, dense), activation(act)]
            features = dense
        self.net = nn.Sequential(*layers)
        self.out_features = features
        # channels-last kernels: the convolutions then run (and leave their outputs) in the layout
        # oneDNN and cuDNN are fastest in (the gain is measured in bench/README.md)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, config: ModelConfig) -> ConvEncoder:
        check_image_shape(cls, tuple(config.input_shape))
        return cls(tuple(config.input_shape), tuple(config.hidden), config.activation, config.conv_dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, F)


def latent_to_grid(latent_dim: int, dense: int, act: str, grid: tuple[int, int, int], *, activate: bool) -> list[nn.Module]:
    """The head of an image decoder: z (B, L) [-> Linear dense -> act] -> Linear -> [act ->] (B, *grid)."""
    layers: list[nn.Module] = []
    width = latent_dim
    if dense:
        layers += [nn.Linear(latent_dim, dense), activation(act)]
        width = dense
    layers.append(nn.Linear(width, math.prod(grid)))
    if activate:
        layers.append(activation(act))
    return [*layers, nn.Unflatten(1, grid)]


class ImageDecoder(Decoder):
    """A decoder whose ``net`` maps z (B, L) to images of parameters (B, k*C, H, W) (channels-last in
    memory): the image decoders' shared output, reshaped to (B, k, C, H, W), with a per-channel output bias.
    A subclass sets ``net``, ``k`` and ``output_shape`` (C, H, W)."""

    net: nn.Module
    k: int
    output_shape: tuple[int, ...]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)  # (B, k*C, H, W)
        return out.reshape(len(z), self.k, *self.output_shape)  # (B, k, C, H, W)

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Set the last layer's per-channel bias to the spatial mean of ``params`` (k, C, H, W)."""
        self.net[-1].bias.copy_(params.mean((-2, -1)).flatten())


@DECODERS.register("conv")
class ConvDecoder(ImageDecoder):
    """z (B, L) [-> Linear dense] -> Linear -> (B, C_last, h, w) -> ConvTranspose2d stages -> (B, k, C, H, W).

    Mirrors ``ConvEncoder`` exactly: each transposed convolution's ``output_padding`` is chosen
    so the output returns to the encoder's size at that stage, so any H and W work.
    """

    needs_images = True

    def __init__(self, latent_dim: int, channels: tuple[int, ...], act: str, output_shape: tuple[int, ...], k: int, dense: int = 0):
        super().__init__()
        c_out, h, w = output_shape
        self.output_shape, self.k = output_shape, k
        hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
        rev = list(reversed(channels))
        layers = latent_to_grid(latent_dim, dense, act, (rev[0], hs[-1], ws[-1]), activate=True)
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

    @classmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> ConvDecoder:
        check_image_shape(cls, tuple(config.input_shape))
        shape = tuple(config.input_shape)
        return cls(config.latent_dim, tuple(config.hidden), config.activation, shape, params_per_output, config.conv_dense)


STUDY_CHANNELS = (32, 32, 64, 64)  # the study network's conv channels, nearest the data first
STUDY_DENSE = 256  # its dense layer between the convolutions and the latent
STUDY_STRIDE = 2 ** len(STUDY_CHANNELS)  # H and W must be multiples of this (16)


def check_study_shape(cls: type, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of images whose sides the four stride-2 stages halve exactly; a ``ConfigError`` otherwise."""
    check_image_shape(cls, shape)
    c, h, w = shape
    if h % STUDY_STRIDE or w % STUDY_STRIDE:
        raise ConfigError(
            f"the {cls.name} network needs images whose height and width are multiples of {STUDY_STRIDE} (64 x 64 in the study), "
            f"got {h} x {w}; resize them with --image-size"
        )
    return c, h, w


@ENCODERS.register("study-conv")
class StudyConvEncoder(Encoder):
    """The encoder of Locatello et al. 2019's study (disentanglement_lib's ``conv_encoder``), for 64 x 64
    images (any H, W divisible by 16): x (B, C, H, W) -> Conv2d 4x4 stride 2 with 32, 32, 64, 64
    channels, each with a ReLU -> flatten -> Linear 256 -> ReLU -> features (B, 256). Its layers are
    fixed: ``hidden``, ``activation``, ``conv_dense`` and ``dropout`` do not apply."""

    needs_images = True
    fixed_layout = True

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in STUDY_CHANNELS:
            layers += [nn.Conv2d(c, out, kernel_size=4, stride=2, padding=1), nn.ReLU(inplace=True)]  # halves H and W
            c = out
        grid = c * (h // STUDY_STRIDE) * (w // STUDY_STRIDE)
        # in-place ReLUs: no second copy of each (B, 32, H/2, W/2) activation, 8% faster encoding on a CPU
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(grid, STUDY_DENSE), nn.ReLU(inplace=True))
        self.out_features = STUDY_DENSE
        self.to(memory_format=torch.channels_last)  # as in ConvEncoder

    @classmethod
    def from_config(cls, config: ModelConfig) -> StudyConvEncoder:
        return cls(check_study_shape(cls, tuple(config.input_shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 256)


@DECODERS.register("study-conv")
class StudyConvDecoder(ImageDecoder):
    """The decoder of Locatello et al. 2019's study (disentanglement_lib's ``deconv_decoder``): z (B, L)
    -> Linear 256 -> ReLU -> Linear 64·(H/16)·(W/16) -> ReLU -> (B, 64, H/16, W/16) -> ConvTranspose2d
    4x4 stride 2 with 64, 32, 32 channels (ReLU after each), then to k·C -> (B, k, C, H, W) (the
    likelihood's parameters: Bernoulli logits in the study)."""

    needs_images = True

    def __init__(self, latent_dim: int, output_shape: tuple[int, int, int], k: int):
        super().__init__()
        c_out, h, w = output_shape
        self.output_shape, self.k = output_shape, k
        rev = list(reversed(STUDY_CHANNELS))  # 64, 64, 32, 32
        grid = (rev[0], h // STUDY_STRIDE, w // STUDY_STRIDE)
        layers = latent_to_grid(latent_dim, STUDY_DENSE, "relu", grid, activate=True)
        for c, nxt in zip(rev, [*rev[1:], k * c_out]):
            layers += [nn.ConvTranspose2d(c, nxt, kernel_size=4, stride=2, padding=1), nn.ReLU()]  # doubles H and W
        self.net = nn.Sequential(*layers[:-1])  # no ReLU after the last
        self.to(memory_format=torch.channels_last)  # as in ConvEncoder

    @classmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> StudyConvDecoder:
        return cls(config.latent_dim, check_study_shape(cls, tuple(config.input_shape)), params_per_output)
