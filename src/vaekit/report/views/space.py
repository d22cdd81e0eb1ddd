"""What the latent views share, computed once per run: the ranked dimensions, the training codes and
the densities fitted to them, the reference distribution z is varied under, and the point the other
dimensions are held at."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

import vaekit.latent as latent
from vaekit.errors import ConfigError
from vaekit.latent_layers import view_at_input
from vaekit.report.context import RunContext

RANK_SAMPLE = 2000  # examples the dimensions are ranked on
DENSITY_SAMPLE = 10_000  # the most training examples whose codes the code densities are fitted to (a seeded subset beyond)


class LatentSpace:
    """The latent space of ``ctx``'s run as the views see it: ``ctx.latent_model`` (the model, or one
    layer of a hierarchical model) over ``ctx``'s split; each part is computed on first use."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self._densities: dict[tuple[str, int], Any] = {}

    @cached_property
    def ranking(self) -> latent.DimRanking:
        """The latent dimensions ranked on the first ``RANK_SAMPLE`` examples of the split."""
        ctx = self.ctx
        return latent.rank_dims(ctx.latent_model, ctx.examples(ctx.split).rows(0, RANK_SAMPLE))

    @cached_property
    def unit_information(self):
        """What each latent unit says about each factor of the data (``vaekit.disentanglement.runs.UnitInformation``);
        a one-line ``DataError`` for data not made from known factors."""
        from vaekit.disentanglement.runs import factor_space_of, unit_information  # scikit-learn: imported when used

        return unit_information(self.ctx.latent_model, factor_space_of(self.ctx.data), seed=self.ctx.seed)

    @cached_property
    def train_codes(self) -> torch.Tensor:
        """The posterior means (N, L) of the training split (of a seeded ``DENSITY_SAMPLE`` of its examples, where it has more)."""
        train = self.ctx.examples(self.ctx.data.train)
        index = None
        if len(train) > DENSITY_SAMPLE:
            index = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.ctx.seed))[:DENSITY_SAMPLE].sort().values
        return latent.encode(self.ctx.model, train, index=index)

    def density(self, kind: str = "prior", components: int = 10):
        """What to draw z from: ``prior`` (p(z), or p(z|y) at ``decode_context()``), or ``gaussian`` / ``gmm``
        fitted to the training codes."""
        if kind == "prior":
            return self.ctx.model.prior(self.ctx.decode_context())
        if (kind, components) not in self._densities:
            self._densities[kind, components] = latent.fit_code_density(self.train_codes, kind, components=components, seed=self.ctx.seed)
        return self._densities[kind, components]

    @cached_property
    def reference(self):
        """The distribution views vary z under: the prior (VAE; p(z|y) at ``decode_context()`` for a conditional prior; a
        hierarchical model's: its layer's) or a Gaussian fitted to the training codes (AE)."""
        ctx = self.ctx
        if ctx.latent_model is not ctx.model:
            return ctx.latent_model.prior()
        return self.density("prior") if not ctx.model.latent.deterministic else self.density("gaussian")

    @property
    def reference_name(self) -> str:
        return "the prior" if not self.ctx.model.latent.deterministic else "a Gaussian fitted to the training codes"

    def base_point(self, at: str, index: int = 0, view=None) -> tuple[torch.Tensor, str]:
        """z (L,) the other dimensions are held at: ``input`` (the posterior mean of example ``index``,
        encoded by ``view``, default ``view_at(at, index)``) or ``mean`` (the reference's mean: 0 for a normal prior)."""
        if at == "mean":
            return self.reference.mean.detach().cpu().float(), f"the mean of {self.reference_name}"
        if at == "input":
            name = self.ctx.example(index)[1]
            view = self.view_at(at, index) if view is None else view
            return latent.encode(view, self.ctx.input(index))[0], f"the posterior mean of {name}"
        raise ConfigError(f"'at' must be 'input' or 'mean', got {at!r}")

    def view_at(self, at: str, index: int = 0):
        """What a traversal or manifold decodes through: ``latent_model``; around an input (``at`` =
        ``input``), a lower layer of a hierarchical model has the layers above held at that input's codes."""
        if at != "input":
            return self.ctx.latent_model
        return view_at_input(self.ctx.latent_model, self.ctx.input(index))
