"""Views of the latent space: interpolation between two inputs, traversal of single dimensions, the
decoded manifold over two dimensions, and the 2-D embedding of the split's codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import vaekit.latent as latent
import vaekit.plotting as plotting
from vaekit.errors import ConfigError
from vaekit.report.context import RunContext
from vaekit.report.views import sequences as sequence_views
from vaekit.report.views.base import View
from vaekit.report.views.space import RANK_SAMPLE, LatentSpace

MANIFOLD_GRID = 20  # the manifold's n x n grid, in the report and in `vaekit manifold` alike


@dataclass
class Embedding:
    """codes: (N, L); labels: (N,) or None; projection: the 2-D coordinates plotted."""

    codes: torch.Tensor
    labels: torch.Tensor | None
    projection: latent.Projection


def interpolation(ctx: RunContext, a, b, *, steps: int = 10, methods: tuple[str, ...] = ("linear", "slerp")) -> View:
    """Rows of [A, decoded path, B] between the posterior means of A and B (each as for ``RunContext.example``),
    one row per method. The result: {method: ``latent.Interpolation``, its images (steps, *shape)}. For a
    sequence model (A and B may then be strings too), the strings decoded along the line (``sequences.interpolation``)."""
    if ctx.is_sequences:
        return sequence_views.interpolation(ctx, a, b, steps=steps)
    ctx.require_images("interpolation")
    (xa, name_a), (xb, name_b) = ctx.example(a), ctx.example(b)
    ends = None if not ctx.model.latent.conditional else (ctx.example_context(a), ctx.example_context(b))
    results = {m: latent.interpolate(ctx.latent_model, xa, xb, steps, m, labels=ends, context=ctx.chosen_context) for m in methods}
    rows = torch.stack([torch.cat([xa.unsqueeze(0), results[m].images, xb.unsqueeze(0)]) for m in methods])  # (R, S+2, *shape)
    cols = (
        ["A"]
        + [f"{t:.2f}".rstrip("0").rstrip(".") if t not in (0, 1) else str(int(t)) for t in torch.linspace(0, 1, steps).tolist()]
        + ["B"]
    )
    decoded = (
        ""
        if ends is None
        else f"; decoded as {ctx.class_name(ctx.chosen_context)}"
        if ctx.chosen_context is not None
        else f"; the {'class' if ctx.classes else 'context'} mixed A to B"
    )
    picture = plotting.labelled_grid(rows, row_labels=list(methods), col_labels=cols, title=f"A = {name_a}, B = {name_b}{decoded}")
    caption = (
        f"From A to B in {steps} steps between their posterior means (t = 0 and 1 are their reconstructions), "
        "along a straight line (linear) and a great circle (slerp); the originals sit at the ends"
        + (
            "."
            if ends is None
            else f"; the decoder is given {ctx.class_name(ctx.chosen_context)} all along."
            if ctx.chosen_context is not None
            else "; the decoder is given the two labels' one-hot vectors mixed along the path."
        )
    )
    return View(picture, caption, results)


def _traversal_columns(values: torch.Tensor, span: str, width: float, steps: int) -> list[str]:
    """Column labels of a traversal over ``values`` (S, D): the values where every row shares them, else
    the quantile levels or the multiples of σ."""
    if torch.allclose(values, values[:1]):
        return [f"{v:.2f}" for v in values[0].tolist()]
    if span == "quantile":
        return [f"p {p:.2f}" for p in torch.linspace(*latent.DEFAULT_P_RANGE, steps).tolist()]
    return [f"{t:+.1f}σ" for t in torch.linspace(-width, width, steps).tolist()]


def traversal(
    space: LatentSpace,
    k: int | None = 8,
    *,
    dims: list[int] | None = None,
    steps: int = 11,
    span: str = "quantile",
    width: float = 3.0,
    at: str = "input",
    index: int = 0,
    annotate: Callable[[int], str] | None = None,
) -> View:
    """One row per dimension (the ``k`` most informative, or ``dims``), varied alone over the reference's
    quantiles (``span="quantile"``) or ±``width``σ (``span="sigma"``), the others at ``base_point(at, index)``.
    ``annotate``: a last line for a dimension's row label (the factor a unit captures, say).
    The result: a ``latent.Traversal``, its images (D, steps, *shape)."""
    ctx = space.ctx
    ctx.require_images("traversal")
    if dims is None:
        k = ctx.latent_model.latent_dim if k is None else min(k, ctx.latent_model.latent_dim)
        chosen = space.ranking.dims[:k]
    else:
        chosen = torch.as_tensor(dims, dtype=torch.long)
    view = space.view_at(at, index)
    base, base_name = space.base_point(at, index, view)
    y = ctx.decode_context(ctx.example_context(index) if at == "input" else None)
    values = latent.grid_values(latent.marginals(space.reference), steps, span, width=width)  # (S, L)
    result = latent.traverse(view, chosen, base, values, context=y)
    rank = {int(d): i for i, d in enumerate(space.ranking.dims)}
    row_labels = [
        space.ranking.label(rank[int(d)]).replace("  ", "\n") + ("" if annotate is None else "\n" + annotate(int(d))) for d in result.dims
    ]
    cols = _traversal_columns(result.values, span, width, steps)
    what = "quantiles" if span == "quantile" else f"±{width:g}σ"
    title = f"each row: one dimension over {what} of {space.reference_name}; the others at {base_name}" + (
        "" if y is None else f"; decoded as {ctx.class_name(y)}"
    )
    picture = plotting.labelled_grid(result.images, row_labels=row_labels, col_labels=cols, title=title)
    caption = (
        f"Latent traversal of {len(result.dims)} dimension(s), ranked by "
        + ("average KL to the prior" if space.ranking.measure == "KL" else "the variance of the codes (a plain autoencoder has no KL)")
        + f" over {min(len(ctx.split), RANK_SAMPLE)} {ctx.split_name} examples; the other dimensions stay at {base_name}."
    )
    return View(picture, caption, result)


def manifold(
    space: LatentSpace,
    n: int = MANIFOLD_GRID,
    *,
    dims: tuple[int, int] | None = None,
    at: str = "mean",
    index: int = 0,
    p_range: tuple[float, float] = latent.DEFAULT_P_RANGE,
    min_cell: int | None = None,
) -> View:
    """The decoded n x n grid over the reference's inverse CDF in two dimensions (default: the two most
    informative; a 2-D latent: both), the others at ``base_point(at, index)``. ``min_cell``: smallest cell
    in pixels (default: about 960 / n, within 28 to 56). The result: a ``latent.Manifold``, its images (n, n, *shape)."""
    ctx = space.ctx
    ctx.require_images("the manifold")
    latent_dim = ctx.latent_model.latent_dim
    if latent_dim < 2:
        raise ConfigError("the manifold needs a latent space of at least 2 dimensions")
    if dims is None:
        dims = (0, 1) if latent_dim == 2 else tuple(int(d) for d in space.ranking.dims[:2])
    view = space.view_at(at, index)
    base, base_name = space.base_point(at, index, view)
    y = ctx.decode_context(ctx.example_context(index) if at == "input" else None)
    values = latent.grid_values(latent.marginals(space.reference), n, "quantile", p_range)  # (n, L)
    result = latent.manifold(view, dims, base, values, context=y)
    i, j = result.dims
    picture = plotting.labelled_grid(
        result.images,
        row_labels=[f"{v:.2f}" for v in result.y_values.tolist()],
        col_labels=[f"{v:.2f}" for v in result.x_values.tolist()],
        title=f"z{i} left to right, z{j} bottom to top"
        + ("" if latent_dim == 2 else f"; the other dimensions at {base_name}")
        + ("" if y is None else f"; {ctx.class_name(y)}"),
        corner=f"z{j} \\ z{i}",
        layout=plotting.GridLayout(pad=1, pad_value=0.4, min_cell=min_cell or min(56, max(28, 960 // n))),
    )
    caption = (
        f"The learned manifold: decoder means over a {n} x {n} grid of z{i} and z{j} at the quantiles "
        f"{p_range[0]:g} to {p_range[1]:g} of {space.reference_name} (its inverse CDF)"
        + ("." if latent_dim == 2 else f", the other {latent_dim - 2} dimension(s) at {base_name}.")
    )
    return View(picture, caption, result)


def embedding(ctx: RunContext, *, sample_codes: bool = False, method: str = "auto", size: tuple[float, float] = (6.4, 5.4)) -> View:
    """Codes (N, L) of the split (posterior means, or seeded samples) and their 2-D scatter coloured by label
    (``size`` in inches at 100 dpi); any data, not only images. The result: an ``Embedding``."""
    codes = latent.encode(ctx.latent_model, ctx.examples(ctx.split), sample=sample_codes, seed=ctx.seed)
    projection = latent.project_2d(codes, method, seed=ctx.seed)
    labels = None if ctx.split.y is None else ctx.split.y.numpy()
    what = "samples z ~ q(z|x)" if sample_codes else "posterior means"
    how = {"latent": f"the {ctx.latent_model.latent_dim}-D latent itself", "pca": "PCA", "tsne": "t-SNE"}[projection.method]
    title = f"{len(codes)} {ctx.split_name} examples, {what}; {how}"
    picture = plotting.scatter(projection.xy, labels, names=ctx.class_names, axes=projection.axes, title=title, size=size)
    caption = f"Codes of the {len(codes)} {ctx.split_name} examples ({what}), plotted via {how}" + (
        ", coloured by label." if labels is not None else "."
    )
    return View(picture, caption, Embedding(codes, None if ctx.split.y is None else ctx.split.y, projection))
