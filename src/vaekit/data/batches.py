"""Training batches: one iterator over whatever holds the training set.

The loop asks ``TrainingBatches.epoch(epoch)`` for batches and does not know whether the data
is a tensor in memory (batches taken by index from a seeded permutation) or a memory-mapped
array (read as shuffled contiguous blocks), whether this process trains alone or holds one share
of each step under DistributedDataParallel, or whether the examples are binarized afresh and
the inputs corrupted (denoising).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from vaekit.corruption import corrupt
from vaekit.data.base import Batch, epoch_generator
from vaekit.data.streaming import MappedArray, block_order


def data_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: a function of (seed, epoch) alone (``base.epoch_generator``),
    so a resumed run sees the same order whatever happened before."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch))


@dataclass(frozen=True)
class InputSteps:
    """What happens to a batch's examples on their way to the model: uncertain examples (a ``spread``)
    are drawn x ~ N(x, spread²) afresh; ``binarize`` draws the target x ~ Bernoulli(x) afresh (dynamic
    binarization); ``noise`` at ``noise_level`` corrupts the inputs (``vaekit.corruption``, denoising),
    while the target stays clean."""

    binarize: bool = False
    noise: str = "none"
    noise_level: float = 0.0

    def __call__(
        self, x: torch.Tensor, context, weight: float, lengths: torch.Tensor | None = None, spread: torch.Tensor | None = None
    ) -> Batch:
        if spread is not None:
            x = torch.addcmul(x, spread, torch.randn_like(x))  # (B, *shape): x + spread * eps
        target = torch.bernoulli(x) if self.binarize else x
        labelled = context >= 0 if context is not None and not context.is_floating_point() else None  # (B,) bool: -1 is unlabelled
        inputs = corrupt(target, self.noise, self.noise_level)
        return Batch(inputs, target, context=context, labelled=labelled, lengths=lengths, weight=weight)


class TrainingBatches:
    """Global batches of ``global_batch`` examples of ``x`` (a tensor or a ``MappedArray``), in a
    seeded order per epoch; with ``world`` processes, each takes the contiguous ``rank``-th part of
    every global batch.

    context: labels (N,) or context vectors (N, K) to carry with the examples (a conditional model's
        context; held in memory beside memory-mapped examples too), or None. Labels of partly
        labelled data (-1: unlabelled) make every batch half unlabelled examples, in a seeded order
        per epoch, and half labelled ones, cycling through the few labelled examples in seeded orders
        of their own (the semi-supervised protocol: every step sees labels, however few there are);
        an epoch is then one pass over the unlabelled examples.
    lengths: (N,) sequence lengths to carry with the examples (``Batch.lengths``), or None.
    spread: (N, *shape) standard deviations of uncertain examples, each drawn afresh in every batch (``InputSteps``), or None.
    steps: binarization and input corruption (``InputSteps``).
    epoch_steps: end each epoch after this many steps, its batches the first of that epoch's seeded
        order (a large dataset then validates and checkpoints more often); 0: one pass over the data.
    """

    def __init__(
        self,
        x: torch.Tensor | MappedArray,
        *,
        context: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        spread: torch.Tensor | None = None,
        global_batch: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        steps: InputSteps = InputSteps(),
        epoch_steps: int = 0,
    ):
        self.streaming = isinstance(x, MappedArray)  # read from disk batch by batch
        self.x = x if self.streaming else x.to(device)
        self.context = None if context is None else context.to(device)
        self.lengths = None if lengths is None else lengths.to(device)
        self.spread = None if spread is None else spread.to(device)
        self.global_batch, self.seed, self.device = global_batch, seed, device
        self.rank, self.world, self.steps = rank, world, steps
        self.labelled_pool = self.unlabelled_pool = None
        if context is not None and not context.is_floating_point() and context.dim() == 1:
            known = context >= 0
            if bool(known.any()) and not bool(known.all()):  # partly labelled: half of each batch labelled
                self.labelled_pool, self.unlabelled_pool = known.nonzero().flatten(), (~known).nonzero().flatten()
        if self.labelled_pool is None:
            self.steps_per_epoch = _capped(math.ceil(len(x) / global_batch), epoch_steps)
            self.rows = min(len(x), self.steps_per_epoch * global_batch)
        else:
            self.labelled_rows = max(1, global_batch // 2)
            unlabelled_rows = max(1, global_batch - self.labelled_rows)
            self.steps_per_epoch = _capped(math.ceil(len(self.unlabelled_pool) / unlabelled_rows), epoch_steps)
            self.rows = min(len(self.unlabelled_pool), self.steps_per_epoch * unlabelled_rows) + self.steps_per_epoch * self.labelled_rows

    def __len__(self) -> int:
        """The examples of one epoch (over all processes; labelled ones counted each time they are drawn)."""
        return self.rows

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        """(step index in the epoch, batch) for steps ``start`` .. ``steps_per_epoch`` - 1 of ``epoch``."""
        for i, rows in self._global_batches(epoch, start):
            m = len(rows)  # the step's global batch
            lo, hi = m * self.rank // self.world, m * (self.rank + 1) // self.world  # this process's part
            idx, weight = (rows[lo:hi], self.world / m) if hi > lo else (rows[:1], 0.0)
            yield i, self._batch(idx, weight)

    def _global_batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor]]:
        n, bs = len(self.x), self.global_batch
        if self.labelled_pool is not None:
            yield from self._semi_supervised_batches(epoch, start)
            return
        order = block_order(self.x, bs, self.seed, epoch) if self.streaming else data_order(n, self.seed, epoch).to(self.device)
        for i in range(start, self.steps_per_epoch):
            yield i, order[i * bs : min(n, (i + 1) * bs)]

    def _semi_supervised_batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Each step: the next unlabelled examples of the epoch's order, then as many labelled ones from
        seeded orders of the labelled pool, one after another (a function of (seed, epoch) alone)."""
        unlabelled, labelled = self.unlabelled_pool, self.labelled_pool
        u, k = self.global_batch - self.labelled_rows, self.labelled_rows
        order = unlabelled[data_order(len(unlabelled), self.seed, epoch).to(unlabelled.device)]
        cycles = math.ceil(self.steps_per_epoch * k / len(labelled))
        cycled = torch.cat([labelled[data_order(len(labelled), self.seed + 1 + c, epoch).to(labelled.device)] for c in range(cycles)])
        for i in range(start, self.steps_per_epoch):
            yield i, torch.cat([order[i * u : (i + 1) * u], cycled[i * k : (i + 1) * k]])

    def _batch(self, idx, weight: float) -> Batch:
        if self.streaming:
            x = self.x[idx].to(self.device, non_blocking=True)  # (B, *shape)
        else:
            x = self.x.index_select(0, idx)  # (B, *shape)
        context = None if self.context is None else self.context.index_select(0, idx.to(self.context.device))  # (B,) or (B, K)
        lengths = None if self.lengths is None else self.lengths.index_select(0, idx.to(self.lengths.device))  # (B,)
        spread = None if self.spread is None else self.spread.index_select(0, idx.to(self.spread.device))  # (B, *shape)
        return self.steps(x, context, weight, lengths, spread)


def _capped(steps: int, epoch_steps: int) -> int:
    """An epoch's steps: a pass over the data (``steps``), or ``epoch_steps`` where that is fewer (0: no cap)."""
    return min(steps, epoch_steps) if epoch_steps else steps
