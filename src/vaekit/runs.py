"""The run directory: everything needed to rebuild, evaluate and resume a trained model.

    RUN/config.json          resolved RunConfig
    RUN/data.json            how the data was loaded, split and preprocessed
    RUN/state.json           the index: step, epoch, schedule, RNG and optimizer scalars, and
                             which checkpoint files are current, with their SHA-256
    RUN/checkpoints/last-STEP.safetensors       weights at the last checkpoint
    RUN/checkpoints/optimizer-STEP.safetensors  optimizer tensors and RNG states with it
    RUN/checkpoints/(the file ``best`` names)   weights with the best validation loss (``load``'s default)
    RUN/metrics.csv          one row per epoch
    RUN/figures/, RUN/tensorboard/

Checkpoint files are never overwritten: each checkpoint writes new files (named by step), then
replaces state.json atomically, then deletes the files no longer named. A crash at any moment
leaves a state.json whose files all exist and match their checksums.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaekit.checkpoint import load_tensors, read_json
from vaekit.config import RunConfig, validate
from vaekit.errors import CheckpointError, ConfigError
from vaekit.models import LatentVariableModel, build_model

CONFIG, DATA_INFO, STATE, METRICS, CHECKPOINTS = "config.json", "data.json", "state.json", "metrics.csv", "checkpoints"

_NAMED_FORMATS = ("digits", "idx", "binarized-mnist")  # fixed preprocessing of the named datasets


@dataclass
class Run:
    """A trained model with its settings, loaded from a run directory."""

    path: Path
    config: RunConfig
    model: LatentVariableModel
    data_info: dict[str, Any] = field(default_factory=dict)

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    def load_data(self, source: str | None = None):
        """Load the run's dataset (or ``source``), preprocessed the way the run's training data was."""
        from vaekit.data import load_data

        d = self.config.data
        saved = self.data_info.get("preprocessing")
        if source not in (None, d.source) and (saved or {}).get("format") in _NAMED_FORMATS:
            saved = None  # a named dataset's fixed scaling says nothing about another source
        return load_data(
            source or d.source,
            data_dir=d.data_dir,
            valid_fraction=d.valid_fraction,
            seed=d.split_seed,
            image_size=d.image_size,
            preprocessing=saved,
        )

    def metrics(self) -> list[dict[str, float]]:
        """The per-epoch rows of metrics.csv as dicts of floats."""
        import csv

        path = self.path / METRICS
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def load_state(run_dir: Path) -> dict[str, Any]:
    state = read_json(Path(run_dir) / STATE)
    if not isinstance(state, dict) or not isinstance(state.get("files"), dict) or not isinstance(state.get("checksums"), dict):
        raise CheckpointError(f"{Path(run_dir) / STATE} is not a vaekit state file")
    return state


def checkpoint_tensors(run_dir: Path, state: dict[str, Any], role: str) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint file ``role`` (``last``, ``best``, ``optimizer``), checksum-verified."""
    name = state["files"].get(role)
    if not isinstance(name, str) or not name.startswith(CHECKPOINTS + "/") or ".." in name:
        raise CheckpointError(f"{Path(run_dir)} has no {role} checkpoint")
    return load_tensors(Path(run_dir) / name, state["checksums"].get(name))


def load(run_dir: str | Path, which: str = "best", map_location: str | torch.device = "cpu") -> Run:
    """Rebuild the model saved in ``run_dir`` from the directory alone.

    which: ``best`` (lowest validation loss) or ``last`` (latest checkpoint) weights.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"no such run directory: {path}")
    if not (path / CONFIG).is_file():  # not .exists(): a FIFO or /dev/zero there would hang the read
        raise CheckpointError(f"{path} is not a vaekit run (no {CONFIG})")
    try:
        config = RunConfig.from_json_file(path / CONFIG)
        validate(config)
    except ConfigError as exc:
        raise CheckpointError(f"invalid run config in {path}: {exc}") from None
    if which not in ("best", "last"):
        raise CheckpointError(f"which must be 'best' or 'last', got {which!r}")
    if not (path / STATE).exists():
        raise CheckpointError(f"{path} has no checkpoint yet (no {STATE})")
    tensors = checkpoint_tensors(path, load_state(path), which)
    model = build_model(config.model)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"the {which} weights in {path} do not match its config: {first}") from None
    model.eval()
    data_info = read_json(path / DATA_INFO) if (path / DATA_INFO).exists() else {}
    return Run(path=path, config=config, model=model.to(map_location), data_info=data_info)
