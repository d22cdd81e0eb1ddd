"""Views of a model of token sequences: samples, reconstructions, an interpolation and the neighbourhood
of a string, each a list of strings (the result) and a picture: molecules drawn by RDKit for SMILES and
SELFIES data where RDKit is installed, else the strings themselves as lines of text.

The generic views (``samples``, ``reconstructions``, ``interpolation``) hand a sequence run to these."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

import vaekit.plotting as plotting
import vaekit.strings as strings
from vaekit.errors import ConfigError
from vaekit.report.context import RunContext
from vaekit.report.views.base import View

MOLECULE_TOKENIZERS = ("smiles", "selfies")  # their strings are SMILES (the SELFIES tokenizer encodes and decodes SMILES)


def codec(ctx: RunContext) -> strings.StringCodec:
    return strings.StringCodec.of_run(ctx.run)


def picture(ctx: RunContext, texts: Sequence[str], legends: Sequence[str] | None = None, *, cols: int = 4) -> np.ndarray:
    """Molecules drawn for a SMILES or SELFIES model (RDKit installed), else the strings as text (with their legends)."""
    tokenizer = codec(ctx).vocabulary.tokenizer
    if tokenizer in MOLECULE_TOKENIZERS:
        try:
            from vaekit.molecules.draw import molecule_grid

            return molecule_grid(texts, legends, cols=cols)  # (a SELFIES model's strings are decoded to SMILES already)
        except ConfigError:  # no RDKit: the strings themselves
            pass
    lines = [t if legends is None else f"{legend}: {t}" for t, legend in zip(texts, legends or texts)]
    return plotting.text_lines(lines)


def example_ids(ctx: RunContext, spec: int | str) -> tuple[torch.Tensor, str]:
    """(T,) ids and a name of an example: an index into the split, or a string (a SMILES) written out."""
    if isinstance(spec, str) and not spec.lstrip("-").isdigit():
        return codec(ctx).ids([spec])[0], spec
    x, name = ctx.example(int(spec))
    return x.long(), name


def samples(ctx: RunContext, n: int = 16, *, temperature: float = 1.0, syntax: bool = False) -> View:
    """``n`` strings: z ~ p(z), then x ~ p(x|z) at ``temperature`` (0: greedy decoding), keeping to the
    tokens' syntax with ``syntax`` (``vaekit.data.syntax``)."""
    texts = strings.sample_strings(ctx.model, codec(ctx), n, temperature=temperature, seed=ctx.seed, syntax=syntax)
    how = "greedy decoding" if temperature == 0 else f"sampled at temperature {temperature:g}"
    rules = f", drawn only among the tokens {codec(ctx).vocabulary.tokenizer.upper()} syntax admits" if syntax else ""
    return View(picture(ctx, texts), f"{n} samples: z from the prior p(z), each sequence {how}{rules}.", texts)


def reconstructions(ctx: RunContext, n: int = 8) -> View:
    """The first ``n`` sequences of the split beside their greedy decodings at the posterior mean; the result
    (``strings.Reconstructions``) holds the exact-match rate."""
    ids = ctx.split.x[:n].long()
    result = strings.reconstruct_strings(ctx.model, codec(ctx), ids)
    texts = [t for pair in zip(result.originals, result.decoded) for t in pair]
    legends = [f"#{i}" if k % 2 == 0 else ("decoded: exact" if result.exact[i] else "decoded") for i in range(len(ids)) for k in (0, 1)]
    caption = (
        f"{len(ids)} {ctx.split_name} sequences (left of each pair) and their greedy decodings at the posterior mean (right): "
        f"{int(result.exact.sum())} of {len(ids)} decoded exactly."
    )
    return View(picture(ctx, texts, legends), caption, result)


def interpolation(ctx: RunContext, a, b, *, steps: int = 8) -> View:
    """The greedy decodings of ``steps`` codes on the line between the posterior means of A and B (each an
    index into the split or a string)."""
    (xa, name_a), (xb, name_b) = example_ids(ctx, a), example_ids(ctx, b)
    texts = strings.interpolate_strings(ctx.model, codec(ctx), xa, xb, steps)
    legends = [f"t = {t:.2f}" for t in torch.linspace(0, 1, steps).tolist()]
    caption = f"From A ({name_a}) to B ({name_b}): greedy decodings of {steps} codes on the straight line between their posterior means."
    return View(picture(ctx, texts, legends), caption, texts)


def neighbourhood(ctx: RunContext, example, n: int = 12, *, radius: float = 0.5) -> View:
    """The greedy decodings of ``n`` codes drawn around an example's posterior mean (μ + radius · ε)."""
    x, name = example_ids(ctx, example)
    texts = strings.neighbourhood(ctx.model, codec(ctx), x, n, radius=radius, seed=ctx.seed)
    caption = f"Around {name}: greedy decodings of {n} codes μ + {radius:g}·ε about its posterior mean μ (ε ~ N(0, I))."
    return View(picture(ctx, [codec(ctx).strings(x[None])[0], *texts], ["the example", *[f"#{i + 1}" for i in range(n)]]), caption, texts)
