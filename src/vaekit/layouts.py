"""Earlier layouts of a run's weights and checkpoints, read by today's vaekit.

A run directory written by any release loads in every later one: ``config.json`` is migrated by
``vaekit.config.migrate`` (its own version and table); this module holds what changed in the
tensors. Each entry of ``WEIGHT_MIGRATIONS`` recognises an older layout of the model's weights and
rewrites it (with the optimizer's moments, so the run also resumes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vaekit.checkpoint import unflatten_optimizer_state


@dataclass(frozen=True)
class MergedLinear:
    """Two linear layers (``parts``, in module order) that a later release made one, ``merged``,
    whose output is theirs concatenated (vaekit's first layout had ``posterior.mean`` and
    ``posterior.logvar``; the Gaussian head is ``posterior.params`` since)."""

    merged: str
    parts: tuple[str, ...]

    def applies(self, weights: dict[str, torch.Tensor]) -> bool:
        return all(f"{p}.weight" in weights for p in self.parts) and f"{self.merged}.weight" not in weights

    def weights(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in weights.items() if not any(k.startswith(p + ".") for p in self.parts)}
        for leaf in ("weight", "bias"):
            out[f"{self.merged}.{leaf}"] = torch.cat([weights[f"{p}.{leaf}"] for p in self.parts])
        return out

    def old_names(self, names: list[str]) -> list[str]:
        """The parameter order of the older model, from today's (the parts' leaves in module order)."""
        old: list[str] = []
        for name in names:
            if name == f"{self.merged}.weight":
                old += [f"{p}.{leaf}" for p in self.parts for leaf in ("weight", "bias")]
            elif name != f"{self.merged}.bias":
                old.append(name)
        return old

    def merge_of(self, name: str) -> list[str]:
        """The older parameters today's ``name`` is made of."""
        if name.startswith(self.merged + "."):
            leaf = name[len(self.merged) + 1 :]
            return [f"{p}.{leaf}" for p in self.parts]
        return [name]


@dataclass(frozen=True)
class SplitBidirectionalGRU:
    """A bidirectional ``nn.GRU`` (``rnn``, its backward direction's parameters named ``*_reverse``) that a
    later release made two GRUs, ``forward_rnn`` and ``backward_rnn``, with the same parameters in the
    same order (the sequence encoder's, which reads each direction's state at a sequence's last token)."""

    def applies(self, weights: dict[str, torch.Tensor]) -> bool:
        return any(k.endswith(".rnn.weight_ih_l0_reverse") for k in weights)

    def _old_name(self, name: str) -> str:
        for direction, suffix in (("forward_rnn.", ""), ("backward_rnn.", "_reverse")):
            head, found, leaf = name.rpartition("." + direction)
            if found:
                return f"{head}.rnn.{leaf}{suffix}"
        return name

    def weights(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        bidirectional = {k.removesuffix("weight_ih_l0_reverse") for k in weights if k.endswith(".rnn.weight_ih_l0_reverse")}
        out = {}
        for key, value in weights.items():
            prefix, _, leaf = key.rpartition(".")
            prefix += "."
            if prefix in bidirectional:
                direction = "backward_rnn." if leaf.endswith("_reverse") else "forward_rnn."
                key = prefix.removesuffix("rnn.") + direction + leaf.removesuffix("_reverse")
            out[key] = value
        return out

    def old_names(self, names: list[str]) -> list[str]:
        """The older model's parameter order: today's, each under its older name."""
        return [self._old_name(n) for n in names]

    def merge_of(self, name: str) -> list[str]:
        return [self._old_name(name)]


WEIGHT_MIGRATIONS = (
    MergedLinear("posterior.params", ("posterior.mean", "posterior.logvar")),
    SplitBidirectionalGRU(),
)


def migrate_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's state dict in today's layout."""
    for migration in WEIGHT_MIGRATIONS:
        if migration.applies(weights):
            weights = migration.weights(weights)
    return weights


def migrate_checkpoint(
    weights: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], meta: dict[str, Any], names: list[str], raw_prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, the optimizer file's tensors, the optimizer's metadata) in today's layout, for a
    model whose parameters are ``names`` (in order). The Adam moments of merged parameters are
    merged as the parameters are; the raw weights of an averaged run (``raw_prefix``) too."""
    for migration in WEIGHT_MIGRATIONS:
        if not migration.applies(weights):
            continue
        weights = migration.weights(weights)
        raw = {k[len(raw_prefix) :]: v for k, v in tensors.items() if k.startswith(raw_prefix)}
        rest = {k: v for k, v in tensors.items() if not k.startswith(raw_prefix) and not k.startswith("state.")}
        if raw:
            rest |= {raw_prefix + k: v for k, v in migration.weights(raw).items()}
        old_index = {name: i for i, name in enumerate(migration.old_names(names))}
        first_old = [old_index[migration.merge_of(name)[0]] for name in names]  # the (first) older parameter behind each
        moments = unflatten_optimizer_state({k: v for k, v in tensors.items() if k.startswith("state.")}, {"param_groups": []})["state"]
        for i, name in enumerate(names):
            parts = [moments.get(old_index[p], {}) for p in migration.merge_of(name)]
            for key in parts[0]:
                joined = parts[0][key] if parts[0][key].dim() == 0 else torch.cat([p[key] for p in parts])
                rest[f"state.{i}.{key}"] = joined
        scalars = meta.get("scalars", {})
        meta = {
            **meta,
            "param_groups": [{**g, "params": list(range(len(names)))} for g in meta["param_groups"]],
            "scalars": {str(i): scalars[str(j)] for i, j in enumerate(first_old) if str(j) in scalars},
        }
        tensors = rest
    return weights, tensors, meta
