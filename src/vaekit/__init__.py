"""vaekit: variational autoencoders on PyTorch -- models, training, evaluation and latent-space tools."""

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import DataSplits, Dataset, load_data
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError, VaekitError
from vaekit.evaluation import elbo_terms, summarize
from vaekit.generation import reconstruct, sample
from vaekit.models import LatentVariableModel, build_model
from vaekit.objectives import ELBOTerms, elbo
from vaekit.runs import Run, load
from vaekit.training import resume, train

__version__ = "0.1.0"

__all__ = [
    "RunConfig", "DataConfig", "ModelConfig", "TrainConfig",
    "Dataset", "DataSplits", "load_data",
    "LatentVariableModel", "build_model",
    "elbo", "ELBOTerms", "elbo_terms", "summarize",
    "train", "resume", "load", "Run",
    "sample", "reconstruct",
    "VaekitError", "ConfigError", "DataError", "CheckpointError", "TrainingError",
]
