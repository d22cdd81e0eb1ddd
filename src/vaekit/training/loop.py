"""The training loop.

``Trainer.__init__`` sets up (processes, data, model, objective, optimizers, batches, run directory);
``Trainer.fit`` is the algorithm: for each epoch, the objective's steps (``Objective.step``), validation,
a checkpoint (``vaekit.training.snapshot``, written by ``vaekit.runs.RunWriter``) and the early stop.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import vaekit.distributed as distributed
from vaekit.config import RunConfig
from vaekit.data import DataSplits
from vaekit.data.base import Batch
from vaekit.data.batches import TrainingBatches
from vaekit.errors import CheckpointError, TrainingError
from vaekit.evaluation import elbo_terms
from vaekit.examples import data_context, for_model
from vaekit.models import build_model, check_parts
from vaekit.objectives import NamedTerms, StepContext, objective_from_config
from vaekit.runs import Run, RunWriter, TrainState, load, metric_fields
from vaekit.settings import check
from vaekit.threads import subnormals_flushed, use_threads
from vaekit.training import setup, snapshot
from vaekit.training.average import WeightAverage
from vaekit.training.health import DeviceChecks, GradientHealth, checks_on_device, normalize_gradients
from vaekit.training.sums import RunningSums

log = logging.getLogger(__name__)


def beta_at(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """β rises linearly from 0 to ``beta`` over ``warmup_epochs`` (per step), then stays."""
    t = config.train
    if t.warmup_epochs == 0:
        return t.beta
    return t.beta * min(1.0, step / (t.warmup_epochs * steps_per_epoch))


class TrainingInterrupted(TrainingError):
    """Training was stopped by Ctrl-C (SIGINT) or SIGTERM after a final checkpoint."""


class Trainer:
    """One training run: set up in ``__init__``, trained by ``fit``.

    config: the run's settings (left as they are; ``self.config`` is the copy resolved from the data).
    out: the run directory (None: train in memory, keeping the best weights there; no checkpoints).
    data: the splits to train on (default: loaded as ``config.data`` says).
    """

    def __init__(self, config: RunConfig, out: str | Path | None, data: DataSplits | None = None, device: str | torch.device = "cpu"):
        check(config)
        check_parts(config.model)
        self.world = distributed.init(device)  # one process, unless started by torchrun
        self.device = distributed.local_device(device, self.world)
        use_threads(config.train.threads, config.model)  # 0: vaekit's measured default (vaekit.threads)
        self.data = setup.kept_labels(config, data if data is not None else setup.load_splits(config))
        self.config = config = setup.resolved(config, self.data)
        t = config.train
        setup.seed_all(t.seed)
        self.model = build_model(config.model).to(self.device)
        if t.init_decoder_bias:  # a resumed run loads its weights over this
            self.model.init_output_bias(self.data.train.x[setup.init_sample(len(self.data.train.x), t.seed)])
        self.objective = objective_from_config(config).to(self.device)
        self.modules = self.objective.trained_modules()  # trained beside the model, each with an optimizer
        self.forward: nn.Module = setup.Forward(self.model, self.objective)
        if self.world.distributed:
            unused = bool(self.modules) or (self.model.deterministic and any(True for _ in self.model.prior_module.parameters()))
            self.forward = distributed.wrap(self.forward, self.device, find_unused_parameters=unused)
            if self.world.rank:
                setup.seed_rank(t.seed, self.world.rank, 0)
        setup.warn_if_slow_precision(t.precision, self.device)
        self._terms = setup.compiled(self._reported) if t.compile else self._reported
        self._beta = torch.zeros((), device=self.device)  # the compiled step's β, set in place (no host-to-device copy)
        adam = dict(lr=t.lr, betas=t.adam_betas, eps=t.adam_eps, weight_decay=t.weight_decay, fused=True)
        trained = {snapshot.MODEL: self.model, **self.modules}
        self.optimizers = {name: torch.optim.Adam(m.parameters(), **adam) for name, m in trained.items()}
        self.average = WeightAverage(self.model, t.ema) if t.ema else None
        checks = DeviceChecks(self.device, sticky=t.nonfinite == "stop") if checks_on_device(self.device) else None
        self.health = GradientHealth(t.grad_clip, checks)
        self.step_context = StepContext(
            self._loss, self.model, self.optimizers, self.health, self._prepare, self._after_model_step, guarded=self.health.guarded
        )
        self.state = TrainState(global_batch=t.batch_size * self.world.size)
        self.batches = self._batches()
        self.valid = for_model(self.model, self.data.valid, "the validation split").to(self.device)  # memory-mapped x stays on disk
        self.sums = RunningSums(self.objective.terms, self.device)
        self.out = None if out is None else Path(out)
        fields = metric_fields(self.objective.terms)
        self.writer = RunWriter(self.out, fields) if self.out is not None and self.world.is_main else None
        self.rows: list[dict[str, Any]] = []  # metrics of a run trained in memory
        self.best_weights: dict[str, torch.Tensor] | None = None  # the best weights of a run trained in memory
        self._stop = setup.StopOnInterrupt()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The model's optimizer."""
        return self.optimizers[snapshot.MODEL]

    def _batches(self) -> TrainingBatches:
        context = data_context(self.model, self.data.train, "the training split", keep_unlabelled=True)  # -1: the objective sums y out
        return setup.training_batches(self.config, self.data.train, context, self.state.global_batch, self.device, self.world)

    # ----- the loop -------------------------------------------------------------------------
    def fit(self, progress: bool = True) -> Run:
        """Train until ``epochs`` (or early stopping); Ctrl-C stops cleanly after the current step
        with a checkpoint, then raises ``TrainingInterrupted`` saying how to resume. Subnormal floats
        are flushed to zero meanwhile (``vaekit.threads``)."""
        with subnormals_flushed():
            return self._fit(progress)

    def _fit(self, progress: bool) -> Run:
        t = self.config.train
        if t.warmup_epochs > t.epochs:
            log.warning(
                "KL warm-up (%d epochs) is longer than training (%d epochs): beta never reaches %g", t.warmup_epochs, t.epochs, t.beta
            )
        if self.out is not None:
            distributed.on_main(lambda: self.writer.lock())  # held while this process writes the run; released when fit returns or raises
        board = setup.tensorboard(self.out) if self.writer is not None else None
        self.model.train()
        try:
            with setup.StopOnInterrupt() as self._stop:
                while self.state.epoch < t.epochs:
                    row = self.train_epoch(self.state.epoch, progress and self.world.is_main)
                    row.update(self.validate())
                    improved = self._end_epoch(row)
                    self._log_epoch(row, board)
                    self.checkpoint(best=improved)
                    if t.patience and self.state.bad_epochs >= t.patience:
                        log.info(
                            "early stopping: no better validation %s for %d epochs (best %.4g at epoch %d)",
                            self.objective.monitor,
                            t.patience,
                            self.state.best_valid,
                            self.state.best_epoch,
                        )
                        break
                    if distributed.any_rank(self._stop.requested):
                        raise self._interrupted()
        finally:
            if board is not None:
                board.close()
            if self.writer is not None:
                self.writer.close()
        return self._result()

    def train_epoch(self, epoch: int, progress: bool = False) -> dict[str, float]:
        """The steps of one epoch (from ``state.step_in_epoch`` on); returns its metrics row."""
        t = self.config.train
        bar = setup.progress_bar(self.batches.steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress, initial=self.state.step_in_epoch)
        refresh = max(1, self.batches.steps_per_epoch // 20)
        started = time.perf_counter() - self.state.epoch_seconds
        check_every_step = self.device.type == "cpu" or t.nonfinite == "skip"  # host checks: a check is a host sync on a GPU
        checks = self.health.checks  # device checks: read every `refresh` steps
        self._checked_to = self.state.step_in_epoch
        vote = distributed.StopVote() if self.world.distributed else None  # all processes stop at the same step
        for i, batch in self.batches.epoch(epoch, start=self.state.step_in_epoch):
            beta = beta_at(self.config, self.state.step, self.batches.steps_per_epoch)
            self.health.check = check_every_step or (i + 1) % refresh == 0
            self.step_context.step = self.state.step
            terms = self._step(batch, self._beta.fill_(beta) if t.compile else beta)  # compiled: a device tensor, one graph for every β
            if terms is None:  # a host check found it not finite: skipped (its batch used up), or training stops
                self._nonfinite(epoch, i)
            elif batch.weight:
                self.sums.add(terms.reported(), None if checks is None else checks.applied)
            self.state.step, self.state.step_in_epoch = self.state.step + 1, i + 1
            if checks is not None and (i + 1) % refresh == 0:
                self._read_checks(epoch, i + 1)
            if bar is not None and (i + 1) % refresh == 0:
                means = self.sums.means((i + 1) * self.state.global_batch / self.world.size)
                bar.set_postfix({name: f"{v:.2f}" for name, v in means.items()}, refresh=False)
                bar.update(refresh)
            if self.state.step_in_epoch < self.batches.steps_per_epoch:  # the epoch's end checkpoints anyway
                stop = vote.poll(self._stop.requested) if vote is not None else self._stop.requested
                if (t.checkpoint_every and self.state.step % t.checkpoint_every == 0) or stop:
                    self._read_checks(epoch, i + 1)  # never a checkpoint past a step that was not finite
                    self.state.epoch_seconds = time.perf_counter() - started
                    self.checkpoint()
                if stop:
                    if bar is not None:
                        bar.close()
                    raise self._interrupted()
        self._read_checks(epoch, self.state.step_in_epoch)
        seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        means = (distributed.all_sum(self.sums.values) / len(self.batches)).tolist()
        deterministic = self.model.deterministic
        row = {
            "epoch": epoch + 1,
            "step": self.state.step,
            "beta": 0.0 if deterministic else beta_at(self.config, self.state.step, self.batches.steps_per_epoch),
        }
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row |= {f"train_{name}": v for name, v in zip(self.sums.names, means)}
        return row | {"train_seconds": seconds, "skipped_steps": self.state.skipped_steps}

    def validate(self) -> dict[str, float]:
        """The training objective (final β) on the validation split, of the averaged weights with
        ``ema``; each process validates a share and the sums are added."""
        started = time.perf_counter()
        valid = distributed.share(self.world, self.valid)
        with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
            terms = elbo_terms(
                self.model,
                valid,
                objective=self.objective,
                batch_size=max(self.config.train.batch_size, 1000),
                seed=self.config.train.seed,
            )
        reported = terms.reported()
        sums = torch.stack([v.sum() for v in reported.values()])
        means = (distributed.all_sum(sums.double()) / len(self.valid)).tolist()
        return {f"valid_{name}": v for name, v in zip(reported, means)} | {"valid_seconds": time.perf_counter() - started}

    # ----- one step's pieces (the objective's step calls them through its StepContext) -------
    def _step(self, batch: Batch, beta: float | torch.Tensor):
        """The objective's training step on ``batch``, bracketed by the device checks where the run has them."""
        checks = self.health.checks
        if checks is not None:
            checks.begin()
        terms = self.objective.step(self.step_context, batch, beta)
        if checks is not None:
            checks.end()
        return terms

    def _reported(self, beta, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.train.precision == "bf16"):
            return self.forward(beta, batch)

    def _loss(self, batch: Batch, beta: float | torch.Tensor) -> NamedTerms:
        """The objective's terms on ``batch`` (compiled and under autocast as the run asks)."""
        reported = dict(self._terms(beta, batch))
        return NamedTerms(reported.pop("loss"), reported)

    def _prepare(self) -> None:
        if self.config.train.normalize_grads:
            normalize_gradients(self.model.parameters())

    def _after_model_step(self) -> None:
        if self.average is not None:
            checks = self.health.checks
            self.average.update(self.state.step, None if checks is None else checks.applied)

    # ----- the epoch's end ------------------------------------------------------------------
    def _end_epoch(self, row: dict[str, Any]) -> bool:
        """Count the epoch, update the early-stopping and plateau counts and cut the learning rate
        when due; whether the validation loss improved."""
        t, s = self.config.train, self.state
        valid = row[f"valid_{self.objective.monitor}"]  # the validation loss, or the objective's own measure (M2: the error)
        improved = math.isfinite(valid) and valid < s.best_valid
        s.epoch, s.step_in_epoch, s.epoch_seconds = s.epoch + 1, 0, 0.0
        s.bad_epochs = 0 if improved else s.bad_epochs + 1
        s.lr_bad_epochs = 0 if improved else s.lr_bad_epochs + 1
        if improved:
            s.best_valid, s.best_epoch = valid, s.epoch
        if t.lr_patience and s.lr_bad_epochs >= t.lr_patience:
            s.lr_bad_epochs = 0
            setup.cut_lr(self.optimizer, t.lr_factor, t.min_lr, t.lr_patience)
        self.sums.zero()
        return improved

    def _log_epoch(self, row: dict[str, Any], board) -> None:
        if self.out is None:
            self.rows.append(row)
        else:
            distributed.on_main(lambda: self.writer.append_metrics(row))  # every process takes part; rank 0 writes
            if board is not None:
                for k, v in row.items():
                    if k not in ("epoch", "step"):
                        board.add_scalar(k.replace("_", "/", 1), v, row["epoch"])
                board.flush()
        if self.world.is_main:
            log.info(
                "epoch %d: train loss %.3f, valid loss %.3f (neg ELBO %.3f)",
                row["epoch"],
                row["train_loss"],
                row["valid_loss"],
                row.get("valid_neg_elbo", math.nan),
            )

    # ----- the run directory --------------------------------------------------------------
    def start_run(self) -> None:
        """Create the run directory: rank 0 writes, every process learns whether that worked."""
        if self.out is not None:
            distributed.on_main(lambda: self.writer.create(self.config, self.data.info))
        if self.world.is_main:
            setup.warn_if_no_code_length(self.config, self.data)

    def restore(self) -> None:
        """Load the last checkpoint (weights, optimizers, RNG, schedule, step, running sums). A run
        stopped before its first checkpoint starts again from the beginning, which gives the same
        numbers: everything before the first step is a function of the config."""
        distributed.on_main(lambda: self.writer.lock())  # a refusal reaches every process
        if not RunWriter(self.out).has_checkpoint():
            log.warning("%s has no checkpoint yet: training it from the beginning", self.out)
            distributed.on_main(lambda: self.writer.create(self.config, self.data.info))
            return
        saved = RunWriter(self.out).read_checkpoint()  # every process reads it
        try:
            self.state = TrainState.from_json(saved.state)
            self.state.global_batch = self.state.global_batch or self.config.train.batch_size  # saved before: one process
            snapshot.unpack(saved, self.model, self.average, self.optimizers, self.modules, self.sums, keep_sums=self.world.is_main)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint in {self.out} is damaged or from another model: {exc}") from None
        if self.world.rank:
            setup.seed_rank(self.config.train.seed, self.world.rank, self.state.step)
        self.batches = self._batches()
        if self.world.distributed and self.world.is_main:
            log.info("resuming at step %d: global batch %d over %d processes", self.state.step, self.state.global_batch, self.world.size)
        distributed.on_main(lambda: self.writer.truncate_metrics(self.state.epoch))

    def checkpoint(self, best: bool = False) -> None:
        """Save where training stands. Every process calls this: the epoch's running sums are added
        up over the processes, then rank 0 writes. In memory, only the best weights are kept."""
        if self.out is None:
            if best:
                self.best_weights = copy.deepcopy(self._weights())
            return
        sums = distributed.all_sum(self.sums.values.clone()) if self.world.distributed else self.sums.values
        distributed.on_main(self._write_checkpoint, best, sums)

    def _write_checkpoint(self, best: bool, sums: torch.Tensor) -> None:
        weights, tensors, extra = snapshot.pack(self.model, self.average, self.optimizers, self.modules, self.sums, sums)
        self.state = self.writer.write_checkpoint(
            self.state, weights, tensors, extra, {"format": "vaekit", "config": self.config.to_json()}, best=best
        )

    def _weights(self) -> dict[str, torch.Tensor]:
        """The weights the run is validated, kept and used with: the model's, or their average (``ema``)."""
        return self.model.state_dict() if self.average is None else self.average.state_dict(self.model)

    def _result(self) -> Run:
        """The trained run with its best weights (loaded from the run directory, or kept in memory)."""
        if self.world.is_main:
            with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
                setup.warn_if_collapsed(self.model, self.valid)
        if self.out is not None:
            return load(self.out)
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()
        return Run(path=None, config=self.config, model=self.model, data_info=self.data.info, rows=self.rows)

    def _interrupted(self) -> TrainingInterrupted:
        return TrainingInterrupted(
            f"interrupted at epoch {self.state.epoch + 1}, step {self.state.step}; checkpoint saved. "
            f"Continue with: vaekit train --resume {self.out}"
        )

    def _nonfinite(self, epoch: int, i: int) -> None:
        """Step ``i`` of epoch ``epoch`` was not finite (a host check): skipped, or training stops."""
        if self.config.train.nonfinite == "skip":
            self.state.skipped_steps += 1
            log.warning(
                "non-finite loss or gradient at epoch %d step %d: step skipped (%d so far)", epoch + 1, i + 1, self.state.skipped_steps
            )
            return
        raise self._nonfinite_error(epoch, i)

    def _read_checks(self, epoch: int, done: int) -> None:
        """Read the device checks of the epoch's steps since the last read, up to step ``done``: the
        skipped ones counted, or training stopped at the first that was not finite (none of it applied)."""
        checks = self.health.checks
        if checks is None:
            return
        first_bad, skipped = checks.read()
        if first_bad >= 0 and self.config.train.nonfinite == "stop":
            raise self._nonfinite_error(epoch, self._checked_to + first_bad)
        if skipped:
            self.state.skipped_steps += skipped
            log.warning(
                "non-finite loss or gradient in %d of steps %d-%d of epoch %d: skipped (%d so far)",
                skipped, self._checked_to + 1, done, epoch + 1, self.state.skipped_steps,
            )  # fmt: skip
        self._checked_to = done

    def _nonfinite_error(self, epoch: int, i: int) -> TrainingError:
        kept = f"the last good checkpoint is kept in {self.out}" if self.out is not None else "no checkpoint is written in memory"
        return TrainingError(
            f"non-finite loss or gradient at epoch {epoch + 1}, step {i + 1}; training stopped, {kept} "
            "(try a lower --lr, --grad-clip, or --nonfinite skip)"
        )
