"""The examples a model reads: a ``Dataset`` whose batches carry the context the model is given.

A conditional model reads a context with each example: a model conditioned on the class label its
label y, a model conditioned on context columns its context vector; an unconditional model nothing.
``for_model`` decides it once for a split (checked against the model's condition, a semi-supervised
model's unlabelled examples given the class its classifier finds most probable) and records it in
``Dataset.conditioned_on``; every tool (evaluation, the latent tools, anomaly scores, the report and
the explorer) then takes ``(model, data)`` and reads ``data.batches(size, device)``.
``with_context`` gives inputs that come without one (a file, an upload, a path of codes) a context
chosen for them.
"""

from __future__ import annotations

import dataclasses

import torch

from vaekit.data.base import COLUMNS, LABELS, Dataset
from vaekit.data.context import context_of, labels_of
from vaekit.errors import ConfigError
from vaekit.models.contract import in_eval_mode


def for_model(model, data: Dataset, where: str = "the data", *, keep_unlabelled: bool = False) -> Dataset:
    """``data`` as ``model`` reads it: for a conditional model, ``conditioned_on`` set to its labels
    (``LABELS``) or its context vectors (``COLUMNS``), checked against the model's condition (one-line
    ``ConfigError``s name ``where``); for an unconditional model, nothing.

    A semi-supervised model (one with a classifier q(y|x)) reads partly labelled or unlabelled data: an
    example without a label (-1, or a split without labels) is given the class q(y|x) finds most
    probable, unless ``keep_unlabelled`` (its label stays -1: the semi-supervised bound sums it out).
    A split already read for this model is returned as it is, so every tool can call this."""
    if not model.latent.conditional:
        return data if data.conditioned_on is None else dataclasses.replace(data, conditioned_on=None)
    given = LABELS if model.latent.label_classes else COLUMNS
    if data.conditioned_on == given:
        return data
    context = data_context(model, data, where, keep_unlabelled=keep_unlabelled)  # (N,) labels or (N, K) vectors
    if given == LABELS:
        return dataclasses.replace(data, y=context, conditioned_on=LABELS)
    return dataclasses.replace(data, context=context, conditioned_on=COLUMNS)


def data_context(model, data: Dataset, where: str, *, keep_unlabelled: bool = False) -> torch.Tensor | None:
    """The context of ``data`` for ``model``: for a conditional model its labels (N,) or context vectors
    (N, K), read and checked against the model's condition (``vaekit.data.context``); None for an
    unconditional one.

    A semi-supervised model (one with a classifier q(y|x)) takes partly labelled or unlabelled data:
    an example without a label (-1, or a split without labels) gets the class q(y|x) finds most
    probable, unless ``keep_unlabelled`` (training: the objective sums the label out)."""
    if not model.conditional:
        return None
    if model.classifier is None:
        return context_of(data, model.condition.reads, model.condition.size, where)
    y = labels_of(data, model.classes, where, unlabelled=True)
    if keep_unlabelled or bool((y >= 0).all()):
        return y
    y = y.clone()
    missing = (y < 0).nonzero().flatten()
    y[missing] = class_probabilities(model, Dataset(data.x[missing])).argmax(-1)  # argmax_y q(y|x)
    return y


@torch.inference_mode()
@in_eval_mode
def class_probabilities(model, data: Dataset, batch_size: int = 1000) -> torch.Tensor:
    """q(y|x) (N, K) of a semi-supervised model for the examples of ``data`` (a tensor or a memory-mapped
    array), in batches: what gives an unlabelled example its class."""
    parts = [model.classify(batch.inputs).probs.cpu() for batch in data.batches(batch_size, model.device)]
    return torch.cat(parts) if parts else torch.zeros(0, model.classes)


def with_context(model, x: torch.Tensor, context: torch.Tensor | int | None) -> Dataset:
    """Inputs ``x`` (N, *shape) given ``context`` by the caller, as ``model`` reads them: one context
    for all (a class, a context vector (K,)) or one each (labels (N,), vectors (N, K)). An
    unconditional model reads no context (``context`` is then ignored); a conditional one needs it."""
    if not model.latent.conditional:
        return Dataset(x)
    if context is None:
        raise ConfigError("this model is conditional: give a context (--class, or the data's labels)")
    context = torch.as_tensor(context)
    if model.latent.label_classes:
        return Dataset(x, context.expand(len(x)), conditioned_on=LABELS)  # (N,)
    return Dataset(x, context=context.expand(len(x), model.condition.size), conditioned_on=COLUMNS)  # (N, K)
