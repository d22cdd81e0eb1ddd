"""Several processes through ``torch.distributed``, started by torchrun.

vaekit neither starts nor coordinates processes itself: ``torchrun`` (``python -m
torch.distributed.run``) starts them and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; ``init`` joins the process group they describe, with the gloo
backend for CPU training and NCCL for CUDA. The trainer wraps the model in
``DistributedDataParallel`` (gradients are averaged by an all-reduce during ``backward``) and uses
the helpers here for the few other things processes must agree on: sums of metrics, whether a
step or a checkpoint failed, whether to stop. Without torchrun (``WORLD_SIZE`` unset or 1) every
helper is a no-op and nothing here runs on the training path.

``launch`` starts ``vaekit`` under torchrun's launcher on this machine (``vaekit train --nproc N``).
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from vaekit.errors import ConfigError, VaekitError

if TYPE_CHECKING:
    from vaekit.data.base import Dataset

log = logging.getLogger(__name__)

T = TypeVar("T")

_control: Any = None  # a gloo group of its own for small CPU-side agreements (stop votes, errors)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size``; ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, metrics, TensorBoard and the progress bar."""
        return self.rank == 0


def env_world() -> World:
    """The world torchrun describes in the environment (a single process without torchrun)."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ConfigError(f"invalid torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK): {exc}") from None


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def current() -> World:
    """The world of the joined process group (a single process when none is joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), env_world().local_rank)


def init(device: str | torch.device = "cpu") -> World:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (once: later calls return the same
    world); the backend follows ``device`` (``backend_for``). A single process otherwise."""
    global _control
    if dist.is_available() and dist.is_initialized():
        return current()
    world = env_world()
    if not world.distributed:
        return world
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = backend_for(torch.device(device))
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=backend)
    _control = dist.new_group(backend="gloo")  # its own connections: votes never queue behind gradients
    log.debug("rank %d of %d joined the %s process group", world.rank, world.size, backend)
    return current()


def local_device(device: str | torch.device, world: World) -> torch.device:
    """``device`` for this process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` when distributed."""
    device = torch.device(device)
    if world.distributed and device.type == "cuda" and device.index is None:
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"process {world.local_rank} on this machine needs its own GPU, but there are {torch.cuda.device_count()}; "
                "start at most one process per GPU, or train on --device cpu"
            )
        return torch.device("cuda", world.local_rank)
    return device


def shutdown() -> None:
    """Leave the process group (if one was joined)."""
    global _control
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _control = None


def wrap(model: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel``: its ``forward`` (the objective) all-reduces the
    gradients (an average over processes) during ``backward``. Buffers are constants in vaekit's
    models, so they are not re-broadcast every step."""

    # newer torch deprecates broadcast_buffers for forward_sync_buffers
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_buffer_sync = {"forward_sync_buffers": False} if renamed else {"broadcast_buffers": False}
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
        **no_buffer_sync,
    )


# ----- agreements and reductions (no-ops for a single process) ---------------------------------
def share(world, data: Dataset) -> Dataset:
    """This process's contiguous share of the examples of ``data`` (a view): all of it for one process."""
    if not world.distributed:
        return data
    n, w, r = len(data), world.size, world.rank
    return data.rows(n * r // w, n * (r + 1) // w)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over processes, in place; returns ``t``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(value: bool) -> bool:
    """True on every process when ``value`` is true on any one (e.g. a stop request)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([int(value)], dtype=torch.int32)  # on the CPU: no device sync (a gloo group under NCCL)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


class StopVote:
    """Whether any process asked to stop, agreed by all at the same step, at little cost per step:
    every ``every``-th ``poll(flag)`` starts an all-reduce of this process's flag (in the background,
    on the control group) and returns the outcome of the previous vote; other polls return False.
    So a request is acted on within ``2 * every`` steps; the flag stays set, so a vote left pending
    at the end of an epoch loses nothing (``any_rank`` there sees it)."""

    def __init__(self, every: int = 8):
        self.every = every
        self._polls = 0
        self._pending: tuple[Any, torch.Tensor] | None = None

    def poll(self, requested: bool) -> bool:
        self._polls += 1
        if self._polls % self.every:
            return False
        flag = torch.tensor([int(requested)], dtype=torch.int32)
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_control, async_op=True)
        previous, self._pending = self._pending, (work, flag)
        if previous is None:
            return False
        previous[0].wait()
        return bool(previous[1].item())


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every process (picklable objects)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def on_main(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on rank 0 only (file writes), then make every process agree on the outcome:
    a ``VaekitError`` raised there is raised on every process, so none is left waiting for the others."""
    world = current()
    error: VaekitError | None = None
    if world.is_main:
        try:
            fn(*args)
        except VaekitError as exc:
            if not world.distributed:
                raise
            error = exc
    if world.distributed:
        error = broadcast_object(error)
        if error is not None:
            raise error


# ----- the launcher -----------------------------------------------------------------------------
def launch(argv: list[str], nproc: int, *, launcher_args: list[str] | None = None) -> int:
    """Run ``vaekit ARGV`` in ``nproc`` processes on this machine under torchrun's launcher
    (``python -m torch.distributed.run --standalone --nproc_per_node NPROC -m vaekit ARGV``); returns
    its exit code. For several machines run torchrun yourself with its rendezvous options (README)."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *(launcher_args or []),
        "-m",
        "vaekit",
        *argv,
    ]
    log.info("launching %d processes: %s", nproc, " ".join(command[1:]))
    launcher = subprocess.Popen(command)
    while True:
        try:
            return launcher.wait()
        except KeyboardInterrupt:  # torchrun got it too and passes it on: wait while the workers checkpoint and stop
            continue


__all__ = [
    "World",
    "env_world",
    "backend_for",
    "current",
    "init",
    "local_device",
    "shutdown",
    "wrap",
    "all_sum",
    "any_rank",
    "StopVote",
    "broadcast_object",
    "on_main",
    "launch",
]
