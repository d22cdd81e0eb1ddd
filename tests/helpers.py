"""Small helpers shared by the test modules."""

import pytest


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
