"""What vaekit's scikit-learn estimators (``VAEAnomalyDetector``, ``VAEClassifier``) share: the rows of X
standardised with the training mean and standard deviation, a seed drawn from ``random_state``, and a
run trained in memory that leaves the caller's random states as they were."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from vaekit.training import train


class StandardizedRows:
    """A mixin for an estimator with ``standardize`` and ``random_state`` settings. ``_fit_rows`` learns
    ``seed_``, ``mean_`` and ``scale_`` (D,) from X (N, D); ``_rows`` gives any X on that scale."""

    standardize: bool
    random_state: int | None

    def _fit_rows(self, X: np.ndarray) -> torch.Tensor:
        """Learn the seed and the columns' scaling from X (N, D); X standardised, float32 (N, D)."""
        from sklearn.utils import check_random_state

        self.seed_ = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.mean_ = X.mean(0) if self.standardize else np.zeros(X.shape[1])
        std = X.std(0) if self.standardize else np.ones(X.shape[1])
        self.scale_ = np.where(std > 1e-12, std, 1.0)  # a constant column is centred, not scaled
        return self._rows(X)

    def _rows(self, X: np.ndarray, dtype=np.float32) -> torch.Tensor:
        """X (N, D) on the training rows' scale, as a tensor of ``dtype`` (N, D)."""
        return torch.from_numpy(((X - self.mean_) / self.scale_).astype(dtype))


@contextlib.contextmanager
def caller_rng_kept():
    """Keep the caller's torch, numpy and random states (training seeds all three)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def train_in_memory(config, data, device: str):
    """A ``Run`` trained on the ``DataSplits`` ``data`` in memory (no run directory), the caller's random states kept."""
    with caller_rng_kept():
        return train(config, None, data=data, device=device)
