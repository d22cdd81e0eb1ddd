"""What a checkpoint holds of a training run, by name: the model's weights (or their average), each
optimizer, each module an objective trains, the random generators and the epoch's running sums.

The model's own optimizer keeps the layout every earlier run wrote (its ``state.*`` tensors and
``state.json``'s ``optimizer``), so older runs resume; any further optimizer or module is stored
under its name, so adding one never makes an older run unresumable.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from vaekit.checkpoint import flatten_optimizer_state, load_optimizer_state, rng_state, set_rng_state
from vaekit.layouts import migrate_checkpoint
from vaekit.runs import Checkpoint
from vaekit.training.average import WeightAverage
from vaekit.training.sums import RunningSums

log = logging.getLogger(__name__)

MODEL = "model"  # the model's optimizer's name; the objective's modules are named by the objective
RAW = "raw."  # the prefix of the raw weights in the optimizer file of a run that averages its weights (``ema``)


def _named(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def _unnamed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def pack(
    model: torch.nn.Module,
    average: WeightAverage | None,
    optimizers: dict[str, torch.optim.Optimizer],
    modules: dict[str, torch.nn.Module],
    sums: RunningSums,
    sum_values: torch.Tensor,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, the optimizer file's tensors, state.json's extra entries) of a checkpoint."""
    weights = model.state_dict() if average is None else average.state_dict(model)
    tensors: dict[str, torch.Tensor] = {}
    metas: dict[str, Any] = {}
    for name, optimizer in optimizers.items():
        moments, meta = flatten_optimizer_state(optimizer.state_dict())
        tensors |= moments if name == MODEL else _named(f"optimizer.{name}.", moments)
        metas[name] = meta
    rng_tensors, rng_meta = rng_state()
    tensors |= rng_tensors | sums.to_tensors(sum_values)
    if average is not None:
        tensors |= _named(RAW, model.state_dict())
    for name, module in modules.items():
        tensors |= _named(f"module.{name}.", module.state_dict())
    extra = {"optimizer": metas.pop(MODEL), "optimizers": metas, "rng": rng_meta}
    return weights, tensors, extra


def unpack(
    saved: Checkpoint,
    model: torch.nn.Module,
    average: WeightAverage | None,
    optimizers: dict[str, torch.optim.Optimizer],
    modules: dict[str, torch.nn.Module],
    sums: RunningSums,
    keep_sums: bool,
) -> None:
    """Load a checkpoint written by ``pack`` (or by an earlier vaekit) into the run's objects;
    ``KeyError``/``ValueError``/``RuntimeError`` when it does not fit them."""
    names = [name for name, _ in model.named_parameters()]
    weights, tensors, meta = migrate_checkpoint(saved.weights, saved.optimizer, saved.state["optimizer"], names, RAW)
    saved = Checkpoint({**saved.state, "optimizer": meta}, weights, tensors)
    if average is None:
        model.load_state_dict(saved.weights)
    else:  # the weight files hold the average; the raw weights are with the optimizer's state
        model.load_state_dict(_unnamed(RAW, saved.optimizer))
        average.load(saved.weights)
    for name, module in modules.items():
        weights = _unnamed(f"module.{name}.", saved.optimizer)
        if weights:
            module.load_state_dict(weights)
        else:
            log.warning("the checkpoint has no weights for the objective's %s: it starts afresh", name)
    metas = saved.state.get("optimizers", {})
    for name, optimizer in optimizers.items():
        if name == MODEL:
            load_optimizer_state(optimizer, saved.optimizer, saved.state["optimizer"])
        elif name in metas:
            load_optimizer_state(optimizer, _unnamed(f"optimizer.{name}.", saved.optimizer), metas[name])
        else:
            log.warning("the checkpoint has no state for the %s optimizer: it starts afresh", name)
    set_rng_state(saved.optimizer, saved.state["rng"])
    sums.load(saved.optimizer, keep_sums)
