"""The classifier q(y|x) of a semi-supervised model (Kingma et al. 2014's M2): a registered encoder
network (``ModelConfig.arch``, the same kind as the model's encoder, with its own weights) and a
linear layer to K class logits; its call returns ``Categorical(logits)``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Categorical

from vaekit.models.networks import ENCODERS

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class Classifier(nn.Module):
    """x (B, *input_shape) -> q(y|x), a ``Categorical`` with batch shape (B,) over ``classes`` classes."""

    def __init__(self, network: nn.Module, features: int, classes: int):
        super().__init__()
        self.network = network
        self.logits = nn.Linear(features, classes)
        self.classes = classes

    @classmethod
    def from_config(cls, config: ModelConfig) -> Classifier:
        """The ``arch`` network (of ``classifier_hidden`` where set, else ``hidden``; with ``classifier_dropout``
        where set, else the encoder's dropout) on the model's input (not widened by the context) and K =
        ``context_dim`` classes."""
        if config.classifier_hidden is not None:
            config = replace(config, hidden=tuple(config.classifier_hidden))
        if config.classifier_dropout is not None:
            config = replace(config, dropout=(config.classifier_dropout, config.dropout[1]))
        network = ENCODERS[config.arch].from_config(config)
        return cls(network, network.out_features, config.context_dim)

    def forward(self, x: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(self.network(x)))  # logits (B, K)
