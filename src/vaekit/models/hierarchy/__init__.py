"""Hierarchical latents: two or more stochastic layers z = [z_1, ..., z_L] (z_1 nearest the data).

The model stays a ``LatentVariableModel``: its posterior head returns q(z|x) and its prior p(z) as
distributions over the concatenated code (event (Σ L_l,)), each a ``LayeredGaussian``
(``vaekit.models.distributions``) that samples layer by layer (ancestrally) and sums the layers'
log-densities. The one objective (``vaekit.objectives.elbo``) therefore trains and evaluates them
unchanged: the KL has no closed form, so it is the Monte Carlo mean of log q(z|x) − log p(z), and
the importance-weighted bound uses both log-densities exactly. The generative side is
p(z_L) Π p(z_l|z_{l+1}) for every wiring; p(z_L) is any registered prior over the top layer (a
VampPrior uses q(z_L|u_k), so it needs a wiring whose top posterior sees x alone).

- ``networks``: the layer sizes a config gives and the networks between the layers (each layer's
  conditional ``LayerNet``; ``LayerDecoder``, the decoder given some layers);
- ``posterior``: the inference side, ``Hierarchy`` and the wirings registered in ``HIERARCHIES``;
- ``prior``: the generative side, ``HierarchicalPrior``.

The tools' view of one layer as a one-layer model, and the per-layer statistics, are in
``vaekit.latent_layers``.
"""

from vaekit.models.hierarchy.networks import LayerDecoder, LayerNet, is_hierarchical, layer_sizes, top_down
from vaekit.models.hierarchy.posterior import HIERARCHIES, BranchedHierarchy, ChainHierarchy, Hierarchy, SkipHierarchy
from vaekit.models.hierarchy.prior import HierarchicalPrior

__all__ = [
    "HIERARCHIES",
    "Hierarchy",
    "SkipHierarchy",
    "BranchedHierarchy",
    "ChainHierarchy",
    "HierarchicalPrior",
    "LayerNet",
    "LayerDecoder",
    "layer_sizes",
    "is_hierarchical",
    "top_down",
]
