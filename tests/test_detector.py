"""``VAEAnomalyDetector``: scikit-learn's estimator checks, its conventions, and detection on a
table with planted outliers."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from vaekit.anomaly import VAEAnomalyDetector
from vaekit.errors import ConfigError

SMALL = dict(latent_dim=2, hidden=(8,), epochs=3, batch_size=32, samples=2)


@parametrize_with_checks([VAEAnomalyDetector(**SMALL)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def planted(seed=0, n=600, outliers=30, d=10):
    """Rows near a 2-d subspace of R^d; outliers have the same column spread but ignore it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) + 0.05 * rng.normal(size=(n, d))
    odd = rng.normal(size=(outliers, d)) * x.std(0) + x.mean(0)
    return np.vstack([x, odd]) * 5 + 3, np.r_[np.zeros(n), np.ones(outliers)]


def test_detector_finds_planted_outliers_and_follows_the_conventions():
    X, y = planted(n=400, outliers=20)
    det = VAEAnomalyDetector(epochs=25, lr=3e-3, contamination=0.05, random_state=0)
    assert det.fit(X) is det
    s = det.score_samples(X)
    assert s.shape == (len(X),) and s.dtype == np.float64
    assert roc_auc_score(y, -s) > 0.95  # lower score_samples = more abnormal
    np.testing.assert_allclose(det.decision_function(X), s - det.offset_)
    assert det.offset_ == -det.threshold_
    pred = det.predict(X)
    assert set(np.unique(pred)) == {-1, 1} and (pred == -1).mean() == pytest.approx(0.05, abs=0.002)
    assert det.n_features_in_ == 10 and det.mean_.shape == det.scale_.shape == (10,)
    np.testing.assert_allclose(det.mean_, X.mean(0))
    # deterministic, and the caller's random states are untouched
    torch.manual_seed(123)
    np.random.seed(7)
    before = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(7)
    again = clone(det).fit(X)
    assert torch.rand(1) == before[0] and np.random.rand() == before[1]
    np.testing.assert_allclose(again.score_samples(X), s)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(det)).score_samples(X[:20]), s[:20])


@pytest.mark.parametrize("score", ["iw-nll", "reconstruction"])
def test_detector_scores(score):
    X, y = planted(seed=1, n=300, outliers=15)
    det = VAEAnomalyDetector(anomaly_score=score, epochs=25, lr=3e-3, iw_samples=20, random_state=0).fit(X)
    assert roc_auc_score(y, -det.score_samples(X)) > 0.9


def test_detector_refuses_bad_settings():
    X, _ = planted(n=50, outliers=5)
    for bad in [dict(contamination=0.0), dict(contamination=0.7), dict(anomaly_score="density"), dict(valid_fraction=1.0)]:
        with pytest.raises(ConfigError):
            VAEAnomalyDetector(**SMALL, **bad).fit(X)
    assert isinstance(ConfigError("x"), ValueError)  # so scikit-learn code catching ValueError sees it
