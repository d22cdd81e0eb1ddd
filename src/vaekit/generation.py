"""Generating, reconstructing and denoising with a trained model (tensors in, tensors out; no plotting)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, MixtureSameFamily, MultivariateNormal, Normal

from vaekit.corruption import corrupt
from vaekit.data.base import Dataset
from vaekit.errors import ConfigError
from vaekit.examples import for_model
from vaekit.models.distributions import LayeredGaussian


def tempered(dist: Distribution, temperature: float) -> Distribution:
    """``dist`` with its spread scaled by ``temperature`` (1: unchanged; < 1: draws nearer the modes).

    Normal and full-covariance Gaussian: the scale (Cholesky factor) times T; a mixture: each
    component tempered, weights kept; a hierarchical model's layered distribution: each layer
    tempered given its parent (``LayeredGaussian.map_layers``). Anything else: draws are pulled
    towards the mean by T (see ``sample``)."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    if temperature == 1:
        return dist
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        base = dist.base_dist
        return Independent(Normal(base.loc, base.scale * temperature, validate_args=False), dist.reinterpreted_batch_ndims)
    if isinstance(dist, MultivariateNormal):
        return MultivariateNormal(dist.loc, scale_tril=dist.scale_tril * temperature)
    if isinstance(dist, LayeredGaussian):
        return dist.map_layers(lambda layer: tempered(layer, temperature))
    if isinstance(dist, MixtureSameFamily):
        comps = tempered(dist.component_distribution, temperature)
        if comps is not dist.component_distribution:
            return MixtureSameFamily(dist.mixture_distribution, comps, validate_args=False)
    return dist


@torch.inference_mode()
def sample(
    model,
    n: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    mean: bool = True,
    prior: Distribution | None = None,
    context: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Decode ``n`` draws z from the prior p(z), or from ``prior`` if given (e.g. a density fitted to a
    plain autoencoder's training codes, ``vaekit.latent.fit_code_density``), tempered by ``temperature``
    (see ``tempered``). Returns (n, *input_shape): the decoder mean, or a draw from p(x|z) if ``mean=False``.

    context: a conditional model's context, one for all (a label, a (K,) vector) or one per sample
    (labels (n,), vectors (n, K)): draws of p(x|y) (z from p(z|y) for a conditional prior)."""
    per_sample = isinstance(context, torch.Tensor) and (context.dim() == 2 or (context.dim() == 1 and not context.is_floating_point()))
    if per_sample and len(context) != n:
        raise ConfigError(f"{n} samples need {n} contexts, got {len(context)}")
    pz = model.prior(context) if prior is None else prior
    pt = tempered(pz, temperature)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = pt.sample((n,) if pt.batch_shape == () else ())  # (n, L); p(z|y) for n labels has batch (n,)
        if pt is pz and temperature != 1:  # no closed-form tempering: shrink draws about the mean
            z = pz.mean + temperature * (z - pz.mean)
        px = model.decode(z.to(model.device), context)
        return px.mean if mean else px.sample()  # (n, *shape)


@torch.inference_mode()
def reconstruct(model, data: Dataset) -> torch.Tensor:
    """Decoder mean at the posterior mean of the B examples of ``data``, as one batch: (B, *shape) on
    the model's device. A conditional model encodes and decodes each with its label or context."""
    batch = for_model(model, data).batch(model.device)
    return model.decode(model.encode(batch.inputs, batch.context).mean, batch.context).mean


@dataclass
class Denoising:
    """Corrupted inputs, their reconstructions and the clean targets, (B, *shape) each, with per-example
    mean squared error and PSNR (dB) of the corrupted input and of the reconstruction against the clean one."""

    noisy: torch.Tensor
    denoised: torch.Tensor
    clean: torch.Tensor
    mse_noisy: torch.Tensor
    mse_denoised: torch.Tensor
    psnr_noisy: torch.Tensor
    psnr_denoised: torch.Tensor


def psnr(mse: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(peak² / MSE) (inf for a perfect match)."""
    return 10 * torch.log10(peak**2 / mse)


@torch.inference_mode()
def denoise(model, data: Dataset, kind: str, level: float, *, seed: int = 0, peak: float = 1.0) -> Denoising:
    """Corrupt the clean examples x (B, *shape) of ``data`` with ``vaekit.corruption.corrupt(kind, level)``
    (seeded) and reconstruct them (a conditional model given each its label or context). Works for any
    model; a denoising autoencoder was trained for exactly this. ``peak``: the largest possible value,
    for PSNR (1 for images in [0, 1])."""

    x = data.x[:].detach().cpu().float()  # (B, *shape)
    noisy = corrupt(x, kind, level, torch.Generator().manual_seed(seed))
    denoised = reconstruct(model, dataclasses.replace(data, x=noisy)).cpu()
    mse_noisy = (noisy - x).pow(2).flatten(1).mean(1)  # (B,)
    mse_denoised = (denoised - x).pow(2).flatten(1).mean(1)  # (B,)
    return Denoising(noisy, denoised, x, mse_noisy, mse_denoised, psnr(mse_noisy, peak), psnr(mse_denoised, peak))


@torch.inference_mode()
def analogies(model, data: Dataset) -> torch.Tensor:
    """The analogies of Kingma et al. 2014: each example's style z (the posterior mean of q(z|x, y), y its
    label) decoded as every class. The B examples of ``data`` -> decoder means (B, K, *shape): row b is
    example b's style written as class 0, 1, ..., K - 1. For a model conditioned on class labels (a CVAE or M2)."""
    k = model.latent.label_classes
    if not k:
        raise ConfigError("analogies need a model conditioned on class labels (--model m2, or --condition label)")
    batch = for_model(model, data).batch(model.device)
    z = model.encode(batch.inputs, batch.context).mean  # (B, L)
    classes = torch.arange(k, device=model.device)
    decoded = model.decode(z.repeat_interleave(k, 0), classes.repeat(len(z))).mean  # (B·K, *shape)
    return decoded.view(len(z), k, *decoded.shape[1:])
