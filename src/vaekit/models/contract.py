"""What every model offers the tools: ``Model``, the interface, and ``LatentSpec``, the declaration of its latent space.

A model gives q(z|x) (``encode``), p(x|z) (``decode``) and p(z) (``prior``) as ``torch.distributions``
objects, each taking a conditional model's context, and declares what its latent space is
(``latent``): continuous or discrete, its layers, whether q(z|x) factorises over units, has a
density, and has a closed-form KL to p(z). The tools (compression, the latent views, evaluation,
the report) read the declaration instead of probing the model's parts with ``isinstance`` or
``hasattr``.

Implementations: ``LatentVariableModel`` (its declaration computed from its parts, each declaring
its own facts: the posterior head, the prior, the condition), ``vaekit.latent_layers.LayerView``
(one layer of a hierarchical model), ``vaekit.baselines.PCABaseline`` and
``vaekit.compression.exact.ExactModel``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch.distributions import Distribution

Context = torch.Tensor | int | None


@dataclass(frozen=True)
class LatentSpec:
    """The latent space a model declares (``Model.latent``).

    kind: ``continuous`` (z real, every model today) or ``discrete``.
    layers: the stochastic layers' sizes, z_1 (nearest the data) first; ``(L,)`` for a one-layer model.
        z is their concatenation, of ``dim`` = Σ sizes.
    factorises: q(z|x) is a product of one-dimensional distributions over the units (a Gaussian, a
        point mass; not a flow, nor the layers of a hierarchy together), so per-unit quantities exist.
    density: q(z|x) has a density, so a KL term and importance weights exist (False: a point mass, the
        plain autoencoder: ``deterministic``).
    closed_form_kl: KL(q(z|x) || p(z)) is registered in closed form (``torch.distributions.kl_divergence``);
        else it is the Monte Carlo mean of log q − log p.
    gaussian_posterior: every layer of q(z|x) is a diagonal Gaussian given its parent layer's code
        (with ``mean`` and ``logvar``): what the bits-back coder discretises.
    gaussian_prior: every layer of p(z) is a diagonal Gaussian given its parent (N(0, I), a conditional
        p(z|y), a hierarchy over such a top); False for a mixture or a VampPrior.
    conditional: a context y enters the encoder and the decoder (q(z|x, y), p(x|z, y)).
    conditional_prior: the prior is p(z|y) and takes the context.
    label_classes: K, the classes of a class-label context (one-hot); 0 without a context and for a
        context of numbers (table columns). Not the classes of a classifier q(y|x) (``classes`` of a
        semi-supervised model, which equal these).
    """

    layers: tuple[int, ...]
    factorises: bool
    density: bool
    closed_form_kl: bool
    gaussian_posterior: bool
    gaussian_prior: bool
    conditional: bool = False
    conditional_prior: bool = False
    label_classes: int = 0
    kind: Literal["continuous", "discrete"] = "continuous"

    @property
    def dim(self) -> int:
        """The size of z: the layers' sizes summed."""
        return sum(self.layers)

    @property
    def hierarchical(self) -> bool:
        """Two or more stochastic layers."""
        return len(self.layers) > 1

    @property
    def deterministic(self) -> bool:
        """q(z|x) is a point mass (a plain autoencoder: no KL term, no sampling)."""
        return not self.density

    @property
    def unit_kl(self) -> bool:
        """KL(q(z_u|x) || p(z_u)) per unit exists: a density that factorises over the units."""
        return self.density and self.factorises


class Model(ABC):
    """Interface: ``encode(x) -> q(z|x)``, ``decode(z) -> p(x|z)``, ``prior() -> p(z)`` and the declaration ``latent``.

    x: (B, *input_shape); z: (*batch, latent_dim). ``encode`` returns batch (B,), event (L,); ``decode``
    batch ``batch``, event ``input_shape``; ``prior`` batch () (or a conditional prior's context's batch),
    event (L,). ``context``: a conditional model's context (labels (B,), vectors (B, K), or one for all);
    a model that is not conditional ignores it.

    Every model also has ``latent_dim`` (L, the size of z), ``input_shape`` (one example's shape) and
    ``device`` (where its computations run): attributes or properties, as the implementation holds them.
    """

    latent_dim: int
    input_shape: tuple[int, ...]
    device: torch.device

    @property
    @abstractmethod
    def latent(self) -> LatentSpec:
        """What this model's latent space is (``LatentSpec``)."""

    @abstractmethod
    def encode(self, x: torch.Tensor, context: Context = None) -> Distribution:
        """q(z|x) (or q(z|x, y)): batch (B,), event (L,)."""

    @abstractmethod
    def decode(self, z: torch.Tensor, context: Context = None) -> Distribution:
        """p(x|z) (or p(x|z, y)) for z (*batch, L): batch ``batch``, event ``input_shape``."""

    @abstractmethod
    def prior(self, context: Context = None) -> Distribution:
        """p(z) (or p(z|y)): event (L,)."""


def in_eval_mode(fn: Callable) -> Callable:
    """Run ``fn(model, ...)`` with the model in eval mode (no dropout), then restore its mode."""

    @functools.wraps(fn)
    def run(model, *args, **kwargs):
        was_training = model.training
        model.eval()
        try:
            return fn(model, *args, **kwargs)
        finally:
            model.train(was_training)

    return run
