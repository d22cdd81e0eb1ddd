"""The generative side of a hierarchical model: p(z) = p(z_L) Π_{l<L} p(z_l|z_{l+1}), a ``LayeredGaussian``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.models.distributions import LayeredGaussian
from vaekit.models.hierarchy.networks import LayerNet, bridge_hidden, layer_sizes, top_down
from vaekit.models.priors import PRIORS, Prior

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class HierarchicalPrior(Prior):
    """p(z) = p(z_L) Π_{l<L} p(z_l|z_{l+1}): ``top`` is a registered prior over z_L (normal, mixture,
    vampprior), each conditional a ``LayerNet`` on the layer above. The KL from q has no closed form;
    p is Gaussian layer by layer where its top is."""

    def __init__(
        self,
        top: Prior,
        sizes: tuple[int, ...],
        hidden: tuple[int, ...],
        arch: str,
        act: str,
        logvar_range: tuple[float, float],
    ):
        super().__init__()
        self.top, self.sizes = top, tuple(sizes)
        self.parents = top_down(len(self.sizes))
        self.conditionals = nn.ModuleList(
            LayerNet((sizes[i + 1],), hidden, sizes[i], arch, act, logvar_range) for i in range(len(sizes) - 1)
        )

    @classmethod
    def from_config(cls, config: ModelConfig) -> HierarchicalPrior:
        sizes = layer_sizes(config)
        top = PRIORS[config.prior].from_config(dataclasses.replace(config, latent_dim=sizes[-1]))  # over z_L
        return cls(top, sizes, bridge_hidden(config), config.arch, config.activation, config.logvar_range)

    @property
    def gaussian(self) -> bool:
        """The conditionals are Gaussian: p is, where its top prior is."""
        return self.top.gaussian

    def top_prior(self) -> Prior:
        return self.top

    def forward(self, model: nn.Module) -> LayeredGaussian:
        top = self.top(model)

        def layer(i: int, parent: torch.Tensor | None) -> Distribution:
            return top if parent is None else self.conditionals[i](parent)

        return LayeredGaussian(self.sizes, self.parents, layer, torch.Size())
