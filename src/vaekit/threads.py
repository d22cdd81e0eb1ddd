"""How vaekit computes on the CPU: its intra-op threads, unless told (``--threads N``), and no subnormals.

Measured by ``bench/threads.py`` on this project's 2-core machine (bench/README.md): on an idle
machine a second thread speeds training up 1.10x (the demo's MLP) to 1.37x (B1) and 1.79x (a conv
net); beside one busy neighbour (a second job, a browser, a CI runner) the same second thread
slows it down 2x to 6x, since each step waits for a thread the neighbour holds. So the default is
one thread, and two only for a convolutional network on a machine that has a core to spare when the
command starts (its load average below the core count minus one).

Subnormal floats (below 1.2e-38) are flushed to zero on the CPU while vaekit trains or runs a command
(``subnormals_flushed``; the setting is the process's, so it is left as it was after): arithmetic on
them is far slower there, and they arise in training: M2's unlabelled bound weighs each (example, class)
pair's gradient by q(y|x), which a confident classifier takes below 1e-38 for the wrong classes:
an M2 step on MNIST from a run's 21st epoch took 338 ms against 88 ms flushed (3.8x; its epochs had
grown from 28 s to 125 s), and 29x longer where every wrong class is subnormal
(``bench/semisupervised_speed.py``). Nothing vaekit computes is moved by values that small.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from vaekit.config import ModelConfig
from vaekit.models import ENCODERS


def default_threads(model: ModelConfig) -> int:
    """The thread count for a model built from ``model``: one; two (at most the cores) for a
    convolutional network while the machine has a core to spare."""
    cores = os.cpu_count() or 1
    if not ENCODERS[model.arch].needs_images or cores < 2:
        return 1
    return 2 if os.getloadavg()[0] < cores - 1 else 1


def use_threads(requested: int | None, model: ModelConfig) -> int:
    """Set torch's intra-op thread count to ``requested`` (0 or None: ``default_threads``); returns it."""
    threads = requested or default_threads(model)
    torch.set_num_threads(threads)
    return threads


def flushing_subnormals() -> bool:
    """Whether the CPU is flushing subnormal floats to zero now."""
    return float(torch.tensor([1e-39]) * 1.0) == 0.0  # 1e-39 is below float32's smallest normal


@contextmanager
def subnormals_flushed() -> Iterator[bool]:
    """Flush subnormal floats to zero on the CPU (every thread) inside the block, and leave the setting
    as it was after: it is the process's floating-point state, which the caller's own code shares.
    Yields whether this CPU can flush (x86 with SSE3)."""
    before = flushing_subnormals()
    able = torch.set_flush_denormal(True)
    try:
        yield able
    finally:
        if able and not before:
            torch.set_flush_denormal(False)
