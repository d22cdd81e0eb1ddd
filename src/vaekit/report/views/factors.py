"""Views of what each latent unit learned, for data made from known factors of variation (dsprites):
Higgins et al.'s traversal with each unit labelled by the factor it captures, and the heat map of
the information each unit holds about each factor."""

from __future__ import annotations

import numpy as np

import vaekit.plotting as plotting
from vaekit.disentanglement.runs import CAPTURES
from vaekit.report.views.base import View
from vaekit.report.views.latent import traversal
from vaekit.report.views.space import LatentSpace


def factor_traversal(space: LatentSpace, *, steps: int = 11, width: float = 2.5, index: int = 0) -> View:
    """Every latent unit, ranked by KL, varied alone over ±``width``σ of the prior around the posterior
    mean of example ``index``; each row labelled with its KL and the factor it captures (the share of
    the factor's entropy it holds: ``unit_information``). The result: a ``latent.Traversal``."""
    labels = space.unit_information
    view = traversal(
        space, None, steps=steps, span="sigma", width=width, at="input", index=index, annotate=lambda d: labels.captured(d) or "-"
    )
    info = space.unit_information
    caption = (
        f"Each latent unit varied alone over ±{width:g}σ around the posterior mean of {space.ctx.example(index)[1]}, ranked by "
        f"its average KL to the prior; under each unit's KL, the factor it holds most information about and the share of that "
        f"factor's entropy it holds (binned posterior means of {info.images} images; '-': under {CAPTURES:g} for every factor)."
    )
    return View(view.picture, caption, view.result)


def factor_information(space: LatentSpace) -> View:
    """The mutual information between each latent unit (rows, ranked by KL) and each factor (columns),
    as a share of the factor's entropy. The result: the ``UnitInformation``."""
    info, ranking = space.unit_information, space.ranking
    order = ranking.dims.tolist()
    rows = [ranking.label(i).replace("  ", "  (") + ")" for i in range(len(order))]
    shares = np.clip(info.normalized[order], 0, 1)  # (L, F)
    picture = plotting.heatmap(
        shares,
        rows=rows,
        columns=list(info.factors),
        axes=("latent unit", "factor"),
        scale="I(unit; factor) / H(factor)",
        title=f"what each unit knows about each factor ({info.images} images)",
    )
    caption = (
        f"Mutual information between each latent unit's binned posterior mean and each factor, as a share of the factor's "
        f"entropy, on {info.images} images drawn uniformly from the factors (MIG's estimator); a disentangled code has one "
        "dark cell per column, and the units ranked last (by KL) hold nothing."
    )
    return View(picture, caption, info)
