"""Crash-safe files for a run: atomic writes, safetensors tensors, JSON everything else.

Nothing here unpickles: tensors travel as safetensors, all other state as JSON. Every write goes
to a temporary file in the same directory, is flushed and fsynced, then renamed into place, so
a crash leaves either the old file or the new one, never half of one. ``state.json`` is written
last and records the SHA-256 of each tensor file it belongs with, so a torn or corrupted
checkpoint is detected at load.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaekit.errors import CheckpointError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-directory temp file, fsync and rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def _regular_file(path: Path) -> None:
    """Refuse a FIFO, a device (``/dev/zero``) or a folder where a file should be: reading one hangs or never ends."""
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")


def read_json(path: Path) -> Any:
    _regular_file(Path(path))
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt or unreadable JSON file {path}: {exc}") from None


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Atomically write a safetensors file; return its SHA-256."""
    data = tensors_to_bytes(tensors, metadata)
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a pickle protocol opcode; a zip (torch.save's format)


def load_tensors(path: Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never a pickle), checking its SHA-256 when one is given."""
    path = Path(path)
    _regular_file(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    # a safetensors file: an 8-byte header length, then the JSON header; its length's first byte may be 0x80
    is_safetensors = data[8:9] == b"{"
    if not is_safetensors and (data[:1] == _PICKLE_MAGIC[0] or data[:4] == _PICKLE_MAGIC[1]):
        raise CheckpointError(f"{path} is a pickle/torch.save file; vaekit only loads safetensors and never unpickles")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"checksum mismatch for {path}: the file is truncated or corrupted")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc})") from None


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Load what ``flatten_optimizer_state`` split (the ``state.*`` entries of ``tensors``, and
    ``meta``) into ``optimizer``; ``ValueError`` unless it fits the optimizer's parameters."""
    fresh = [dict(g) for g in optimizer.param_groups]
    moments = {k: v for k, v in tensors.items() if k.startswith("state.")}
    optimizer.load_state_dict(unflatten_optimizer_state(moments, meta))
    _match_parameter_layout(optimizer)
    _check_optimizer(optimizer, fresh)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random generator's state (torch, CUDA, NumPy, Python) as tensors and a JSON-able remainder."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore the generators from what ``rng_state`` returned."""
    torch.set_rng_state(tensors["rng.torch"])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _check_optimizer(optimizer: torch.optim.Optimizer, fresh: list[dict[str, Any]]) -> None:
    """Raise ``ValueError`` unless the loaded optimizer state fits the model: each setting of the
    same kind as a fresh optimizer's, each moment tensor the shape of its parameter."""

    def kind(v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            return type(v)
        return "number" if isinstance(v, (int, float)) else "list" if isinstance(v, (list, tuple)) else type(v)

    for group, before in zip(optimizer.param_groups, fresh):
        for key, value in before.items():
            if kind(group.get(key)) != kind(value):
                raise ValueError(f"optimizer setting {key} is {group.get(key)!r}")
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != p.shape:
                    raise ValueError(f"optimizer {name} has shape {tuple(value.shape)}, its parameter {tuple(p.shape)}")


def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each parameter's optimizer state the parameter's memory layout. Checkpoints store
    tensors contiguous; a channels-last convolution kernel's Adam moments must be channels-last
    again, or the fused update (which walks memory in order) would pair the wrong entries."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
