"""The registry of disentanglement metrics and ``evaluate``, which runs any of them on one representation.

A metric is one registered ``Metric``: its name, its default settings (the sample counts of
Locatello et al. 2019), what it ``needs`` ("codes": (codes, factors) pairs, read as prefixes of one
shared ``CodeSample``; "space": the factor space and the encoder, to draw batches of its own) and
the function that computes it. ``evaluate`` sizes the shared sample to the largest request, draws
and encodes it once, runs each metric and records its settings, seed and seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vaekit.disentanglement.base import (
    DEFAULT_CHUNK,
    CodeSample,
    Encoder,
    FactorSpaceLike,
    MetricResult,
    VaryingFactors,
    draw_codes,
    encode_factors,
    grid,
)
from vaekit.disentanglement.information import mig, modularity_explicitness, unsupervised
from vaekit.disentanglement.interventions import beta_vae_score, factor_vae_score
from vaekit.disentanglement.predictors import dci, sap
from vaekit.errors import ConfigError, DataError
from vaekit.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """What a metric reads: a factor space with its encoder (either may be None when codes are
    given), the shared ``sample`` of codes, the ``seed``, the sklearn ``threads`` and the encoding ``chunk``."""

    space: FactorSpaceLike | None
    encode: Encoder | None
    sample: CodeSample | None
    seed: int
    threads: int
    chunk: int


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    name: its registry name. needs: "codes" (reads ``num_train``/``num_test`` examples of the shared
    sample) or "space" (draws its own batches from the factor space). defaults: its settings and their
    defaults. compute(source, **settings) -> MetricResult. reference: the paper it follows.
    """

    name: str
    needs: Literal["codes", "space"]
    defaults: Mapping[str, Any]
    compute: Callable[..., MetricResult]
    reference: str
    draws: Callable[[Mapping[str, Any]], int] | None = None  # a "space" metric's images drawn at these settings

    def sample_counts(self, settings: Mapping[str, Any]) -> tuple[int, int]:
        """The (train, test) examples it reads from the shared sample (0, 0 if it draws its own)."""
        if self.needs != "codes" or settings.get("num_train") == "all":
            return 0, 0
        return settings.get("num_train", 0), settings.get("num_test", 0)


METRICS: Registry[Metric] = Registry("disentanglement metric")


def register(name: str, needs: Literal["codes", "space"], reference: str, draws=None, **defaults: Any):
    """Decorator: register ``compute(source, **settings)`` as the metric ``name`` with these defaults
    (``draws(settings)``: the images a "space" metric draws)."""

    def wrap(compute: Callable[..., MetricResult]) -> Callable[..., MetricResult]:
        METRICS.add(name, Metric(name, needs, defaults, compute, reference, draws))
        return compute

    return wrap


def shared(source: Source, name: str, num_train: int, num_test: int = 0) -> CodeSample:
    """The first ``num_train`` / ``num_test`` examples of the shared sample (a DataError if it is short)."""
    if source.sample is None:
        raise DataError(f"{name} needs codes and factors, or a factor space and an encoder")
    return source.sample.head(num_train, num_test, name)


def needs_space(source: Source, name: str, why: str) -> tuple[FactorSpaceLike, Encoder]:
    if source.space is None or source.encode is None:
        raise ConfigError(f"{name} {why}: pass a factor space and an encoder (evaluate(space, encode, ...))")
    return source.space, source.encode


@register(
    "beta_vae",
    "space",
    "Higgins et al. 2017",
    draws=lambda s: 2 * s["batch_size"] * (s["num_train"] + s["num_eval"]),  # a pair of images per batch row
    num_train=10_000,
    num_eval=5_000,
    batch_size=64,
)
def _beta_vae(source: Source, **settings: Any) -> MetricResult:
    space, encode = needs_space(source, "beta_vae", "draws pairs with a shared factor")
    return beta_vae_score(space, encode, seed=source.seed, threads=source.threads, chunk=source.chunk, **settings)


@register(
    "factor_vae",
    "space",
    "Kim & Mnih 2018",
    draws=lambda s: s["batch_size"] * (s["num_train"] + s["num_eval"]) + s["num_variance"],
    num_train=10_000,
    num_eval=5_000,
    num_variance=10_000,
    batch_size=64,
    prune_threshold=0.05,
)
def _factor_vae(source: Source, **settings: Any) -> MetricResult:
    space, encode = needs_space(source, "factor_vae", "draws batches with one factor fixed")
    return factor_vae_score(space, encode, seed=source.seed, chunk=source.chunk, **settings)


@register("mig", "codes", "Chen et al. 2018; estimator of Locatello et al. 2019", num_train=10_000, bins=20)
def _mig(source: Source, num_train: int | str, bins: int) -> MetricResult:
    """``num_train``: a number (a uniform sample, Locatello et al.) or "all" (every combination of
    factor classes once, Chen et al.'s original)."""
    if num_train == "all":
        space, encode = needs_space(source, "mig", 'with num_train="all" encodes every example of the space')
        factors = grid(tuple(space.sizes))
        codes, sampling = encode_factors(space, encode, factors, source.chunk), "every example once (Chen et al. 2018)"
    else:
        part = shared(source, "mig", num_train)
        codes, factors, sampling = part.train_codes, part.train_factors, "uniform sample (Locatello et al. 2019)"
    result = mig(codes, factors, bins)
    return MetricResult(result.metric, result.scores, {**result.settings, "sampling": sampling}, result.details)


@register("dci", "codes", "Eastwood & Williams 2018", num_train=10_000, num_test=5_000, estimator="hist", alpha=0.02)
def _dci(source: Source, num_train: int, num_test: int, estimator: str, alpha: float) -> MetricResult:
    part = shared(source, "dci", num_train, num_test)
    return dci(*_arrays(part), estimator=estimator, alpha=alpha, seed=source.seed, threads=source.threads)


@register("sap", "codes", "Kumar et al. 2018", num_train=10_000, num_test=5_000, C=0.01)
def _sap(source: Source, num_train: int, num_test: int, C: float) -> MetricResult:
    return sap(*_arrays(shared(source, "sap", num_train, num_test)), C=C, seed=source.seed, threads=source.threads)


@register("modularity", "codes", "Ridgeway & Mozer 2018", num_train=10_000, num_test=5_000, bins=20)
def _modularity(source: Source, num_train: int, num_test: int, bins: int) -> MetricResult:
    part = shared(source, "modularity", num_train, num_test)
    return modularity_explicitness(*_arrays(part), bins=bins, seed=source.seed, threads=source.threads)


@register("unsupervised", "codes", "Locatello et al. 2019", num_train=10_000, bins=20)
def _unsupervised(source: Source, num_train: int, bins: int) -> MetricResult:
    return unsupervised(shared(source, "unsupervised", num_train).train_codes, bins)


def _arrays(part: CodeSample) -> tuple:
    return part.train_codes, part.train_factors, part.test_codes, part.test_factors


def resolve_settings(names: Sequence[str], settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each selected metric's settings: its defaults, then the flat ``settings`` that name one of its
    keys (``num_train=2000`` reaches every metric with a ``num_train``), then ``settings[metric]``
    (a dict for that metric alone). A setting no metric has is a ``ConfigError``; one that only
    metrics not run this time have is ignored (so one settings dict serves several calls)."""
    resolved = {name: dict(METRICS[name].defaults) for name in names}
    flat = {key: value for key, value in settings.items() if key not in METRICS}
    for key, value in flat.items():
        targets = [name for name in names if key in resolved[name]]
        if not any(key in METRICS[name].defaults for name in METRICS.names()):
            raise ConfigError(f"unknown setting {key!r}: no metric has it (metrics: {', '.join(METRICS.names())})")
        for name in targets:
            resolved[name][key] = value
    for name, own in settings.items():
        if name not in METRICS:
            continue
        if not isinstance(own, Mapping):
            raise ConfigError(f"settings for {name!r} must be a dict of its settings, got {own!r}")
        if name not in resolved:
            continue  # settings of a metric not run this time (one settings dict for several calls)
        for key, value in own.items():
            if key not in resolved[name]:
                raise ConfigError(f"unknown setting {key!r} for {name}; it has {', '.join(resolved[name])}")
            resolved[name][key] = value
    for name, values in resolved.items():
        _check_counts(name, values)
    return resolved


def _check_counts(name: str, values: Mapping[str, Any]) -> None:
    for key in ("num_train", "num_test", "num_eval", "num_variance", "batch_size", "bins"):
        value = values.get(key)
        if value is None or (name == "mig" and key == "num_train" and value == "all"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key in ("batch_size", "bins") else 1):
            raise ConfigError(f"{name}: {key} must be a positive integer (batch_size, bins at least 2), got {value!r}")


def images_drawn(names: Sequence[str], resolved: Mapping[str, Mapping[str, Any]]) -> int:
    """The images the metrics ``names`` encode at their ``resolved`` settings: each one's own draws, plus the
    shared sample once, as large as the largest request (``run_metrics`` draws it so)."""
    own = sum(METRICS[name].draws(resolved[name]) for name in names if METRICS[name].draws is not None)
    counts = [METRICS[name].sample_counts(resolved[name]) for name in names]
    return own + max((c[0] for c in counts), default=0) + max((c[1] for c in counts), default=0)


def run_metrics(
    source_of: Callable[[int, int], Source], metrics: Sequence[str] | None, settings: Mapping[str, Any], seed: int
) -> dict[str, Any]:
    """Resolve the settings, build the source for the largest shared sample, run each metric."""
    names = list(METRICS.names() if metrics is None else metrics)
    for name in names:
        METRICS.check(name)
    resolved = resolve_settings(names, settings)
    counts = [METRICS[name].sample_counts(resolved[name]) for name in names]
    start = time.perf_counter()
    source = source_of(max((c[0] for c in counts), default=0), max((c[1] for c in counts), default=0))
    out: dict[str, Any] = {"seed": seed, "threads": source.threads, "sample_seconds": time.perf_counter() - start, "metrics": {}}
    if source.sample is not None:
        out["sample"] = {"num_train": len(source.sample.train_codes), "num_test": len(source.sample.test_codes)}
    for name in names:
        start = time.perf_counter()
        result = METRICS[name].compute(source, **resolved[name]).to_json()
        result["settings"] = {**resolved[name], **result["settings"], "seed": seed}
        result["reference"] = METRICS[name].reference
        result["seconds"] = time.perf_counter() - start
        log.debug("%s: %s (%.1f s)", name, result["scores"], result["seconds"])
        out["metrics"][name] = result
    return out


def evaluate(
    space: FactorSpaceLike,
    encode: Encoder,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    threads: int = 1,
    chunk: int = DEFAULT_CHUNK,
    **settings: Any,
) -> dict[str, Any]:
    """Disentanglement metrics of the representation ``encode`` on the factor space ``space``.

    Args:
        space: the ground truth (``FactorSpaceLike``: names, sizes, sample, images).
        encode: images (n, *shape) -> codes (n, L) (the posterior means); called on ``chunk`` images at a time.
        metrics: names from ``METRICS`` (default: all of them).
        seed: seeds every draw and estimator; the same seed gives the same results.
        threads: threads scikit-learn may use (the results do not depend on it).
        chunk: images made and encoded together.
        settings: a setting for every metric that has it (``num_train=1000``), or one metric's own
            (``dci={"estimator": "sklearn-default"}``, ``mig={"num_train": "all"}``).

    Returns a JSON-ready dict: ``seed``, ``threads``, ``chunk``, ``factors`` (those scored) and
    ``dropped_factors`` (single-class ones), ``sample`` (the size of the one shared sample
    of codes the "codes" metrics read), ``sample_seconds`` and ``metrics``: for each metric its
    ``scores``, ``settings`` (every setting, the seed included), ``details``, ``reference`` and ``seconds``.
    """
    if space is None or encode is None:
        raise ConfigError("evaluate needs a factor space and an encoder; for codes you have already, use evaluate_codes")
    if not isinstance(space, FactorSpaceLike):
        raise ConfigError(f"space must have names, sizes, sample(n, rng) and images(factors); got {type(space).__name__}")
    space = VaryingFactors(space)
    if not space.sizes:
        raise DataError("the factor space has no factor with two classes or more: there is nothing to score")

    def source_of(num_train: int, num_test: int) -> Source:
        sample = draw_codes(space, encode, num_train, num_test, seed, chunk) if num_train else None
        return Source(space, encode, sample, seed, threads, chunk)

    out = run_metrics(source_of, metrics, settings, seed)
    return {**out, "chunk": chunk, "factors": list(space.names), "dropped_factors": list(space.dropped)}


def evaluate_codes(
    train_codes,
    train_factors,
    test_codes=None,
    test_factors=None,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    threads: int = 1,
    **settings: Any,
) -> dict[str, Any]:
    """The metrics that need only (codes, factors) pairs, on codes drawn already: ``train_codes`` (N, L)
    with ``train_factors`` (N, F), and optionally held-out ``test_codes``/``test_factors``.

    ``metrics`` defaults to every metric that needs codes only; the metrics read the first
    ``num_train`` / ``num_test`` examples, and too few is a one-line ``DataError``. Otherwise as ``evaluate``.
    """
    sample = CodeSample.of(train_codes, train_factors, test_codes, test_factors)
    if metrics is None:
        metrics = [name for name in METRICS.names() if METRICS[name].needs == "codes"]
    return run_metrics(lambda _train, _test: Source(None, None, sample, seed, threads, DEFAULT_CHUNK), metrics, settings, seed)
