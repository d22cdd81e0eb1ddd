"""Metrics read from predictors of the factors: DCI (Eastwood & Williams 2018) and SAP (Kumar et al. 2018).

DCI's importance matrix R (L, F) says how much each code unit is used to predict each factor. Three
ways to get it (``estimator``):

- "hist" (default): scikit-learn's ``HistGradientBoostingClassifier`` shaped like the default
  ``GradientBoostingClassifier`` (100 stages of depth-3 trees, learning rate 0.1), with early
  stopping on a held-out tenth of the training codes; a unit's importance is the total loss
  reduction ("gain") of the splits made on it over all trees (``hist_importances``).
- "sklearn-default": ``GradientBoostingClassifier()`` and its impurity importances, as
  disentanglement_lib does (about 50x slower).
- "lasso": Eastwood & Williams' original: a lasso regression per factor (codes and factor standardised),
  R = |coefficients|, informativeness as a normalised RMSE, and completeness averaged without weights.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from sklearn.svm import LinearSVC

from vaekit.disentanglement.base import MetricResult, check_codes, check_factors_vary, estimator_threads
from vaekit.errors import ConfigError, DataError

DCI_ESTIMATORS = ("hist", "sklearn-default", "lasso")


def hist_importances(model: HistGradientBoostingClassifier) -> np.ndarray:
    """(n_features,) importances of a fitted ``HistGradientBoostingClassifier``: the summed gain of its
    split nodes on each feature over every tree, normalised to sum to 1 (all 0 if it never split).

    Only split nodes count: a leaf keeps the gain of the split it would have made (``nodes["gain"]``),
    which the tree never used.
    """
    gains = np.zeros(model.n_features_in_)
    for trees in model._predictors:  # one list per boosting iteration, one tree per class (one if binary)
        for tree in trees:
            nodes = tree.nodes
            split = nodes["is_leaf"] == 0
            np.add.at(gains, nodes["feature_idx"][split], nodes["gain"][split])
    total = gains.sum()
    return gains / total if total > 0 else gains


def hist_classifier(seed: int) -> HistGradientBoostingClassifier:
    """The "hist" estimator: the default ``GradientBoostingClassifier``'s shape (100 stages, depth 3,
    learning rate 0.1) on binned features, stopping once 10 stages bring no gain on a held-out tenth."""
    return HistGradientBoostingClassifier(
        learning_rate=0.1, max_iter=100, max_depth=3, max_leaf_nodes=None, early_stopping=True, random_state=seed
    )


def importance_classifiers(train_x, train_y, test_x, test_y, estimator: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Importances (L, F) and accuracies (F, 2: train, test) of one classifier per factor."""
    importances, accuracy = [], []
    for f in range(train_y.shape[1]):
        if estimator == "hist":
            model = hist_classifier(seed).fit(train_x, train_y[:, f])
            importances.append(hist_importances(model))
        else:
            model = GradientBoostingClassifier(random_state=seed).fit(train_x, train_y[:, f])
            importances.append(np.abs(model.feature_importances_))
        accuracy.append([np.mean(model.predict(train_x) == train_y[:, f]), np.mean(model.predict(test_x) == test_y[:, f])])
    return np.stack(importances, axis=1), np.array(accuracy)


def importance_lasso(train_x, train_y, test_x, test_y, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Importances (L, F) = |lasso coefficients| on standardised codes and factors, and the normalised
    RMSE (F, 2: train, test) of each factor's regression."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0
    y_mean, y_std = train_y.mean(axis=0), train_y.std(axis=0)
    importances, errors = [], []
    for f in range(train_y.shape[1]):
        model = Lasso(alpha=alpha).fit((train_x - mean) / std, (train_y[:, f] - y_mean[f]) / y_std[f])
        importances.append(np.abs(model.coef_))
        errors.append(
            [
                np.sqrt(np.mean((model.predict((x - mean) / std) - (y[:, f] - y_mean[f]) / y_std[f]) ** 2))
                for x, y in ((train_x, train_y), (test_x, test_y))
            ]
        )
    return np.stack(importances, axis=1), np.array(errors)


def dci_scores(importance: np.ndarray, weighted_completeness: bool = True) -> dict[str, np.ndarray | float]:
    """Disentanglement and completeness of an importance matrix R (L, F).

    Per unit, D_i = 1 − H_F(R_i· / Σ_f R_if) (entropy in base F), weighted by the unit's share of the
    total importance; per factor, C_f = 1 − H_L(R_·f / Σ_i R_if), weighted by the factor's share
    (or a plain mean when ``weighted_completeness`` is False). Rows or columns without importance
    count 0 with weight 0.
    """
    units, factors = importance.shape

    def one_minus_entropy(rows: np.ndarray, base: int) -> np.ndarray:
        totals = rows.sum(axis=1, keepdims=True)
        p = np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / np.log(base)
        return np.where(totals[:, 0] > 0, 1.0 - h, 0.0)

    total = importance.sum()
    per_unit = one_minus_entropy(importance, factors)
    per_factor = one_minus_entropy(importance.T, units)
    unit_weight = importance.sum(axis=1) / total if total > 0 else np.zeros(units)
    factor_weight = importance.sum(axis=0) / total if total > 0 else np.zeros(factors)
    completeness = float(per_factor @ factor_weight) if weighted_completeness else float(per_factor.mean())
    return {"disentanglement": float(per_unit @ unit_weight), "completeness": completeness, "per_unit": per_unit, "per_factor": per_factor}


def dci(
    train_codes,
    train_factors,
    test_codes,
    test_factors,
    estimator: str = "hist",
    alpha: float = 0.02,
    seed: int = 0,
    threads: int = 1,
) -> MetricResult:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

    Args:
        train_codes, train_factors: (N, L) codes and (N, F) classes the predictors are fitted on.
        test_codes, test_factors: (M, L), (M, F) held-out examples for the test informativeness.
        estimator: "hist" (fast gradient-boosted trees, the default), "sklearn-default" (scikit-learn's
            ``GradientBoostingClassifier()``, what disentanglement_lib uses) or "lasso" (Eastwood's
            original: lasso regressions, completeness unweighted); see the module docstring.
        alpha: the lasso's penalty (Eastwood's 0.02); used by "lasso" only.
        seed: the estimators' random state.
        threads: threads scikit-learn may use (results do not depend on it).

    Scores: ``disentanglement``, ``completeness`` and, for the classifiers, ``informativeness_train``
    / ``informativeness_test`` (mean accuracy over factors); for "lasso" ``informativeness_*_error``
    (mean normalised RMSE over factors; lower is better).
    """
    if estimator not in DCI_ESTIMATORS:
        raise ConfigError(f"unknown DCI estimator {estimator!r}; choose one of {', '.join(DCI_ESTIMATORS)}")
    train_codes, train_factors = check_codes(train_codes, train_factors, "train")
    test_codes, test_factors = check_codes(test_codes, test_factors, "test")
    check_factors_vary(train_factors, "dci")
    with estimator_threads(threads):
        if estimator == "lasso":
            importance, quality = importance_lasso(train_codes, train_factors, test_codes, test_factors, alpha)
            names = ("informativeness_train_error", "informativeness_test_error")
        else:
            importance, quality = importance_classifiers(train_codes, train_factors, test_codes, test_factors, estimator, seed)
            names = ("informativeness_train", "informativeness_test")
    parts = dci_scores(importance, weighted_completeness=estimator != "lasso")
    scores = {"disentanglement": parts["disentanglement"], "completeness": parts["completeness"]}
    scores.update({names[0]: float(quality[:, 0].mean()), names[1]: float(quality[:, 1].mean())})
    settings = {"estimator": estimator, "num_train": len(train_codes), "num_test": len(test_codes), "seed": seed, "threads": threads}
    if estimator == "lasso":
        settings["alpha"] = alpha
    details = {"importance": importance.tolist(), "per_unit": parts["per_unit"].tolist(), "per_factor": parts["per_factor"].tolist()}
    return MetricResult("dci", scores, settings, details)


def sap(train_codes, train_factors, test_codes, test_factors, C: float = 0.01, seed: int = 0, threads: int = 1) -> MetricResult:
    """Separated attribute predictability (Kumar et al. 2018, discrete factors as in Locatello et al. 2019).

    Args:
        train_codes, train_factors: (N, L) codes and (N, F) classes the 1-D classifiers are fitted on.
        test_codes, test_factors: (M, L), (M, F) held-out examples they are scored on.
        C: the linear SVMs' regularisation (``LinearSVC(C, class_weight="balanced")``).
        seed: the SVMs' random state.
        threads: threads scikit-learn may use.

    For each (unit, factor) the test accuracy of a linear SVM reading that unit alone (standardised
    on the training codes, so that the score does not depend on a unit's scale); ``sap`` is
    the mean over factors of the gap between the best and second-best unit. Its ceiling is below 1:
    a 1-D linear one-vs-rest classifier cannot always separate the middle classes of a factor, and
    the second unit scores about chance.
    """
    train_codes, train_factors = check_codes(train_codes, train_factors, "train")
    test_codes, test_factors = check_codes(test_codes, test_factors, "test")
    check_factors_vary(train_factors, "sap")
    if train_codes.shape[1] < 2:
        raise DataError(f"sap needs at least 2 code units, got {train_codes.shape[1]}")
    units, factors = train_codes.shape[1], train_factors.shape[1]
    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std[std == 0] = 1.0
    train_codes, test_codes = (train_codes - mean) / std, (test_codes - mean) / std  # C then means the same for every unit
    accuracy = np.zeros((units, factors))
    with estimator_threads(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a unit that carries nothing about a factor
        for i in range(units):
            for f in range(factors):
                model = LinearSVC(C=C, class_weight="balanced", random_state=seed).fit(train_codes[:, i : i + 1], train_factors[:, f])
                accuracy[i, f] = np.mean(model.predict(test_codes[:, i : i + 1]) == test_factors[:, f])
    top = np.sort(accuracy, axis=0)[::-1]  # (L, F), best first
    gaps = top[0] - top[1]
    return MetricResult(
        "sap",
        {"sap": float(gaps.mean())},
        {"C": C, "num_train": len(train_codes), "num_test": len(test_codes), "seed": seed, "threads": threads},
        {"per_factor": gaps.tolist(), "accuracy": accuracy.tolist()},
    )
