"""Views of a saved run, and the one-file HTML report that gathers them.

``RunViews(run)`` loads the run's data once and makes each figure the CLI and the report show:
every method returns a ``View`` (a uint8 picture, a caption, and the tensors behind it), built from
``vaekit.latent`` / ``vaekit.generation`` (numbers) and ``vaekit.plotting`` (pictures). The figure
commands save one view as a PNG; ``write_report`` embeds them all in RUN/report.html, which needs
no other file and no network to open.

Image-only views (reconstructions, samples, interpolation, traversal, manifold, denoising) raise
``ConfigError`` for a run on tabular data; the report shows a one-line note in their place.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vaekit.latent as latent
import vaekit.plotting as plotting
from vaekit.checkpoint import atomic_write_bytes
from vaekit.corruption import UNIT_LEVEL
from vaekit.data.base import class_names, label_name
from vaekit.data.tables import context_names, describe_context, raw_context
from vaekit.errors import ConfigError, DataError, VaekitError
from vaekit.evaluation import elbo_terms, summarize
from vaekit.generation import denoise, reconstruct, sample, tempered
from vaekit.models.condition import chosen_context, data_context
from vaekit.models.hierarchical import describe_latent, latent_view, view_at_input
from vaekit.models.vampprior import vampprior_of
from vaekit.runs import metric_terms
from vaekit.settings import takes_effect
from vaekit.version import __version__

log = logging.getLogger(__name__)

REPORT = "report.html"
RANK_SAMPLE = 2000  # examples the dimensions are ranked on


@dataclass
class View:
    """picture: uint8 (H, W, 3) or (H, W, 1); caption: one sentence saying what it shows;
    result: the numbers behind it (a dataclass from ``vaekit.latent`` / ``vaekit.generation``, or None)."""

    picture: np.ndarray
    caption: str
    result: Any = None


MANIFOLD_GRID = 20  # the manifold's n x n grid, in the report and in `vaekit manifold` alike


def is_image_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3)


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
        if split not in ("test", "valid", "train"):
            raise ConfigError(f"split must be test, valid or train, got {split!r}")
        self.run, self.model, self.source, self.split_name, self.seed = run, run.model, source, split, seed
        self.latent_model = latent_view(run.model, layer)  # what the latent views vary: the model, or one layer of a hierarchical one
        self._densities: dict[tuple[str, int], Any] = {}
        self.chosen_context = chosen_context(self.model, context)

    # ----- shared state, loaded once -----------------------------------------------------------
    @cached_property
    def data(self):
        data = self.run.load_data(self.source)
        if tuple(data.shape) != tuple(self.model.input_shape):
            raise DataError(
                f"the data has examples of shape {tuple(data.shape)}, but the model was trained on {tuple(self.model.input_shape)}"
            )
        return data

    @cached_property
    def split(self):
        """The chosen split (``Dataset``)."""
        if self.split_name == "test" and self.data.test is None:
            log.info("this dataset has no test split; using the validation split")
            self.split_name = "valid"
        return getattr(self.data, self.split_name)

    @property
    def is_image(self) -> bool:
        return is_image_shape(tuple(self.model.input_shape))

    def require_images(self, what: str) -> None:
        if not self.is_image:
            raise ConfigError(f"{what} needs 1- or 3-channel images, but this run models data of shape {tuple(self.model.input_shape)}")

    def context(self, data) -> torch.Tensor | None:
        """The context (labels (N,) or vectors (N, K)) of a ``Dataset`` for a conditional model (its inputs
        are encoded with it), else None."""
        return data_context(self.model, data, f"the {self.split_name if data is self.split else 'training'} split")

    @property
    def classes(self) -> int:
        """The conditional model's number of classes (0 for an unconditional model or a context of columns)."""
        return self.model.condition.classes if self.model.conditional else 0

    def decode_context(self, default: int | torch.Tensor | None = None) -> int | torch.Tensor | None:
        """The context a conditional model's view decodes with: ``chosen_context``, else ``default``, else the
        condition's default (class 0, or the mean context); None when unconditional."""
        if not self.model.conditional:
            return None
        if self.chosen_context is not None:
            return self.chosen_context
        if default is None:
            return int(self.model.condition.default()) if self.classes else self.model.condition.default().cpu()
        return int(default) if self.classes else default

    def class_name(self, label: int | torch.Tensor | None) -> str:
        if label is None:
            return ""
        if isinstance(label, torch.Tensor) and label.dim() == 1:
            return describe_context(self.run.data_info.get("preprocessing") or {}, label)
        return f"class {self._label_name(int(label))}"

    @cached_property
    def ranking(self) -> latent.DimRanking:
        y = self.context(self.split)
        return latent.rank_dims(self.latent_model, self.split.x[:RANK_SAMPLE], context=None if y is None else y[:RANK_SAMPLE])

    @cached_property
    def train_codes(self) -> torch.Tensor:
        return latent.encode(self.model, self.data.train.x, context=self.context(self.data.train))

    def density(self, kind: str = "prior", components: int = 10):
        """What to draw z from: ``prior`` (p(z), or p(z|y) at ``decode_context()``), or ``gaussian`` / ``gmm``
        fitted to the training codes."""
        if kind == "prior":
            return self.model.prior(self.decode_context())
        if (kind, components) not in self._densities:
            self._densities[kind, components] = latent.fit_code_density(self.train_codes, kind, components=components, seed=self.seed)
        return self._densities[kind, components]

    @cached_property
    def reference(self):
        """The distribution views vary z under: the prior (VAE; p(z|y) at ``decode_context()`` for a conditional prior; a
        hierarchical model's: its layer's) or a Gaussian fitted to the training codes (AE)."""
        if self.latent_model is not self.model:
            return self.latent_model.prior()
        return self.density("prior") if not self.model.deterministic else self.density("gaussian")

    @property
    def reference_name(self) -> str:
        return "the prior" if not self.model.deterministic else "a Gaussian fitted to the training codes"

    def example_context(self, spec: int | torch.Tensor | tuple[torch.Tensor, str]) -> int | torch.Tensor | None:
        """The context a conditional model encodes the input ``spec`` (as for ``example``) with: an
        example's own label or context vector (K,), or ``chosen_context`` for an input given as a tensor or file;
        None when unconditional."""
        if not self.model.conditional:
            return None
        if isinstance(spec, (tuple, torch.Tensor)):
            if self.chosen_context is None:
                flag = "--class" if self.classes else "--context"
                raise ConfigError(f"a conditional model encodes an input with its context: give {flag} for an input file")
            return self.chosen_context
        y = self.context(self.split)[int(spec) % len(self.split)]
        return int(y) if self.classes else y

    def example(self, spec: int | torch.Tensor | tuple[torch.Tensor, str]) -> tuple[torch.Tensor, str]:
        """An input (*input_shape,) and a short name for it, from an index into the split, a tensor,
        or a (tensor, name) pair (e.g. an image read from a file)."""
        if isinstance(spec, tuple):
            x, name = spec
            return self.example(x)[0], name
        if isinstance(spec, torch.Tensor):
            if tuple(spec.shape) != tuple(self.model.input_shape):
                raise DataError(f"an input of shape {tuple(spec.shape)} does not fit the model's {tuple(self.model.input_shape)}")
            return spec.float(), "given input"
        n = len(self.split)
        if not -n <= int(spec) < n:
            raise ConfigError(f"index {spec} is out of range: the {self.split_name} split has {n} examples")
        i = int(spec) % n
        label = "" if self.split.y is None else f", label {self._label_name(int(self.split.y[i]))}"
        return self.split.x[i], f"{self.split_name} #{i}{label}"

    def _label_name(self, label: int) -> str:
        return label_name(self.run.data_info, label)

    def base_point(self, at: str, index: int = 0, view=None) -> tuple[torch.Tensor, str]:
        """z (L,) the other dimensions are held at: ``input`` (the posterior mean of example ``index``,
        encoded by ``view``, default ``view_at(at, index)``) or ``mean`` (the reference's mean: 0 for a normal prior)."""
        if at == "mean":
            return self.reference.mean.detach().cpu().float(), f"the mean of {self.reference_name}"
        if at == "input":
            x, name = self.example(index)
            y = self.example_context(index)
            view = self.view_at(at, index) if view is None else view
            return latent.encode(view, x.unsqueeze(0), context=y)[0], f"the posterior mean of {name}"
        raise ConfigError(f"'at' must be 'input' or 'mean', got {at!r}")

    def view_at(self, at: str, index: int = 0):
        """What a traversal or manifold decodes through: ``latent_model``; around an input (``at`` =
        ``input``), a lower layer of a hierarchical model has the layers above held at that input's codes."""
        if at != "input":
            return self.latent_model
        return view_at_input(self.latent_model, self.example(index)[0], self.example_context(index))

    # ----- image views ----------------------------------------------------------------------------
    def reconstructions(self, n: int = 16, cols: int = 16) -> View:
        """Originals (odd rows) above their reconstructions (even rows)."""
        self.require_images("reconstruction")
        x = self.split.x[:n]
        y = self.context(self.split)
        rec = reconstruct(self.model, x, None if y is None else y[:n]).cpu()
        return View(
            _paired_rows(x, rec, cols),
            f"{len(x)} {self.split_name} examples (odd rows) and their reconstructions (even rows): decoder mean at the posterior mean.",
            rec,
        )

    def pseudo_inputs(self, n: int = 32, cols: int = 16) -> View:
        """A VampPrior's learned pseudo-inputs u_k, the first ``n`` (odd rows), above what the model makes
        of them (even rows: the decoder mean at the mean of q(z|u_k)); the mixture p(z) = (1/K) Σ_k q(z|u_k)."""
        self.require_images("pseudo-inputs")
        prior = vampprior_of(self.model)
        with torch.no_grad():
            u = prior.pseudo_inputs()  # (K, *shape)
            context = None if self.model.condition is None else self.model.condition.contexts(len(u))[:n]
            u = u[:n].detach().float().cpu()
        rec = reconstruct(self.model, u, context).cpu()
        return View(
            _paired_rows(u, rec, cols),
            f"The first {len(u)} of the VampPrior's {len(prior.pseudo_weight)} learned pseudo-inputs (odd rows) and the decoder "
            "mean at the mean of q(z|u) for each (even rows): the prior is the mixture of the posteriors at all of them.",
            u,
        )

    def samples(self, n: int = 64, *, temperature: float = 1.0, density: str = "prior", components: int = 10, draw: bool = False) -> View:
        """Decoded draws from the prior or from a density fitted to the training codes. A conditional
        model with no ``chosen_context``: a row per class, n // classes samples each (at least one)."""
        self.require_images("sampling")
        if self.classes and self.chosen_context is None:
            return self.class_samples(max(1, n // self.classes), temperature=temperature, density=density, components=components, draw=draw)
        prior = self.density(density, components)
        images = sample(self.model, n, temperature=temperature, seed=self.seed, mean=not draw, prior=prior, context=self.decode_context())
        of = f" of {self.class_name(self.chosen_context)}" if self.chosen_context is not None else ""
        return View(
            plotting.image_grid(images, plotting.grid_columns(n)),
            f"{n} samples{of}, z from {_density_name(density, components)} at temperature {temperature:g}.",
            images,
        )

    def class_samples(
        self, per_class: int = 10, *, temperature: float = 1.0, density: str = "prior", components: int = 10, draw: bool = False
    ) -> View:
        """A conditional model's samples, one row per class: row c decodes ``per_class`` draws with class c
        (z from p(z), or p(z|c) for a conditional prior; a fitted density for ``gaussian`` / ``gmm``)."""
        self.require_images("sampling")
        if not self.classes:
            raise ConfigError("samples per class need a model conditioned on the class label (trained with --condition label)")
        rows = []
        for c in range(self.classes):
            prior = self.model.prior(c) if density == "prior" else self.density(density, components)
            rows.append(sample(self.model, per_class, temperature=temperature, seed=self.seed, mean=not draw, prior=prior, context=c))
        images = torch.stack(rows)  # (classes, per_class, *shape)
        picture = plotting.labelled_grid(images, row_labels=[self._label_name(c) for c in range(self.classes)], corner="class")
        caption = (
            f"{per_class} samples per class, one row each: the decoder given the class, "
            f"z from {_density_name(density, components)} at temperature {temperature:g}."
        )
        return View(picture, caption, images)

    def context_samples(self, rows: int = 4, values: int = 7, *, columns: int = 4, temperature: float = 1.0) -> View:
        """A model conditioned on context columns: for each column (the first ``columns``), ``rows`` prior draws
        z (one per row, the same in every panel) decoded as that column sweeps from its training 5th to 95th
        percentile (``values`` steps), the other columns held at ``decode_context()`` (the mean context by default)."""
        self.require_images("sampling")
        if not self.model.conditional or self.classes:
            raise ConfigError("context sweeps need a model conditioned on context columns (trained with --context-columns)")
        base = self.decode_context().float()  # (K,)
        record = self.run.data_info.get("preprocessing") or {}
        names = context_names(record, len(base))
        train = self.context(self.data.train)  # (N, K)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            z = tempered(self.model.prior(base), temperature).sample((rows,))  # (rows, L)
        q = torch.linspace(0.05, 0.95, values, dtype=torch.float64)
        pictures, titles, results = [], [], {}
        for j in range(min(columns, len(base))):
            sweep = torch.quantile(train[:, j].double(), q).float()  # (values,)
            ctx = base.repeat(values, 1)
            ctx[:, j] = sweep  # (values, K)
            grid = torch.stack([latent.decode_mean(self.model, z[r].expand(values, -1), context=ctx) for r in range(rows)])
            cols = [format(round(raw_context(record, ctx[i])[j], 6) + 0.0, ".3g") for i in range(values)]
            pictures.append(plotting.labelled_grid(grid, col_labels=cols))
            titles.append(names[j])
            results[names[j]] = grid  # (rows, values, *shape)
        caption = (
            f"{rows} prior draws of z (rows, the same in every panel), each decoded as one context column sweeps "
            f"from its training 5th to 95th percentile; the other columns held at {self.class_name(base)}."
        )
        return View(plotting.panels(pictures, titles), caption, results)

    def sample_comparison(self, n: int = 36, *, temperature: float = 1.0, components: int = 10) -> View:
        """Samples from the prior, a full-covariance Gaussian and a Gaussian mixture fitted to the training
        codes, side by side: the way to compare generation by an autoencoder and by a VAE."""
        self.require_images("sampling")
        pictures, titles, results = [], [], {}
        context = self.decode_context() if self.chosen_context is not None or not self.classes else torch.arange(n) % self.classes
        for kind in ("prior", "gaussian", "gmm"):
            prior = self.model.prior(context) if kind == "prior" else self.density(kind, components)
            images = sample(self.model, n, temperature=temperature, seed=self.seed, prior=prior, context=context)
            pictures.append(plotting.image_grid(images, plotting.grid_columns(n)))
            titles.append(_density_name(kind, components))
            results[kind] = images
        if self.model.deterministic:
            why = (
                "A plain autoencoder's codes were never fitted to the prior, so prior draws can land where no code lies; "
                "densities fitted to its codes are the usual remedy."
            )
        else:
            why = "For a VAE the three look alike when the aggregate posterior matches the prior."
        caption = (
            f"{n} samples each, temperature {temperature:g}: "
            f"z from the prior p(z), and from densities fitted to the {len(self.data.train)} training codes. {why}"
        )
        return View(plotting.panels(pictures, titles), caption, results)

    def interpolation(self, a, b, *, steps: int = 10, methods: tuple[str, ...] = ("linear", "slerp")) -> View:
        """Rows of [A, decoded path, B] between the posterior means of A and B (each as for ``example``), one row per method."""
        self.require_images("interpolation")
        (xa, name_a), (xb, name_b) = self.example(a), self.example(b)
        ends = None if not self.model.conditional else (self.example_context(a), self.example_context(b))
        results = {m: latent.interpolate(self.latent_model, xa, xb, steps, m, labels=ends, context=self.chosen_context) for m in methods}
        rows = torch.stack([torch.cat([xa.unsqueeze(0), results[m].images, xb.unsqueeze(0)]) for m in methods])  # (R, S+2, *shape)
        cols = (
            ["A"]
            + [f"{t:.2f}".rstrip("0").rstrip(".") if t not in (0, 1) else str(int(t)) for t in torch.linspace(0, 1, steps).tolist()]
            + ["B"]
        )
        decoded = (
            ""
            if ends is None
            else f"; decoded as {self.class_name(self.chosen_context)}"
            if self.chosen_context is not None
            else f"; the {'class' if self.classes else 'context'} mixed A to B"
        )
        picture = plotting.labelled_grid(rows, row_labels=list(methods), col_labels=cols, title=f"A = {name_a}, B = {name_b}{decoded}")
        caption = (
            f"From A to B in {steps} steps between their posterior means (t = 0 and 1 are their reconstructions), "
            "along a straight line (linear) and a great circle (slerp); the originals sit at the ends"
            + (
                "."
                if ends is None
                else f"; the decoder is given {self.class_name(self.chosen_context)} all along."
                if self.chosen_context is not None
                else "; the decoder is given the two labels' one-hot vectors mixed along the path."
            )
        )
        return View(picture, caption, results)

    def traversal(
        self,
        k: int | None = 8,
        *,
        dims: list[int] | None = None,
        steps: int = 11,
        span: str = "quantile",
        width: float = 3.0,
        at: str = "input",
        index: int = 0,
    ) -> View:
        """One row per dimension (the ``k`` most informative, or ``dims``), varied alone over the reference's
        quantiles (``span="quantile"``) or ±``width``σ (``span="sigma"``)."""
        self.require_images("traversal")
        if dims is None:
            k = self.latent_model.latent_dim if k is None else min(k, self.latent_model.latent_dim)
            chosen = self.ranking.dims[:k]
        else:
            chosen = torch.as_tensor(dims, dtype=torch.long)
        view = self.view_at(at, index)
        base, base_name = self.base_point(at, index, view)
        y = self.decode_context(self.example_context(index) if at == "input" else None)
        values = latent.grid_values(latent.marginals(self.reference), steps, span, width=width)  # (S, L)
        result = latent.traverse(view, chosen, base, values, context=y)
        rank = {int(d): i for i, d in enumerate(self.ranking.dims)}
        row_labels = [self.ranking.label(rank[int(d)]).replace("  ", "\n") for d in result.dims]
        if torch.allclose(result.values, result.values[:1]):
            cols = [f"{v:.2f}" for v in result.values[0].tolist()]
        elif span == "quantile":
            cols = [f"p {p:.2f}" for p in torch.linspace(*latent.DEFAULT_P_RANGE, steps).tolist()]
        else:
            cols = [f"{t:+.1f}σ" for t in torch.linspace(-width, width, steps).tolist()]
        what = "quantiles" if span == "quantile" else f"±{width:g}σ"
        title = f"each row: one dimension over {what} of {self.reference_name}; the others at {base_name}" + (
            "" if y is None else f"; decoded as {self.class_name(y)}"
        )
        picture = plotting.labelled_grid(result.images, row_labels=row_labels, col_labels=cols, title=title)
        caption = (
            f"Latent traversal of {len(result.dims)} dimension(s), ranked by "
            + ("average KL to the prior" if self.ranking.measure == "KL" else "the variance of the codes (a plain autoencoder has no KL)")
            + f" over {min(len(self.split), RANK_SAMPLE)} {self.split_name} examples; the other dimensions stay at {base_name}."
        )
        return View(picture, caption, result)

    def manifold(
        self,
        n: int = MANIFOLD_GRID,
        *,
        dims: tuple[int, int] | None = None,
        at: str = "mean",
        index: int = 0,
        p_range: tuple[float, float] = latent.DEFAULT_P_RANGE,
        min_cell: int | None = None,
    ) -> View:
        """The decoded n x n grid over the reference's inverse CDF in two dimensions (default: the two most
        informative; a 2-D latent: both), the others fixed. ``min_cell``: smallest cell in pixels
        (default: about 960 / n, within 28 to 56)."""
        self.require_images("the manifold")
        if self.latent_model.latent_dim < 2:
            raise ConfigError("the manifold needs a latent space of at least 2 dimensions")
        if dims is None:
            dims = (0, 1) if self.latent_model.latent_dim == 2 else tuple(int(d) for d in self.ranking.dims[:2])
        view = self.view_at(at, index)
        base, base_name = self.base_point(at, index, view)
        y = self.decode_context(self.example_context(index) if at == "input" else None)
        values = latent.grid_values(latent.marginals(self.reference), n, "quantile", p_range)  # (n, L)
        result = latent.manifold(view, dims, base, values, context=y)
        i, j = result.dims
        picture = plotting.labelled_grid(
            result.images,
            row_labels=[f"{v:.2f}" for v in result.y_values.tolist()],
            col_labels=[f"{v:.2f}" for v in result.x_values.tolist()],
            title=f"z{i} left to right, z{j} bottom to top"
            + ("" if self.latent_model.latent_dim == 2 else f"; the other dimensions at {base_name}")
            + ("" if y is None else f"; {self.class_name(y)}"),
            corner=f"z{j} \\ z{i}",
            pad=1,
            pad_value=0.4,
            min_cell=min_cell or min(56, max(28, 960 // n)),
        )
        caption = (
            f"The learned manifold: decoder means over a {n} x {n} grid of z{i} and z{j} at the quantiles "
            f"{p_range[0]:g} to {p_range[1]:g} of {self.reference_name} (its inverse CDF)"
            + ("." if self.latent_model.latent_dim == 2 else f", the other {self.latent_model.latent_dim - 2} dimension(s) at {base_name}.")
        )
        return View(picture, caption, result)

    def denoising(self, n: int = 8, *, noise: str | None = None, level: float | None = None, compare=None) -> View:
        """Rows of corrupted | denoised (| denoised by ``compare``, another run) | clean, with MSE and PSNR.
        noise / level default to what the run was trained with."""
        self.require_images("denoising")
        t = self.run.config.train
        noise = noise or (t.noise if t.noise != "none" else None)
        if noise is None or noise == "none":
            raise ConfigError(
                f"{self.run.path} was trained without input noise; give the corruption to apply (--noise KIND --noise-level L)"
            )
        if level is None:
            if noise != t.noise:
                raise ConfigError(f"give the level of the {noise} noise (--noise-level)")
            level = t.noise_level
        if level <= 0 or (noise in UNIT_LEVEL and level > 1):
            raise ConfigError(f"noise level must be positive (and at most 1 for {noise}), got {level}")
        x = self.split.x[:n]
        peak = 1.0 if self.data.value_range in ("unit", "binary") else float(x.max() - x.min())
        y = self.context(self.split)
        y = None if y is None else y[:n]
        result = denoise(self.model, x, noise, level, seed=self.seed, peak=peak, context=y)
        columns = [result.noisy, result.denoised]
        names = ["corrupted", "denoised"]
        other = None
        if compare is not None:
            if tuple(compare.model.input_shape) != tuple(self.model.input_shape):
                raise DataError(f"{compare.path} models shape {tuple(compare.model.input_shape)}, this run {tuple(self.model.input_shape)}")
            other = denoise(compare.model, x, noise, level, seed=self.seed, peak=peak, context=y if compare.model.conditional else None)
            columns.append(other.denoised)
            names = ["corrupted", self.run.path.name[:14], compare.path.name[:14]]
        columns.append(result.clean)
        names.append("clean")
        labels = []
        for r in range(len(x)):
            lines = [
                f"in:  {result.psnr_noisy[r]:.1f} dB, MSE {result.mse_noisy[r]:.4f}",
                f"out: {result.psnr_denoised[r]:.1f} dB, MSE {result.mse_denoised[r]:.4f}",
            ]
            if other is not None:
                lines.append(f"cmp: {other.psnr_denoised[r]:.1f} dB, MSE {other.mse_denoised[r]:.4f}")
            labels.append("\n".join(lines))
        picture = plotting.labelled_grid(
            torch.stack(columns, 1),
            row_labels=labels,
            col_labels=names,
            corner="PSNR and MSE",
            row_align="left",
            min_cell=80,
            title=f"{noise} noise, level {level:g}",
        )
        caption = (
            f"{len(x)} {self.split_name} examples corrupted with {noise} noise at level {level:g} (seed {self.seed}), the model's "
            "reconstruction, and the clean image; "
            "each row gives the MSE and PSNR of the corrupted input (in) and of the reconstruction (out)"
            + (f", and of {compare.path.name}'s reconstruction (cmp)." if other is not None else ".")
        )
        return View(picture, caption, result if other is None else (result, other))

    # ----- views for any data ---------------------------------------------------------------------
    def embedding(self, *, sample_codes: bool = False, method: str = "auto", size: tuple[float, float] = (6.4, 5.4)) -> View:
        """Codes of the split (posterior means, or seeded samples) and their 2-D scatter coloured by label
        (``size`` in inches at 100 dpi)."""
        codes = latent.encode(self.latent_model, self.split.x, sample=sample_codes, seed=self.seed, context=self.context(self.split))
        projection = latent.project_2d(codes, method, seed=self.seed)
        labels = None if self.split.y is None else self.split.y.numpy()
        what = "samples z ~ q(z|x)" if sample_codes else "posterior means"
        how = {"latent": f"the {self.latent_model.latent_dim}-D latent itself", "pca": "PCA", "tsne": "t-SNE"}[projection.method]
        title = f"{len(codes)} {self.split_name} examples, {what}; {how}"
        names = class_names(self.run.data_info)  # the legend's: label i as names[i], in label order
        picture = plotting.scatter(projection.xy, labels, names=names, axes=projection.axes, title=title, size=size)
        caption = f"Codes of the {len(codes)} {self.split_name} examples ({what}), plotted via {how}" + (
            ", coloured by label." if labels is not None else "."
        )
        return View(picture, caption, Embedding(codes, None if self.split.y is None else self.split.y, projection))

    def curves(self) -> View:
        rows = self.run.metrics()
        if not rows:
            raise ConfigError(f"{self.run.path} has no training metrics yet")
        title = f"{self.run.path.name}: {self.run.config.model.kind.upper()}, {len(rows)} epochs"
        caption = (
            "Per-epoch negative ELBO, reconstruction and KL (nats per example; solid train, dashed validation) and the KL weight β."
            + (" A plain autoencoder has no KL term: its KL and β are 0." if self.model.deterministic else "")
        )
        return View(plotting.training_curves(rows, title=title), caption, rows)


@dataclass
class Embedding:
    """codes: (N, L); labels: (N,) or None; projection: the 2-D coordinates plotted."""

    codes: torch.Tensor
    labels: torch.Tensor | None
    projection: latent.Projection


def _density_name(kind: str, components: int) -> str:
    return {"prior": "the prior p(z)", "gaussian": "a Gaussian fit to codes", "gmm": f"a {components}-component GMM fit"}[kind]


# ----- the HTML report ------------------------------------------------------------------------


@dataclass
class Section:
    id: str
    title: str
    body: str = ""
    note: str = ""  # a one-line note shown instead of a skipped view
    half: bool = False  # shares a row with the next (or previous) half-width section


@dataclass
class _Report:
    sections: list[Section] = field(default_factory=list)

    def add(self, id: str, title: str, make, *, image: bool = True, half: bool = False) -> None:
        """Run ``make()`` (-> View) into a section; a view that cannot be drawn becomes a one-line note."""
        try:
            view = make()
        except VaekitError as exc:
            self.sections.append(Section(id, title, note=str(exc), half=half))
            log.info("report: %s skipped: %s", title.lower(), exc)
            return
        self.sections.append(Section(id, title, body=figure_html(view, pixelated=image), half=half))


def figure_html(view: View, pixelated: bool = True) -> str:
    data = base64.b64encode(plotting.png_bytes(view.picture)).decode("ascii")
    h, w = view.picture.shape[:2]
    cls = "grid" if pixelated else "plot"
    return (
        f'<figure><img class="{cls}" width="{w}" height="{h}" alt="{html.escape(view.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(view.caption)}</figcaption></figure>"
    )


def write_report(run, path: str | Path | None = None, *, split: str = "test", seed: int = 0, layer: int | None = None) -> Path:
    """Write the one-file HTML report of ``run`` (default RUN/report.html) and return its path.

    Sections: configuration, metrics (evaluation of ``split`` and the training summary), training
    curves, reconstructions, samples (prior vs fitted code densities), interpolation, traversal,
    manifold, latent embedding, and denoising for a run trained with input noise. Images are
    embedded as data URIs, so the file opens offline. layer: the stochastic layer of a hierarchical
    model the latent views vary (default: the top).
    """

    started = time.perf_counter()
    views = RunViews(run, split=split, seed=seed, layer=layer)
    _ = views.data  # read first: data that cannot be read is one error, not a note in every section that shows it
    model = run.model
    report = _Report()
    report.sections.append(Section("config", "Configuration", body=_config_html(run)))
    report.sections.append(Section("metrics", "Metrics", body=_metrics_html(run, views)))
    report.add("curves", "Training curves", views.curves, image=False)
    report.add("reconstructions", "Reconstructions", lambda: views.reconstructions(32))
    if views.classes:
        report.add("class-samples", "Samples by class", lambda: views.class_samples(10))
    elif model.conditional:
        report.add("context-samples", "Samples across the context", lambda: views.context_samples())
    report.add("samples", "Samples", lambda: views.sample_comparison(25))
    if model.config.prior == "vampprior" and views.is_image:
        report.add("pseudo-inputs", "VampPrior pseudo-inputs", lambda: views.pseudo_inputs(32))
    a, b = _pair(views) if views.is_image else (0, 1)
    report.add("interpolation", "Interpolation", lambda: views.interpolation(a, b, steps=10))
    report.add("traversal", "Latent traversal", lambda: views.traversal(8, steps=11, at="input", index=a))
    report.add("manifold", "Manifold", lambda: views.manifold(min_cell=28), half=True)  # the grid `vaekit manifold` draws
    report.add("embedding", "Latent embedding", lambda: views.embedding(size=(5.4, 4.6)), image=False, half=True)
    if run.config.train.noise != "none":
        report.add("denoising", "Denoising", lambda: views.denoising(8))
    path = Path(path) if path is not None else run.path / REPORT
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror}") from None
    title = f"vaekit report: {run.path.name}"
    summary = (
        f"{model.config.kind.upper()} ({model.config.arch}, {describe_latent(model.config)}, {model.config.likelihood} likelihood, "
        f"{model.config.prior} prior{_condition_phrase(run, views)}) on {run.config.data.source}, "
        f"data shape {tuple(model.input_shape)}"
    )
    atomic_write_bytes(path, _page(title, summary, run, report.sections).encode("utf-8"))
    log.debug("report written in %.1f s", time.perf_counter() - started)
    return path


def _pair(views: RunViews) -> tuple[int, int]:
    """Two split indices to interpolate between: the first two examples with different labels."""
    y = views.split.y
    if y is None or len(y) < 2:
        return 0, min(1, len(views.split) - 1)
    different = (y != y[0]).nonzero()
    return 0, int(different[0]) if len(different) else 1


def _config_html(run, max_rows: int = 12) -> str:
    """The settings that took effect (``vaekit.settings``: not a mixture's component count with a
    normal prior, say) as key/value tables, one per config section (a long one continues in a second table)."""
    parts = []
    for section, values in run.config.to_dict().items():
        if not isinstance(values, dict):
            continue
        items = [(k, v) for k, v in values.items() if takes_effect(run.config, section, k)]
        for start in range(0, len(items), max_rows):
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt_value(v))}</td></tr>" for k, v in items[start : start + max_rows]
            )
            caption = section if start == 0 else f"{section} (continued)"
            parts.append(f'<table class="kv"><caption>{html.escape(caption)}</caption>{rows}</table>')
    return f'<div class="tables">{"".join(parts)}</div>'


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v) if v else "()"
    if v is None:
        return "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _metrics_html(run, views: RunViews) -> str:

    from vaekit.compression.rate import code_kind  # scipy and constriction: imported only where a report is written

    out = []
    try:
        terms = elbo_terms(run.model, views.split.x, seed=views.seed)
        s = summarize(terms, math.prod(run.model.input_shape))
        kind, why = code_kind(run.model, views.split.x)  # bits/dim only where the negative ELBO is a code length
        per_dim = f"{s['bits_per_dim']:.4f}" if kind == "bits-back" else "—"
        out.append(
            f'<table class="num"><caption>{html.escape(views.split_name)} split, {s["examples"]} examples</caption>'
            "<tr><th>negative ELBO</th><th>reconstruction</th><th>KL</th><th>bits/dim</th></tr>"
            f"<tr><td>{s['neg_elbo']:.3f} ± {s['neg_elbo_stderr']:.3f}</td><td>{s['reconstruction']:.3f}</td>"
            f"<td>{s['kl']:.3f}</td><td>{per_dim}</td></tr></table>"
        )
        if kind == "dequantized":
            why = "a continuous likelihood on 8-bit data: 'vaekit evaluate' gives its code length after uniform dequantization"
        if kind != "bits-back":
            out.append(f'<p class="note">bits/dim n/a: {html.escape(why)}</p>')
    except VaekitError as exc:
        out.append(f'<p class="note">evaluation skipped: {html.escape(str(exc))}</p>')
    rows = run.metrics()
    if rows:
        best = min(rows, key=lambda r: r.get("valid_loss", math.inf))
        short = {"neg_elbo": "−ELBO", "reconstruction": "rec.", "kl": "KL"}  # the ELBO family's; another term by its name
        terms = [t for t in metric_terms(rows) if t != "loss"]
        cols = [("epoch", "epoch", "{:.0f}"), ("β", "beta", "{:.3g}")]
        for term in terms:
            label = short.get(term, term.replace("_", " "))
            cols += [(f"train {label}", f"train_{term}", "{:.3f}"), (f"valid {label}", f"valid_{term}", "{:.3f}")]

        def row(r, name=""):
            cells = "".join(f"<td>{fmt.format(r[key]) if key in r else '—'}</td>" for _, key, fmt in cols)
            return f"<tr>{f'<th>{name}</th>' if name is not None else ''}{cells}</tr>"

        head = "<tr><th></th>" + "".join(f"<th>{c}</th>" for c, _, _ in cols) + "</tr>"
        out.append(
            f'<table class="num"><caption>training, per example (nats)</caption>{head}'
            f"{row(rows[0], 'first epoch')}{row(best, 'best (weights kept)')}{row(rows[-1], 'last epoch')}</table>"
        )
        every = "".join(row(r, None) for r in rows)
        out.append(
            f'<details><summary>all {len(rows)} epochs</summary><table class="num"><tr>'
            + "".join(f"<th>{c}</th>" for c, _, _ in cols)
            + f"</tr>{every}</table></details>"
        )
    else:
        out.append('<p class="note">no training metrics recorded</p>')
    details = [p for p in out if p.startswith("<details")]
    return f'<div class="tables">{"".join(p for p in out if p not in details)}</div>{"".join(details)}'


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#222;background:#fafafa;margin:0}
main{max-width:1240px;margin:0 auto;padding:20px 20px 40px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;margin:0 0 10px}nav{margin:0 0 14px;font-size:14px}nav a{margin-right:12px;color:#1a5fb4;text-decoration:none}
section{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:12px 18px;margin:0 0 14px}
.pair{display:flex;flex-wrap:wrap;gap:14px;margin:0 0 14px}.pair>section{flex:1 1 540px;min-width:0;margin:0}
figure{margin:0}figcaption{color:#555;font-size:13.5px;margin-top:6px;max-width:900px}
img{max-width:100%;height:auto;display:block}img.grid{image-rendering:pixelated}
table{border-collapse:collapse;font-size:13px;margin:0 0 8px}caption{text-align:left;font-weight:600;padding:2px 0 3px}
th,td{padding:2px 9px;border-bottom:1px solid #eee;text-align:left}table.num td{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}table.kv th{font-weight:500;color:#444}
.note{color:#8a5300;background:#fff7e6;border-left:3px solid #e5a50a;padding:6px 10px;margin:0}
details summary{cursor:pointer;color:#1a5fb4;margin:4px 0}footer{color:#777;font-size:12.5px}
"""


def _page(title: str, summary: str, run, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for i, s in enumerate(sections):
        content = s.body if not s.note else f'<p class="note">skipped: {html.escape(s.note)}</p>'
        opens = s.half and not (i > 0 and sections[i - 1].half)
        closes = s.half and not (i + 1 < len(sections) and sections[i + 1].half)
        body.append(
            ('<div class="pair">' if opens else "")
            + f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{content}</section>'
            + ("</div>" if closes else "")
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{html.escape(title)}</h1><p class="sub">{html.escape(summary)}<br>'
        f"run directory: <code>{html.escape(str(run.path))}</code></p>"
        f"<nav>{nav}</nav>{''.join(body)}"
        f"<footer>written by vaekit {__version__} on {time.strftime('%Y-%m-%d %H:%M')}</footer></main></body></html>"
    )


def _condition_phrase(run, views: RunViews) -> str:
    """``, conditioned on the class label`` / ``, conditioned on age, income``, or nothing for an unconditional model."""
    if not run.model.conditional:
        return ""
    if views.classes:
        return ", conditioned on the class label"
    return ", conditioned on " + ", ".join((run.data_info.get("preprocessing") or {}).get("context_columns") or ["a context"])


def _paired_rows(top: torch.Tensor, bottom: torch.Tensor, cols: int) -> np.ndarray:
    """Images top (N, *shape) and bottom (N, *shape) as a grid of ``cols`` columns: a row of top, then
    the row of bottom beneath it (white cells fill the last pair of rows)."""
    n, cols = len(top), min(len(top), cols)
    rows = []
    for start in range(0, n, cols):
        chunk = slice(start, start + cols)
        filler = torch.ones(cols - len(top[chunk]), *top.shape[1:])
        rows += [torch.cat([top[chunk], filler]), torch.cat([bottom[chunk], filler])]
    return plotting.image_grid(torch.cat(rows), cols)
