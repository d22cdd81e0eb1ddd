"""A copy of a trained model whose outputs are the same bits in every process.

Floating-point sums depend on their order, and the order depends on the BLAS kernel, the thread
count and the batch size; bits-back decoding fails if the decoder rebuilds even one probability
differently. ``ExactModel`` makes every matrix product exact instead: weights are rounded to
multiples of 2^-WEIGHT_BITS, every input of a linear or convolution layer to multiples of
2^-ACTIVATION_BITS, and the layers run in float64, where sums of such products are exact integers
(times 2^-(WEIGHT_BITS + ACTIVATION_BITS)) as long as they stay below 2^53: any summation order
gives the same result. Biases, ReLU, clamps and the posterior's linear head are exact too;
smooth activations (tanh, GELU, ...) are rounded to the grid before the next layer reads them.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.compression.errors import CompressionError
from vaekit.models.contract import Context, LatentSpec, Model
from vaekit.models.distributions import topological_order

WEIGHT_BITS = 16
ACTIVATION_BITS = 16
_EXACT_LIMIT = 2.0 ** (52 - WEIGHT_BITS - ACTIVATION_BITS)  # |layer output| below this: every partial sum exact
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def to_grid(t: torch.Tensor, bits: int) -> torch.Tensor:
    """``t`` rounded to the nearest multiple of 2^-bits (exact in float64: power-of-two scaling)."""
    scale = float(2**bits)
    return torch.round_(t * scale).div_(scale)  # one new tensor, not three: it runs on every layer's input


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over the state_dict in name order: each name, dtype, shape and the tensor's bytes."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _round_input(module: nn.Module, args: tuple) -> tuple:
    return (to_grid(args[0], ACTIVATION_BITS), *args[1:])


def _check_output(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
    if out.numel():
        lo, hi = torch.aminmax(out)  # one pass; a NaN fails both comparisons
        if not (bool(hi < _EXACT_LIMIT) and bool(lo > -_EXACT_LIMIT)):
            raise CompressionError(f"a layer's outputs reach {out.abs().max().item():.3g}, beyond the range of exact arithmetic")


@dataclass(frozen=True)
class GaussianLayers:
    """q(z|x) or p(z) as the bits-back coder sees them: Gaussian layers over z = [z_1, ..., z_L].

    sizes: each layer's size L_i. parents: each layer's parent (None: it has none). order: the
    layers, each after its parent. gaussian(i, parent_code): layer i's (μ, log σ²), float64 (n, L_i)
    each, given its parent's code (n, L_parent) on the decoder's input grid (None for no parent).
    One latent layer is the case L = 1."""

    sizes: tuple[int, ...]
    parents: tuple[int | None, ...]
    order: tuple[int, ...]
    gaussian: Callable[[int, np.ndarray | None], tuple[np.ndarray, np.ndarray]]


def _labels(labels: np.ndarray | None) -> torch.Tensor | None:
    return None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))


def _layers(dist: Distribution, sizes: tuple[int, ...], parents: tuple[int | None, ...]) -> GaussianLayers:
    """q(z|x) or p(z) of the layers ``sizes`` wired by ``parents`` as ``GaussianLayers``: a one-layer
    model's diagonal Gaussian, or the layers of a hierarchical model's ``LayeredGaussian``."""
    layered = len(sizes) > 1

    def gaussian(i: int, parent: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            d = dist.layer(i, None if parent is None else torch.from_numpy(parent)) if layered else dist
            return d.mean.numpy().astype(np.float64), d.logvar.numpy().astype(np.float64)

    return GaussianLayers(tuple(sizes), tuple(parents), topological_order(parents), gaussian)


class ExactModel(Model):
    """A float64 copy of ``model`` with grid-rounded weights and layer inputs (see module docstring),
    itself a ``Model`` (``encode``, ``decode``, ``prior`` of the copy; ``latent``: the model's).

    For the coder: posterior_layers(x) -> q(z|x) as ``GaussianLayers``; prior_layers() -> p(z) as
    ``GaussianLayers`` (its layers without a parent are the standard normal, or a conditional prior's
    p(z|y)); decoder_params(z) -> (B, k, *shape).
    """

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(to_grid(p, WEIGHT_BITS))
        for m in self.model.modules():
            if isinstance(m, _LAYERS):
                m.register_forward_pre_hook(_round_input)
                m.register_forward_hook(_check_output)

    # ----- the Model interface: the exact copy's distributions ---------------------------------------

    @property
    def latent(self) -> LatentSpec:
        return self.model.latent

    latent_dim = property(lambda self: self.model.latent_dim)
    input_shape = property(lambda self: self.model.input_shape)
    device = property(lambda self: self.model.device)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, context: Context = None) -> Distribution:
        """q(z|x) of the exact copy for x (B, *shape) float64."""
        return self.model.encode(x, context)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, context: Context = None) -> Distribution:
        """p(x|z) of the exact copy for z (*batch, L) float64."""
        return self.model.decode(z, context)

    @torch.inference_mode()
    def prior(self, context: Context = None) -> Distribution:
        """p(z) (p(z|y)) of the exact copy."""
        return self.model.prior(context)

    # ----- the coder's view: Gaussian layers as float64 arrays ----------------------------------------

    @torch.inference_mode()
    def posterior_layers(self, x: torch.Tensor, labels: np.ndarray | None = None) -> GaussianLayers:
        """q(z|x) (q(z|x, y) for a label-conditional model's ``labels`` (B,)) for x (B, *shape) float64: a
        DiagonalNormal or a hierarchy's layers (check_model), whose log-variances are the heads' exact outputs."""
        return _layers(self.model.encode(x, _labels(labels)), self.latent.layers, self.posterior_wiring()[0])

    @torch.inference_mode()
    def posterior_layers_above_x(self, n: int) -> GaussianLayers:
        """q's layers for n examples without running the encoder: only the layers that read no x (nor
        the context, which enters with x) may be asked for, the layers Bit-Swap decodes before x is known."""
        features = torch.zeros(n, self.model.encoder.out_features, dtype=torch.float64)  # read by no layer asked for
        return _layers(self.model.posterior(features), self.latent.layers, self.posterior_wiring()[0])

    def posterior_order(self) -> tuple[int, ...]:
        """The order q(z|x) decodes its layers in (parents first), known without data."""
        return topological_order(self.posterior_wiring()[0])

    def posterior_wiring(self) -> tuple[tuple[int | None, ...], tuple[bool, ...], tuple[int, ...]]:
        """q's structure, known without data, as the posterior head declares it: each layer's parent, whether
        its network reads x, and the layers the decoder p(x|·) reads (one layer: ``((None,), (True,), (0,))``)."""
        head = self.model.posterior
        return tuple(head.parents), tuple(head.sees_x), tuple(head.decoder_layers())

    def prior_wiring(self) -> tuple[tuple[int | None, ...], tuple[int, ...]]:
        """p's structure, known without data: each layer's parent (as the prior declares it) and each layer's size."""
        return tuple(self.model.prior_module.parents), self.latent.layers

    @torch.inference_mode()
    def prior_layers(self, labels: np.ndarray | None = None) -> GaussianLayers:
        """p(z): one standard-normal layer, a hierarchy's standard-normal top and Gaussian conditionals below
        it, or a conditional prior's Gaussian p(z|y) at ``labels`` (B,)."""
        p = self.model.prior(_labels(labels) if self.latent.conditional_prior else None)
        return _layers(p, self.latent.layers, self.prior_wiring()[0])

    @torch.inference_mode()
    def decoder_params(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """z (B, L) on the activation grid (with a label-conditional model's ``labels`` (B,), whose one-hot
        vectors join z exactly) -> decoder outputs (B, k, *shape) float64."""
        zt = torch.from_numpy(z)
        if self.model.condition is not None:
            zt = torch.cat([zt, self.model.condition(_labels(labels), zt.shape[:1]).to(zt.dtype)], -1)
        return self.model.decoder(zt).numpy()
