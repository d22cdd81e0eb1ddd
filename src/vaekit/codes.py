"""A trained run's latent codes as data: the M1 of Kingma et al. 2014's M1+M2, where a VAE (M1) learns
features from all the images and the semi-supervised M2 is trained on its codes.

A run trained with ``DataConfig.codes_of`` = the M1 run's directory reads its examples through that
run: the M1 run's own data (or a source given to a command), prepared as M1 was trained on it, then
each example replaced by its code: the posterior mean E_q[z|x] of the active units, standardised with the
training split's statistics (``code_steps``, saved in the run), with the posterior's standard deviation
as the example's spread (``Dataset.spread``): M2 trains on a fresh draw z1 ~ q(z1|x) at every step, as
Kingma et al.'s code does, and is evaluated on the means. Labels, context and splits stay as they are.
"""

from __future__ import annotations

import torch

from vaekit.data.base import REAL, Dataset, DataSplits
from vaekit.errors import ConfigError
from vaekit.evaluation import ACTIVITY_THRESHOLD
from vaekit.examples import for_model
from vaekit.models.contract import in_eval_mode


@torch.inference_mode()
@in_eval_mode
def posterior_moments(model, data: Dataset, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """E_q[z|x] and the standard deviations of q(z|x), each (N, L) float32, of the examples of ``data``
    (a tensor or a memory-mapped array), in batches."""
    means, stds = [], []
    for b in for_model(model, data).batches(batch_size, model.device):
        q = model.encode(b.inputs, b.context)
        means.append(q.mean.float().cpu())
        stds.append(q.stddev.float().cpu())
    if not means:
        return torch.zeros(0, model.latent_dim), torch.zeros(0, model.latent_dim)
    return torch.cat(means), torch.cat(stds)


def code_steps(train_means: torch.Tensor) -> dict:
    """How codes become data, fitted on the training split's posterior means (N, L): the active units
    (Cov_x E_q[z_u] above ``ACTIVITY_THRESHOLD``: an inactive unit's mean is the same for every example, a
    dimension without spread that a learned-variance likelihood would collapse onto) standardised by their
    training mean and standard deviation, and drawn from q(z|x) in training (``draw``). JSON-serialisable;
    saved in the run's data record (``info["codes"]``)."""
    variance = train_means.double().var(0)  # (L,)
    units = (variance > ACTIVITY_THRESHOLD).nonzero().flatten()
    if len(units) == 0:
        raise ConfigError("--on-codes: none of the run's latent units is active (its posterior has collapsed); train it with --warmup")
    kept = train_means[:, units].double()
    return {"units": units.tolist(), "mean": kept.mean(0).tolist(), "std": kept.std(0).tolist(), "draw": True}


def coded(data: Dataset, means: torch.Tensor, stds: torch.Tensor, steps: dict) -> Dataset:
    """``data`` with each example replaced by its code: its posterior means (N, L), the active units
    standardised as ``steps`` (``code_steps``) say, (N, len(units)); with ``steps["draw"]`` the posterior's
    standard deviations ``stds`` (N, L), on the same scale, as the examples' spread (a run recorded before
    codes were drawn keeps training on the means)."""
    scale = torch.tensor(steps["std"], dtype=torch.float64)
    codes = (means[:, steps["units"]].double() - torch.tensor(steps["mean"], dtype=torch.float64)) / scale
    spread = (stds[:, steps["units"]].double() / scale).float() if steps.get("draw") else None
    return Dataset(codes.float(), data.y, data.context, spread=spread)


def encoded(run, data: Dataset, steps: dict) -> Dataset:
    """``data`` encoded by ``run``'s model into codes (``coded``)."""
    return coded(data, *posterior_moments(run.model, data), steps)


def encoded_splits(run, splits: DataSplits, steps: dict | None = None) -> DataSplits:
    """Every split of ``splits`` encoded by ``run`` (each encoded once; ``steps`` None: fitted on the
    training split's means); the record says whose codes they are and keeps the steps (``info["codes"]``)."""
    splits_in = (splits.train, splits.valid, splits.test)
    moments = [None if part is None else posterior_moments(run.model, part) for part in splits_in]
    steps = code_steps(moments[0][0]) if steps is None else steps
    parts = [None if part is None else coded(part, *m, steps) for part, m in zip(splits_in, moments)]
    info = {
        **splits.info,
        "source": f"codes of {run.path}",
        "codes_of": str(run.path),
        "codes": steps,
        "shape": [len(steps["units"])],
        "value_range": REAL,
        "dynamic_binarization": False,
    }
    return DataSplits(*parts, info)
