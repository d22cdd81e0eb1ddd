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
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load, save as st_save

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


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
