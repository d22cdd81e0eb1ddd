"""vaekit: variational autoencoders on PyTorch -- models, training, evaluation and latent-space tools."""

from vaekit.baselines import PCABaseline
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import Dataset, DataSplits, load_data
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError, VaekitError
from vaekit.evaluation import elbo_terms, iw_log_likelihood, latent_diagnostics, posterior_collapse_warning, summarize
from vaekit.generation import reconstruct, sample
from vaekit.models import LatentVariableModel, build_model
from vaekit.objectives import ELBOTerms, elbo
from vaekit.report import write_report
from vaekit.runs import Run, load
from vaekit.training import resume, train
from vaekit.version import __version__

_LAZY = {"VAEAnomalyDetector": "vaekit.anomaly", "anomaly_scores": "vaekit.anomaly"}  # scikit-learn loads on first use
_LAZY.update(compress="vaekit.compression", decompress="vaekit.compression")  # constriction and scipy too


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


__all__ = [
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "Dataset",
    "DataSplits",
    "load_data",
    "LatentVariableModel",
    "build_model",
    "elbo",
    "ELBOTerms",
    "elbo_terms",
    "summarize",
    "iw_log_likelihood",
    "latent_diagnostics",
    "posterior_collapse_warning",
    "PCABaseline",
    "anomaly_scores",
    "VAEAnomalyDetector",
    "write_report",
    "train",
    "resume",
    "load",
    "Run",
    "sample",
    "reconstruct",
    "compress",
    "decompress",
    "VaekitError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "TrainingError",
    "__version__",
]
