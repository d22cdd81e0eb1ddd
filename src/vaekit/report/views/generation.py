"""Views of what the model generates: samples (by class, across a context column, from the prior beside
densities fitted to the codes) and a VampPrior's pseudo-inputs."""

from __future__ import annotations

import torch

import vaekit.latent as latent
import vaekit.plotting as plotting
from vaekit.data.tables import context_names, raw_context
from vaekit.errors import ConfigError
from vaekit.examples import with_context
from vaekit.generation import reconstruct, sample, tempered
from vaekit.models.vampprior import vampprior_of
from vaekit.report.context import RunContext
from vaekit.report.views import sequences as sequence_views
from vaekit.report.views.base import View, paired_rows
from vaekit.report.views.space import LatentSpace


def density_name(kind: str, components: int) -> str:
    """How a caption names the density z is drawn from (``prior``, ``gaussian`` or ``gmm``)."""
    return {"prior": "the prior p(z)", "gaussian": "a Gaussian fit to codes", "gmm": f"a {components}-component GMM fit"}[kind]


def samples(
    space: LatentSpace,
    n: int = 64,
    *,
    temperature: float = 1.0,
    density: str = "prior",
    components: int = 10,
    draw: bool = False,
    syntax: bool = False,
) -> View:
    """``n`` decoded draws (n, *shape) from the prior or from a density fitted to the training codes (decoder
    means, or draws from p(x|z) with ``draw``). A conditional model with no ``chosen_context``: a row per
    class, n // classes samples each (at least one). syntax: a sequence model's tokens drawn keeping to
    their syntax (``vaekit.data.syntax``)."""
    ctx = space.ctx
    if ctx.is_sequences:
        return sequence_views.samples(ctx, n, temperature=temperature, syntax=syntax)
    if syntax:
        raise ConfigError("syntax rules apply to a model of token sequences (SMILES), not to this run's data")
    ctx.require_images("sampling")
    if ctx.classes and ctx.chosen_context is None:
        per_class = max(1, n // ctx.classes)
        return class_samples(space, per_class, temperature=temperature, density=density, components=components, draw=draw)
    prior = space.density(density, components)
    images = sample(ctx.model, n, temperature=temperature, seed=ctx.seed, mean=not draw, prior=prior, context=ctx.decode_context())
    of = f" of {ctx.class_name(ctx.chosen_context)}" if ctx.chosen_context is not None else ""
    return View(
        plotting.image_grid(images, plotting.grid_columns(n)),
        f"{n} samples{of}, z from {density_name(density, components)} at temperature {temperature:g}.",
        images,
    )


def class_samples(
    space: LatentSpace, per_class: int = 10, *, temperature: float = 1.0, density: str = "prior", components: int = 10, draw: bool = False
) -> View:
    """A conditional model's samples (classes, per_class, *shape), one row per class: row c decodes ``per_class``
    draws with class c (z from p(z), or p(z|c) for a conditional prior; a fitted density for ``gaussian`` / ``gmm``)."""
    ctx = space.ctx
    ctx.require_images("sampling")
    if not ctx.classes:
        raise ConfigError("samples per class need a model conditioned on the class label (trained with --condition label)")
    rows = []
    for c in range(ctx.classes):
        prior = ctx.model.prior(c) if density == "prior" else space.density(density, components)
        rows.append(sample(ctx.model, per_class, temperature=temperature, seed=ctx.seed, mean=not draw, prior=prior, context=c))
    images = torch.stack(rows)  # (classes, per_class, *shape)
    picture = plotting.labelled_grid(images, row_labels=[ctx.label_name(c) for c in range(ctx.classes)], corner="class")
    caption = (
        f"{per_class} samples per class, one row each: the decoder given the class, "
        f"z from {density_name(density, components)} at temperature {temperature:g}."
    )
    return View(picture, caption, images)


def context_samples(ctx: RunContext, rows: int = 4, values: int = 7, *, columns: int = 4, temperature: float = 1.0) -> View:
    """A model conditioned on context columns: for each column (the first ``columns``), ``rows`` prior draws
    z (one per row, the same in every panel) decoded as that column sweeps from its training 5th to 95th
    percentile (``values`` steps), the other columns held at ``decode_context()`` (the mean context by default).
    The result: {column name: (rows, values, *shape)}."""
    ctx.require_images("sampling")
    if not ctx.model.latent.conditional or ctx.classes:
        raise ConfigError("context sweeps need a model conditioned on context columns (trained with --context-columns)")
    base = ctx.decode_context().float()  # (K,)
    record = ctx.preprocessing
    names = context_names(record, len(base))
    train = ctx.examples(ctx.data.train).context  # (N, K)
    with torch.random.fork_rng():
        torch.manual_seed(ctx.seed)
        z = tempered(ctx.model.prior(base), temperature).sample((rows,))  # (rows, L)
    q = torch.linspace(0.05, 0.95, values, dtype=torch.float64)
    pictures, titles, results = [], [], {}
    for j in range(min(columns, len(base))):
        sweep = torch.quantile(train[:, j].double(), q).float()  # (values,)
        context = base.repeat(values, 1)
        context[:, j] = sweep  # (values, K)
        grid = torch.stack([latent.decode_mean(ctx.model, z[r].expand(values, -1), context=context) for r in range(rows)])
        cols = [format(round(raw_context(record, context[i])[j], 6) + 0.0, ".3g") for i in range(values)]
        pictures.append(plotting.labelled_grid(grid, col_labels=cols))
        titles.append(names[j])
        results[names[j]] = grid  # (rows, values, *shape)
    caption = (
        f"{rows} prior draws of z (rows, the same in every panel), each decoded as one context column sweeps "
        f"from its training 5th to 95th percentile; the other columns held at {ctx.class_name(base)}."
    )
    return View(plotting.panels(pictures, titles), caption, results)


def sample_comparison(space: LatentSpace, n: int = 36, *, temperature: float = 1.0, components: int = 10) -> View:
    """Samples from the prior, a full-covariance Gaussian and a Gaussian mixture fitted to the training
    codes, side by side: the way to compare generation by an autoencoder and by a VAE. The result:
    {``prior`` / ``gaussian`` / ``gmm``: (n, *shape)}."""
    ctx = space.ctx
    ctx.require_images("sampling")
    pictures, titles, results = [], [], {}
    context = ctx.decode_context() if ctx.chosen_context is not None or not ctx.classes else torch.arange(n) % ctx.classes
    for kind in ("prior", "gaussian", "gmm"):
        prior = ctx.model.prior(context) if kind == "prior" else space.density(kind, components)
        images = sample(ctx.model, n, temperature=temperature, seed=ctx.seed, prior=prior, context=context)
        pictures.append(plotting.image_grid(images, plotting.grid_columns(n)))
        titles.append(density_name(kind, components))
        results[kind] = images
    if ctx.model.latent.deterministic:
        why = (
            "A plain autoencoder's codes were never fitted to the prior, so prior draws can land where no code lies; "
            "densities fitted to its codes are the usual remedy."
        )
    else:
        why = "For a VAE the three look alike when the aggregate posterior matches the prior."
    caption = (
        f"{n} samples each, temperature {temperature:g}: "
        f"z from the prior p(z), and from densities fitted to the {len(ctx.data.train)} training codes. {why}"
    )
    return View(plotting.panels(pictures, titles), caption, results)


def pseudo_inputs(ctx: RunContext, n: int = 32, cols: int = 16) -> View:
    """A VampPrior's learned pseudo-inputs u_k, the first ``n`` (odd rows), above what the model makes
    of them (even rows: the decoder mean at the mean of q(z|u_k)); the mixture p(z) = (1/K) Σ_k q(z|u_k)."""
    ctx.require_images("pseudo-inputs")
    prior = vampprior_of(ctx.model)
    with torch.no_grad():
        u = prior.pseudo_inputs()  # (K, *shape)
        context = None if not ctx.model.latent.conditional else ctx.model.condition.contexts(len(u))[:n]
        u = u[:n].detach().float().cpu()  # (n, *shape)
    rec = reconstruct(ctx.model, with_context(ctx.model, u, context)).cpu()
    return View(
        paired_rows(u, rec, cols),
        f"The first {len(u)} of the VampPrior's {len(prior.pseudo_weight)} learned pseudo-inputs (odd rows) and the decoder "
        "mean at the mean of q(z|u) for each (even rows): the prior is the mixture of the posteriors at all of them.",
        u,
    )
