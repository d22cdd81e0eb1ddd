"""A trained run's latent codes as data: the M1 of Kingma et al. 2014's M1+M2, where a VAE (M1) learns
features from all the images and the semi-supervised M2 is trained on its codes.

A run trained with ``DataConfig.codes_of`` = the M1 run's directory reads its examples through that
run: the M1 run's own data (or a source given to a command), prepared as M1 was trained on it, then
each example replaced by its posterior mean E_q[z|x] (L,). Labels, context and splits stay as they are.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaekit.data.base import REAL, Dataset, DataSplits
from vaekit.errors import ConfigError
from vaekit.evaluation import in_eval_mode


@torch.inference_mode()
@in_eval_mode
def posterior_means(model, x, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] (N, L) float32 of examples ``x`` (N, *shape) (a tensor or a memory-mapped array), in batches."""
    parts = [model.encode(x[i : i + batch_size].to(model.device)).mean.float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, model.latent_dim)


def encoded(run, data: Dataset) -> Dataset:
    """``data`` with each example replaced by its posterior mean under ``run``'s model (N, L)."""
    return Dataset(posterior_means(run.model, data.x), data.y, data.context)


def encoded_splits(run, splits: DataSplits) -> DataSplits:
    """Every split of ``splits`` encoded by ``run`` (``encoded``); the record says whose codes they are."""
    parts = [None if part is None else encoded(run, part) for part in (splits.train, splits.valid, splits.test)]
    info = {
        **splits.info,
        "source": f"codes of {run.path}",
        "codes_of": str(run.path),
        "shape": [run.model.latent_dim],
        "value_range": REAL,
        "dynamic_binarization": False,
    }
    return DataSplits(*parts, info)


def codes_run(path: str | Path):
    """The M1 run at ``path``: a VAE whose posterior means become the data (one-line errors otherwise)."""
    from vaekit.runs import load

    run = load(path)
    if run.model.deterministic or run.model.conditional or run.model.config.latent_layers:
        raise ConfigError(f"--on-codes {path}: the codes come from an unconditional one-layer VAE (--model vae), which this run is not")
    return run
