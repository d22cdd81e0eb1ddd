"""Metrics that draw their own batches with one factor held fixed: the BetaVAE and FactorVAE scores.

Each draws the factor classes of every batch at once ((n, B, F) arrays), then makes and encodes the
images in chunks (``encode_groups``), reducing each batch's codes to one feature vector as it goes;
the scoring itself is a pure function of those arrays (``beta_vae_accuracy``, ``factor_vae_accuracy``).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from vaekit.disentanglement.base import (
    DEFAULT_CHUNK,
    Encoder,
    FactorSpaceLike,
    MetricResult,
    encode_factors,
    encode_groups,
    estimator_threads,
)


def fixed_factor_batches(space: FactorSpaceLike, n: int, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n batches of ``batch_size`` factor draws, each with one randomly chosen factor held at one
    random class: (fixed factor (n,), factors (n, B, F))."""
    fixed = rng.integers(len(space.sizes), size=n)
    factors = space.sample(n * batch_size, rng).reshape(n, batch_size, -1)
    rows = np.arange(n)
    factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
    return fixed, factors


def beta_vae_features(
    space: FactorSpaceLike, encode: Encoder, n: int, batch_size: int, rng: np.random.Generator, chunk: int = DEFAULT_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """n BetaVAE training points: (the fixed factor (n,), the mean |z1 − z2| over ``batch_size`` pairs
    that share that factor's class (n, L))."""
    fixed = rng.integers(len(space.sizes), size=n)
    first = space.sample(n * batch_size, rng).reshape(n, batch_size, -1)
    second = space.sample(n * batch_size, rng).reshape(n, batch_size, -1)
    rows = np.arange(n)
    second[rows, :, fixed] = first[rows, :, fixed]
    pairs = np.concatenate([first, second], axis=1)  # (n, 2B, F): a batch's pairs encoded together

    def mean_difference(codes: np.ndarray) -> np.ndarray:  # (m, 2B, L) -> (m, L)
        return np.abs(codes[:, :batch_size] - codes[:, batch_size:]).mean(axis=1)

    return fixed, encode_groups(space, encode, pairs, mean_difference, chunk)


def beta_vae_accuracy(train_x, train_y, eval_x, eval_y, seed: int = 0, threads: int = 1) -> tuple[float, float]:
    """Train and eval accuracy of a logistic regression predicting the fixed factor from the features."""
    with estimator_threads(threads):
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(train_x, train_y)
        return float(model.score(train_x, train_y)), float(model.score(eval_x, eval_y))


def beta_vae_score(
    space: FactorSpaceLike,
    encode: Encoder,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    batch_size: int = 64,
    seed: int = 0,
    threads: int = 1,
    chunk: int = DEFAULT_CHUNK,
) -> MetricResult:
    """The BetaVAE score (Higgins et al. 2017).

    Args:
        space: the factor space to draw from; encode: images -> codes (posterior means).
        num_train, num_eval: training / evaluation points, each from ``batch_size`` pairs of examples.
        batch_size: pairs per point.
        seed: seeds the draws and the classifier; threads: threads scikit-learn may use.
        chunk: images made and encoded together.

    ``eval_accuracy`` (the score) and ``train_accuracy`` of a logistic regression that tells from the
    mean |z1 − z2| which factor the pairs shared. Chance is 1 / F.
    """
    rng = np.random.default_rng([seed, 11])
    train_y, train_x = beta_vae_features(space, encode, num_train, batch_size, rng, chunk)
    eval_y, eval_x = beta_vae_features(space, encode, num_eval, batch_size, rng, chunk)
    train_accuracy, eval_accuracy = beta_vae_accuracy(train_x, train_y, eval_x, eval_y, seed, threads)
    return MetricResult(
        "beta_vae",
        {"eval_accuracy": eval_accuracy, "train_accuracy": train_accuracy},
        {"num_train": num_train, "num_eval": num_eval, "batch_size": batch_size, "seed": seed, "threads": threads},
    )


def factor_vae_votes(
    space: FactorSpaceLike,
    encode: Encoder,
    n: int,
    batch_size: int,
    scale: np.ndarray,
    active: np.ndarray,
    rng: np.random.Generator,
    chunk: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Votes (F, L): for n batches with one factor fixed, the factor and the active unit whose variance
    over the batch, divided by its global variance ``scale`` (L,), is smallest."""
    fixed, factors = fixed_factor_batches(space, n, batch_size, rng)
    units = np.flatnonzero(active)

    def least_varying(codes: np.ndarray) -> np.ndarray:  # (m, B, L) -> (m,)
        ratio = codes[:, :, units].var(axis=1, ddof=1) / scale[units]
        return units[np.argmin(ratio, axis=1)]

    chosen = encode_groups(space, encode, factors, least_varying, chunk)  # (n,)
    votes = np.zeros((len(space.sizes), len(active)), dtype=np.int64)
    np.add.at(votes, (fixed, chosen), 1)
    return votes


def factor_vae_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The majority-vote classifier unit -> factor (the factor with most training votes per unit) and
    its train and eval accuracy on the votes (F, L): (train, eval, classifier (L,))."""
    classifier = np.argmax(train_votes, axis=0)  # (L,)
    units = np.arange(train_votes.shape[1])

    def accuracy(votes: np.ndarray) -> float:
        return float(votes[classifier, units].sum() / max(votes.sum(), 1))

    return accuracy(train_votes), accuracy(eval_votes), classifier


def factor_vae_score(
    space: FactorSpaceLike,
    encode: Encoder,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance: int = 10_000,
    batch_size: int = 64,
    prune_threshold: float = 0.05,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> MetricResult:
    """The FactorVAE score (Kim & Mnih 2018).

    Args:
        space: the factor space to draw from; encode: images -> codes (posterior means).
        num_train, num_eval: training / evaluation votes, one per batch of ``batch_size`` examples.
        num_variance: examples for the global variance of each unit.
        prune_threshold: units whose global standard deviation is below it are collapsed and never vote.
        seed: seeds the draws; chunk: images made and encoded together.

    ``eval_accuracy`` (the score), ``train_accuracy`` and ``active_units``. Chance is about 1 / F.
    """
    rng = np.random.default_rng([seed, 12])
    codes = encode_factors(space, encode, space.sample(num_variance, rng), chunk)
    scale = codes.var(axis=0, ddof=1)  # (L,)
    active = np.sqrt(scale) >= prune_threshold
    settings = {
        "num_train": num_train,
        "num_eval": num_eval,
        "num_variance": num_variance,
        "batch_size": batch_size,
        "prune_threshold": prune_threshold,
        "seed": seed,
    }
    if not active.any():
        return MetricResult("factor_vae", {"eval_accuracy": 0.0, "train_accuracy": 0.0, "active_units": 0}, settings)
    train_votes = factor_vae_votes(space, encode, num_train, batch_size, scale, active, rng, chunk)
    eval_votes = factor_vae_votes(space, encode, num_eval, batch_size, scale, active, rng, chunk)
    train_accuracy, eval_accuracy, classifier = factor_vae_accuracy(train_votes, eval_votes)
    return MetricResult(
        "factor_vae",
        {"eval_accuracy": eval_accuracy, "train_accuracy": train_accuracy, "active_units": int(active.sum())},
        settings,
        {"unit_to_factor": classifier.tolist(), "active": active.tolist(), "train_votes": train_votes.tolist()},
    )
