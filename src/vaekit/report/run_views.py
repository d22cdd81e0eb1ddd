"""``RunViews``: every view of one run as a method, for the figure commands, the report and scripts.

A thin facade: it builds the ``RunContext`` (what the views look at) and the ``LatentSpace`` over it
(what the latent views share, computed once), and each method is the view function of the same name
in ``vaekit.report.views``, given the one or the other.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch

from vaekit.data.base import Dataset
from vaekit.report.context import RunContext
from vaekit.report.views import classes as class_views
from vaekit.report.views import curves as curve_views
from vaekit.report.views import data as data_views
from vaekit.report.views import factors as factor_views
from vaekit.report.views import generation as generation_views
from vaekit.report.views import latent as latent_views
from vaekit.report.views import sequences as sequence_views
from vaekit.report.views.base import View
from vaekit.report.views.space import LatentSpace


def _method(view: Callable[..., View], given: Callable[[RunViews], object]) -> Callable[..., View]:
    """A ``RunViews`` method: ``view(given(self), ...)``, with the view's name, docstring and signature."""

    @functools.wraps(view)
    def method(self: RunViews, *args, **kwargs) -> View:
        return view(given(self), *args, **kwargs)

    first, *rest = inspect.signature(view).parameters.values()
    method.__signature__ = inspect.signature(view).replace(parameters=[first.replace(name="self", annotation="RunViews"), *rest])
    return method


def _on_context(view: Callable[..., View]) -> Callable[..., View]:
    """A ``RunViews`` method: ``view(self.ctx, ...)``."""
    return _method(view, lambda views: views.ctx)


def _on_space(view: Callable[..., View]) -> Callable[..., View]:
    """A ``RunViews`` method: ``view(self.space, ...)``."""
    return _method(view, lambda views: views.space)


class RunViews:
    """The figures of one run, over one split of its data.

    run: a loaded ``vaekit.runs.Run``. source: another dataset (default: the run's own),
    preprocessed like the training data. split: ``test``, ``valid`` or ``train`` (``test`` falls
    back to ``valid`` for a source without one). seed: every random choice (samples, noise,
    projections) is seeded with it, so a view is the same each time.
    context: for a conditional model, the class the views generate (``--class``), or for a model
        conditioned on context columns the standardised context vector (K,) (``--context``); None:
        samples show a row per class (at the mean context for columns), the other views decode with
        the context of the input they start from (class 0, or the mean context, where there is none).
        Inputs are always encoded with their own labels or context.
    layer: which stochastic layer of a hierarchical model the latent views (ranking, interpolation,
        traversal, manifold, embedding) vary (default: the top); samples and reconstructions use the whole model.
    """

    def __init__(
        self,
        run,
        *,
        source: str | None = None,
        split: str = "test",
        seed: int = 0,
        context: int | torch.Tensor | None = None,
        layer: int | None = None,
    ):
        self.ctx = RunContext(run, source=source, split=split, seed=seed, context=context, layer=layer)
        self.space = LatentSpace(self.ctx)

    # ----- the run and its data, as the context holds them ----------------------------------------
    run = property(lambda self: self.ctx.run)
    model = property(lambda self: self.ctx.model)
    latent_model = property(lambda self: self.ctx.latent_model)
    seed = property(lambda self: self.ctx.seed)
    data = property(lambda self: self.ctx.data)
    split = property(lambda self: self.ctx.split)
    split_name = property(lambda self: self.ctx.split_name)
    is_image = property(lambda self: self.ctx.is_image)
    is_sequences = property(lambda self: self.ctx.is_sequences)
    classes = property(lambda self: self.ctx.classes)
    chosen_context = property(lambda self: self.ctx.chosen_context)
    ranking = property(lambda self: self.space.ranking)
    reference = property(lambda self: self.space.reference)

    def require_images(self, what: str) -> None:
        self.ctx.require_images(what)

    def examples(self, data: Dataset) -> Dataset:
        return self.ctx.examples(data)

    def example(self, spec) -> tuple[torch.Tensor, str]:
        return self.ctx.example(spec)

    # ----- the views --------------------------------------------------------------------------------
    reconstructions = _on_context(data_views.reconstructions)
    denoising = _on_context(data_views.denoising)
    samples = _on_space(generation_views.samples)
    class_samples = _on_space(generation_views.class_samples)
    context_samples = _on_context(generation_views.context_samples)
    sample_comparison = _on_space(generation_views.sample_comparison)
    pseudo_inputs = _on_context(generation_views.pseudo_inputs)
    interpolation = _on_context(latent_views.interpolation)
    traversal = _on_space(latent_views.traversal)
    manifold = _on_space(latent_views.manifold)
    embedding = _on_context(latent_views.embedding)
    curves = _on_context(curve_views.curves)
    analogies = _on_context(class_views.analogies)
    confusion = _on_context(class_views.confusion)
    factor_traversal = _on_space(factor_views.factor_traversal)
    factor_information = _on_space(factor_views.factor_information)
    neighbourhood = _on_context(sequence_views.neighbourhood)
