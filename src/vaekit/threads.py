"""How many intra-op threads vaekit computes with, unless told (``--threads N``).

Measured by ``bench/threads.py`` on this project's 2-core machine (the table: bench/README.md):
vaekit's models are small, so a second thread buys little on a quiet machine, and beside a busy
neighbour (a second job, a browser, a CI runner) a thread that waits for the other core stalls
every step. The default is therefore one thread, except for the networks measured to gain from a
second one even on a busy machine.
"""

from __future__ import annotations

import os

import torch

from vaekit.config import ModelConfig
from vaekit.models import ENCODERS


def default_threads(model: ModelConfig) -> int:
    """The thread count for a model built from ``model``: two (at most the machine's cores) for a
    convolutional network, one for the dense ones."""
    return min(2, os.cpu_count() or 1) if ENCODERS[model.arch].needs_images else 1


def use_threads(requested: int | None, model: ModelConfig) -> int:
    """Set torch's intra-op thread count to ``requested`` (0 or None: ``default_threads``); returns it."""
    threads = requested or default_threads(model)
    torch.set_num_threads(threads)
    return threads
