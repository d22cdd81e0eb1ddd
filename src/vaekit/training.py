"""The training loop.

``Trainer.__init__`` sets up (processes, data, model, optimizer, batches, run directory);
``Trainer.fit`` is the algorithm: for each epoch, steps (loss, backward, check, step), then
validation on the training objective, a checkpoint and the early-stopping test. Everything needed
to continue after a stop is in the run directory, written by ``vaekit.runs.RunWriter``; batches
come from ``vaekit.data.batches.TrainingBatches``; the objective is ``vaekit.objectives.elbo``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vaekit.distributed as distributed
from vaekit.checkpoint import flatten_optimizer_state, load_optimizer_state, rng_state, set_rng_state
from vaekit.config import RunConfig, validate
from vaekit.data import DataSplits, load_data
from vaekit.data.base import BINARY, UNIT
from vaekit.data.batches import TrainingBatches
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError
from vaekit.evaluation import elbo_terms, posterior_collapse_warning
from vaekit.models import CONDITIONS, ENCODERS, LIKELIHOODS, POSTERIORS, build_model, check_parts
from vaekit.models.condition import data_context
from vaekit.runs import Run, RunWriter, TrainState, load, read_config

log = logging.getLogger(__name__)

RAW = "raw."  # the prefix of the raw weights in the optimizer file of a run that averages its weights (``ema``)
COLLAPSE_CHECK_EXAMPLES = 2000  # validation examples the end-of-training posterior-collapse check looks at
INIT_EXAMPLES = 10_000  # training examples whose mean starts the decoder's output bias


def beta_at(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """β rises linearly from 0 to ``beta`` over ``warmup_epochs`` (per step), then stays."""
    t = config.train
    if t.warmup_epochs == 0:
        return t.beta
    return t.beta * min(1.0, step / (t.warmup_epochs * steps_per_epoch))


def check_data(config: RunConfig, data: DataSplits) -> None:
    """Refuse data that the model or likelihood cannot explain, with a one-line reason."""
    if LIKELIHOODS[config.model.likelihood].support == "unit" and data.value_range not in (BINARY, UNIT):
        raise DataError(
            f"the {config.model.likelihood} likelihood needs data in [0, 1], but {config.data.source} has values outside it; "
            "use --likelihood gaussian (or gaussian-learned)"
        )
    if config.data.dynamic_binarize and data.value_range not in (BINARY, UNIT):
        raise DataError("dynamic binarization needs data in [0, 1]")
    if ENCODERS[config.model.arch].needs_images and not data.is_image:
        raise ConfigError(f"a {config.model.arch} model needs image data, {config.data.source} has shape {data.shape}; use --arch mlp")
    if config.model.condition != "none":
        k = CONDITIONS[config.model.condition].context_dim(data, config.data.source)
        if config.model.context_dim not in (0, k):
            raise ConfigError(f"the model was built for a context of {config.model.context_dim}, but {config.data.source} gives {k}")
    if config.train.batch_size > len(data.train):
        raise ConfigError(f"batch size {config.train.batch_size} is larger than the training set ({len(data.train)} examples)")


class WeightAverage:
    """An exponential moving average of a module's floating-point parameters (Polyak averaging):
    after step n, avg <- avg + (1 − d_n)(θ − avg) with d_n = min(decay, (1 + n) / (10 + n)), a
    function of the step alone, so a resumed run averages as an uninterrupted one."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.names = [name for name, p in module.named_parameters() if p.is_floating_point()]
        self.params = [p for name, p in module.named_parameters() if p.is_floating_point()]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the parameters after optimizer step ``step`` (0 for the first)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)

    def state_dict(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``module.state_dict()`` with the averaged parameters in place of the raw ones."""
        averaged = dict(zip(self.names, self.average))
        return {k: averaged.get(k, v) for k, v in module.state_dict().items()}

    @torch.no_grad()
    def load(self, weights: dict[str, torch.Tensor]) -> None:
        """Take the averaged parameters from a state dict written by ``state_dict``."""
        for avg, name in zip(self.average, self.names):
            avg.copy_(weights[name])

    @contextlib.contextmanager
    def swapped_in(self):
        """The module's parameters hold the average inside the block, their own values again after it."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)


class Trainer:
    """One training run: set up in ``__init__``, trained by ``fit``.

    out: the run directory (None: train in memory, keeping the best weights there; no checkpoints).
    data: the splits to train on (default: loaded as ``config.data`` says).
    """

    def __init__(self, config: RunConfig, out: str | Path | None, data: DataSplits | None = None, device: str | torch.device = "cpu"):
        validate(config)
        check_parts(config.model)
        t = config.train
        self.config = config
        self.world = distributed.init(device)  # one process, unless started by torchrun
        self.device = distributed.local_device(device, self.world)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.data = data if data is not None else _load(config)
        config.model.input_shape = tuple(self.data.shape)
        config.data.memmap = self.data.streaming  # saved resolved, so a resumed run reads its data the same way
        check_data(config, self.data)
        if config.model.condition != "none":  # filled from the data, as input_shape
            config.model.context_dim = CONDITIONS[config.model.condition].context_dim(self.data, config.data.source)
        _seed_all(t.seed)
        self.model = build_model(config.model).to(self.device)
        if t.init_decoder_bias:  # a resumed run loads its weights over this
            self.model.init_output_bias(self.data.train.x[_init_sample(len(self.data.train.x), t.seed)])
        self.objective = self.model  # the module whose forward is the training loss
        if self.world.distributed:
            unused = self.model.deterministic and any(True for _ in self.model.prior_module.parameters())  # an older AE run's prior
            self.objective = distributed.wrap(self.model, self.device, find_unused_parameters=unused)
            if self.world.rank:
                _seed_rank(t.seed, self.world.rank, 0)
        self.loss_terms = _compiled(self._loss_terms) if t.compile else self._loss_terms
        if t.precision == "bf16" and self.device.type == "cpu" and not _cpu_has_bf16():
            log.warning("this CPU has no bfloat16 matrix instructions (AVX512-BF16 or AMX): --precision bf16 will be slower than fp32")
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=t.lr, betas=t.adam_betas, eps=t.adam_eps, weight_decay=t.weight_decay, fused=True
        )
        self.average = WeightAverage(self.model, t.ema) if t.ema else None
        self.state = TrainState(global_batch=t.batch_size * self.world.size)
        self.batches = self._batches()
        self.x_valid = self.data.valid.x if self.data.streaming else self.data.valid.x.to(self.device)
        context = data_context(self.model, self.data.valid, "the validation split")  # a conditional model's: (N,) or (N, K)
        self.context_valid = None if context is None else context.to(self.device)
        self.epoch_sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, neg_elbo, rec, kl sums
        self.out = None if out is None else Path(out)
        self.writer = RunWriter(self.out) if self.out is not None and self.world.is_main else None
        self.rows: list[dict[str, Any]] = []  # metrics of a run trained in memory
        self.best_weights: dict[str, torch.Tensor] | None = None  # the best weights of a run trained in memory
        self._stop = _StopOnInterrupt()

    def _batches(self) -> TrainingBatches:
        t = self.config.train
        return TrainingBatches(
            self.data.train.x,
            context=data_context(self.model, self.data.train, "the training split"),
            global_batch=self.state.global_batch,
            seed=t.seed,
            device=self.device,
            rank=self.world.rank,
            world=self.world.size,
            binarize=self.config.data.dynamic_binarize,
            noise=t.noise,
            noise_level=t.noise_level,
        )

    # ----- the run directory --------------------------------------------------------------
    def start_run(self) -> None:
        """Create the run directory: rank 0 writes, every process learns whether that worked."""
        if self.out is not None:
            distributed.on_main(lambda: self.writer.create(self.config, self.data.info))

    def restore(self) -> None:
        """Load the last checkpoint (weights, optimizer, RNG, schedule, step). A run stopped before
        its first checkpoint starts again from the beginning, which gives the same numbers:
        everything before the first step is a function of the config."""
        distributed.on_main(lambda: self.writer.lock())  # a refusal reaches every process
        if not RunWriter(self.out).has_checkpoint():
            log.warning("%s has no checkpoint yet: training it from the beginning", self.out)
            distributed.on_main(lambda: self.writer.create(self.config, self.data.info))
            return
        saved = RunWriter(self.out).read_checkpoint()  # every process reads it
        try:
            self.state = TrainState.from_json(saved.state)
            self.state.global_batch = self.state.global_batch or self.config.train.batch_size  # saved before: one process
            if self.average is None:
                self.model.load_state_dict(saved.weights)
            else:  # the weight files hold the average; the raw weights are with the optimizer's state
                self.model.load_state_dict({k[len(RAW) :]: v for k, v in saved.optimizer.items() if k.startswith(RAW)})
                self.average.load(saved.weights)
            load_optimizer_state(self.optimizer, saved.optimizer, saved.state["optimizer"])
            set_rng_state(saved.optimizer, saved.state["rng"])
            sums = saved.optimizer["epoch_sums"].to(self.device, torch.float64)  # summed over the processes that saved them
            if sums.shape != (4,):
                raise ValueError(f"epoch_sums has shape {tuple(sums.shape)}, expected (4,)")
            self.epoch_sums = sums if self.world.is_main else torch.zeros_like(sums)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint in {self.out} is damaged or from another model: {exc}") from None
        if self.world.rank:
            _seed_rank(self.config.train.seed, self.world.rank, self.state.step)
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
        sums = distributed.all_sum(self.epoch_sums.clone()) if self.world.distributed else self.epoch_sums
        distributed.on_main(self._write_checkpoint, best, sums)

    def _write_checkpoint(self, best: bool, epoch_sums: torch.Tensor) -> None:
        opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer.state_dict())
        rng_tensors, rng_meta = rng_state()
        raw = {} if self.average is None else {RAW + k: v for k, v in self.model.state_dict().items()}
        self.state = self.writer.write_checkpoint(
            self.state,
            self._weights(),
            {**opt_tensors, **rng_tensors, **raw, "epoch_sums": epoch_sums},
            {"optimizer": opt_meta, "rng": rng_meta},
            {"format": "vaekit", "config": self.config.to_json()},
            best=best,
        )

    def _weights(self) -> dict[str, torch.Tensor]:
        """The weights the run is validated, kept and used with: the model's, or their average (``ema``)."""
        return self.model.state_dict() if self.average is None else self.average.state_dict(self.model)

    # ----- the loop -------------------------------------------------------------------------
    def fit(self, progress: bool = True) -> Run:
        """Train until ``epochs`` (or early stopping); Ctrl-C stops cleanly after the current step
        with a checkpoint, then raises ``TrainingInterrupted`` saying how to resume."""
        t = self.config.train
        if t.warmup_epochs > t.epochs:
            log.warning(
                "KL warm-up (%d epochs) is longer than training (%d epochs): beta never reaches %g", t.warmup_epochs, t.epochs, t.beta
            )
        progress = progress and self.world.is_main
        if self.out is not None:
            distributed.on_main(lambda: self.writer.lock())  # held while this process writes the run; released when fit returns or raises
        board = _tensorboard(self.out) if self.writer is not None else None
        self.model.train()
        try:
            with _StopOnInterrupt() as self._stop:
                while self.state.epoch < t.epochs:
                    epoch = self.state.epoch
                    row = self.train_epoch(epoch, progress)
                    row.update(self.validate())
                    improved = math.isfinite(row["valid_loss"]) and row["valid_loss"] < self.state.best_valid
                    self.state.epoch, self.state.step_in_epoch, self.state.epoch_seconds = epoch + 1, 0, 0.0
                    self.state.bad_epochs = 0 if improved else self.state.bad_epochs + 1
                    self.state.lr_bad_epochs = 0 if improved else self.state.lr_bad_epochs + 1
                    if improved:
                        self.state.best_valid, self.state.best_epoch = row["valid_loss"], epoch + 1
                    if t.lr_patience and self.state.lr_bad_epochs >= t.lr_patience:
                        self._cut_lr()
                    self.epoch_sums.zero_()
                    self._log_epoch(row, board)
                    self.checkpoint(best=improved)
                    if t.patience and self.state.bad_epochs >= t.patience:
                        log.info(
                            "early stopping: no better validation loss for %d epochs (best %.3f at epoch %d)",
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

    def _cut_lr(self) -> None:
        """Multiply the learning rate by ``lr_factor`` (not below ``min_lr``): no better validation loss
        for ``lr_patience`` epochs. The optimizer's state (saved with the checkpoint) carries the new rate."""
        t = self.config.train
        old = self.optimizer.param_groups[0]["lr"]
        new = max(old * t.lr_factor, t.min_lr)
        self.state.lr_bad_epochs = 0
        if new < old:
            for group in self.optimizer.param_groups:
                group["lr"] = new
            log.info("no better validation loss for %d epochs: learning rate %.3g -> %.3g", t.lr_patience, old, new)

    def train_epoch(self, epoch: int, progress: bool = False) -> dict[str, float]:
        """The steps of one epoch (from ``state.step_in_epoch`` on); returns its metrics row."""
        t = self.config.train
        bar = _progress(self.batches.steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress, initial=self.state.step_in_epoch)
        refresh = max(1, self.batches.steps_per_epoch // 20)
        started = time.perf_counter() - self.state.epoch_seconds
        check_every_step = self.device.type == "cpu" or t.nonfinite == "skip"  # a check is a host sync on a GPU
        vote = distributed.StopVote() if self.world.distributed else None  # all processes stop at the same step
        for i, batch in self.batches.epoch(epoch, start=self.state.step_in_epoch):
            beta = beta_at(self.config, self.state.step, self.batches.steps_per_epoch)
            per_example, rec, kl = self.loss_terms(batch.inputs, batch.target, torch.tensor(beta) if t.compile else beta, batch.context)
            loss = per_example.sum() * batch.weight  # this process's part of the global batch's mean (DDP adds the parts)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not self._healthy(loss, check=check_every_step or (i + 1) % refresh == 0):
                self._nonfinite(epoch, i)
                continue
            if t.normalize_grads:
                normalize_gradients(self.model.parameters())
            self.optimizer.step()
            if self.average is not None:
                self.average.update(self.state.step)
            if batch.weight:
                with torch.no_grad():
                    self.epoch_sums += torch.stack((per_example, kl - rec, rec, kl)).sum(1, dtype=torch.float64)
            self.state.step, self.state.step_in_epoch = self.state.step + 1, i + 1
            if bar is not None and (i + 1) % refresh == 0:
                s = (self.epoch_sums / ((i + 1) * self.state.global_batch / self.world.size)).tolist()
                bar.set_postfix(loss=f"{s[0]:.2f}", rec=f"{-s[2]:.2f}", kl=f"{s[3]:.2f}", refresh=False)
                bar.update(refresh)
            if self.state.step_in_epoch < self.batches.steps_per_epoch:  # the epoch's end checkpoints anyway
                periodic = t.checkpoint_every and self.state.step % t.checkpoint_every == 0
                stop = vote.poll(self._stop.requested) if vote is not None else self._stop.requested
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
        sums = (distributed.all_sum(self.epoch_sums) / len(self.batches)).tolist()
        return {
            "epoch": epoch + 1,
            "step": self.state.step,
            "beta": 0.0 if self.model.deterministic else beta_at(self.config, self.state.step, self.batches.steps_per_epoch),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": sums[0],
            "train_neg_elbo": sums[1],
            "train_reconstruction": -sums[2],
            "train_kl": sums[3],
            "train_seconds": seconds,
            "skipped_steps": self.state.skipped_steps,
        }

    def validate(self) -> dict[str, float]:
        """The training objective (final β, the run's samples and importance weighting) and the
        ELBO's terms on the validation split, of the averaged weights with ``ema``; each process
        validates a share and the sums are added."""
        started = time.perf_counter()
        x = self._share(self.x_valid)
        with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
            terms = self._validation_terms(x)
        sums = torch.stack([terms.loss.sum(), terms.neg_elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()])
        loss, neg_elbo, rec, kl = (distributed.all_sum(sums.double()) / len(self.x_valid)).tolist()
        return {
            "valid_loss": loss,
            "valid_neg_elbo": neg_elbo,
            "valid_reconstruction": -rec,
            "valid_kl": kl,
            "valid_seconds": time.perf_counter() - started,
        }

    # ----- pieces of the loop ---------------------------------------------------------------
    def _validation_terms(self, x: torch.Tensor):
        """``elbo_terms`` of the training objective (final β) on this process's share x of the validation split."""
        t = self.config.train
        return elbo_terms(
            self.model,
            x,
            context=None if self.context_valid is None else self._share(self.context_valid),
            batch_size=max(t.batch_size, 1000),
            seed=t.seed,
            n_samples=t.n_samples,
            iw=t.iw,
            beta=t.beta,
            iw_groups=t.iw_groups,
            iw_elbo_mix=t.iw_elbo_mix,
            piwae=t.piwae,
        )

    def _loss_terms(
        self, inputs: torch.Tensor, target: torch.Tensor, beta: float | torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's objective: per-example (loss, reconstruction, KL), each (B,); ``context`` (labels (B,) or
        vectors (B, K)) is a conditional model's."""
        t = self.config.train
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
            terms = self.objective(
                inputs,
                target,
                beta=beta,
                n_samples=t.n_samples,
                iw=t.iw,
                iw_groups=t.iw_groups,
                iw_elbo_mix=t.iw_elbo_mix,
                piwae=t.piwae,
                context=context,
                stl=t.stl,
            )
        return terms.loss, terms.reconstruction, terms.kl

    def _healthy(self, loss: torch.Tensor, check: bool) -> bool:
        """Clip the gradients (when asked: every step) and, on a ``check`` step, say whether the loss
        and every gradient are finite. Under DDP the gradients are all-reduced already, so every
        process decides alike."""
        clip = self.config.train.grad_clip
        if not (clip or check):
            return True
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        health = loss + (torch.nn.utils.clip_grad_norm_(params, clip) if clip else _gradient_sum(grads))
        return not check or bool(torch.isfinite(health)) or _all_finite(loss, grads)

    def _share(self, x):
        """This process's contiguous share of ``x`` (a tensor or a ``MappedArray``): all of it for one process."""
        if not self.world.distributed:
            return x
        n, w, r = len(x), self.world.size, self.world.rank
        return x.narrow(0, n * r // w, n * (r + 1) // w - n * r // w)

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
                row["valid_neg_elbo"],
            )

    def _result(self) -> Run:
        """The trained run with its best weights (loaded from the run directory, or kept in memory)."""
        if self.world.is_main:
            context = None if self.context_valid is None else self.context_valid[:COLLAPSE_CHECK_EXAMPLES]
            with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
                collapse = posterior_collapse_warning(self.model, self.x_valid[:COLLAPSE_CHECK_EXAMPLES], context=context)
            if collapse:
                log.warning("%s", collapse)
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
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.train.nonfinite == "skip":
            self.state.skipped_steps += 1
            log.warning(
                "non-finite loss or gradient at epoch %d step %d: step skipped (%d so far)", epoch + 1, i + 1, self.state.skipped_steps
            )
            return
        kept = f"the last good checkpoint is kept in {self.out}" if self.out is not None else "no checkpoint is written in memory"
        raise TrainingError(
            f"non-finite loss or gradient at epoch {epoch + 1}, step {i + 1}; training stopped, {kept} "
            "(try a lower --lr, --grad-clip, or --nonfinite skip)"
        )


def check_new_run(config: RunConfig) -> None:
    """Refuse settings a new run would silently ignore: a plain autoencoder has no prior and draws no
    latent samples. (Runs saved before this check still load and resume.)"""
    m, t = config.model, config.train
    if m.kind not in POSTERIORS or not POSTERIORS[m.kind].deterministic:
        return
    if m.prior != "normal":
        raise ConfigError(
            f"a plain autoencoder has no prior (its samples come from a density fitted to its codes); --prior {m.prior} needs --model vae"
        )
    if t.n_samples > 1 or t.iw:
        raise ConfigError("a plain autoencoder's loss draws no latent samples; --samples and --iw-samples need --model vae")


def train(
    config: RunConfig, out: str | Path | None = None, *, data: DataSplits | None = None, device: str = "cpu", progress: bool = False
) -> Run:
    """Train a new run described by ``config`` into the run directory ``out`` (None: in memory, no
    files written); returns the run with its best weights."""
    check_new_run(config)
    trainer = Trainer(config, out, data=data, device=device)
    trainer.start_run()
    return trainer.fit(progress=progress)


# what a resumed run may change: when it stops or cuts its learning rate, and its thread count (the
# numbers then match an uninterrupted run's to rounding, not bit for bit); not what a step computes
RESUME_SETTINGS = ("epochs", "patience", "lr_patience", "lr_factor", "min_lr", "threads")


def resume(run_dir: str | Path, *, epochs: int | None = None, device: str = "cpu", progress: bool = False, **settings: float) -> Run:
    """Continue the run saved in ``run_dir`` from its last checkpoint (optionally to more epochs).

    settings: new values of the ``TrainConfig`` fields in ``RESUME_SETTINGS`` (e.g. ``patience=100``,
    ``lr_patience=10``), saved in the run's config; they change when training stops or cuts its
    learning rate from here on, not the steps already taken."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    changes = settings | ({} if epochs is None else {"epochs": epochs})
    for name, value in changes.items():
        if name not in RESUME_SETTINGS:
            raise ConfigError(f"a resumed run keeps its settings; it can change only {', '.join(RESUME_SETTINGS)}, not {name}")
        setattr(config.train, name, value)
    trainer = Trainer(config, run_dir, device=device)
    trainer.restore()
    if changes:
        distributed.on_main(lambda: trainer.writer.save_config(config))
    return trainer.fit(progress=progress)


class TrainingInterrupted(TrainingError):
    """Training was stopped by Ctrl-C (SIGINT) or SIGTERM after a final checkpoint."""


# ----- set-up helpers --------------------------------------------------------------------------
def _load(config: RunConfig) -> DataSplits:
    d = config.data
    return load_data(
        d.source,
        data_dir=d.data_dir,
        valid_fraction=d.valid_fraction,
        seed=d.split_seed,
        binarize=d.dynamic_binarize,
        image_size=d.image_size,
        download=d.download,
        memmap=d.memmap,
        preprocessing={"context_columns": list(d.context_columns)} if d.context_columns else None,
    )


def _init_sample(n: int, seed: int) -> torch.Tensor:
    """A seeded, sorted subset of at most INIT_EXAMPLES indices (sorted: sequential reads from disk)."""
    if n <= INIT_EXAMPLES:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:INIT_EXAMPLES].sort().values


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _seed_rank(seed: int, rank: int, step: int) -> None:
    """Random streams of their own for the processes after the first (latent samples, dynamic
    binarization, input noise), from (seed, rank, step) alone, so a resumed process gets one too."""
    _seed_all((seed * 1_000_003 + rank * 7_919 + step * 104_729) % 2**63)


def _cpu_has_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def normalize_gradients(params) -> None:
    """g <- g / (‖g‖₂ + 1e-7) for each parameter tensor's gradient, in place: the per-tensor
    normalisation of the AdamNormGrad optimizer in the VampPrior paper's code (under DDP, of the
    all-reduced gradients, so every process steps alike)."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        norms = torch._foreach_norm(grads)
        torch._foreach_add_(norms, 1e-7)
        torch._foreach_div_(grads, norms)


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
    import torch._dynamo  # for its exception types; loaded only when compiling (it is slow to import)

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
    from tqdm.auto import tqdm  # the CLI's progress bar; library callers without one never import it

    # leave=False: the epoch's log line stays; disable=None: a bar only on a terminal, so a log file
    # written with `> train.log` holds the log lines alone, not carriage-return redraws
    return tqdm(total=total, desc=desc, initial=initial, leave=False, dynamic_ncols=True, mininterval=0.5, disable=None)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # the optional extra: imported only where installed
    except Exception:
        return None
    return SummaryWriter(str(out / "tensorboard"))


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
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
