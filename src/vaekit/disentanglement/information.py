"""Metrics read from mutual information and covariance: MIG, modularity & explicitness, unsupervised scores.

Mutual information is measured as in Locatello et al. 2019: each code unit is discretised into
equal-width bins (``discretize``) and ``sklearn.metrics.mutual_info_score`` (nats) is taken
between each discretised unit and each factor.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score

from vaekit.disentanglement.base import MetricResult, check_codes, check_factors_vary, discretize, estimator_threads
from vaekit.errors import DataError


def mutual_info_matrix(discrete_a: np.ndarray, discrete_b: np.ndarray) -> np.ndarray:
    """(A, B) mutual information in nats between each column of ``discrete_a`` (n, A) and of ``discrete_b`` (n, B)."""
    return np.array(
        [[mutual_info_score(discrete_b[:, j], discrete_a[:, i]) for j in range(discrete_b.shape[1])] for i in range(discrete_a.shape[1])]
    )


def entropies(discrete: np.ndarray) -> np.ndarray:
    """(B,) entropy in nats of each column of ``discrete`` (n, B)."""
    return np.array([mutual_info_score(discrete[:, j], discrete[:, j]) for j in range(discrete.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> MetricResult:
    """Mutual information gap (Chen et al. 2018, as estimated by Locatello et al. 2019).

    Args:
        codes: (n, L) codes, L >= 2.
        factors: (n, F) int factor classes, each taking at least two classes.
        bins: equal-width bins per unit for the discretisation.

    For each factor, the gap between the largest and second-largest MI of a unit with it, divided by
    the factor's entropy; ``mig`` is the mean over factors (1: each factor lives in one unit alone).
    """
    codes, factors = check_codes(codes, factors)
    check_factors_vary(factors, "mig")
    if codes.shape[1] < 2:
        raise DataError(f"mig needs at least 2 code units, got {codes.shape[1]}")
    mi = mutual_info_matrix(discretize(codes, bins), factors)  # (L, F)
    top = np.sort(mi, axis=0)[::-1]  # (L, F), largest first
    gaps = (top[0] - top[1]) / entropies(factors)  # (F,)
    return MetricResult(
        "mig",
        {"mig": float(gaps.mean())},
        {"bins": bins, "num_train": len(codes)},
        {"per_factor": gaps.tolist(), "mutual_info": mi.tolist()},
    )


def modularity_score(mi: np.ndarray) -> tuple[float, np.ndarray]:
    """Ridgeway & Mozer's modularity of an (L, F) MI matrix: per unit 1 − (Σ_f MI² − max MI²) / (max MI² (F − 1)),
    0 for a unit with no information; (mean, per unit)."""
    squared = np.square(mi)
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_unit = 1.0 - (squared.sum(axis=1) - top) / (top * (mi.shape[1] - 1))
    per_unit[top == 0] = 0.0
    return float(per_unit.mean()), per_unit


def explicitness_per_factor(train_x, train_y, test_x, test_y, seed: int = 0) -> tuple[float, float]:
    """Train and test one-vs-rest ROC-AUC (the mean over classes) of a logistic regression from the
    (normalised) codes to one factor."""
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(train_x, train_y)

    def auc(x, y) -> float:
        probs = model.predict_proba(x)  # (n, K)
        per_class = [roc_auc_score(y == c, probs[:, k]) for k, c in enumerate(model.classes_) if 0 < np.sum(y == c) < len(y)]
        return float(np.mean(per_class)) if per_class else float("nan")

    return auc(train_x, train_y), auc(test_x, test_y)


def modularity_explicitness(
    train_codes, train_factors, test_codes, test_factors, bins: int = 20, seed: int = 0, threads: int = 1
) -> MetricResult:
    """Modularity and explicitness (Ridgeway & Mozer 2018, as in Locatello et al. 2019).

    Args:
        train_codes, train_factors: (N, L) codes and (N, F) classes; the MI matrix (for modularity)
            and the classifiers (for explicitness) are fitted on them.
        test_codes, test_factors: (M, L), (M, F) held-out examples for the test explicitness.
        bins: equal-width bins per unit for the MI matrix.
        seed: the logistic regressions' random state.
        threads: threads scikit-learn may use.

    ``modularity``: mean over units of how much of a unit's (squared) MI goes to one factor.
    ``explicitness_train`` / ``explicitness_test``: mean over factors of the ROC-AUC of a logistic
    regression from all (standardised) units to the factor; 0.5 is chance.
    """
    train_codes, train_factors = check_codes(train_codes, train_factors, "train")
    test_codes, test_factors = check_codes(test_codes, test_factors, "test")
    check_factors_vary(train_factors, "modularity")
    mi = mutual_info_matrix(discretize(train_codes, bins), train_factors)  # (L, F)
    modularity, per_unit = modularity_score(mi)
    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std[std == 0] = 1.0
    with estimator_threads(threads):
        auc = np.array(
            [
                explicitness_per_factor(
                    (train_codes - mean) / std, train_factors[:, f], (test_codes - mean) / std, test_factors[:, f], seed
                )
                for f in range(train_factors.shape[1])
            ]
        )  # (F, 2)
    return MetricResult(
        "modularity",
        {"modularity": modularity, "explicitness_train": float(auc[:, 0].mean()), "explicitness_test": float(auc[:, 1].mean())},
        {"bins": bins, "num_train": len(train_codes), "num_test": len(test_codes), "seed": seed, "threads": threads},
        {"modularity_per_unit": per_unit.tolist(), "explicitness_test_per_factor": auc[:, 1].tolist()},
    )


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """KL(N(0, cov) || N(0, diag(cov))) = ½ (Σ log cov_ii − log det cov)."""
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(0, cov) and N(0, diag(cov)):
    tr cov + tr D − 2 tr (D^½ cov D^½)^½ with D = diag(cov) (tr D = tr cov)."""
    root_d = np.sqrt(np.diag(cov))
    eig = np.linalg.eigvalsh(root_d[:, None] * cov * root_d[None, :])
    return float(2 * np.trace(cov) - 2 * np.sum(np.sqrt(np.clip(eig, 0, None))))


def unsupervised(codes: np.ndarray, bins: int = 20) -> MetricResult:
    """Scores of the codes alone (Locatello et al. 2019's unsupervised metrics); 0 for independent units.

    Args:
        codes: (n, L) codes. Units that never vary (zero variance: collapsed) are left out, and listed.
        bins: equal-width bins per unit for the mutual information.

    ``gaussian_total_correlation`` and ``gaussian_wasserstein_correlation`` (and the latter divided
    by the total variance, ``..._norm``) of the codes' covariance; ``mutual_info`` is the mean MI
    (nats) between pairs of distinct discretised units.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or not np.all(np.isfinite(codes)):
        raise DataError(f"codes must be a finite (n, L) array; got shape {codes.shape}")
    varying = codes.var(axis=0) > 0
    if varying.sum() < 2:
        raise DataError(f"unsupervised metrics need at least 2 varying code units, got {int(varying.sum())}")
    used = codes[:, varying]
    cov = np.atleast_2d(np.cov(used, rowvar=False))
    mi = mutual_info_matrix(*(2 * [discretize(used, bins)]))
    np.fill_diagonal(mi, 0.0)
    units = used.shape[1]
    wasserstein = gaussian_wasserstein_correlation(cov)
    return MetricResult(
        "unsupervised",
        {
            "gaussian_total_correlation": gaussian_total_correlation(cov),
            "gaussian_wasserstein_correlation": wasserstein,
            "gaussian_wasserstein_correlation_norm": wasserstein / float(np.trace(cov)),
            "mutual_info": float(mi.sum() / (units**2 - units)),
        },
        {"bins": bins, "num_train": len(codes)},
        {"collapsed_units": np.flatnonzero(~varying).tolist()},
    )
