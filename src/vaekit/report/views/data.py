"""Views of the data through the model: reconstructions, and denoising of corrupted inputs."""

from __future__ import annotations

import torch

import vaekit.plotting as plotting
from vaekit.corruption import UNIT_LEVEL
from vaekit.errors import ConfigError, DataError
from vaekit.generation import denoise, reconstruct
from vaekit.report.context import RunContext
from vaekit.report.views import sequences as sequence_views
from vaekit.report.views.base import View, paired_rows


def reconstructions(ctx: RunContext, n: int = 16, cols: int = 16) -> View:
    """The first ``n`` examples of the split (odd rows) above their reconstructions (even rows); for a
    sequence model, strings beside their greedy decodings (``sequences.reconstructions``)."""
    if ctx.is_sequences:
        return sequence_views.reconstructions(ctx, n)
    ctx.require_images("reconstruction")
    examples = ctx.examples(ctx.split).rows(0, n)
    x = examples.x[:]  # (n, *shape)
    rec = reconstruct(ctx.model, examples).cpu()  # (n, *shape)
    return View(
        paired_rows(x, rec, cols),
        f"{len(x)} {ctx.split_name} examples (odd rows) and their reconstructions (even rows): decoder mean at the posterior mean.",
        rec,
    )


def _noise_setting(ctx: RunContext, noise: str | None, level: float | None) -> tuple[str, float]:
    """The corruption to apply: ``noise`` / ``level``, defaulting to what the run was trained with; checked."""
    t = ctx.run.config.train
    noise = noise or (t.noise if t.noise != "none" else None)
    if noise is None or noise == "none":
        raise ConfigError(f"{ctx.run.path} was trained without input noise; give the corruption to apply (--noise KIND --noise-level L)")
    if level is None:
        if noise != t.noise:
            raise ConfigError(f"give the level of the {noise} noise (--noise-level)")
        level = t.noise_level
    if level <= 0 or (noise in UNIT_LEVEL and level > 1):
        raise ConfigError(f"noise level must be positive (and at most 1 for {noise}), got {level}")
    return noise, level


def denoising(ctx: RunContext, n: int = 8, *, noise: str | None = None, level: float | None = None, compare=None) -> View:
    """Rows of corrupted | denoised (| denoised by ``compare``, another run) | clean, with MSE and PSNR,
    for the first ``n`` examples of the split. noise / level default to what the run was trained with."""
    ctx.require_images("denoising")
    noise, level = _noise_setting(ctx, noise, level)
    examples = ctx.examples(ctx.split).rows(0, n)
    x = examples.x[:]  # (n, *shape)
    peak = 1.0 if ctx.data.value_range in ("unit", "binary") else float(x.max() - x.min())
    result = denoise(ctx.model, examples, noise, level, seed=ctx.seed, peak=peak)
    columns = [result.noisy, result.denoised]
    names = ["corrupted", "denoised"]
    other = None
    if compare is not None:
        if tuple(compare.model.input_shape) != tuple(ctx.model.input_shape):
            raise DataError(f"{compare.path} models shape {tuple(compare.model.input_shape)}, this run {tuple(ctx.model.input_shape)}")
        other = denoise(compare.model, examples, noise, level, seed=ctx.seed, peak=peak)
        columns.append(other.denoised)
        names = ["corrupted", ctx.run.path.name[:14], compare.path.name[:14]]
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
        torch.stack(columns, 1),  # (n, columns, *shape)
        row_labels=labels,
        col_labels=names,
        corner="PSNR and MSE",
        layout=plotting.GridLayout(min_cell=80, row_align="left"),
        title=f"{noise} noise, level {level:g}",
    )
    caption = (
        f"{len(x)} {ctx.split_name} examples corrupted with {noise} noise at level {level:g} (seed {ctx.seed}), the model's "
        "reconstruction, and the clean image; "
        "each row gives the MSE and PSNR of the corrupted input (in) and of the reconstruction (out)"
        + (f", and of {compare.path.name}'s reconstruction (cmp)." if other is not None else ".")
    )
    return View(picture, caption, result if other is None else (result, other))
