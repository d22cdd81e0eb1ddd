"""The training loop. Reads top to bottom: data -> model -> optimizer -> epochs of index-sliced
batches -> validation -> metrics and checkpoints. Everything the loop needs to continue after a
stop is in the run directory (see ``vaekit.runs``)."""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import runs
from vaekit.checkpoint import atomic_write_json, flatten_optimizer_state, save_tensors, unflatten_optimizer_state
from vaekit.config import RunConfig, validate
from vaekit.corruption import corrupt
from vaekit.data import DataSplits, load_data
from vaekit.data.base import BINARY, UNIT
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError
from vaekit.evaluation import elbo_terms
from vaekit.models import build_model

log = logging.getLogger(__name__)

METRIC_FIELDS = [
    "epoch", "step", "beta", "lr",
    "train_loss", "train_neg_elbo", "train_reconstruction", "train_kl",
    "valid_loss", "valid_neg_elbo", "valid_reconstruction", "valid_kl",
    "train_seconds", "valid_seconds", "skipped_steps",
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
    skipped_steps: int = 0  # non-finite steps skipped
    epoch_seconds: float = 0.0  # training time of the unfinished epoch so far
    files: dict[str, str] = field(default_factory=dict)  # role (last, best, optimizer) -> file in checkpoints/
    checksums: dict[str, str] = field(default_factory=dict)  # file -> SHA-256


def data_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: a function of (seed, epoch) alone, so a resumed run sees
    the same order whatever happened before."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def beta_at(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """β rises linearly from 0 to ``beta`` over ``warmup_epochs`` (per step), then stays."""
    t = config.train
    if t.warmup_epochs == 0:
        return t.beta
    return t.beta * min(1.0, step / (t.warmup_epochs * steps_per_epoch))


def check_data(config: RunConfig, data: DataSplits) -> None:
    """Refuse data that the model or likelihood cannot explain, with a one-line reason."""
    from vaekit.models.likelihoods import build_likelihood

    head = build_likelihood(config.model.likelihood, data.shape, config.model.likelihood_scale)
    if head.support == "unit" and data.value_range not in (BINARY, UNIT):
        raise DataError(
            f"the {config.model.likelihood} likelihood needs data in [0, 1], but {config.data.source} has values outside it; "
            "use --likelihood gaussian (or gaussian-learned)"
        )
    if config.data.dynamic_binarize and data.value_range not in (BINARY, UNIT):
        raise DataError("dynamic binarization needs data in [0, 1]")
    if config.model.arch == "conv" and not data.is_image:
        raise ConfigError(f"a conv model needs image data, {config.data.source} has shape {data.shape}; use --arch mlp")
    if config.train.batch_size > len(data.train):
        raise ConfigError(f"batch size {config.train.batch_size} is larger than the training set ({len(data.train)} examples)")


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])], "python": [py_state[0], list(py_state[1]), py_state[2]]}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


class Trainer:
    """Owns the model, optimizer and run directory of one training run."""

    def __init__(self, config: RunConfig, out: str | Path, data: DataSplits | None = None, device: str | torch.device = "cpu"):
        validate(config)
        self.config = config
        self.out = Path(out)
        self.device = torch.device(device)
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.data = data if data is not None else load_data(
            config.data.source,
            data_dir=config.data.data_dir,
            valid_fraction=config.data.valid_fraction,
            seed=config.data.split_seed,
            binarize=config.data.dynamic_binarize,
            image_size=config.data.image_size,
            download=config.data.download,
        )
        config.model.input_shape = tuple(self.data.shape)
        check_data(config, self.data)
        torch.manual_seed(config.train.seed)
        np.random.seed(config.train.seed % 2**32)
        random.seed(config.train.seed)
        self.model = build_model(config.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay, fused=True)
        self.state = TrainState()
        self.x_train = self.data.train.x.to(self.device)
        self.x_valid = self.data.valid.x.to(self.device)
        self.steps_per_epoch = math.ceil(len(self.x_train) / config.train.batch_size)
        self.epoch_sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, neg_elbo, rec, kl sums
        self._stop = _StopOnInterrupt()

    # ----- run directory -------------------------------------------------------------------
    def start_run(self) -> None:
        try:
            (self.out / "figures").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {self.out}: {exc.strerror}") from None
        if (self.out / runs.STATE).exists():
            raise ConfigError(f"{self.out} already holds a run; use --resume {self.out} to continue it or choose another --out")
        atomic_write_json(self.out / runs.CONFIG, self.config.to_dict())
        atomic_write_json(self.out / runs.DATA_INFO, self.data.info)
        with (self.out / runs.METRICS).open("w", newline="") as f:
            csv.writer(f).writerow(METRIC_FIELDS)

    def checkpoint(self, best: bool = False) -> None:
        """Write new weight and optimizer files (named by step), then state.json, then delete the
        files it no longer names. A crash at any point leaves the previous checkpoint readable;
        non-finite weights never become the best checkpoint."""
        tag = f"{self.state.step:09d}"
        folder = self.out / runs.CHECKPOINTS
        files, checksums = dict(self.state.files), dict(self.state.checksums)
        written: list[str] = []
        try:
            folder.mkdir(exist_ok=True)
            weights = self.model.state_dict()
            finite = all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
            if not finite:
                raise TrainingError(f"the weights became non-finite at step {self.state.step}; the last good checkpoint in {self.out} is kept")
            meta = {"format": "vaekit", "config": self.config.to_json()}
            opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer.state_dict())
            rng_tensors, rng_meta = _rng_state()
            for role, tensors, metadata in (
                ("last", weights, meta),
                ("optimizer", {**opt_tensors, **rng_tensors, "epoch_sums": self.epoch_sums}, None),
            ):
                name = f"{runs.CHECKPOINTS}/{role}-{tag}.safetensors"
                if files.get(role) != name:
                    written.append(name)
                    checksums[name] = save_tensors(self.out / name, tensors, metadata)
                    files[role] = name
            if best:
                files["best"] = files["last"]
            kept = {files[r] for r in files}
            checksums = {k: v for k, v in checksums.items() if k in kept}
            state = replace(self.state, files=files, checksums=checksums)
            atomic_write_json(self.out / runs.STATE, {**asdict(state), "optimizer": opt_meta, "rng": rng_meta})
        except OSError as exc:
            for name in written:
                (self.out / name).unlink(missing_ok=True)
            raise CheckpointError(f"could not write a checkpoint in {self.out}: {exc.strerror or exc}; the previous checkpoint is kept") from None
        self.state = state
        for stale in folder.glob("*.safetensors"):
            if f"{runs.CHECKPOINTS}/{stale.name}" not in kept:
                stale.unlink(missing_ok=True)

    def restore(self) -> None:
        """Load the last checkpoint of ``self.out`` (weights, optimizer, RNG, schedule, step)."""
        raw = runs.load_state(self.out)
        known = set(TrainState.__dataclass_fields__)
        try:
            self.state = TrainState(**{k: v for k, v in raw.items() if k in known})
            self.model.load_state_dict(runs.checkpoint_tensors(self.out, raw, "last"))
            tensors = runs.checkpoint_tensors(self.out, raw, "optimizer")
            opt = {k: v for k, v in tensors.items() if k.startswith("state.")}
            self.optimizer.load_state_dict(unflatten_optimizer_state(opt, raw["optimizer"]))
            _set_rng_state(tensors, raw["rng"])
            self.epoch_sums = tensors["epoch_sums"].to(self.device)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint in {self.out} is damaged or from another model: {exc}") from None
        self._truncate_metrics(self.state.epoch)

    def _truncate_metrics(self, epochs: int) -> None:
        path = self.out / runs.METRICS
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows[: 1 + epochs])

    # ----- the loop ---------------------------------------------------------------------
    def fit(self, progress: bool = True) -> runs.Run:
        """Train until ``epochs`` (or early stopping); Ctrl-C stops cleanly after the current step
        with a checkpoint, then raises ``TrainingInterrupted`` saying how to resume."""
        t = self.config.train
        if t.warmup_epochs > t.epochs:
            log.warning("KL warm-up (%d epochs) is longer than training (%d epochs): beta never reaches %g", t.warmup_epochs, t.epochs, t.beta)
        writer = _tensorboard(self.out)
        self.model.train()
        try:
            with _StopOnInterrupt() as self._stop:
                while self.state.epoch < t.epochs:
                    if not self._epoch(progress, writer):
                        break
                    if self._stop.requested:
                        raise self._interrupted()
        finally:
            if writer is not None:
                writer.close()
        return runs.load(self.out)

    def _epoch(self, progress: bool, writer) -> bool:
        """One epoch: train, validate, log, checkpoint. Returns False when training should stop early."""
        t = self.config.train
        epoch = self.state.epoch
        train_row = self._train_epoch(epoch, progress)
        valid_start = time.perf_counter()
        valid = elbo_terms(self.model, self.x_valid, batch_size=max(t.batch_size, 1000), seed=t.seed)
        beta = 0.0 if self.model.deterministic else t.beta
        row = {
            **train_row,
            "valid_loss": (beta * valid.kl - valid.reconstruction).mean().item(),
            "valid_neg_elbo": valid.neg_elbo.mean().item(),
            "valid_reconstruction": -valid.reconstruction.mean().item(),
            "valid_kl": valid.kl.mean().item(),
            "valid_seconds": time.perf_counter() - valid_start,
        }
        self.state.epoch += 1
        self.state.step_in_epoch = 0
        self.state.epoch_seconds = 0.0
        self.epoch_sums.zero_()
        improved = math.isfinite(row["valid_loss"]) and row["valid_loss"] < self.state.best_valid
        if improved:
            self.state.best_valid, self.state.best_epoch, self.state.bad_epochs = row["valid_loss"], epoch + 1, 0
        else:
            self.state.bad_epochs += 1
        self._write_metrics(row, writer)
        self.checkpoint(best=improved)
        log.info("epoch %d: train loss %.3f, valid loss %.3f (neg ELBO %.3f)", epoch + 1, row["train_loss"], row["valid_loss"], row["valid_neg_elbo"])
        if t.patience and self.state.bad_epochs >= t.patience:
            log.info("early stopping: no better validation loss for %d epochs (best %.3f at epoch %d)", t.patience, self.state.best_valid, self.state.best_epoch)
            return False
        return True

    def _train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        t = self.config.train
        model, opt, x = self.model, self.optimizer, self.x_train
        n, bs = len(x), t.batch_size
        order = data_order(n, t.seed, epoch).to(self.device)
        deterministic = model.deterministic
        bar = _progress(self.steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress, initial=self.state.step_in_epoch)
        refresh = max(1, self.steps_per_epoch // 20)
        started = time.perf_counter() - self.state.epoch_seconds
        params = [p for p in model.parameters()]
        check_every_step = self.device.type == "cpu" or t.nonfinite == "skip"  # a check is a host sync on a GPU
        for i in range(self.state.step_in_epoch, self.steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            target = x[idx]  # (B, *shape)
            if self.config.data.dynamic_binarize:
                target = torch.bernoulli(target)
            inputs = corrupt(target, t.noise, t.noise_level)
            beta = beta_at(self.config, self.state.step, self.steps_per_epoch)
            terms = model(inputs, target, beta=beta, n_samples=t.n_samples, iw=t.iw)
            loss = terms.loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            health = loss
            if t.grad_clip:
                health = loss + torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            elif t.nonfinite == "skip":
                health = loss + torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            if (check_every_step or (i + 1) % refresh == 0) and not torch.isfinite(health):
                self._nonfinite(epoch, i)
                continue
            opt.step()
            with torch.no_grad():
                self.epoch_sums += torch.stack([terms.loss.sum(), terms.neg_elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()]).double()
            self.state.step += 1
            self.state.step_in_epoch = i + 1
            if bar is not None and (i + 1) % refresh == 0:
                s = (self.epoch_sums / ((i + 1) * bs)).tolist()
                bar.set_postfix(loss=f"{s[0]:.2f}", rec=f"{-s[2]:.2f}", kl=f"{s[3]:.2f}", refresh=False)
                bar.update(refresh)
            if self.state.step_in_epoch < self.steps_per_epoch:  # the epoch's end checkpoints anyway
                periodic = t.checkpoint_every and self.state.step % t.checkpoint_every == 0
                if periodic or self._stop.requested:
                    self.state.epoch_seconds = time.perf_counter() - started
                    self.checkpoint()
                if self._stop.requested:
                    if bar is not None:
                        bar.close()
                    raise self._interrupted()
        seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        sums = (self.epoch_sums / n).tolist()
        return {
            "epoch": epoch + 1,
            "step": self.state.step,
            "beta": 0.0 if deterministic else beta_at(self.config, self.state.step, self.steps_per_epoch),
            "lr": opt.param_groups[0]["lr"],
            "train_loss": sums[0],
            "train_neg_elbo": sums[1],
            "train_reconstruction": -sums[2],
            "train_kl": sums[3],
            "train_seconds": seconds,
            "skipped_steps": self.state.skipped_steps,
        }

    def _interrupted(self) -> "TrainingInterrupted":
        return TrainingInterrupted(
            f"interrupted at epoch {self.state.epoch + 1}, step {self.state.step}; checkpoint saved. Continue with: vaekit train --resume {self.out}"
        )

    def _nonfinite(self, epoch: int, i: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.train.nonfinite == "skip":
            self.state.skipped_steps += 1
            log.warning("non-finite loss at epoch %d step %d: step skipped (%d so far)", epoch + 1, i + 1, self.state.skipped_steps)
            return
        raise TrainingError(
            f"non-finite loss at epoch {epoch + 1}, step {i + 1}; training stopped, the last good checkpoint is kept in {self.out} "
            "(try a lower --lr, --grad-clip, or --nonfinite skip)"
        )

    def _write_metrics(self, row: dict[str, float], writer) -> None:
        with (self.out / runs.METRICS).open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in METRIC_FIELDS])
        if writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    writer.add_scalar(k.replace("_", "/", 1), v, row["epoch"])
            writer.flush()


class TrainingInterrupted(TrainingError):
    """Training was stopped by Ctrl-C (SIGINT) or SIGTERM after a final checkpoint."""


class _StopOnInterrupt:
    """While active, the first SIGINT/SIGTERM only sets ``requested`` (the loop checkpoints and
    stops after the current step); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this step (press Ctrl-C again to abort at once)")

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, leave=True, dynamic_ncols=True, mininterval=0.5)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: the optional extra
        return None
    return SummaryWriter(str(out / "tensorboard"))


def train(config: RunConfig, out: str | Path, *, data: DataSplits | None = None, device: str = "cpu", progress: bool = False) -> runs.Run:
    """Train a new run described by ``config`` into ``out``; returns the loaded best model."""
    trainer = Trainer(config, out, data=data, device=device)
    trainer.start_run()
    return trainer.fit(progress=progress)


def resume(run_dir: str | Path, *, epochs: int | None = None, device: str = "cpu", progress: bool = False) -> runs.Run:
    """Continue the run saved in ``run_dir`` from its last checkpoint (optionally to more epochs)."""
    run_dir = Path(run_dir)
    if not (run_dir / runs.CONFIG).exists():
        raise CheckpointError(f"{run_dir} is not a vaekit run (no {runs.CONFIG})")
    config = RunConfig.from_json_file(run_dir / runs.CONFIG)
    if epochs is not None:
        config.train.epochs = epochs
    trainer = Trainer(config, run_dir, device=device)
    trainer.restore()
    if epochs is not None:
        atomic_write_json(run_dir / runs.CONFIG, config.to_dict())
    return trainer.fit(progress=progress)
