"""What every objective is: settings, a call ``objective(model, batch) -> Terms``, and the training step.

An objective is a registered object (``OBJECTIVES``) that owns its settings and their validity
rules (``from_config``), in the spirit of Pyro's ``ELBO``: the model and the data reach it as
arguments, so training, validation, evaluation, anomaly scores and the explorer all call the same
object. What one training step does (forward, backward, health check, optimizer steps) is the
objective's ``step``; an objective that trains a module of its own (a discriminator) declares it in
``modules`` and gets an optimizer for it, checkpointed under the module's name.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

import torch
from torch import nn

from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import RunConfig
    from vaekit.data.base import Batch

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
T = TypeVar("T")


class Terms(ABC):
    """An objective's value on a batch: ``loss`` (B,) is what training minimises (per example; the
    step averages it). ``reported`` gives the named per-example terms, in the units the metrics show
    (nats to minimise: the reconstruction term as −E_q log p(x|z)); the metrics CSV, progress bar,
    TensorBoard, curves and report show each of them by name, so a new term needs no other file."""

    loss: torch.Tensor

    @abstractmethod
    def reported(self) -> dict[str, torch.Tensor]:
        """The named per-example terms {name: (B,)}, ``loss`` first."""


@dataclass
class NamedTerms(Terms):
    """Terms given as a loss and a dict of named per-example terms (B,) (an objective's own)."""

    loss: torch.Tensor
    values: dict[str, torch.Tensor] = field(default_factory=dict)

    def reported(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss, **self.values}


def concatenated(parts: list[T]) -> T:
    """The terms of consecutive batches (dataclasses of the same type) joined field by field: each
    per-example tensor (B_i,) into (N,), each dict of them key by key; a field that is None stays None."""

    def join(values: list):
        if values[0] is None:
            return None
        if isinstance(values[0], dict):
            return {k: torch.cat([v[k] for v in values]) for k in values[0]}
        return torch.cat(values)

    fields = {f.name: join([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(parts[0])}
    return type(parts[0])(**fields)


@dataclass(frozen=True)
class Draws:
    """How an estimate draws its latent samples, for evaluation.

    noise: fixed standard-normal draws ε (S, 1, L) or (S, B, L) instead of fresh ones (common random
        numbers; zeros give the posterior mean); S = len(noise) replaces the objective's sample count.
    chunk: samples decoded together (default: all); memory stays bounded whatever S is.
    squared_error: also measure E_q ||x − E[x|z]||² over the same draws (the term ``squared_error``).
    """

    noise: torch.Tensor | None = None
    chunk: int | None = None
    squared_error: bool = False


FRESH = Draws()


@dataclass
class StepContext:
    """What the training loop hands an objective's ``step``.

    loss: the objective's forward on (model, batch), compiled and under autocast as the run asks;
        returns ``Terms``. optimizers: by name (``"model"`` first, then the objective's modules).
    healthy: (loss, parameters) -> whether the loss and gradients are finite (clipping them
        when the run clips); False means the step is not applied. after_model_step: called once the
        model's optimizer has stepped (the weight average's update).
    prepare: applied to the model's gradients before its optimizer steps (gradient normalisation).
    guarded: (optimizer) -> the block every ``optimizer.step()`` runs in: where the finite check is made
        on the device (a GPU), the step is applied there only if ``healthy`` found it finite.
    step: the training steps applied before this one (the run's global step, restored on ``--resume``),
        for an objective that follows a schedule of its own (AnnealedVAE's capacity).
    """

    loss: Callable[[Batch, float | torch.Tensor], Terms]
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    healthy: Callable[[torch.Tensor, list[nn.Parameter]], bool]
    prepare: Callable[[], None]
    after_model_step: Callable[[], None]
    guarded: Callable[[torch.optim.Optimizer], contextlib.AbstractContextManager] = lambda optimizer: contextlib.nullcontext()
    step: int = 0


class Objective(nn.Module, ABC):
    """An objective: ``objective(model, batch) -> Terms``, with its settings as attributes.

    A subclass registers itself with ``@OBJECTIVES.register(name)``, reads its settings from a run's
    config in ``from_config`` (where its validity rules live, as ``ConfigError``), and may override
    ``step`` (what one training step does) and ``modules`` (modules it trains beside the model, each
    with an optimizer of its own). It is an ``nn.Module`` so that such modules are its submodules:
    they move with ``.to(device)`` and are saved with ``state_dict``.
    """

    name: ClassVar[str]
    terms: ClassVar[tuple[str, ...]]  # the names ``forward``'s ``Terms.reported`` gives, "loss" first (metrics.csv's columns)
    beta: float = 1.0  # the weight of the KL term after warm-up; 0 where there is none
    monitor: ClassVar[str] = "loss"  # the validation term whose minimum picks the best epoch (and stops early)

    @classmethod
    @abstractmethod
    def from_config(cls, config: RunConfig) -> Objective:
        """The objective a run's config describes; a ``ConfigError`` naming the first invalid setting."""

    @classmethod
    def resolve(cls, config: RunConfig, data) -> None:
        """Fill in (on the run's resolved copy of its config) the settings the training data decides; none by default."""

    @abstractmethod
    def forward(self, model, batch: Batch, *, beta: float | torch.Tensor | None = None, draws: Draws = FRESH) -> Terms:
        """Per-example terms (B,) of ``model`` on ``batch``; ``beta`` overrides the KL weight (the warm-up)."""

    def trained_modules(self) -> dict[str, nn.Module]:
        """Modules this objective trains beside the model, by name (none by default)."""
        return {}

    def step(self, ctx: StepContext, batch: Batch, beta: float | torch.Tensor) -> Terms | None:
        """One training step: forward, backward, health check, the model's optimizer step. Returns the
        step's terms, or None when the loss or a gradient was not finite (nothing was applied)."""
        terms = ctx.loss(batch, beta)
        loss = terms.loss.sum() * batch.weight  # this process's part of the global batch's mean (DDP adds the parts)
        optimizer = ctx.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not ctx.healthy(loss, list(ctx.model.parameters())):
            optimizer.zero_grad(set_to_none=True)
            return None
        ctx.prepare()
        with ctx.guarded(optimizer):
            optimizer.step()
        ctx.after_model_step()
        return terms


def objective_from_config(config: RunConfig) -> Objective:
    """The registered objective ``config.train.objective`` names, with the run's settings."""
    return OBJECTIVES[config.train.objective].from_config(config)
