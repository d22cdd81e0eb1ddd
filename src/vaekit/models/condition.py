"""Conditioning (the conditional VAE): a context y that enters the encoder, the decoder and, with the
``conditional`` prior, the prior: q(z|x, y), p(x|z, y), p(z|y).

A ``Condition`` turns what travels with the data (a batch's class labels, or a table's context
columns) into context vectors (B, K); the model joins them to its inputs (``LatentVariableModel.encode(x, context)``,
``decode(z, context)``, ``prior(context)``): a flat encoder reads [x, y], an image encoder reads y
as K constant channels beside x's, and the decoder reads [z, y]. So every network, posterior,
likelihood and flow works unchanged, built for K more inputs. Conditions are registered in
``CONDITIONS`` (``ModelConfig.condition``; ``none`` builds no condition): ``label`` (one-hot class
labels) and ``columns`` (a table's numeric context columns, standardised).

A context is given as integer labels (B,), one label for every example (a 0-d tensor or an int),
or context vectors (B, K) / (K,) (e.g. a mix of two one-hot vectors, or standardised column values).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.errors import ConfigError
from vaekit.models.contract import Context
from vaekit.models.distributions import DiagonalNormal
from vaekit.models.posteriors import LOGVAR_MAX, LOGVAR_MIN
from vaekit.models.priors import PRIORS, Prior
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class Condition(nn.Module, ABC):
    """Interface: a context -> context vectors (*batch, ``size``).

    ``reads``: what the condition reads from a dataset, a declaration the data layer acts on
    (``vaekit.data.context``): "labels" (class labels) or "columns" (context vectors), the values of
    ``vaekit.data.base.LABELS`` and ``COLUMNS``.
    ``classes``: the number of classes of a label condition (views then show a row per class); 0 for
    a continuous context."""

    reads: ClassVar[str]
    size: int
    device: torch.device
    classes: int = 0

    @classmethod
    @abstractmethod
    def from_config(cls, config: ModelConfig) -> Condition:
        """The condition ``config`` describes (``context_dim``)."""

    @abstractmethod
    def default(self) -> torch.Tensor:
        """The context a view decodes with when none is asked for: class 0, or the mean context."""

    @abstractmethod
    def vectors(self, context: torch.Tensor) -> torch.Tensor:
        """Context vectors (B, K) or (K,) for a context (B,) / () of this condition's kind, or vectors as they are."""

    @abstractmethod
    def contexts(self, n: int) -> torch.Tensor:
        """``n`` contexts that cycle through the condition's values (the VampPrior's pseudo-inputs get these)."""

    @abstractmethod
    def check(self, value: int | torch.Tensor) -> int | torch.Tensor:
        """``value``, the context a view asks for (``--class C`` or ``--context``), if it is of this
        condition's kind and in range; else a one-line ``ConfigError`` saying what to give instead."""

    def forward(self, context: Context, batch_shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Context vectors (B, K) or (K,), or broadcast to (*batch_shape, K) from the right: labels (B,) reach samples (S, B)."""
        if context is None:
            raise ConfigError("this model is conditional: give a context (--class, or the data's labels)")
        v = self.vectors(torch.as_tensor(context, device=self.device))
        return v if batch_shape is None else v.expand(*batch_shape, self.size)


CONDITIONS: Registry[type[Condition]] = Registry("condition")


@CONDITIONS.register("label")
class LabelCondition(Condition):
    """Class labels 0 .. K-1 as one-hot vectors (K = the dataset's number of classes)."""

    reads = "labels"

    def __init__(self, classes: int):
        super().__init__()
        self.size = self.classes = classes
        self.register_buffer("eye", torch.eye(classes), persistent=False)

    @classmethod
    def from_config(cls, config: ModelConfig) -> LabelCondition:
        if config.context_dim < 1:
            raise ConfigError("--condition label needs labelled data with at least one class")
        return cls(config.context_dim)

    def default(self) -> torch.Tensor:
        return torch.tensor(0, device=self.device)

    @property
    def device(self) -> torch.device:
        return self.eye.device

    def vectors(self, context: torch.Tensor) -> torch.Tensor:
        if context.is_floating_point():
            if context.shape[-1:] != (self.size,):
                raise ConfigError(f"a context vector must have {self.size} entries, got shape {tuple(context.shape)}")
            return context.to(self.eye.dtype)
        return self.eye[context]  # (B, K) or (K,)

    def contexts(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.device) % self.size

    def check(self, value: int | torch.Tensor) -> int:
        if isinstance(value, torch.Tensor):
            raise ConfigError("this model is conditioned on the class label: give --class, not --context")
        if not 0 <= value < self.classes:
            raise ConfigError(f"--class must be one of the model's classes 0..{self.classes - 1}, got {value}")
        return int(value)


@CONDITIONS.register("columns")
class ColumnsCondition(Condition):
    """Context vectors of K numbers, as they are: a table's context columns (``--context-columns``),
    standardised with the training split's mean and std, so 0 is the mean context."""

    reads = "columns"

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.register_buffer("zero", torch.zeros(size), persistent=False)

    @classmethod
    def from_config(cls, config: ModelConfig) -> ColumnsCondition:
        if config.context_dim < 1:
            raise ConfigError("--condition columns needs data with context columns (--context-columns NAME,...)")
        return cls(config.context_dim)

    @property
    def device(self) -> torch.device:
        return self.zero.device

    def default(self) -> torch.Tensor:
        return self.zero

    def vectors(self, context: torch.Tensor) -> torch.Tensor:
        if not context.is_floating_point() or context.shape[-1:] != (self.size,):
            raise ConfigError(f"this model's context is {self.size} numbers (its context columns), got shape {tuple(context.shape)}")
        return context.to(self.zero.dtype)

    def contexts(self, n: int) -> torch.Tensor:
        return self.zero.expand(n, self.size)

    def check(self, value: int | torch.Tensor) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise ConfigError("this model is conditioned on context columns: give --context, not --class")
        if value.shape != (self.size,):
            raise ConfigError(f"this model's context is {self.size} numbers (its context columns), got shape {tuple(value.shape)}")
        return value.float().cpu()


def chosen_context(model, value: int | torch.Tensor | None) -> int | torch.Tensor | None:
    """The context a view of ``model`` was asked to decode with (``--class C``: a class; ``--context``:
    a standardised context vector (K,)), checked; None (nothing asked) stays None. A one-line
    ``ConfigError`` for an unconditional model, a context of the wrong kind, or a class out of range."""
    if value is None:
        return None
    if not model.conditional:
        flag = "--context" if isinstance(value, torch.Tensor) else "--class"
        raise ConfigError(f"{flag} needs a conditional model (trained with --condition label or --context-columns)")
    return model.condition.check(value)


@PRIORS.register("conditional")
class ConditionalPrior(Prior):
    """p(z|y) = N(μ(y), diag σ²(y)): (μ, log σ²) linear in the context vector, a learned Gaussian per
    class for one-hot labels; it starts at N(0, I). The KL from a Gaussian posterior is closed form."""

    conditional = True
    closed_form_kl = True
    gaussian = True

    def __init__(self, latent_dim: int, context_dim: int, logvar_range: tuple[float, float] = (LOGVAR_MIN, LOGVAR_MAX)):
        super().__init__()
        self.params = nn.Linear(context_dim, 2 * latent_dim)
        self.logvar_range = tuple(logvar_range)
        nn.init.zeros_(self.params.weight)
        nn.init.zeros_(self.params.bias)

    @classmethod
    def from_config(cls, config: ModelConfig) -> ConditionalPrior:
        if config.condition == "none":
            raise ConfigError("the conditional prior p(z|y) needs a conditional model (--condition label)")
        return cls(config.latent_dim, config.context_dim, config.logvar_range)

    def forward(self, model: nn.Module, context: torch.Tensor | None = None) -> Distribution:
        """p(z|y) for context vectors (*batch, K): batch shape ``batch``, event (L,)."""
        mu, logvar = self.params(context).chunk(2, dim=-1)
        return DiagonalNormal(mu, logvar.clamp(*self.logvar_range))
