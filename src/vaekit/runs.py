"""The run directory: everything needed to rebuild, evaluate and resume a trained model.

    RUN/config.json          resolved RunConfig
    RUN/data.json            how the data was loaded, split and preprocessed
    RUN/state.json           the index: step, epoch, schedule, RNG and optimizer scalars, and
                             which checkpoint files are current, with their SHA-256
    RUN/checkpoints/last-STEP.safetensors       weights at the last checkpoint
    RUN/checkpoints/optimizer-STEP.safetensors  optimizer tensors and RNG states with it
    RUN/checkpoints/(the file ``best`` names)   weights with the best validation loss (``load``'s default)
    RUN/metrics.csv          one row per epoch (``METRIC_FIELDS``)
    RUN/.lock                held (flock) by the process writing the run; names its process id
    RUN/figures/             the figure commands' PNGs
    RUN/tensorboard/         event files, when TensorBoard is installed

``RunWriter`` is the only code that writes this layout, and the process holding it is the only
writer: a second ``RunWriter`` on the same run is refused while the first lives (the kernel
releases the lock of a killed process, so a resume after a crash is never blocked). Readers
(``load``, evaluation, figures) take no lock: they read the files ``state.json`` names.

Checkpoint files are never overwritten: each checkpoint writes new files (named by step), then
replaces state.json atomically, then deletes the files no longer named. A crash at any moment
leaves a state.json whose files all exist and match their checksums.
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vaekit.checkpoint import atomic_write_bytes, atomic_write_json, load_tensors, read_json, save_tensors
from vaekit.config import RunConfig, validate
from vaekit.data import load_data
from vaekit.errors import CheckpointError, ConfigError, TrainingError
from vaekit.models import LatentVariableModel, build_model

CONFIG, DATA_INFO, STATE, METRICS, CHECKPOINTS, LOCK = "config.json", "data.json", "state.json", "metrics.csv", "checkpoints", ".lock"

METRIC_FIELDS = [
    "epoch",
    "step",
    "beta",
    "lr",
    "train_loss",
    "train_neg_elbo",
    "train_reconstruction",
    "train_kl",
    "valid_loss",
    "valid_neg_elbo",
    "valid_reconstruction",
    "valid_kl",
    "train_seconds",
    "valid_seconds",
    "skipped_steps",
]


@dataclass
class TrainState:
    """Where training stands; saved as JSON in state.json with every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken in total
    step_in_epoch: int = 0  # steps taken in the current (unfinished) epoch
    best_valid: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best validation loss (early stopping)
    lr_bad_epochs: int = 0  # epochs since the best validation loss or the last learning-rate cut (lr_patience)
    skipped_steps: int = 0  # non-finite steps skipped
    epoch_seconds: float = 0.0  # training time of the unfinished epoch so far
    global_batch: int = 0  # examples per step over all processes, fixed when the run starts (0: saved before there was one)
    files: dict[str, str] = field(default_factory=dict)  # role (last, best, optimizer) -> file in checkpoints/
    checksums: dict[str, str] = field(default_factory=dict)  # file -> SHA-256

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrainState:
        """The state saved in state.json, each field checked against its type (a hand-edited or
        hostile file gets a clear error here, not a crash inside the loop)."""
        defaults = cls()
        values = {}
        for name in cls.__dataclass_fields__:
            if name not in raw:
                continue
            value, expected = raw[name], type(getattr(defaults, name))
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = isinstance(value, dict) if expected is dict else number and (expected is float or isinstance(value, int))
            if not ok or (expected is int and value < 0):
                wanted = "non-negative integer" if expected is int else expected.__name__
                raise CheckpointError(f"state.json is damaged: {name} is {value!r}, expected a {wanted}")
            values[name] = value
        if "lr_bad_epochs" not in raw:  # written before learning-rate decay existed: no cut yet, so early stopping's count
            values["lr_bad_epochs"] = values.get("bad_epochs", 0)
        return cls(**values)


@dataclass
class Checkpoint:
    """What a checkpoint holds: the raw state.json, the model weights and the optimizer file's
    tensors (optimizer moments, RNG states, the epoch's running sums)."""

    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]


class RunWriter:
    """The process writing a run directory: creates it, holds its lock, writes checkpoints and
    metrics rows. ``lock()`` first; the lock lasts until ``close()`` or the process ends."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # ----- the one-writer lock --------------------------------------------------------------
    def lock(self) -> None:
        """Take the run's lock, or raise ``ConfigError`` naming the process that holds it."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write to run directory {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"{self.path} is being trained by another process (pid {holder}); wait for it to finish or stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock (the file stays: a later writer locks it again)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # ----- creating and resuming ------------------------------------------------------------
    def create(self, config: RunConfig, data_info: dict[str, Any]) -> None:
        """Make a new run: the folder, its lock, config.json, data.json and the metrics header."""
        try:
            (self.path / "figures").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {self.path}: {exc.strerror}") from None
        self.lock()
        if (self.path / STATE).exists():
            raise ConfigError(f"{self.path} already holds a run; use --resume {self.path} to continue it or choose another --out")
        try:
            atomic_write_json(self.path / CONFIG, config.to_dict())
            atomic_write_json(self.path / DATA_INFO, data_info)
            self._write_metrics_rows([METRIC_FIELDS])
        except OSError as exc:
            raise ConfigError(f"cannot write to run directory {self.path}: {exc.strerror or exc}") from None

    def has_checkpoint(self) -> bool:
        return (self.path / STATE).exists() or any((self.path / CHECKPOINTS).glob("*.safetensors"))

    def read_checkpoint(self) -> Checkpoint:
        """The last checkpoint, checksum-verified."""
        raw = load_state(self.path)
        return Checkpoint(raw, checkpoint_tensors(self.path, raw, "last"), checkpoint_tensors(self.path, raw, "optimizer"))

    def save_config(self, config: RunConfig) -> None:
        atomic_write_json(self.path / CONFIG, config.to_dict())

    # ----- checkpoints ----------------------------------------------------------------------
    def write_checkpoint(
        self,
        state: TrainState,
        weights: dict[str, torch.Tensor],
        optimizer: dict[str, torch.Tensor],
        extra: dict[str, Any],
        metadata: dict[str, str],
        *,
        best: bool,
    ) -> TrainState:
        """Write new weight and optimizer files (named by step), then state.json (``state`` plus
        ``extra``), then delete the files it no longer names; returns ``state`` with the new file
        index. A crash at any point leaves the previous checkpoint readable; non-finite weights are
        refused, so they never become the best checkpoint."""
        tag = f"{state.step:09d}"
        folder = self.path / CHECKPOINTS
        files, checksums = dict(state.files), dict(state.checksums)
        written: list[str] = []
        if not all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point()):
            raise TrainingError(f"the weights became non-finite at step {state.step}; the last good checkpoint in {self.path} is kept")
        try:
            folder.mkdir(exist_ok=True)
            for role, tensors, meta in (("last", weights, metadata), ("optimizer", optimizer, None)):
                name = f"{CHECKPOINTS}/{role}-{tag}.safetensors"
                if files.get(role) != name:
                    written.append(name)
                    checksums[name] = save_tensors(self.path / name, tensors, meta)
                    files[role] = name
            if best:
                files["best"] = files["last"]
            kept = set(files.values())
            state = replace(state, files=files, checksums={k: v for k, v in checksums.items() if k in kept})
            atomic_write_json(self.path / STATE, {**asdict(state), **extra})
        except OSError as exc:
            for name in written:
                (self.path / name).unlink(missing_ok=True)
            raise CheckpointError(
                f"could not write a checkpoint in {self.path}: {exc.strerror or exc}; the previous checkpoint is kept"
            ) from None
        for stale in folder.glob("*.safetensors"):
            if f"{CHECKPOINTS}/{stale.name}" not in kept:
                stale.unlink(missing_ok=True)
        for leftover in (*folder.glob(".*.tmp"), *self.path.glob(".*.tmp")):  # temp files of a write a kill cut short
            leftover.unlink(missing_ok=True)
        return state

    # ----- metrics.csv ----------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        try:
            with (self.path / METRICS).open("a", newline="") as f:
                csv.writer(f).writerow([_fmt(row.get(k, "")) for k in METRIC_FIELDS])
        except OSError as exc:
            raise CheckpointError(
                f"could not write {self.path / METRICS}: {exc.strerror or exc}; the previous checkpoint is kept"
            ) from None

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the header and the first ``epochs`` rows of metrics.csv (rows written after the
        checkpoint being resumed are dropped); replaced atomically, so a kill here loses nothing."""
        path = self.path / METRICS
        try:
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))[: 1 + epochs]
            self._write_metrics_rows(rows or [METRIC_FIELDS])
        except FileNotFoundError:
            self._write_metrics_rows([METRIC_FIELDS])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CheckpointError(f"cannot rewrite {path}: {getattr(exc, 'strerror', None) or exc}") from None

    def _write_metrics_rows(self, rows: list[list[str]]) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        atomic_write_bytes(self.path / METRICS, text.getvalue().encode("utf-8"))


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


_NAMED_FORMATS = ("digits", "idx", "binarized-mnist")  # fixed preprocessing of the named datasets


@dataclass
class Run:
    """A trained model with its settings, loaded from a run directory."""

    path: Path | None  # None: trained in memory, without a run directory
    config: RunConfig
    model: LatentVariableModel
    data_info: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, float]] | None = None  # the metrics of a run trained in memory
    weights: dict[str, Any] = field(default_factory=dict)  # which checkpoint the model holds: which, file, sha256, epoch

    def load_data(self, source: str | None = None):
        """Load the run's dataset (or ``source``), preprocessed the way the run's training data was."""

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
        if self.path is None:
            return list(self.rows or [])
        path = self.path / METRICS
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def read_config(path: Path) -> RunConfig:
    """The validated config of the run in ``path``; a ``CheckpointError`` saying what is missing."""
    if not path.exists():
        raise CheckpointError(
            f"no such run directory: {path} (a run killed before it created its folder is started again with the command that started it)"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a run directory")
    if not (path / CONFIG).is_file():  # not .exists(): a FIFO or /dev/zero there would hang the read
        raise CheckpointError(f"{path} is not a vaekit run (no {CONFIG})")
    try:
        config = RunConfig.from_json_file(path / CONFIG)
        validate(config)
    except ConfigError as exc:
        raise CheckpointError(f"invalid run config in {path}: {exc}") from None
    return config


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
    config = read_config(path)
    if which not in ("best", "last"):
        raise CheckpointError(f"which must be 'best' or 'last', got {which!r}")
    if not (path / STATE).exists():
        raise CheckpointError(f"{path} has no checkpoint yet (no {STATE})")
    state = load_state(path)
    tensors = checkpoint_tensors(path, state, which)
    name = state["files"][which]
    epoch = state.get("best_epoch") if which == "best" else state.get("epoch")
    weights = {"which": which, "file": name, "sha256": state["checksums"].get(name), "epoch": epoch}
    model = build_model(config.model)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"the {which} weights in {path} do not match its config: {first}") from None
    model.eval()
    data_info = read_json(path / DATA_INFO) if (path / DATA_INFO).exists() else {}
    return Run(path=path, config=config, model=model.to(map_location), data_info=data_info, weights=weights)
