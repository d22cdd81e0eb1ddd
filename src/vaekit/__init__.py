"""vaekit: variational autoencoders on PyTorch -- models, training, evaluation and latent-space tools."""

from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError, VaekitError
from vaekit.version import __version__

# The rest of the public API loads on first use (PEP 562), so that ``import vaekit.cli`` and the other
# submodules, which import this package first, do not pay for torch, scikit-learn or scipy.
_LAZY = {
    "vaekit.baselines": ["PCABaseline"],
    "vaekit.config": ["DataConfig", "ModelConfig", "RunConfig", "TrainConfig"],
    "vaekit.data": ["Dataset", "DataSplits", "SourceSettings", "load_data"],
    "vaekit.evaluation": ["elbo_terms", "iw_log_likelihood", "latent_diagnostics", "posterior_collapse_warning", "summarize"],
    "vaekit.generation": ["reconstruct", "sample"],
    "vaekit.models": ["LatentVariableModel", "build_model"],
    "vaekit.objectives": ["ELBOTerms", "elbo"],
    "vaekit.report": ["write_report"],
    "vaekit.runs": ["Run", "load"],
    "vaekit.training": ["resume", "train"],
    "vaekit.anomaly": ["VAEAnomalyDetector", "anomaly_scores"],
    "vaekit.compression": ["compress", "decompress"],
    "vaekit.classification": ["VAEClassifier", "classify"],
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _MODULE_OF:
        import importlib

        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
        globals()[name] = value  # the next look-up is a plain attribute
        return value
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = [
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "Dataset",
    "DataSplits",
    "SourceSettings",
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
    "VAEClassifier",
    "classify",
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
