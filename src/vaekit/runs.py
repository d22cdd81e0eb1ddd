"""The run directory: everything needed to rebuild, evaluate and resume a trained model.

    RUN/config.json          resolved RunConfig
    RUN/data.json            how the data was loaded, split and preprocessed
    RUN/state.json           the index: step, epoch, schedule, RNG and optimizer scalars, and
                             which checkpoint files are current, with their SHA-256
    RUN/checkpoints/last-STEP.safetensors       weights at the last checkpoint
    RUN/checkpoints/optimizer-STEP.safetensors  optimizer tensors and RNG states with it
    RUN/checkpoints/(the file ``best`` names)   weights with the best validation loss (``load``'s default)
    RUN/metrics.csv          one row per epoch (``metric_fields`` of the objective's terms)
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

import contextlib
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
from vaekit.codes import encoded, encoded_splits
from vaekit.config import DataConfig, RunConfig
from vaekit.data import SourceSettings, dataset_names, load_data, load_examples
from vaekit.data.download import DownloadFailed
from vaekit.data.mnist import ENV_VAR
from vaekit.errors import CheckpointError, ConfigError, DataNotFound, TrainingError
from vaekit.layouts import migrate_weights
from vaekit.models import LatentVariableModel, build_model
from vaekit.objectives import ELBOTerms
from vaekit.settings import check

CONFIG, DATA_INFO, STATE, METRICS, CHECKPOINTS, LOCK = "config.json", "data.json", "state.json", "metrics.csv", "checkpoints", ".lock"


def metric_fields(terms: tuple[str, ...]) -> list[str]:
    """metrics.csv's columns for an objective reporting ``terms``: each as train_NAME and valid_NAME."""
    return [
        "epoch",
        "step",
        "beta",
        "lr",
        *(f"train_{t}" for t in terms),
        *(f"valid_{t}" for t in terms),
        "train_seconds",
        "valid_seconds",
        "skipped_steps",
    ]


METRIC_FIELDS = metric_fields(ELBOTerms.names)  # the ELBO family's columns


def metric_terms(rows: list[dict[str, Any]]) -> list[str]:
    """The objective's term names that metrics rows hold (train_NAME columns), in column order."""
    keys = dict.fromkeys(k for row in rows[:1] for k in row)
    return [k[len("train_") :] for k in keys if k.startswith("train_") and k != "train_seconds"]


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

    def __init__(self, path: str | Path, fields: list[str] = METRIC_FIELDS):
        self.path = Path(path)
        self.fields = list(fields)  # metrics.csv's columns (``metric_fields`` of the run's objective)
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
            self.close()  # not this writer's run: its lock is not kept while the error travels
            raise ConfigError(
                f"{self.path} already holds a run; continue it with vaekit.resume({str(self.path)!r}) or choose another directory",
                cli=f"{self.path} already holds a run; use --resume {self.path} to continue it or choose another --out",
            )
        try:
            atomic_write_json(self.path / CONFIG, _with_resolved_paths(config).to_dict())
            atomic_write_json(self.path / DATA_INFO, data_info)
            self._write_metrics_rows([self.fields])
        except OSError as exc:
            raise ConfigError(f"cannot write to run directory {self.path}: {exc.strerror or exc}") from None

    def has_checkpoint(self) -> bool:
        return (self.path / STATE).exists() or any((self.path / CHECKPOINTS).glob("*.safetensors"))

    def read_checkpoint(self) -> Checkpoint:
        """The last checkpoint, checksum-verified."""
        raw = load_state(self.path)
        return Checkpoint(raw, checkpoint_tensors(self.path, raw, "last"), checkpoint_tensors(self.path, raw, "optimizer"))

    def save_config(self, config: RunConfig) -> None:
        atomic_write_json(self.path / CONFIG, _with_resolved_paths(config).to_dict())

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
                csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])
        except OSError as exc:
            raise CheckpointError(
                f"could not write {self.path / METRICS}: {exc.strerror or exc}; the previous checkpoint is kept"
            ) from None

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the first ``epochs`` rows of metrics.csv (rows written after the checkpoint being
        resumed are dropped), under this writer's columns: a column the run's objective reports now
        but did not then is left empty in the old rows, so adding a term never breaks a resume.
        Replaced atomically, so a kill here loses nothing."""
        path = self.path / METRICS
        try:
            read_metrics(path, rows=epochs)  # the rows kept must be whole: damage is refused, not carried on
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; move it away to resume without the metrics of the epochs so far") from None
        try:
            with path.open(newline="", encoding="utf-8") as f:
                old = list(csv.DictReader(f))[:epochs]
        except FileNotFoundError:
            old = []
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CheckpointError(f"cannot rewrite {path}: {getattr(exc, 'strerror', None) or exc}") from None
        self.fields += [k for row in old[:1] for k in row if k not in self.fields and k is not None]
        self._write_metrics_rows([self.fields, *([row.get(k) or "" for k in self.fields] for row in old)])

    def _write_metrics_rows(self, rows: list[list[str]]) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        atomic_write_bytes(self.path / METRICS, text.getvalue().encode("utf-8"))


def _fmt(v: Any) -> str:
    """A metrics.csv cell: a float at full precision (``repr``: the shortest text that reads back as the
    same float, at most 17 significant digits), so a value read back prints as the epoch's log line did."""
    return repr(float(v)) if isinstance(v, float) else str(v)


def _with_resolved_paths(config: RunConfig) -> RunConfig:
    """``config`` with its data paths absolute (``data.data_dir``, and ``data.source`` where it is a
    path, not a dataset name), so that the run reads its data from any working directory."""
    d = config.data
    source = d.source
    if source not in dataset_names() and Path(source).expanduser().exists():
        source = os.path.abspath(os.path.expanduser(source))  # abspath, not resolve: a symlink the user chose stays one
    data_dir = None if d.data_dir is None else os.path.abspath(os.path.expanduser(d.data_dir))
    return replace(config, data=replace(d, source=source, data_dir=data_dir))


@dataclass
class Run:
    """A trained model with its settings, loaded from a run directory."""

    path: Path | None  # None: trained in memory, without a run directory
    config: RunConfig
    model: LatentVariableModel
    data_info: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, float]] | None = None  # the metrics of a run trained in memory
    weights: dict[str, Any] = field(default_factory=dict)  # which checkpoint the model holds: which, file, sha256, epoch

    def load_data(self, source: str | None = None, *, data_dir: str | None = None, download: bool | None = None):
        """Load the run's dataset (or ``source``), preprocessed the way the run's training data was
        (``source`` of another format: by its own reader, then the steps on the model's input, and rows of
        exactly the model's number of values read as its images: ``load_data``'s ``expected_shape``).

        data_dir: where the run's data is now, for a run whose data has moved (default: where it was
            trained from, ``config.data.data_dir``; where that folder is gone, ``$VAEKIT_DATA_DIR``):
            the folder of a named dataset's files, or the folder that holds the run's data file or
            image folder (found there by its name).
        download: fetch a named dataset's missing files (default: ``config.data.download``).
        """
        d = self.config.data
        if d.codes_of is not None:  # M1+M2: the data through the run whose codes this model was trained on
            m1 = codes_run(d.codes_of)
            return encoded_splits(m1, m1.load_data(source, data_dir=data_dir, download=download), self.data_info.get("codes"))
        source, directory, env_applies = data_location(self.config.data, source, data_dir)
        with _pointing_at_data(env_applies):
            return load_data(
                source,
                settings=_source_settings(d, directory, download),
                image_size=d.image_size,
                preprocessing=self.data_info.get("preprocessing"),
                expected_shape=self.model.input_shape,
            )

    def load_examples(self, source: str | None = None, *, data_dir: str | None = None, download: bool | None = None):
        """Every example of ``source`` (default: the run's data) as a ``Dataset``: all of a path, in
        file order, or a named dataset's test split, prepared as the run's training data was and
        refused unless of the model's input shape. data_dir, download: as for ``load_data``."""
        d = self.config.data
        if d.codes_of is not None:
            m1 = codes_run(d.codes_of)
            return encoded(m1, m1.load_examples(source, data_dir=data_dir, download=download), self.data_info["codes"])
        source, directory, env_applies = data_location(self.config.data, source, data_dir)
        with _pointing_at_data(env_applies):
            return load_examples(
                source,
                preprocessing=self.data_info.get("preprocessing"),
                expected_shape=self.model.input_shape,
                settings=_source_settings(d, directory, download),
            )

    def metrics(self) -> list[dict[str, float]]:
        """The per-epoch rows of metrics.csv as dicts of floats (``read_metrics``)."""
        if self.path is None:
            return list(self.rows or [])
        return read_metrics(self.path / METRICS)


def _source_settings(d, directory: str | None, download: bool | None) -> SourceSettings:
    """How a run's data is read again: from ``directory``, split as it was (``DataConfig`` ``d``), downloaded
    where ``download`` (None: as the run was)."""
    return SourceSettings(
        data_dir=directory, download=d.download if download is None else download, valid_fraction=d.valid_fraction, seed=d.split_seed
    )


def data_location(d: DataConfig, source: str | None = None, data_dir: str | None = None) -> tuple[str, str | None, bool]:
    """Where a run reads its data (``d``: its ``config.data``), or ``source``: (the source, the
    ``data_dir`` to give ``load_data``, whether ``$VAEKIT_DATA_DIR`` is the fallback). ``data_dir``
    given wins; else the stored folder, or ``$VAEKIT_DATA_DIR`` where that folder is gone. A run's
    own data file or image folder that is gone is looked for by its name in ``data_dir`` (or the
    stored folder); ``DataNotFound`` says how to point the run at it where it is not there."""
    directory, env_applies = data_dir, False
    if directory is None:
        directory = d.data_dir
        env_applies = directory is None or not Path(directory).expanduser().is_dir()
        if directory is not None and env_applies and os.environ.get(ENV_VAR):
            directory = None  # the stored folder is gone: data_root reads $VAEKIT_DATA_DIR
    if source is not None or d.source in dataset_names() or Path(d.source).expanduser().exists():
        return source or d.source, directory, env_applies
    name, folder = Path(d.source).name, data_dir if data_dir is not None else d.data_dir
    if folder is not None and (Path(folder).expanduser() / name).exists():
        return str(Path(folder).expanduser() / name), directory, env_applies
    where = f"the run's data {d.source} is gone" + (f", and {folder} holds no {name}" if folder is not None else "")
    raise DataNotFound(
        f"{where}: point the run at the folder that holds {name} now with load_data(data_dir=...)",
        cli=f"{where}: point the run at the folder that holds {name} now with --data-dir DIR",
        where=where,
    )


@contextlib.contextmanager
def _pointing_at_data(env_applies: bool):
    """Turn a named dataset's missing files into an error that says how to point the run at them:
    ``data_dir`` (``--data-dir``), ``$VAEKIT_DATA_DIR`` where it applies, ``download`` where there is one."""
    try:
        yield
    except (DataNotFound, DownloadFailed) as exc:
        if isinstance(exc, DataNotFound) and not exc.where:
            raise
        where = exc.where if isinstance(exc, DataNotFound) else str(exc)
        fetch = isinstance(exc, DataNotFound) and exc.downloadable
        env = " or the VAEKIT_DATA_DIR environment variable" if env_applies else ""
        python = f"{where}; point the run at the folder that holds them with load_data(data_dir=...){env}"
        cli = f"{where}; point the run at the folder that holds them with --data-dir DIR{' or VAEKIT_DATA_DIR' if env_applies else ''}"
        if fetch:
            python, cli = f"{python}, or fetch them with download=True, if online", f"{cli}, or fetch them with --download, if online"
        raise DataNotFound(python, cli=cli, where=where, downloadable=fetch) from None


def read_metrics(path: Path, rows: int | None = None) -> list[dict[str, float]]:
    """The rows of a metrics.csv as dicts of floats (empty cells left out; none for a missing file);
    a ``CheckpointError`` saying what is wrong with a damaged one: not UTF-8 text, cut short, a row
    whose number of values differs from the header's, a value that is not a number.

    rows: read only the first this many rows (what a resumed run keeps; what follows is not checked).
    """
    path = Path(path)
    text = _metrics_text(path)
    if text is None:
        return []
    *lines, tail = text.split("\n")  # every line is written whole, with its line end: tail is "" unless one was cut short
    if rows is not None and len(lines) >= 1 + rows:  # the header and the rows kept are whole
        lines, tail = lines[: 1 + rows], ""
    if not lines or tail:
        what = "it is empty (a run's always has a header)" if not text else "its last line is cut short"
        raise CheckpointError(f"{path} is damaged: {what}")
    try:
        header, *body = csv.reader(lines)
    except (csv.Error, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    if not header or header[0] != "epoch" or "" in header or len(set(header)) != len(header):
        raise CheckpointError(f"{path} is damaged: its first line is not a header of metric names starting with epoch")
    return [_metrics_row(path, number, header, row) for number, row in enumerate(body, start=2)]


def _metrics_text(path: Path) -> str | None:
    """A metrics.csv's text; None for a missing file; a ``CheckpointError`` for one that is not a regular file or not UTF-8."""
    if path.exists() and not path.is_file():  # a FIFO or a device would hang the read
        raise CheckpointError(f"{path} is not a regular file")
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is damaged: it is not UTF-8 text (byte {exc.start})") from None


def _metrics_row(path: Path, number: int, header: list[str], row: list[str]) -> dict[str, float]:
    """Line ``number`` of a metrics.csv as {name: value} (empty cells left out); a ``CheckpointError`` if damaged."""
    if len(row) != len(header):
        raise CheckpointError(f"{path} is damaged: row {number} has {len(row)} values, the header {len(header)} names")
    values = {}
    for name, cell in zip(header, row):
        if cell == "":
            continue
        try:
            values[name] = float(cell)
        except ValueError:
            raise CheckpointError(f"{path} is damaged: row {number} has {cell[:20]!r} for {name}, not a number") from None
    if "epoch" not in values:
        raise CheckpointError(f"{path} is damaged: row {number} has no epoch")
    return values


# what resuming a missing run directory adds: the folder is made once the data is loaded
NEVER_STARTED = "a run killed before it created its folder is started again with the command that started it"


def read_config(path: Path, *, missing_hint: str = NEVER_STARTED) -> RunConfig:
    """The validated config of the run in ``path``; a ``CheckpointError`` saying what is missing
    (for a missing directory, with ``missing_hint`` in parentheses; ``""``: none)."""
    if not path.exists():
        raise CheckpointError(f"no such run directory: {path}" + (f" ({missing_hint})" if missing_hint else ""))
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a run directory")
    if not (path / CONFIG).is_file():  # not .exists(): a FIFO or /dev/zero there would hang the read
        raise CheckpointError(f"{path} is not a vaekit run (no {CONFIG})")
    try:
        config = RunConfig.from_json_file(path / CONFIG)
        check(config)
    except ConfigError as exc:
        raise CheckpointError(f"invalid run config in {path}: {exc}") from None
    return config


_FIRST_LAYOUT = {role: f"{role}.safetensors" for role in ("last", "best", "optimizer")}  # role -> file, in a run's top folder


def _checkpoint_files(run_dir: Path) -> list[str]:
    """The tensor files of a run, relative to it (in checkpoints/, or beside config.json in the first layout)."""
    return sorted(str(p.relative_to(run_dir)) for p in (*(run_dir / CHECKPOINTS).glob("*.safetensors"), *run_dir.glob("*.safetensors")))


def load_state(run_dir: Path) -> dict[str, Any]:
    """The raw state.json of a run; a ``CheckpointError`` when it is damaged, or missing while
    checkpoint files exist (the index lost, not a run without checkpoints)."""
    run_dir = Path(run_dir)
    files = [] if (run_dir / STATE).exists() else _checkpoint_files(run_dir)
    if files:
        where = f"{run_dir / STATE}, the index of the run's checkpoints, is missing, although the run holds {', '.join(files)}"
        config = str(run_dir / CONFIG)
        raise CheckpointError(
            f"{where}: put back a copy of state.json, or train the run again from its config "
            f"(vaekit.train(vaekit.RunConfig.from_json_file({config!r}), NEW_DIR))",
            cli=f"{where}: put back a copy of state.json, or train the run again from its config "
            f"(vaekit train --config {config} --out NEW_DIR)",
        )
    state = read_json(run_dir / STATE)
    if isinstance(state, dict) and "files" not in state and isinstance(state.get("checksums"), dict):
        # the first layout (vaekit before checkpoints/): best, last and optimizer files beside config.json
        state["files"] = {role: name for role, name in _FIRST_LAYOUT.items() if name in state["checksums"]}
    if not isinstance(state, dict) or not isinstance(state.get("files"), dict) or not isinstance(state.get("checksums"), dict):
        raise CheckpointError(f"{Path(run_dir) / STATE} is not a vaekit state file")
    return state


def checkpoint_tensors(run_dir: Path, state: dict[str, Any], role: str) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint file ``role`` (``last``, ``best``, ``optimizer``), checksum-verified."""
    name = state["files"].get(role)
    if not isinstance(name, str) or not (name.startswith(CHECKPOINTS + "/") or name == _FIRST_LAYOUT.get(role)) or ".." in name:
        raise CheckpointError(f"{Path(run_dir)} has no {role} checkpoint")
    return load_tensors(Path(run_dir) / name, state["checksums"].get(name))


def load(run_dir: str | Path, which: str = "best", map_location: str | torch.device = "cpu") -> Run:
    """Rebuild the model saved in ``run_dir`` from the directory alone.

    which: ``best`` (lowest validation loss) or ``last`` (latest checkpoint) weights.
    """
    path = Path(run_dir)
    config = read_config(path, missing_hint="")
    if which not in ("best", "last"):
        raise CheckpointError(f"which must be 'best' or 'last', got {which!r}")
    if not (path / STATE).exists() and not _checkpoint_files(path):
        raise CheckpointError(f"{path} has no checkpoint yet (no {STATE})")
    state = load_state(path)
    tensors = migrate_weights(checkpoint_tensors(path, state, which))  # an earlier release's layout, read as today's
    name = state["files"][which]
    epoch = state.get("best_epoch") if which == "best" else state.get("epoch")
    weights = {"which": which, "file": name, "sha256": state["checksums"].get(name), "epoch": epoch}
    model = build_model(config.model)
    mismatch = _weights_mismatch(model.state_dict(), tensors)
    if mismatch:
        raise CheckpointError(f"the {which} weights in {path} do not match its config ({CONFIG}): {mismatch}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())  # torch's message spans lines
        raise CheckpointError(f"the {which} weights in {path} do not match its config ({CONFIG}): {first}") from None
    model.eval()
    data_info = read_json(path / DATA_INFO) if (path / DATA_INFO).exists() else {}
    if not isinstance(data_info, dict) or not isinstance(data_info.get("preprocessing", {}), (dict, type(None))):
        raise CheckpointError(f"{path / DATA_INFO} is not a vaekit data record")
    return Run(path=path, config=config, model=model.to(map_location), data_info=data_info, weights=weights)


def codes_run(path: str | Path) -> Run:
    """The M1 run at ``path``: a VAE whose posterior means become the data (one-line errors otherwise)."""
    run = load(path)
    latent = run.model.latent
    if latent.deterministic or latent.conditional or latent.hierarchical:
        raise ConfigError(f"--on-codes {path}: the codes come from an unconditional one-layer VAE (--model vae), which this run is not")
    return run


def _weights_mismatch(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> str:
    """What keeps ``saved`` from loading into a model whose state dict is ``expected``, in one line
    (the first tensor of another shape, with both shapes; the missing and the unexpected names); "" when it fits."""
    parts = []
    shapes = [(k, tuple(saved[k].shape), tuple(v.shape)) for k, v in expected.items() if k in saved and saved[k].shape != v.shape]
    if shapes:
        name, got, want = shapes[0]
        more = f" (and {len(shapes) - 1} more tensors of other shapes)" if len(shapes) > 1 else ""
        parts.append(f"{name} has shape {got} in the checkpoint but {want} in the model the config builds{more}")
    for what, names in (("missing", [k for k in expected if k not in saved]), ("unexpected", [k for k in saved if k not in expected])):
        if names:
            listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{len(names)} {what} tensor{'s' if len(names) > 1 else ''} ({listed})")
    return "; ".join(parts)
