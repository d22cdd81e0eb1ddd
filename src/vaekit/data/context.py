"""What a conditional model reads from a dataset: its class labels or its context columns, checked.

A condition (``vaekit.models.condition``) declares what it reads (``Condition.reads``: ``LABELS`` or
``COLUMNS``) and knows nothing of datasets; these functions read and check that context: its width K
for a model about to be trained on loaded splits (``context_count``), and every example's context for
a model that was (``context_of``). Errors are one-line ``ConfigError`` s naming the source or split.
"""

from __future__ import annotations

import torch

from vaekit.data.base import COLUMNS, LABELS, UNLABELLED, Dataset, DataSplits
from vaekit.errors import ConfigError


def labels_of(data: Dataset, classes: int, where: str, *, unlabelled: bool = False) -> torch.Tensor:
    """The labels (N,) of ``data``, all classes 0 .. ``classes`` - 1; with ``unlabelled``, -1 (an
    example without a label) is allowed too, and a split without labels is all -1. Otherwise a
    one-line ``ConfigError`` naming ``where``."""
    labels = data.y
    if labels is None and unlabelled:
        labels = torch.full((len(data),), UNLABELLED, dtype=torch.long)
    if labels is None:
        raise ConfigError(f"{where} has no labels, but the model is conditioned on them")
    low = UNLABELLED if unlabelled else 0
    if len(labels) and (int(labels.min()) < low or int(labels.max()) >= classes):
        allowed = f"0..{classes - 1}" + (" (or -1 for unlabelled)" if unlabelled else "")
        raise ConfigError(f"{where} has labels outside {allowed}, the classes the model was trained on")
    return labels


def columns_of(data: Dataset, size: int, where: str) -> torch.Tensor:
    """The context vectors (N, ``size``) of ``data``; a one-line ``ConfigError`` naming ``where`` when
    it has none or another number of context columns."""
    if data.context is None:
        raise ConfigError(f"{where} has no context columns, but the model is conditioned on them")
    if data.context.shape[1] != size:
        raise ConfigError(f"{where} has {data.context.shape[1]} context columns, the model was trained on {size}")
    return data.context


def label_count(data: DataSplits, source: str) -> int:
    """K, the number of classes of ``data`` (``info["num_classes"]``), for a model conditioned on the
    label; a one-line ``ConfigError`` unless the training and validation splits carry labels."""
    classes = data.info.get("num_classes")
    if not classes or data.train.y is None or data.valid.y is None:
        raise ConfigError(f"--condition label needs class labels 0, 1, ... in every split, and {source} has none")
    return int(classes)


def column_count(data: DataSplits, source: str) -> int:
    """K, the number of context columns of ``data``, for a model conditioned on them; a one-line
    ``ConfigError`` unless the training and validation splits carry context vectors."""
    if data.train.context is None or data.valid.context is None:
        raise ConfigError(f"--condition columns needs context columns in the data; name them with --context-columns ({source} has none)")
    return int(data.train.context.shape[1])


def context_count(data: DataSplits, reads: str, source: str) -> int:
    """K for a model that reads ``reads`` (``LABELS``: ``label_count``; ``COLUMNS``: ``column_count``)
    trained on ``data``, loaded from ``source``."""
    return label_count(data, source) if reads == LABELS else column_count(data, source)


def context_of(data: Dataset, reads: str, size: int, where: str) -> torch.Tensor:
    """The context of every example of ``data`` for a model that reads ``reads`` with a context of
    ``size`` (its classes, or its number of context columns): labels (N,) (``labels_of``) or context
    vectors (N, K) (``columns_of``)."""
    if reads == COLUMNS:
        return columns_of(data, size, where)
    return labels_of(data, size, where)
