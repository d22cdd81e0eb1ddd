"""Disentanglement metrics (Locatello et al. 2019's suite): scores of a representation against known factors.

``evaluate(space, encode)`` runs every registered metric (``METRICS``) on a factor space and an
encoder, encoding one shared sample of codes for the metrics that read (codes, factors) pairs;
``evaluate_codes`` runs those on codes drawn already. Each metric is also a function on arrays.

Modules: ``base`` (the factor-space protocol, samples, results), ``information`` (MIG, modularity
and explicitness, unsupervised scores), ``predictors`` (DCI, SAP), ``interventions`` (BetaVAE and
FactorVAE scores), ``metrics`` (the registry and ``evaluate``).
"""

from vaekit.disentanglement.base import CodeSample, Encoder, FactorSpaceLike, MetricResult, discretize, encode_factors
from vaekit.disentanglement.information import mig, modularity_explicitness, mutual_info_matrix, unsupervised
from vaekit.disentanglement.interventions import beta_vae_score, factor_vae_score
from vaekit.disentanglement.metrics import METRICS, Metric, evaluate, evaluate_codes
from vaekit.disentanglement.predictors import dci, dci_scores, hist_importances, sap

__all__ = [
    "METRICS",
    "CodeSample",
    "Encoder",
    "FactorSpaceLike",
    "Metric",
    "MetricResult",
    "beta_vae_score",
    "dci",
    "dci_scores",
    "discretize",
    "encode_factors",
    "evaluate",
    "evaluate_codes",
    "factor_vae_score",
    "hist_importances",
    "mig",
    "modularity_explicitness",
    "mutual_info_matrix",
    "sap",
    "unsupervised",
]
