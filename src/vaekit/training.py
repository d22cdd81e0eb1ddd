"""The training loop. Reads top to bottom: data -> model -> optimizer -> epochs of index-sliced
batches -> validation -> metrics and checkpoints. Everything the loop needs to continue after a
stop is in the run directory (see ``vaekit.runs``)."""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import distributed, runs
from vaekit.checkpoint import atomic_write_bytes, atomic_write_json, flatten_optimizer_state, save_tensors, unflatten_optimizer_state
from vaekit.config import RunConfig, validate
from vaekit.corruption import corrupt
from vaekit.data import DataSplits, load_data
from vaekit.data.base import BINARY, UNIT
from vaekit.data.streaming import MappedArray, block_order
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError
from vaekit.evaluation import elbo_terms, posterior_collapse_warning
from vaekit.models import build_model

log = logging.getLogger(__name__)

COLLAPSE_CHECK_EXAMPLES = 2000  # validation examples the end-of-training posterior-collapse check looks at

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
    global_batch: int = 0  # examples per step over all processes, fixed when the run starts (0: saved before there was one)
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


INIT_EXAMPLES = 10_000  # training examples whose mean starts the decoder's output bias


def _init_sample(n: int, seed: int) -> torch.Tensor:
    """A seeded, sorted subset of at most INIT_EXAMPLES indices (sorted: sequential reads from disk)."""
    if n <= INIT_EXAMPLES:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:INIT_EXAMPLES].sort().values


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
        self.world = distributed.init(device)  # one process, unless started by torchrun
        self.device = distributed.local_device(device, self.world)
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
            memmap=config.data.memmap,
        )
        config.model.input_shape = tuple(self.data.shape)
        self.streaming = isinstance(self.data.train.x, MappedArray)  # read from disk batch by batch
        config.data.memmap = self.streaming  # saved resolved, so a resumed run reads its data the same way
        check_data(config, self.data)
        torch.manual_seed(config.train.seed)
        np.random.seed(config.train.seed % 2**32)
        random.seed(config.train.seed)
        self.model = build_model(config.model).to(self.device)
        if config.train.init_decoder_bias:  # a resumed run loads its weights over this
            self.model.init_output_bias(self.data.train.x[_init_sample(len(self.data.train.x), config.train.seed)])
        self.objective = self.model  # the module whose forward is the training loss
        if self.world.distributed:
            unused = self.model.deterministic and any(True for _ in self.model.prior_module.parameters())  # an AE ignores a learned prior
            self.objective = distributed.wrap(self.model, self.device, find_unused_parameters=unused)
            if self.world.rank:
                _seed_rank(config.train.seed, self.world.rank, 0)
        self.loss_terms = _compiled(self._loss_terms) if config.train.compile else self._loss_terms
        if config.train.precision == "bf16" and self.device.type == "cpu" and not _cpu_has_bf16():
            log.warning("this CPU has no bfloat16 matrix instructions (AVX512-BF16 or AMX): --precision bf16 will be slower than fp32")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay, fused=True)
        self.state = TrainState(global_batch=config.train.batch_size * self.world.size)
        self.x_train = self.data.train.x if self.streaming else self.data.train.x.to(self.device)
        self.x_valid = self.data.valid.x if self.streaming else self.data.valid.x.to(self.device)
        self.steps_per_epoch = math.ceil(len(self.x_train) / self.state.global_batch)
        self.epoch_sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, neg_elbo, rec, kl sums
        self._stop = _StopOnInterrupt()

    # ----- run directory -------------------------------------------------------------------
    def start_run(self) -> None:
        """Create the run directory: rank 0 writes, every process learns whether that worked."""
        distributed.on_main(self._create_run)

    def _create_run(self) -> None:
        try:
            (self.out / "figures").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {self.out}: {exc.strerror}") from None
        if (self.out / runs.STATE).exists():
            raise ConfigError(f"{self.out} already holds a run; use --resume {self.out} to continue it or choose another --out")
        try:
            atomic_write_json(self.out / runs.CONFIG, self.config.to_dict())
            atomic_write_json(self.out / runs.DATA_INFO, self.data.info)
            self._write_metrics_rows([METRIC_FIELDS])
        except OSError as exc:
            raise ConfigError(f"cannot write to run directory {self.out}: {exc.strerror or exc}") from None

    def checkpoint(self, best: bool = False) -> None:
        """Save where training stands. Every process calls this: the epoch's running sums are added
        up over the processes, then rank 0 writes (``_write_checkpoint``)."""
        sums = distributed.all_sum(self.epoch_sums.clone()) if self.world.distributed else self.epoch_sums
        distributed.on_main(self._write_checkpoint, best, sums)

    def _write_checkpoint(self, best: bool, epoch_sums: torch.Tensor) -> None:
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
                ("optimizer", {**opt_tensors, **rng_tensors, "epoch_sums": epoch_sums}, None),
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
        for leftover in (*folder.glob(".*.tmp"), *self.out.glob(".*.tmp")):  # temp files of a write a kill cut short
            leftover.unlink(missing_ok=True)

    def restore(self) -> None:
        """Load the last checkpoint of ``self.out`` (weights, optimizer, RNG, schedule, step). A run
        stopped before its first checkpoint starts again from the beginning, which gives the same
        numbers: everything before the first step is a function of the config."""
        if not (self.out / runs.STATE).exists() and not any((self.out / runs.CHECKPOINTS).glob("*.safetensors")):
            log.warning("%s has no checkpoint yet: training it from the beginning", self.out)
            distributed.on_main(self._create_run)
            return
        raw = runs.load_state(self.out)
        try:
            self.state = _train_state(raw)
            self.state.global_batch = self.state.global_batch or self.config.train.batch_size  # saved before: one process
            self.model.load_state_dict(runs.checkpoint_tensors(self.out, raw, "last"))
            tensors = runs.checkpoint_tensors(self.out, raw, "optimizer")
            opt = {k: v for k, v in tensors.items() if k.startswith("state.")}
            fresh = [dict(g) for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(unflatten_optimizer_state(opt, raw["optimizer"]))
            _match_parameter_layout(self.optimizer)
            _check_optimizer(self.optimizer, fresh)
            _set_rng_state(tensors, raw["rng"])
            saved_sums = tensors["epoch_sums"].to(self.device, torch.float64)  # summed over the processes that saved them
            if saved_sums.shape != (4,):
                raise ValueError(f"epoch_sums has shape {tuple(saved_sums.shape)}, expected (4,)")
            self.epoch_sums = saved_sums if self.world.is_main else torch.zeros_like(saved_sums)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint in {self.out} is damaged or from another model: {exc}") from None
        if self.world.rank:
            _seed_rank(self.config.train.seed, self.world.rank, self.state.step)
        self.steps_per_epoch = math.ceil(len(self.x_train) / self.state.global_batch)
        if self.world.distributed and self.world.is_main:
            log.info("resuming at step %d: global batch %d over %d processes", self.state.step, self.state.global_batch, self.world.size)
        distributed.on_main(self._truncate_metrics, self.state.epoch)

    def _truncate_metrics(self, epochs: int) -> None:
        """Keep the header and the first ``epochs`` rows of metrics.csv (rows written after the
        checkpoint being resumed are dropped); replaced atomically, so a kill here loses nothing."""
        path = self.out / runs.METRICS
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
        atomic_write_bytes(self.out / runs.METRICS, text.getvalue().encode("utf-8"))

    # ----- the loop ---------------------------------------------------------------------
    def fit(self, progress: bool = True) -> runs.Run:
        """Train until ``epochs`` (or early stopping); Ctrl-C stops cleanly after the current step
        with a checkpoint, then raises ``TrainingInterrupted`` saying how to resume."""
        t = self.config.train
        if t.warmup_epochs > t.epochs:
            log.warning("KL warm-up (%d epochs) is longer than training (%d epochs): beta never reaches %g", t.warmup_epochs, t.epochs, t.beta)
        progress = progress and self.world.is_main
        writer = _tensorboard(self.out) if self.world.is_main else None
        self.model.train()
        try:
            with _StopOnInterrupt() as self._stop:
                while self.state.epoch < t.epochs:
                    if not self._epoch(progress, writer):
                        break
                    if distributed.any_rank(self._stop.requested):
                        raise self._interrupted()
        finally:
            if writer is not None:
                writer.close()
        if self.world.is_main:
            collapse = posterior_collapse_warning(self.model, self.x_valid[:COLLAPSE_CHECK_EXAMPLES])
            if collapse:
                log.warning("%s", collapse)
        return runs.load(self.out)

    def _epoch(self, progress: bool, writer) -> bool:
        """One epoch: train, validate, log, checkpoint. Returns False when training should stop early."""
        t = self.config.train
        epoch = self.state.epoch
        train_row = self._train_epoch(epoch, progress)
        valid_start = time.perf_counter()
        x_valid = self._share(self.x_valid)  # each process validates its share; the sums are added up
        valid = elbo_terms(self.model, x_valid, batch_size=max(t.batch_size, 1000), seed=t.seed)
        beta = 0.0 if self.model.deterministic else t.beta
        sums = torch.stack([(beta * valid.kl - valid.reconstruction).sum(), valid.neg_elbo.sum(), valid.reconstruction.sum(), valid.kl.sum()])
        loss, neg_elbo, rec, kl = (distributed.all_sum(sums.double()) / len(self.x_valid)).tolist()
        row = {
            **train_row,
            "valid_loss": loss,
            "valid_neg_elbo": neg_elbo,
            "valid_reconstruction": -rec,
            "valid_kl": kl,
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
        distributed.on_main(self._write_metrics, row, writer)
        self.checkpoint(best=improved)
        if self.world.is_main:
            log.info("epoch %d: train loss %.3f, valid loss %.3f (neg ELBO %.3f)", epoch + 1, row["train_loss"], row["valid_loss"], row["valid_neg_elbo"])
        if t.patience and self.state.bad_epochs >= t.patience:
            log.info("early stopping: no better validation loss for %d epochs (best %.3f at epoch %d)", t.patience, self.state.best_valid, self.state.best_epoch)
            return False
        return True

    def _share(self, x):
        """This process's contiguous share of ``x`` (a tensor or a ``MappedArray``): all of it for one process."""
        if not self.world.distributed:
            return x
        n, w, r = len(x), self.world.size, self.world.rank
        return x.narrow(0, n * r // w, n * (r + 1) // w - n * r // w)

    def _train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        t = self.config.train
        opt, x = self.optimizer, self.x_train
        n, bs = len(x), self.state.global_batch  # a step takes bs examples, split over the processes
        world, rank, sharded = self.world.size, self.world.rank, self.world.distributed
        order = block_order(x, bs, t.seed, epoch) if self.streaming else data_order(n, t.seed, epoch).to(self.device)
        deterministic = self.model.deterministic
        bar = _progress(self.steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress, initial=self.state.step_in_epoch)
        refresh = max(1, self.steps_per_epoch // 20)
        started = time.perf_counter() - self.state.epoch_seconds
        params = [p for p in self.model.parameters()]
        check_every_step = self.device.type == "cpu" or t.nonfinite == "skip"  # a check is a host sync on a GPU
        vote = distributed.StopVote() if sharded else None  # all processes stop at the same step
        for i in range(self.state.step_in_epoch, self.steps_per_epoch):
            start, m = i * bs, min(bs, n - i * bs)  # the step's global batch: order[start : start + m]
            if sharded:  # this process's contiguous part of it; an empty part stands in one example at weight 0
                lo, hi = start + m * rank // world, start + m * (rank + 1) // world
                idx, weight = (order[lo:hi], world / m) if hi > lo else (order[start : start + 1], 0.0)
            else:
                idx, weight = order[start : start + bs], 1.0
            target = x[idx] if self.streaming else x.index_select(0, idx)  # (B, *shape)
            if self.streaming:
                target = target.to(self.device, non_blocking=True)
            if self.config.data.dynamic_binarize:
                target = torch.bernoulli(target)
            inputs = corrupt(target, t.noise, t.noise_level)
            beta = beta_at(self.config, self.state.step, self.steps_per_epoch)
            per_example, rec, kl = self.loss_terms(inputs, target, torch.tensor(beta) if t.compile else beta)
            # DDP averages gradients over the processes; so scaled, that is the mean over the global batch
            loss = per_example.sum() * weight if sharded else per_example.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            health = loss  # finite iff the loss and every gradient are
            check = check_every_step or (i + 1) % refresh == 0
            grads = [p.grad for p in params if p.grad is not None] if check else []
            if t.grad_clip:
                health = loss + torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            elif check:  # the all-reduced gradients' sum: every process takes the same decision
                health = loss + _gradient_sum(grads)
            if check and not torch.isfinite(health) and not _all_finite(loss, grads):
                self._nonfinite(epoch, i)
                continue
            opt.step()
            if weight:
                with torch.no_grad():
                    self.epoch_sums += torch.stack((per_example, kl - rec, rec, kl)).sum(1, dtype=torch.float64)
            self.state.step += 1
            self.state.step_in_epoch = i + 1
            if bar is not None and (i + 1) % refresh == 0:
                s = (self.epoch_sums / ((i + 1) * bs / world)).tolist()
                bar.set_postfix(loss=f"{s[0]:.2f}", rec=f"{-s[2]:.2f}", kl=f"{s[3]:.2f}", refresh=False)
                bar.update(refresh)
            if self.state.step_in_epoch < self.steps_per_epoch:  # the epoch's end checkpoints anyway
                periodic = t.checkpoint_every and self.state.step % t.checkpoint_every == 0
                stop = vote.poll(self._stop.requested) if sharded else self._stop.requested
                if periodic or stop:
                    self.state.epoch_seconds = time.perf_counter() - started
                    self.checkpoint()
                if stop:
                    if bar is not None:
                        bar.close()
                    raise self._interrupted()
        seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        sums = (distributed.all_sum(self.epoch_sums) / n).tolist()
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

    def _loss_terms(self, inputs: torch.Tensor, target: torch.Tensor, beta: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's objective: per-example (loss, reconstruction, KL), each (B,)."""
        t = self.config.train
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
            terms = self.objective(inputs, target, beta=beta, n_samples=t.n_samples, iw=t.iw)
        return terms.loss, terms.reconstruction, terms.kl

    def _interrupted(self) -> "TrainingInterrupted":
        return TrainingInterrupted(
            f"interrupted at epoch {self.state.epoch + 1}, step {self.state.step}; checkpoint saved. Continue with: vaekit train --resume {self.out}"
        )

    def _nonfinite(self, epoch: int, i: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.train.nonfinite == "skip":
            self.state.skipped_steps += 1
            log.warning("non-finite loss or gradient at epoch %d step %d: step skipped (%d so far)",
                        epoch + 1, i + 1, self.state.skipped_steps)
            return
        raise TrainingError(
            f"non-finite loss or gradient at epoch {epoch + 1}, step {i + 1}; training stopped, "
            f"the last good checkpoint is kept in {self.out} "
            "(try a lower --lr, --grad-clip, or --nonfinite skip)"
        )

    def _write_metrics(self, row: dict[str, float], writer) -> None:
        try:
            with (self.out / runs.METRICS).open("a", newline="") as f:
                csv.writer(f).writerow([_fmt(row.get(k, "")) for k in METRIC_FIELDS])
        except OSError as exc:
            where = self.out / runs.METRICS
            raise CheckpointError(f"could not write {where}: {exc.strerror or exc}; the previous checkpoint is kept") from None
        if writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    writer.add_scalar(k.replace("_", "/", 1), v, row["epoch"])
            writer.flush()


def _train_state(raw: dict[str, Any]) -> TrainState:
    """The ``TrainState`` saved in state.json, each field checked against its type (a hand-edited
    or hostile file gets a clear error here, not a crash inside the loop)."""
    defaults = TrainState()
    values = {}
    for name in TrainState.__dataclass_fields__:
        if name not in raw:
            continue
        value, expected = raw[name], type(getattr(defaults, name))
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = isinstance(value, dict) if expected is dict else number and (expected is float or isinstance(value, int))
        if not ok or (expected is int and value < 0):
            wanted = "non-negative integer" if expected is int else expected.__name__
            raise CheckpointError(f"state.json is damaged: {name} is {value!r}, expected a {wanted}")
        values[name] = value
    return TrainState(**values)


def _check_optimizer(optimizer: torch.optim.Optimizer, fresh: list[dict[str, Any]]) -> None:
    """Raise ``ValueError`` unless the loaded optimizer state fits the model: each setting of the
    same kind as a fresh optimizer's, each moment tensor the shape of its parameter."""
    def kind(v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            return type(v)
        return "number" if isinstance(v, (int, float)) else "list" if isinstance(v, (list, tuple)) else type(v)

    for group, before in zip(optimizer.param_groups, fresh):
        for key, value in before.items():
            if kind(group.get(key)) != kind(value):
                raise ValueError(f"optimizer setting {key} is {group.get(key)!r}")
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != p.shape:
                    raise ValueError(f"optimizer {name} has shape {tuple(value.shape)}, its parameter {tuple(p.shape)}")


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


def _seed_rank(seed: int, rank: int, step: int) -> None:
    """Random streams of their own for the processes after the first (latent samples, dynamic
    binarization, input noise), from (seed, rank, step) alone, so a resumed process gets one too."""
    s = (seed * 1_000_003 + rank * 7_919 + step * 104_729) % 2**63
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each parameter's optimizer state the parameter's memory layout. Checkpoints store
    tensors contiguous; a channels-last convolution kernel's Adam moments must be channels-last
    again, or the fused update (which walks memory in order) would pair the wrong entries."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _cpu_has_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _gradient_sum(grads: list[torch.Tensor]) -> torch.Tensor:
    """The sum of every gradient entry (0-d): non-finite if any entry is, and cheaper than a norm.
    (A sum of finite entries can still overflow; ``_all_finite`` settles that rare case.)"""
    return torch.stack([g.sum() for g in grads]).sum() if grads else torch.zeros(())


def _all_finite(loss: torch.Tensor, grads: list[torch.Tensor]) -> bool:
    return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads)


def _compiled(fn):
    """``fn`` compiled by ``torch.compile`` (shapes static: one graph per batch size), its
    compile failures turned into a one-line ``TrainingError``. The first call runs eagerly: it
    fills lazy caches that dynamo cannot trace without a graph break (``torch.distributions``'
    KL lookup), so that the compiled function is one graph."""
    import torch._dynamo  # for its exception types

    compiled = torch.compile(fn, dynamic=False)
    calls = 0

    def call(*args):
        nonlocal calls
        calls += 1
        if calls == 1:
            return fn(*args)
        try:
            return compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            inner = exc.inner_exception
            reason = f"{type(inner).__name__}: {str(inner).strip().splitlines()[0] if str(inner).strip() else ''}".rstrip(": ")
            raise TrainingError(f"torch.compile failed ({reason}); train without --compile") from None

    return call


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, leave=False, dynamic_ncols=True, mininterval=0.5)  # the epoch's log line stays


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
    if not (run_dir / runs.CONFIG).is_file():  # not .exists(): a FIFO or /dev/zero there would hang the read
        raise CheckpointError(f"{run_dir} is not a vaekit run (no {runs.CONFIG})")
    config = RunConfig.from_json_file(run_dir / runs.CONFIG)
    if epochs is not None:
        config.train.epochs = epochs
    trainer = Trainer(config, run_dir, device=device)
    trainer.restore()
    if epochs is not None:
        distributed.on_main(atomic_write_json, run_dir / runs.CONFIG, config.to_dict())
    return trainer.fit(progress=progress)
