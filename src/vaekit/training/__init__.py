"""Training: ``train`` a new run, ``resume`` a saved one.

``loop`` holds the ``Trainer`` (set-up and the loop that reads top to bottom); ``setup`` resolves
the config from the data and sets up the loop's surroundings; ``average`` is the weight average,
``health`` the gradient checks, ``sums`` the named running sums and ``snapshot`` what a checkpoint
holds of the run. What one step does comes with the objective (``vaekit.objectives``).
"""

from __future__ import annotations

from pathlib import Path

import vaekit.distributed as distributed
from vaekit.config import RunConfig
from vaekit.data import DataSplits
from vaekit.errors import ConfigError
from vaekit.models import MODEL_KINDS
from vaekit.objectives import ELBO
from vaekit.runs import Run, read_config
from vaekit.training.health import normalize_gradients
from vaekit.training.loop import Trainer, TrainingInterrupted, beta_at
from vaekit.training.setup import check_data

__all__ = [
    "RESUME_SETTINGS",
    "Trainer",
    "TrainingInterrupted",
    "beta_at",
    "check_data",
    "check_new_run",
    "normalize_gradients",
    "resume",
    "train",
]


def check_new_run(config: RunConfig) -> None:
    """Refuse settings a new run would silently ignore: a plain autoencoder has no prior and draws no
    latent samples. (Runs saved before this check still load and resume.)"""
    m, t = config.model, config.train
    if m.kind not in MODEL_KINDS or not MODEL_KINDS[m.kind].deterministic:
        return
    if m.prior != "normal":
        raise ConfigError(
            f"a plain autoencoder has no prior (its samples come from a density fitted to its codes); --prior {m.prior} needs --model vae"
        )
    if t.n_samples > 1 or t.objective != ELBO.name:
        raise ConfigError("a plain autoencoder's loss draws no latent samples; --samples and --iw-samples need --model vae")


def train(
    config: RunConfig, out: str | Path | None = None, *, data: DataSplits | None = None, device: str = "cpu", progress: bool = False
) -> Run:
    """Train a new run described by ``config`` into the run directory ``out`` (None: in memory, no
    files written); returns the run with its best weights."""
    check_new_run(config)
    trainer = Trainer(config, out, data=data, device=device)
    trainer.start_run()
    return trainer.fit(progress=progress)


# what a resumed run may change: when it stops or cuts its learning rate, and its thread count (the
# numbers then match an uninterrupted run's to rounding, not bit for bit); not what a step computes
RESUME_SETTINGS = ("epochs", "patience", "lr_patience", "lr_factor", "min_lr", "threads")


def resume(run_dir: str | Path, *, epochs: int | None = None, device: str = "cpu", progress: bool = False, **settings: float) -> Run:
    """Continue the run saved in ``run_dir`` from its last checkpoint (optionally to more epochs).

    settings: new values of the ``TrainConfig`` fields in ``RESUME_SETTINGS`` (e.g. ``patience=100``,
    ``lr_patience=10``), saved in the run's config; they change when training stops or cuts its
    learning rate from here on, not the steps already taken."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    changes = settings | ({} if epochs is None else {"epochs": epochs})
    for name, value in changes.items():
        if name not in RESUME_SETTINGS:
            raise ConfigError(f"a resumed run keeps its settings; it can change only {', '.join(RESUME_SETTINGS)}, not {name}")
        setattr(config.train, name, value)
    trainer = Trainer(config, run_dir, device=device)
    trainer.restore()
    if changes:
        distributed.on_main(lambda: trainer.writer.save_config(config))
    return trainer.fit(progress=progress)
