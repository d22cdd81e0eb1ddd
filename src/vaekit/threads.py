"""How many intra-op threads vaekit computes with, unless told (``--threads N``).

Measured by ``bench/threads.py`` on this project's 2-core machine (bench/README.md): on an idle
machine a second thread speeds training up 1.10x (the demo's MLP) to 1.37x (B1) and 1.79x (a conv
net); beside one busy neighbour (a second job, a browser, a CI runner) the same second thread
slows it down 2x to 6x, since each step waits for a thread the neighbour holds. So the default is
one thread, and two only for a convolutional network on a machine that has a core to spare when the
command starts (its load average below the core count minus one).
"""

from __future__ import annotations

import os

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
