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
from vaekit.data.streaming import MappedArray, block_order


def data_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: a function of (seed, epoch) alone, so a resumed run sees
    the same order whatever happened before."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


@dataclass
class Batch:
    """One example record, as objectives receive it: a batch of B examples with what comes with them.

    inputs: (B, *shape) what the encoder sees (corrupted for denoising).
    target: (B, *shape) what the decoder explains (the clean examples).
    context: their context, when the model is conditional: class labels (B,) (int64) or context
        vectors (B, K) (float); None otherwise.
    labelled: (B,) bool, which examples carry a label (partly labelled data; None: all or none do).
    lengths: (B,) int64, the lengths of sequences padded to a common length (None: fixed-size examples).
    weight: the factor that turns the sum of per-example losses into this process's part of the
        global batch's mean (world / global batch; 0 for a process whose share is empty and stands
        in one example, so that every process takes part in each step; 1 outside training).
    """

    inputs: torch.Tensor
    target: torch.Tensor
    context: torch.Tensor | int | None = None
    labelled: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    weight: float = 1.0


class TrainingBatches:
    """Global batches of ``global_batch`` examples of ``x`` (a tensor or a ``MappedArray``), in a
    seeded order per epoch; with ``world`` processes, each takes the contiguous ``rank``-th part of
    every global batch.

    context: labels (N,) or context vectors (N, K) to carry with the examples (a conditional model's
        context; held in memory beside memory-mapped examples too), or None.
    binarize: draw x ~ Bernoulli(x) afresh for every batch (dynamic binarization).
    noise, noise_level: input corruption (``vaekit.corruption``); the target stays clean.
    """

    def __init__(
        self,
        x: torch.Tensor | MappedArray,
        *,
        context: torch.Tensor | None = None,
        global_batch: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        binarize: bool = False,
        noise: str = "none",
        noise_level: float = 0.0,
    ):
        self.streaming = isinstance(x, MappedArray)  # read from disk batch by batch
        self.x = x if self.streaming else x.to(device)
        self.context = None if context is None else context.to(device)
        self.global_batch, self.seed, self.device = global_batch, seed, device
        self.rank, self.world = rank, world
        self.binarize, self.noise, self.noise_level = binarize, noise, noise_level
        self.steps_per_epoch = math.ceil(len(x) / global_batch)

    def __len__(self) -> int:
        """Training examples (over all processes)."""
        return len(self.x)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        """(step index in the epoch, batch) for steps ``start`` .. ``steps_per_epoch - 1`` of ``epoch``."""
        n, bs = len(self.x), self.global_batch
        order = block_order(self.x, bs, self.seed, epoch) if self.streaming else data_order(n, self.seed, epoch).to(self.device)
        for i in range(start, self.steps_per_epoch):
            first, m = i * bs, min(bs, n - i * bs)  # the step's global batch: order[first : first + m]
            lo, hi = first + m * self.rank // self.world, first + m * (self.rank + 1) // self.world  # this process's part
            idx, weight = (order[lo:hi], self.world / m) if hi > lo else (order[first : first + 1], 0.0)
            yield i, self._batch(idx, weight)

    def _batch(self, idx, weight: float) -> Batch:
        if self.streaming:
            target = self.x[idx].to(self.device, non_blocking=True)  # (B, *shape)
        else:
            target = self.x.index_select(0, idx)  # (B, *shape)
        context = None if self.context is None else self.context.index_select(0, idx.to(self.context.device))  # (B,) or (B, K)
        if self.binarize:
            target = torch.bernoulli(target)
        return Batch(corrupt(target, self.noise, self.noise_level), target, context=context, weight=weight)
