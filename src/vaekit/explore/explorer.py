"""The model side of the explorer: tensors in, tensors out, no web framework.

``Explorer`` holds a trained model and the codes of its data, computed once at start-up:
the test split's posterior means (the map), the training split's (nearest neighbours), the
dimensions ranked by KL (the sliders) and the test split's negative ELBO (the anomaly
reference). Every method takes and returns batched tensors and runs under
``torch.inference_mode``; the web layer (``vaekit.explore.app``) only converts to and from JSON.

Shapes: x (N, *input_shape); z (N, L); xy (N, 2) map coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import vaekit.latent as latent
from vaekit.data.base import Dataset
from vaekit.data.sequences import vocabulary_of
from vaekit.data.syntax import SYNTAXES
from vaekit.data.tables import context_names
from vaekit.errors import ConfigError
from vaekit.evaluation import elbo_terms
from vaekit.examples import for_model, with_context
from vaekit.generation import sample
from vaekit.molecules import chem
from vaekit.objectives import ELBO
from vaekit.report.context import RunContext
from vaekit.report.views.sequences import MOLECULE_TOKENIZERS
from vaekit.strings import StringCodec, decode_codes, sample_sequences

MAP_POINTS = 10_000  # the most test codes drawn on the map (a seeded subset beyond that)
ELBO_SAMPLES = 8  # latent samples per negative-ELBO estimate (examples, uploads and the reference alike)
NEIGHBOUR_POOL = 20_000  # the most training codes searched for neighbours (a seeded subset beyond that, as of MNIST's 50,000)
REFERENCE_SIZE = 2_000  # test examples in the anomaly reference (a seeded subset beyond that)


@dataclass
class Scored:
    """An input run through the model: x (B, *shape) as the model saw it, its reconstruction
    (B, *shape), its code z (B, L), map position xy (B, 2), negative ELBO (B,) in nats and its
    percentile (B,) among the test split's negative ELBOs (100: higher than all of them)."""

    x: torch.Tensor
    reconstruction: torch.Tensor
    z: torch.Tensor
    xy: torch.Tensor
    neg_elbo: torch.Tensor
    percentile: torch.Tensor


class Explorer:
    """A trained model ready to be explored.

    run: a ``vaekit.Run``. data: its ``DataSplits`` (``run.load_data(source)``); the map shows the
    test split (the validation split when the source has none), the neighbours come from the
    training split (the report's policy: ``vaekit.report.context.RunContext``). seed: seeds the
    subsets and the ELBO estimates, so the same call gives the same numbers. context: a conditional
    model's class where a request names none (default 0), or for a model of context columns its
    standardised context vector (K,) (default the mean context); the data's own examples are always
    encoded with their own labels or context. layer: the stochastic layer of a hierarchical model to
    explore (default: the top).
    """

    @staticmethod
    def check(run) -> None:
        """A one-line ``ConfigError`` for a run the explorer cannot show: a model of token sequences other than
        molecules (SMILES or SELFIES, drawn by RDKit)."""
        vocabulary = vocabulary_of(run.data_info)
        if vocabulary is not None and vocabulary.tokenizer not in MOLECULE_TOKENIZERS:
            raise ConfigError(
                f"the explorer draws images, numbers and molecules, not {vocabulary.tokenizer} tokens: look into this model with "
                "vaekit sample, reconstruct, interpolate and report"
            )
        if vocabulary is not None:
            chem.require_rdkit()

    def __init__(self, run, data, *, seed: int = 0, context: int | torch.Tensor | None = None, layer: int | None = None):
        self.run, self.seed = run, seed
        # the split shown, the context decoded with where a request names none, images or not: the report's policy
        self.check(run)
        self.ctx = ctx = RunContext(run, data=data, seed=seed, context=context, layer=layer)
        self.model = ctx.latent_model  # the codes explored: the model's, or one layer's of a hierarchical model
        model = self.model
        self.classes = ctx.classes
        self.default_context = ctx.decode_context()  # a class (default 0), a context vector (K,) (default the mean), or None
        self.test = ctx.split  # the test split, or the validation split for data without one
        self.train = ctx.data.train
        self.test_examples = ctx.examples(self.test)  # each with its label or context vector, for a conditional model
        self.train_examples = ctx.examples(self.train)
        self._describe_columns()
        self.binary = ctx.data.value_range == "binary"
        self.is_image = ctx.is_image
        self.codec = StringCodec.of_run(run) if ctx.is_sequences else None  # a molecule model's strings
        self.view = "molecule" if self.codec else "image" if self.is_image else "bars"  # how the page draws an example
        self.syntax = self.codec.syntax() if self.codec and self.codec.vocabulary.tokenizer in SYNTAXES else None  # SMILES rules
        gen = torch.Generator().manual_seed(seed)
        self.test_codes = latent.encode(model, self.test_examples)  # (N, L)
        self.train_index = _subset(len(self.train), NEIGHBOUR_POOL, torch.Generator().manual_seed(seed))  # (M,) into the training split
        self.train_codes = latent.encode(model, self.train_examples, index=self.train_index)  # (M, L)
        self.ranking = latent.rank_dims(model, self.test_examples)
        self.unit_factors = _unit_factors(model, ctx.data, seed)
        self.map_index = _subset(len(self.test), MAP_POINTS, gen)  # (P,) indices into the test split
        self._fit_map()
        if model.latent.deterministic:  # a plain AE's codes follow no prior: sample and centre on a density fitted to them
            self.code_density = latent.fit_code_density(self.train_codes)
        else:
            self.code_density = model.prior(self.default_context)
        marg = latent.marginals(self.code_density)
        self.center = self.code_density.mean.detach().float().cpu()  # (L,)
        self.spread = marg.stddev.detach().float().cpu()  # (L,)
        ref = _subset(len(self.test), REFERENCE_SIZE, gen)
        self.reference = torch.sort(self.neg_elbo(self.test_examples.subset(ref))).values
        if self.is_image:
            self.value_low, self.value_high = 0.0, 1.0
        else:  # the bar view's scale: the data's spread, both signs
            q = torch.quantile(self.test.x.flatten().float(), torch.tensor([0.005, 0.995]))
            self.value_low, self.value_high = float(min(q[0], -1.0)), float(max(q[1], 1.0))

    # ----- the map ------------------------------------------------------------------------

    def _fit_map(self) -> None:
        """The map's plane: the latent axes for L <= 2, else the first two principal directions
        of the test codes (mean ``map_mean`` (L,), orthonormal rows ``map_axes`` (2, L))."""
        codes = self.test_codes.double()
        dim = codes.shape[1]
        self.map_mean = torch.zeros(dim, dtype=torch.float64)
        if dim <= 2:
            self.map_axes = torch.eye(2, dim, dtype=torch.float64)  # a 1-D latent: z0 across, nothing up
            self.map_method, self.map_labels = "latent", ("z0", "z1" if dim == 2 else "(none)")
        else:
            self.map_mean = codes.mean(0)
            _, s, vt = torch.linalg.svd(codes - self.map_mean, full_matrices=False)
            self.map_axes = vt[:2]  # (2, L)
            share = (s**2 / (s**2).sum())[:2] * 100
            self.map_method = "pca"
            self.map_labels = (f"PC1 ({share[0]:.0f}% of variance)", f"PC2 ({share[1]:.0f}%)")

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Map coordinates of codes: z (N, L) -> xy (N, 2)."""
        return ((z.double() - self.map_mean) @ self.map_axes.T).float()

    def unproject(self, xy: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Codes at map points xy (N, 2), the directions off the map's plane held at ``base`` (L,): (N, L)."""
        base = base.double()
        off_plane = base - ((base - self.map_mean) @ self.map_axes.T) @ self.map_axes  # (L,)
        return (off_plane + xy.double() @ self.map_axes).float()

    # ----- decoding and scoring -------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, context: int | None = None) -> torch.Tensor:
        """Decoder means of codes z (N, L): (N, *input_shape), clamped to [0, 1] for images (a molecule model:
        greedy decodings, token ids (N, T)); a conditional model decodes as class ``context`` (default ``default_context``)."""
        if self.codec is not None:  # a molecule model: the greedy decodings (N, T), token ids
            return decode_codes(self.model, z)
        out = self.model.decode(z.to(self.model.device), self._class(context)).mean.float().cpu()
        return out.clamp(0, 1) if self.is_image else out

    def neg_elbo(self, data: Dataset, batch_size: int = 500) -> torch.Tensor:
        """Negative ELBO in nats (N,) of the examples of ``data`` (a conditional model's each given its label
        or context): a seeded ``ELBO_SAMPLES``-sample estimate."""
        terms = elbo_terms(self.run.model, data, objective=ELBO(n_samples=ELBO_SAMPLES), batch_size=batch_size, seed=self.seed)
        return terms.neg_elbo.float().cpu()

    @torch.inference_mode()
    def score(self, x: torch.Tensor, context: int | None = None) -> Scored:
        """Encode, reconstruct and score inputs x (B, *shape) given in the model's input scale (as
        class ``context`` for a conditional model; see ``input_class`` for an input given none)."""
        y = self.input_class(x, context)
        inputs = with_context(self.model, x, y)
        z = latent.encode(self.model, inputs)  # (B, L)
        nelbo = self.neg_elbo(inputs)
        below = torch.searchsorted(self.reference, nelbo, right=True)  # (B,) reference values <= each
        pct = 100.0 * below.float() / max(len(self.reference), 1)
        return Scored(x=x, reconstruction=self.decode(z, y), z=z, xy=self.project(z), neg_elbo=nelbo, percentile=pct)

    @torch.inference_mode()
    def example(self, index: int) -> Scored:
        """Test example ``index`` run through the model (batch of one), with its own label."""
        context = self.test_examples.model_context
        context = None if context is None else context[index]
        return self.score(self.test.x[index : index + 1], int(context) if self.classes else context)

    def input_class(self, x: torch.Tensor, context: int | torch.Tensor | None = None) -> int | torch.Tensor | None:
        """The class or context vector inputs x (B, *shape) are encoded with: ``context``; for inputs given
        none (an upload), a semi-supervised model's classifier's most probable class for each, argmax q(y|x)
        (B,), so the code holds the input's style, not a class forced on it; else ``default_context``.
        ``decode`` still decodes as the class it is asked for."""
        if context is None and self.run.model.classifier is not None:
            return for_model(self.run.model, Dataset(x), "the input").y  # (B,): no label, so q(y|x)'s argmax
        return self._class(context)

    def _class(self, context: int | torch.Tensor | None) -> int | torch.Tensor | None:
        """The class or context vector to use: ``context``, else ``default_context`` (None for an unconditional model)."""
        return None if not self.model.latent.conditional else self.default_context if context is None else context

    @torch.inference_mode()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int, context: int | None = None) -> dict[str, torch.Tensor]:
        """Linear and spherical paths from code a to code b (L,), both ends included:
        ``{"linear": images, "slerp": images}``, each (steps, *input_shape), decoded in one batch (as class ``context``)."""
        paths = torch.cat([latent.latent_path(a, b, steps, "linear"), latent.latent_path(a, b, steps, "slerp")])  # (2S, L)
        images = self.decode(paths, context)
        return {"linear": images[:steps], "slerp": images[steps:]}

    @torch.inference_mode()
    def neighbours(self, z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k training examples (of at most ``NEIGHBOUR_POOL``) whose codes lie nearest to z (L,) (Euclidean):
        (indices (k,) into the training split, distances (k,)), nearest first."""
        d = torch.cdist(z.reshape(1, -1).float(), self.train_codes.float())[0]  # (M,)
        k = min(k, len(d))
        dist, idx = torch.topk(d, k, largest=False)
        return self.train_index[idx], dist

    def samples(self, n: int, temperature: float, seed: int, context: int | None = None, syntax: bool = False) -> torch.Tensor:
        """``n`` decoded draws from the prior (a plain AE: the density fitted to its codes) at ``temperature`` (as class ``context``);
        syntax: a SMILES model's tokens drawn keeping to SMILES syntax and valences (``self.syntax``)."""
        prior = self.code_density if self.model.latent.deterministic else None
        if self.codec is not None:  # molecules: z ~ p(z), then each token drawn at the temperature
            return sample_sequences(self.model, n, temperature=temperature, seed=seed, syntax=self.syntax if syntax else None)
        out = sample(self.model, n, temperature=temperature, seed=seed, prior=prior, context=self._class(context)).float().cpu()
        return out.clamp(0, 1) if self.is_image else out

    def pictures(self, ids: torch.Tensor, size: int = 160) -> tuple[np.ndarray, list[str]]:
        """A molecule model's sequences ids (N, T): their drawings uint8 (N, size, size, 3) and SMILES strings."""
        from vaekit.molecules.draw import molecule_pictures

        texts = self.codec.strings(ids)
        return molecule_pictures(texts, size), texts

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """A user's input (1, *shape) in [0, 1] (an image) as the model's data looks: thresholded at
        0.5 for a model trained on binary data."""
        return (x > 0.5).float() if self.binary else x

    # ----- what the page needs to draw itself ------------------------------------------------

    def _describe_columns(self) -> None:
        """A model conditioned on context columns: their names, training statistics (``column_mean``,
        ``column_std`` (K,), to read a request's values in the columns' own units) and the ranges of the
        page's sliders (the training 1st to 99th percentiles); ``columns`` is empty for other models."""
        self.columns: list[dict] = []
        if not self.model.latent.conditional or self.classes:
            return
        record = self.ctx.preprocessing
        k = self.model.condition.size
        stats = record.get("context_standardize") or {"mean": [0.0] * k, "std": [1.0] * k}
        self.column_mean = torch.tensor(stats["mean"], dtype=torch.float32)
        self.column_std = torch.tensor(stats["std"], dtype=torch.float32)
        raw = self.train_examples.context.float() * self.column_std + self.column_mean  # (M, K) in the columns' units
        low, high = torch.quantile(raw, torch.tensor([0.01, 0.99]), dim=0)  # (K,) each
        now = self.default_context.float() * self.column_std + self.column_mean
        for name, lo, hi, value in zip(context_names(record, k), low.tolist(), high.tolist(), now.tolist()):
            self.columns.append({"name": name, "low": min(lo, value), "high": max(hi, value), "value": value})

    def describe(self) -> dict:
        """The model, the map and the sliders' settings, as plain Python values (JSON-ready)."""
        model, cfg = self.model, self.run.config.model
        shape = list(model.input_shape)
        xy = self.project(self.test_codes[self.map_index])
        labels = None if self.test.y is None else self.test.y[self.map_index].tolist()
        order = self.ranking.dims.tolist()
        return {
            "run": self.run.path.name,
            "model": {
                "kind": cfg.kind,
                "arch": cfg.arch,
                "likelihood": cfg.likelihood,
                "prior": cfg.prior,
                "latent_dim": model.latent_dim,
                "input_shape": shape,
                "deterministic": bool(model.latent.deterministic),
                "conditional": bool(self.classes),
                "classes": self.classes,
                "class_names": [self.ctx.label_name(c) for c in range(self.classes)],
                "default_class": self.default_context if self.classes else None,
                "context_columns": self.columns,  # a model conditioned on context columns: the page's sliders
            },
            "view": self.view,
            "syntax": self.syntax is not None,  # samples may keep to the tokens' syntax (SMILES)
            "value_range": [self.value_low, self.value_high],
            "binary": self.binary,
            "map": {
                "method": self.map_method,
                "axes": list(self.map_labels),
                "split": self.ctx.split_name,  # the split it shows: test, or valid for data without a test split
                "x": _rounded(xy[:, 0]),
                "y": _rounded(xy[:, 1]),
                "index": self.map_index.tolist(),
                "label": labels,
                "label_names": self.ctx.class_names,  # label i's name, or None: labels shown as numbers
                "mean": self.map_mean.tolist(),
                "directions": self.map_axes.tolist(),
            },
            "dims": {
                "order": order,
                "score": _rounded(self.ranking.score),
                "measure": self.ranking.measure,
                "factors": self.unit_factors,  # per unit, the factor of the data it captures ("shape 0.62"), or None
                "center": self.center.tolist(),
                "spread": self.spread.tolist(),
            },
            "sizes": {"test": len(self.test), "train": len(self.train), "reference": len(self.reference)},
        }


def _unit_factors(model, data, seed: int) -> list[str | None] | None:
    """For data made from known factors, each unit's ``UnitInformation.captured`` (the sliders' labels); else None."""
    if not data.info.get("factors"):
        return None
    from vaekit.disentanglement.runs import factor_space_of, unit_information  # scikit-learn: imported when used

    info = unit_information(model, factor_space_of(data), seed=seed)
    return [info.captured(d) for d in range(model.latent_dim)]


def _subset(n: int, most: int, gen: torch.Generator) -> torch.Tensor:
    """All indices 0..n-1, or a seeded sorted subset of ``most`` of them."""
    if n <= most:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:most].sort().values


def _rounded(t: torch.Tensor, digits: int = 4) -> list[float]:
    return np.round(t.detach().double().numpy(), digits).tolist()
