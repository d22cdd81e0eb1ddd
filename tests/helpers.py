"""Small helpers shared by the test modules."""

import pytest

from vaekit.config import RunConfig


def small_config(*, hidden=(64,), latent_dim=4, epochs=3, lr=3e-3, **train) -> RunConfig:
    """A small MLP VAE run (batch 64) for tests; ``train`` sets any other ``TrainConfig`` field."""
    cfg = RunConfig()
    cfg.model.hidden, cfg.model.latent_dim = hidden, latent_dim
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = epochs, 64, lr
    for k, v in train.items():
        if not hasattr(cfg.train, k):
            raise TypeError(f"TrainConfig has no field {k!r}")
        setattr(cfg.train, k, v)
    return cfg


# ``vaekit train`` flags of a small digits VAE run (4 epochs, a few seconds) for the CLI tests
SMALL_RUN_FLAGS = "--dataset digits --epochs 4 --latent-dim 4 --hidden 64 --batch-size 64 --lr 3e-3 --quiet".split()


def fit_until_crash(trainer, checkpoints: int, **fit_kwargs) -> list[int]:
    """Run ``trainer.fit`` and simulate a crash (KeyboardInterrupt) right after its ``checkpoints``-th
    checkpoint is written; returns the steps at which the checkpoints were taken."""
    original, steps = trainer.checkpoint, []

    def checkpoint_then_crash(best=False):
        original(best)
        steps.append(trainer.state.step)
        if len(steps) == checkpoints:
            raise KeyboardInterrupt

    trainer.checkpoint = checkpoint_then_crash
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(**fit_kwargs)
    return steps
