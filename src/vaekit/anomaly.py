"""Anomaly scores from a trained model, thresholds, detection metrics, a score histogram, and
``VAEAnomalyDetector``: a thin scikit-learn-style wrapper for tables and arrays.

A score is higher for a more anomalous example and is deterministic per example: it is computed at
the posterior mean or at a fixed set of latent draws shared by every example (common random
numbers, ``vaekit.evaluation.fixed_noise``), so it does not depend on the batch or on the other
rows scored with it.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from vaekit.checkpoint import atomic_write_bytes
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data.base import REAL, Dataset, DataSplits, split_off
from vaekit.errors import ConfigError, DataError
from vaekit.estimators import StandardizedRows, train_in_memory
from vaekit.evaluation import example_scores, has_decoder_mean, iw_log_likelihood

SCORES = ("neg-elbo", "iw-nll", "reconstruction")
SCORE_LABELS = {
    "neg-elbo": "negative ELBO (nats)",
    "iw-nll": "importance-weighted NLL (nats)",
    "reconstruction": "squared reconstruction error",
}


def anomaly_scores(
    model,
    data: Dataset,
    *,
    score: str = "neg-elbo",
    samples: int = 10,
    iw_samples: int = 100,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Anomaly score per example (N,) of the examples of ``data``; higher is more anomalous. A conditional
    model scores each example given its label or context (``vaekit.examples.for_model``).

    score: ``neg-elbo`` (KL - E_q log p(x|z)), ``iw-nll`` (-log p(x) estimated with ``iw_samples``
        importance samples; VAEs only) or ``reconstruction`` (||x - E[x|z]||² of the decoder mean).
    samples: for ``neg-elbo`` and ``reconstruction``, 0 scores at the posterior mean; S > 0
        averages over S fixed draws (the same for every example, from ``seed``).
    progress: called with the number of examples scored so far, after each batch.
    """
    if score not in SCORES:
        raise ConfigError(f"unknown anomaly score {score!r}; choose one of {', '.join(SCORES)}")
    if samples < 0:
        raise ConfigError(f"samples must be >= 0 (0: the posterior mean), got {samples}")
    if score == "reconstruction" and not has_decoder_mean(model):
        raise ConfigError(
            "the reconstruction score is the decoder mean's squared error, and p(x|z) over token sequences has no mean: "
            "use neg-elbo or iw-nll"
        )
    if score == "iw-nll":
        return -iw_log_likelihood(
            model, data, k=iw_samples, seed=seed, common_noise=True, batch_size=min(batch_size, 100), progress=progress
        )
    # each score depends on its example alone, whatever batch it is in
    s = example_scores(model, data, samples=samples, seed=seed, batch_size=batch_size, progress=progress)
    return s.neg_elbo if score == "neg-elbo" else s.squared_error


def quantile_threshold(scores, q: float) -> float:
    """The ``q`` quantile of ``scores`` (linear interpolation): examples above it are flagged.
    With the scores of the data itself and q = 1 - contamination, that share is flagged."""
    if not 0.0 < q < 1.0:
        raise ConfigError(f"the quantile must be in (0, 1), got {q}")
    values = np.asarray(torch.as_tensor(scores).double().cpu())
    if values.size == 0:
        raise DataError("no scores to take a quantile of")
    return float(np.quantile(values, q))


def contamination_threshold(scores, contamination: float) -> float:
    """The threshold that flags the share ``contamination`` of ``scores``: their 1 - c quantile."""
    if not 0.0 < contamination < 1.0:
        raise ConfigError(f"the contamination rate must be in (0, 1), got {contamination}")
    return quantile_threshold(scores, 1.0 - contamination)


def detection_metrics(scores, is_anomaly) -> dict[str, float]:
    """ROC AUC and average precision of ``scores`` (N,) against boolean labels (N,) (True: anomaly)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s = np.asarray(torch.as_tensor(scores).double().cpu())
    y = np.asarray(is_anomaly).astype(bool)
    if y.shape != s.shape:
        raise DataError(f"{len(y)} labels for {len(s)} scores")
    n_anomalies = int(y.sum())
    if n_anomalies in (0, len(y)):
        kind = "anomalies" if n_anomalies else "normal examples"
        raise DataError(f"the labels mark only {kind}: ROC AUC needs both anomalies and normal examples")
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "anomalies": n_anomalies,
        "normals": int(len(y) - n_anomalies),
        "anomaly_rate": n_anomalies / len(y),
    }


def score_histogram(
    scores, threshold: float, path: str | Path, *, is_anomaly=None, label: str = "anomaly score", title: str = "", bins: int = 60
) -> dict:
    """Draw a histogram of ``scores`` (N,) with the threshold as a vertical line; when boolean
    ``is_anomaly`` (N,) is given, normal examples and anomalies are drawn apart. Writes a PNG to
    ``path`` and returns the bin edges and counts per group drawn (for checking the figure)."""

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = np.asarray(torch.as_tensor(scores).double().cpu())
    finite = s[np.isfinite(s)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    groups = {"all": s} if is_anomaly is None else {"normal": s[~np.asarray(is_anomaly, bool)], "anomaly": s[np.asarray(is_anomaly, bool)]}
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    counts = {}
    colours = {"all": "tab:blue", "normal": "tab:blue", "anomaly": "tab:red"}
    for name, values in groups.items():
        c, _, _ = ax.hist(np.clip(values, lo, hi), bins=edges, alpha=0.6, color=colours[name], label=f"{name} ({len(values)})")
        counts[name] = c.astype(int).tolist()
    flagged = int((s > threshold).sum())
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g} ({flagged} flagged)")
    ax.set_xlabel(label)
    ax.set_ylabel("examples")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return {"edges": edges.tolist(), "counts": counts}


# ----- scikit-learn-style detector -----------------------------------------------------------
class VAEAnomalyDetector(StandardizedRows, OutlierMixin, BaseEstimator):
    """Unsupervised anomaly detector for tables and arrays: a VAE trained on the (standardised)
    rows of X, scoring each row by an anomaly score of ``vaekit.anomaly.anomaly_scores``.

    Follows scikit-learn's outlier-detector conventions: ``score_samples`` is higher for more normal
    rows (the negated anomaly score; for ``neg-elbo`` the ELBO, a lower bound on log p(x)),
    ``decision_function = score_samples - offset_`` is negative for outliers, and ``predict``
    returns -1 for outliers and 1 for inliers.

    latent_dim: size of z. hidden: MLP hidden sizes. activation: hidden activation.
    likelihood: p(x|z) (``gaussian-shared``: a learned scale per column; ``gaussian``: fixed
        scale 1, i.e. squared error; any name of ``vaekit.models.LIKELIHOODS``).
    epochs, batch_size, lr, beta, warmup_epochs: training (Adam; β-weighted KL with warm-up).
    valid_fraction: rows held out to pick the best epoch (0: pick on the training rows).
    anomaly_score, samples, iw_samples: which score and its draws (``score``, ``samples``, ``iw_samples``
        of ``anomaly_scores``).
    contamination: share of the training rows flagged; sets ``threshold_``, in (0, 0.5].
    standardize: centre and scale each column with the training mean and standard deviation.
    random_state: seed of the split, initialisation, data order and score draws (None: random).
    device: torch device to train and score on.

    Learned attributes: ``model_`` (the ``LatentVariableModel``, float64 for scoring),
    ``mean_``/``scale_`` (D,), ``threshold_`` (anomaly-score threshold), ``offset_`` (= -threshold_),
    ``n_features_in_``, ``seed_``.
    """

    def __init__(
        self,
        *,
        latent_dim: int = 2,
        hidden: tuple[int, ...] = (64, 32),
        activation: str = "relu",
        likelihood: str = "gaussian-shared",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        beta: float = 1.0,
        warmup_epochs: int = 0,
        valid_fraction: float = 0.1,
        anomaly_score: str = "neg-elbo",
        samples: int = 10,
        iw_samples: int = 100,
        contamination: float = 0.1,
        standardize: bool = True,
        random_state: int | None = None,
        device: str = "cpu",
    ):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.warmup_epochs = warmup_epochs
        self.valid_fraction = valid_fraction
        self.anomaly_score = anomaly_score
        self.samples = samples
        self.iw_samples = iw_samples
        self.contamination = contamination
        self.standardize = standardize
        self.random_state = random_state
        self.device = device

    def _check_params(self) -> None:
        if not 0.0 < self.contamination <= 0.5:
            raise ConfigError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if self.anomaly_score not in SCORES:
            raise ConfigError(f"anomaly_score must be one of {', '.join(SCORES)}, got {self.anomaly_score!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ConfigError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")

    def fit(self, X, y=None):
        """Standardise X (N, D), train the VAE on its rows, and set ``threshold_`` so that the share
        ``contamination`` of the training rows is flagged. ``y`` is ignored. Returns self."""
        from sklearn.utils.validation import validate_data

        self._check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        x = self._fit_rows(X)  # (N, D)
        rows = Dataset(x)
        if self.valid_fraction > 0 and len(rows) >= 4:
            fit_rows, valid_rows = split_off(rows, self.valid_fraction, self.seed_)
        else:
            fit_rows, valid_rows = rows, rows
        data = DataSplits(fit_rows, valid_rows, None, {"source": "array", "value_range": REAL, "shape": [x.shape[1]]})
        config = RunConfig(
            data=DataConfig(source="array", split_seed=self.seed_),
            model=ModelConfig(
                kind="vae",
                arch="mlp",
                input_shape=(x.shape[1],),
                latent_dim=self.latent_dim,
                hidden=tuple(self.hidden),
                activation=self.activation,
                likelihood=self.likelihood,
            ),
            train=TrainConfig(
                epochs=self.epochs,
                batch_size=max(1, min(self.batch_size, len(fit_rows))),
                lr=self.lr,
                beta=self.beta,
                warmup_epochs=self.warmup_epochs,
                seed=self.seed_,
            ),
        )
        run = train_in_memory(config, data, self.device)
        self.model_ = run.model.double().eval()
        self.threshold_ = contamination_threshold(self._anomaly_scores(X), self.contamination)
        self.offset_ = -self.threshold_
        return self

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        x = self._rows(X, np.float64)
        scores = anomaly_scores(
            self.model_, Dataset(x), score=self.anomaly_score, samples=self.samples, iw_samples=self.iw_samples, seed=self.seed_
        )
        return scores.cpu().numpy().astype(np.float64)

    def score_samples(self, X) -> np.ndarray:
        """The negated anomaly score per row (N,): lower is more abnormal."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return -self._anomaly_scores(X)

    def decision_function(self, X) -> np.ndarray:
        """score_samples(X) - offset_ (N,): negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """-1 for outliers (anomaly score above ``threshold_``) and 1 for inliers, per row (N,)."""
        return np.where(self.decision_function(X) < 0, -1, 1)
