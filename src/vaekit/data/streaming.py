"""Data larger than memory: ``.npy`` files read memory-mapped, and folders of ``.npy`` shards.

``MappedArray`` stands in for the (N, *shape) tensor ``Dataset.x`` of the in-memory path wherever
batches are taken by index: ``len(x)``, ``x.shape``, ``x[i:j]`` and ``x[index]`` (an integer index
tensor) return float32 tensors converted by the same rules as an in-memory array (``to_tensor``:
layout, uint8 scaling), but only the rows asked for are read from disk. Whole-array operations
(``x.to(device)``, ``x.flatten()``) do not exist on it, so nothing loads a large file by accident.

Memory: a read's pages count in the process's resident memory while mapped, and the kernel maps
whole page-cache folios (up to 2 MB) around each touched page; so every read hands the mapped pages
back (``madvise(MADV_DONTNEED)``) after each ``RUNS_PER_RELEASE`` contiguous runs it copies. The
process's resident memory then stays at a few batches whatever the file size; the pages stay in the
operating system's page cache, which is shared and not the process's memory.

Order: training visits the examples in ``block_order``: a seeded permutation of contiguous blocks
of rows, so a batch is a handful of sequential reads rather than one seek per example. The
validation split of a single file is held out the same way, as seeded random blocks.

Layouts:
    DATA.npy                      one array (N, D), (N, H, W) or 4-D images; validation split off
    DIR/*.npy                     shards (concatenated in name order: zero-pad the numbers)
    DIR/{train,valid,test}/*.npy  shards per split (``valid`` optional, split off ``train`` if missing)

Every shard has the same dtype and example shape and is stored in C order. The header is checked
by the same safe reader as the in-memory path (``read_npy_header``: numeric dtypes only, never a
pickle). Labels, where there are any, sit beside each shard as integers (n,) in ``NAME.labels.npy``
(``DATA.labels.npy`` beside ``DATA.npy``; every shard of a split has one, or none has); they are read
into memory (8 bytes an example) and travel with the examples of each view. A conditional model's
context vectors (``--condition columns``) sit beside the shards the same way, (n, K) or (n,) numbers
in ``NAME.context.npy``, read into memory and standardised with the training split's statistics.
Preprocessing that needs the whole array at once (``standardize``, ``image_size``, ``channels``) is
refused for memory-mapped data.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vaekit.data.arrays import ARRAY_OPTIONS, context_to_tensor, detect_layout, labels_to_tensor, read_npy_header, to_tensor
from vaekit.data.base import BINARY, MAX_VALUES, REAL, SPLITS, UNIT, Dataset, DataSplits, check_partial_labels, describe, epoch_generator
from vaekit.data.files import open_file
from vaekit.data.preprocess import apply_standardize, check_options, check_stats, fit_standardize
from vaekit.errors import DataError

BLOCK_BYTES = 32 * 1024  # target size of one contiguous read
RUNS_PER_RELEASE = 16  # contiguous runs a read copies before handing the mapped pages back
SCAN_BYTES = 16 * 2**20  # chunk of the one pass that checks values at open
AUTO_MEMORY_FRACTION = 0.25  # auto mode maps a .npy file whose data as float32 exceeds this share of RAM
LABELS_SUFFIX = ".labels.npy"  # a shard's labels: DATA.npy -> DATA.labels.npy
CONTEXT_SUFFIX = ".context.npy"  # a shard's context vectors: DATA.npy -> DATA.context.npy
SIDE_SUFFIXES = (LABELS_SUFFIX, CONTEXT_SUFFIX)  # files that travel beside a shard, not shards themselves
_WHOLE_ARRAY_OPTIONS = ("standardize", "image_size", "channels")


# ----- one shard ------------------------------------------------------------------------------
@dataclass
class _Shard:
    """One ``.npy`` file mapped read-only; ``array`` (N, *raw_shape) is a view of the mapping."""

    path: Path
    map: mmap.mmap
    array: np.ndarray
    is_bool: bool

    def release(self) -> None:
        """Drop the pages this process has touched from its resident set (they stay cached)."""
        if hasattr(mmap, "MADV_DONTNEED"):  # a platform check: Linux and macOS have it, Windows not
            self.map.madvise(mmap.MADV_DONTNEED)


def _open_shard(path: Path) -> _Shard:
    with open_file(path) as f:
        size = f.seek(0, 2)
        f.seek(0)
        header = read_npy_header(f, size, str(path), max_values=None)
        shape = header.shape
        if len(shape) not in (2, 3, 4):
            raise DataError(f"{path}: expected (N, D), (N, H, W) or 4-D image data, got shape {shape}")
        if shape[0] == 0 or 0 in shape[1:]:
            raise DataError(f"{path}: no examples (shape {shape})")
        if header.fortran_order:
            raise DataError(
                f"{path}: the array is stored in Fortran order, so its examples are not contiguous; "
                "save it with np.save(path, np.ascontiguousarray(x)) to read it memory-mapped"
            )
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the file closes
    is_bool = header.dtype.kind == "b"
    dtype = np.dtype(np.uint8) if is_bool else header.dtype  # a bool byte other than 0/1 still means True
    array = np.frombuffer(mapped, dtype=dtype, count=math.prod(shape), offset=header.offset).reshape(shape)
    return _Shard(path, mapped, array, is_bool)


def _example_shape(raw: tuple[int, ...], layout: str | None) -> tuple[int, ...]:
    """Shape of one converted example, as ``to_tensor`` makes it: (D,), (1, H, W) or (C, H, W)."""
    if len(raw) == 1:
        return raw
    if len(raw) == 2:
        return (1, *raw)
    return (raw[2], raw[0], raw[1]) if layout == "nhwc" else raw


class RowTransform(Protocol):
    """A change made to every example as it is read (``map_npy``): ``transform(x, rows)`` takes the
    converted examples x (k, *shape) float32 and their source row numbers rows (k,) int64 (so a change
    that differs per example is a function of the row alone) and returns (k, *out_shape(shape))."""

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor: ...

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]: ...


class _Source:
    """Shards concatenated along the example axis, with the conversion steps they share
    (and, from ``map_npy``, a ``RowTransform`` applied after them)."""

    def __init__(self, shards: list[_Shard], steps: dict[str, Any], where: str, transform: RowTransform | None = None):
        self.shards = shards
        self.steps = steps  # to_tensor's input_dtype, divide_by, layout
        self.where = where
        self.transform = transform
        self.starts = np.cumsum([0] + [len(s.array) for s in shards])  # (S+1,) first row of each shard
        self.raw_shape = shards[0].array.shape[1:]
        self.example_shape = _example_shape(self.raw_shape, steps.get("layout"))
        if transform is not None:
            self.example_shape = transform.out_shape(self.example_shape)
        self.row_bytes = shards[0].array.dtype.itemsize * math.prod(self.raw_shape)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Raw rows (k, *raw_shape) at global row numbers ``rows`` (k,), in that order, copied out
        of the mapping ``RUNS_PER_RELEASE`` contiguous runs at a time."""
        out = np.empty((len(rows), *self.raw_shape), dtype=self.shards[0].array.dtype)
        run_starts = np.flatnonzero(np.diff(rows) != 1) + 1  # where a new contiguous run begins
        cuts = [0, *run_starts[RUNS_PER_RELEASE - 1 :: RUNS_PER_RELEASE].tolist(), len(rows)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            for touched in self._gather(rows[a:b], out[a:b]):
                touched.release()
        return out != 0 if self.shards[0].is_bool else out

    def _gather(self, rows: np.ndarray, out: np.ndarray) -> list[_Shard]:
        """Copy rows into ``out``; returns the shards read."""
        shard = np.searchsorted(self.starts, rows, side="right") - 1  # (k,)
        if shard[0] == shard[-1] and (shard == shard[0]).all():
            s = int(shard[0])
            np.take(self.shards[s].array, rows - self.starts[s], axis=0, out=out)
            return [self.shards[s]]
        touched = []
        for s in np.unique(shard).tolist():
            here = shard == s
            out[here] = self.shards[s].array[rows[here] - self.starts[s]]
            touched.append(self.shards[s])
        return touched


# ----- the tensor-like view -------------------------------------------------------------------
class MappedArray:
    """Examples (N, *shape) of memory-mapped ``.npy`` shards, read by index on demand.

    ``x[i]``, ``x[i:j]`` and ``x[index]`` (an int tensor or array; negative entries count from the
    end) return float32 CPU tensors; ``len(x)`` and ``x.shape`` work as for a tensor;
    ``x.narrow(0, start, length)`` is a view (nothing read). A view covers ``ranges`` (R, 2) of
    the source's rows, [start, stop) each, in order.
    """

    def __init__(self, source: _Source, ranges: np.ndarray | None = None):
        self._source = source
        self._ranges = np.array([[0, len(source)]], dtype=np.int64) if ranges is None else ranges.astype(np.int64)
        lengths = self._ranges[:, 1] - self._ranges[:, 0]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])  # (R+1,) first position of each range
        self.shape = torch.Size((int(self._offsets[-1]), *source.example_shape))
        self.dtype = torch.float32

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"MappedArray({self._source.where}, shape={tuple(self.shape)}, {len(self._ranges)} range(s))"

    @property
    def row_bytes(self) -> int:
        """Bytes of one example as stored on disk."""
        return self._source.row_bytes

    @property
    def steps(self) -> dict[str, Any]:
        """The conversion applied to every row (``to_tensor``'s input_dtype, divide_by, layout)."""
        return dict(self._source.steps)

    def dim(self) -> int:
        return len(self.shape)

    def narrow(self, dim: int, start: int, length: int) -> MappedArray:
        """Positions [start, start + length) as a view, like ``Tensor.narrow`` on dim 0."""
        if dim != 0 or start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"narrow({dim}, {start}, {length}) out of range for {len(self)} examples")
        return MappedArray(self._source, self._global_ranges(start, start + length))

    def __getitem__(self, key) -> torch.Tensor:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f"index {key} out of range for {n} examples")
            return self[torch.tensor([int(key) % n])][0]
        if isinstance(key, slice):
            positions = np.arange(*key.indices(n), dtype=np.int64)
        else:
            index = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
            if index.dtype.kind not in "iu" or index.ndim != 1:
                raise IndexError(f"a MappedArray is indexed by an int, a slice or a 1-D integer index, got {index.dtype} {index.shape}")
            positions = index.astype(np.int64, copy=True)
            positions[positions < 0] += n
            if len(positions) and (positions.min() < 0 or positions.max() >= n):
                raise IndexError(f"index out of range for {n} examples")
        if len(positions) == 0:
            return torch.empty((0, *self.shape[1:]))
        rows = self._rows(positions)
        x, _ = to_tensor(self._source.read(rows), self._source.where, saved=self._source.steps)
        return x if self._source.transform is None else self._source.transform(x, rows)  # (k, *shape)

    def labels_of(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """This view's rows of ``labels`` (one per source row), or None."""
        return None if labels is None else labels[torch.from_numpy(self._rows(np.arange(len(self), dtype=np.int64)))]

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """Source rows (k,) of view positions (k,)."""
        if len(self._ranges) == 1:
            return positions + self._ranges[0, 0]
        r = np.searchsorted(self._offsets, positions, side="right") - 1
        return self._ranges[r, 0] + (positions - self._offsets[r])

    def _global_ranges(self, start: int, stop: int) -> np.ndarray:
        """The source ranges (R', 2) covering view positions [start, stop)."""
        out = []
        for (a, b), off in zip(self._ranges, self._offsets[:-1]):
            lo, hi = max(start, off), min(stop, off + (b - a))
            if lo < hi:
                out.append((a + lo - off, a + hi - off))
        return np.array(out, dtype=np.int64).reshape(-1, 2)


# ----- orders and splits by blocks ------------------------------------------------------------
class BlockOrder:
    """Positions 0..n-1 in a seeded order of contiguous blocks of ``block`` positions (the last
    block may be shorter); ``order[i:j]`` is a LongTensor (j - i,), like a slice of a permutation.
    Holds one entry per block, not per example."""

    def __init__(self, n: int, block: int, seed: int, epoch: int):
        g = epoch_generator(seed, epoch)
        n_blocks = -(-n // block)
        self._starts = torch.randperm(n_blocks, generator=g) * block  # (nb,)
        lengths = (n - self._starts).clamp(max=block)
        self._offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])  # (nb+1,)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: slice) -> torch.Tensor:
        start, stop, step = key.indices(self.n)
        if step != 1:
            raise IndexError("a BlockOrder takes contiguous slices only")
        positions = torch.arange(start, stop)
        b = torch.searchsorted(self._offsets, positions, right=True) - 1
        return self._starts[b] + (positions - self._offsets[b])


def block_order(x: MappedArray, batch: int, seed: int, epoch: int) -> BlockOrder:
    """The training order of epoch ``epoch`` over ``x``: blocks of about ``BLOCK_BYTES``, at most
    1/8 of the (global) batch, so every batch mixes at least 8 places of the data. A function of
    (data size, row size, batch, seed, epoch) alone: the same for any number of processes."""
    block = max(1, min(BLOCK_BYTES // max(1, x.row_bytes), batch // 8))
    return BlockOrder(len(x), block, seed, epoch)


def _ranges_of_blocks(blocks: np.ndarray, block: int, n: int) -> np.ndarray:
    """Sorted block numbers -> merged row ranges (R, 2)."""
    if len(blocks) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(blocks) != 1)
    first = np.concatenate([[blocks[0]], blocks[breaks + 1]])
    last = np.concatenate([blocks[breaks], [blocks[-1]]])
    return np.stack([first * block, np.minimum((last + 1) * block, n)], axis=1).astype(np.int64)


def split_blocks(x: MappedArray, fraction: float, seed: int) -> tuple[MappedArray, MappedArray]:
    """(rest, held-out) views: seeded random blocks of rows go to held-out until it has at least
    ``round(n * fraction)`` examples. Blocks are ~``BLOCK_BYTES`` and at most 1% of the data."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(x)
    n_held = max(1, int(round(n * fraction)))
    block = max(1, min(BLOCK_BYTES // max(1, x.row_bytes), n // 100))
    n_blocks = -(-n // block)
    perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed)).numpy()
    sizes = np.minimum((perm + 1) * block, n) - perm * block
    k = int(np.searchsorted(np.cumsum(sizes), n_held)) + 1  # blocks needed to reach n_held
    if k >= n_blocks:
        raise DataError(f"dataset of {n} examples is too small to split off a validation set")
    held = np.sort(perm[:k])
    rest = np.sort(perm[k:])
    return (MappedArray(x._source, _ranges_of_blocks(rest, block, n)), MappedArray(x._source, _ranges_of_blocks(held, block, n)))


# ----- choosing and opening sources -----------------------------------------------------------
def shard_folder_splits(path: Path) -> dict[str, list[Path]] | None:
    """{split: sorted .npy files} of a shard folder; None when ``path`` is not one."""
    if not path.is_dir():
        return None
    top = _shards_in(path)
    if top:
        return {"train": top}
    parts = {s: _shards_in(path / s) for s in SPLITS if (path / s).is_dir()}
    parts = {s: files for s, files in parts.items() if files}
    return parts if "train" in parts else None


def _shards_in(folder: Path) -> list[Path]:
    """The sorted .npy shards of ``folder``, without their side files (labels, context)."""
    return sorted(p for p in folder.glob("*.npy") if p.is_file() and not p.name.endswith(SIDE_SUFFIXES))


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume 8 GiB
        return 8 * 2**30


def use_memmap(path: Path, memmap: bool | None, options: dict[str, Any]) -> bool:
    """Whether ``path`` is read memory-mapped. ``memmap`` (then a saved ``options["memmap"]``)
    decides when given; automatically, a shard folder always is, and a ``.npy`` file when its data
    as float32 would exceed ``AUTO_MEMORY_FRACTION`` of physical memory, or has more than the
    in-memory limit of 2**31 values."""
    if memmap is None:
        memmap = options.get("memmap")
    is_folder = shard_folder_splits(path) is not None
    is_npy = path.is_file() and path.suffix.lower() == ".npy"
    if memmap is None:
        if is_folder:
            return True
        if not is_npy:
            return False
        with open_file(path) as f:
            size = f.seek(0, 2)
            f.seek(0)
            header = read_npy_header(f, size, str(path), max_values=None)
        values = math.prod(header.shape)
        return values * 4 > AUTO_MEMORY_FRACTION * _physical_memory() or values > MAX_VALUES  # in memory: float32
    if memmap and not (is_folder or is_npy):
        raise DataError(f"{path}: only a .npy file or a folder of .npy shards can be read memory-mapped")
    if not memmap and is_folder:
        raise DataError(f"{path}: a folder of .npy shards is always read memory-mapped")
    return bool(memmap)


def map_npy(path: Path, steps: dict[str, Any], transform: RowTransform | None = None) -> MappedArray:
    """One C-ordered ``.npy`` file memory-mapped as a ``MappedArray``, converted by known ``steps``
    (``to_tensor``'s input_dtype, divide_by, layout) and then ``transform`` (None: nothing), without
    the pass over the values that ``load_mapped`` makes: for files whose values are known (a cache
    vaekit wrote and checked itself, as ``vaekit.data.dsprites`` does)."""
    return MappedArray(_Source([_open_shard(path)], steps, str(path), transform))


def _open_source(files: list[Path], options: dict[str, Any], where: str) -> tuple[_Source, str]:
    """Open and check shards; one pass over the values (in chunks) gives the conversion steps
    (uint8 scaling as ``to_tensor`` decides it, unless saved) and the value range."""
    shards = [_open_shard(f) for f in files]
    first = shards[0].array
    for s in shards[1:]:
        if s.array.dtype != first.dtype or s.array.shape[1:] != first.shape[1:] or s.is_bool != shards[0].is_bool:
            raise DataError(
                f"{s.path}: shards must share dtype and example shape; {files[0]} has {first.dtype} {first.shape[1:]}, "
                f"this one {s.array.dtype} {s.array.shape[1:]}"
            )
    input_dtype = "bool" if shards[0].is_bool else str(first.dtype)
    layout = (options.get("layout") or detect_layout(first.shape, where)) if first.ndim == 4 else None
    stats = _scan(shards, where)
    is_uint8 = input_dtype == "uint8"
    if options.get("input_dtype") == input_dtype and options.get("divide_by") in (1.0, 255.0):
        divide_by = float(options["divide_by"])
    else:
        divide_by = 255.0 if is_uint8 and stats["max"] > 1 else 1.0
    if is_uint8 and divide_by == 255.0:
        value_range = BINARY if stats["all_0_255"] else UNIT
    elif stats["all_0_1"]:
        value_range = BINARY
    else:
        value_range = UNIT if stats["min"] >= 0 and stats["max"] / divide_by <= 1 else REAL
    steps = {"input_dtype": input_dtype, "divide_by": divide_by, "layout": layout}
    source = _Source(shards, steps, where)
    return source, value_range


def _scan(shards: list[_Shard], where: str) -> dict[str, Any]:
    """min, max and whether every value is 0/1 (or 0/255), reading SCAN_BYTES at a time; raises
    ``DataError`` naming the first example with a NaN or infinite value (also float64 values beyond
    float32's range, which the conversion would make infinite)."""
    lo, hi, all_0_1, all_0_255 = math.inf, -math.inf, True, True
    done = 0
    for shard in shards:
        a = shard.array
        step = max(1, SCAN_BYTES // (a.dtype.itemsize * math.prod(a.shape[1:])))
        for start in range(0, len(a), step):
            chunk = a[start : start + step]
            if shard.is_bool:
                chunk = chunk != 0
            if chunk.dtype.kind == "f":
                with np.errstate(over="ignore"):
                    chunk = chunk.astype(np.float32, copy=False)
            c_lo, c_hi = chunk.min(), chunk.max()
            if chunk.dtype.kind == "f" and not (np.isfinite(c_lo) and np.isfinite(c_hi)):
                bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
                raise DataError(f"{where}: contains NaN or infinite values (first in example {done + start + int(np.flatnonzero(bad)[0])})")
            lo, hi = min(lo, float(c_lo)), max(hi, float(c_hi))
            if all_0_1:
                all_0_1 = bool(((chunk == 0) | (chunk == 1)).all())
            if all_0_255 and chunk.dtype == np.uint8:
                all_0_255 = bool(((chunk == 0) | (chunk == 255)).all())
            shard.release()
        done += len(a)
    return {"min": lo, "max": hi, "all_0_1": all_0_1, "all_0_255": all_0_255}


def side_path(shard: Path, suffix: str = LABELS_SUFFIX) -> Path:
    """Where a side file of ``shard`` (a .npy file) is: its labels NAME.labels.npy beside it, or with
    ``suffix`` ``CONTEXT_SUFFIX`` its context vectors NAME.context.npy."""
    return shard.with_name(shard.name[: -len(".npy")] + suffix)


def read_side(source: _Source, suffix: str = LABELS_SUFFIX) -> torch.Tensor | None:
    """The labels (N,) of every shard of ``source``, in order, or None when no shard has a labels file;
    with ``suffix`` ``CONTEXT_SUFFIX`` its context vectors (N, K) instead."""
    what, convert = ("labels", labels_to_tensor) if suffix == LABELS_SUFFIX else ("context", context_to_tensor)
    paths = [side_path(shard.path, suffix) for shard in source.shards]
    present = [p.is_file() for p in paths]
    if not any(present):
        return None
    if not all(present):
        raise DataError(f"{paths[present.index(False)]}: missing; give every shard a {what} file, or none")
    parts = []
    for shard, path in zip(source.shards, paths):
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {what} {path}: {exc}") from None
        parts.append(convert(values, len(shard.array), str(path)))
    return torch.cat(parts)


def _contexts(sources: dict[str, _Source], views: dict[str, Any], options: dict[str, Any], where: str) -> tuple[dict, dict]:
    """Each split's standardised context vectors (N, K) (or None for all) and the record entries for them.

    ``views``: per split, the ``MappedArray`` whose rows the context follows (a validation split cut
    from the training shards takes its rows of their context)."""
    raw = {split: read_side(source, CONTEXT_SUFFIX) for split, source in sources.items()}
    if all(c is None for c in raw.values()):
        return dict.fromkeys(views), {}
    if any(c is None for c in raw.values()):
        raise DataError(f"{where}: give the shards of every split a context file, or none")
    rows = {split: raw[split] if split in sources else views[split].labels_of(raw["train"]) for split in views if views[split] is not None}
    rows["train"] = views["train"].labels_of(raw["train"])
    saved = options.get("context_standardize")
    k = rows["train"].shape[1]
    stats = fit_standardize(rows["train"]) if saved in (None, True) else check_stats(saved, k, where, "context_standardize")
    record = {"context_columns": [f"context[{i}]" for i in range(k)], "context_standardize": stats}
    return {split: None if c is None else apply_standardize(c, stats) for split, c in {**dict.fromkeys(views), **rows}.items()}, record


def _check_mapped_options(options: dict[str, Any], fmt: str, where: str) -> None:
    check_options(options, fmt, ARRAY_OPTIONS + ("memmap", "context_columns"))
    asked = [k for k in _WHOLE_ARRAY_OPTIONS if options.get(k) not in (None, False)]
    if asked:
        raise DataError(f"{where}: {', '.join(asked)} is not supported for memory-mapped data; prepare the arrays beforehand")


def _files_of(path: Path) -> tuple[str, dict[str, list[Path]]]:
    parts = shard_folder_splits(path)
    return ("npy-shards", parts) if parts is not None else ("npy", {"train": [path]})


def load_mapped(path: Path, options: dict[str, Any], *, valid_fraction: float, seed: int, binarize: bool) -> DataSplits:
    """``load_data`` for a memory-mapped source: train/valid/(test) ``Dataset`` s whose ``x`` are
    ``MappedArray`` views, and the same ``info`` record as the in-memory path (its
    ``preprocessing`` says ``"memmap": true``, so a run's data is read the same way again)."""
    fmt, files = _files_of(path)
    where = str(path)
    _check_mapped_options(options, fmt, where)
    sources = {}
    ranges = []
    for split in (s for s in SPLITS if s in files):  # train first: the other splits take its conversion rule
        saved = options if split == "train" else {**options, **sources["train"].steps}
        source, value_range = _open_source(files[split], saved, f"{where} [{split}]" if fmt == "npy-shards" else where)
        train = sources.get("train", source)
        if source.steps != train.steps or source.example_shape != train.example_shape:
            raise DataError(
                f"{where}: the {split} shards ({source.steps['input_dtype']} {source.example_shape}) do not match "
                f"the train shards ({train.steps['input_dtype']} {train.example_shape})"
            )
        sources[split] = source
        ranges.append(value_range)
    info: dict[str, Any] = {"files": [str(f) for fs in files.values() for f in fs]}
    train_x = MappedArray(sources["train"])
    if "valid" in sources:
        valid_x = MappedArray(sources["valid"])
    else:
        train_x, valid_x = split_blocks(train_x, valid_fraction, seed)
        info["valid_fraction"] = valid_fraction
    test_x = MappedArray(sources["test"]) if "test" in sources else None
    labels = {split: read_side(source) for split, source in sources.items()}  # (N,) per source, or None
    valid_labels = labels["valid"] if "valid" in sources else valid_x.labels_of(labels["train"])
    datasets_y = {"train": train_x.labels_of(labels["train"]), "valid": valid_labels, "test": labels.get("test")}
    value_range = BINARY if all(r == BINARY for r in ranges) else UNIT if all(r in (BINARY, UNIT) for r in ranges) else REAL
    if binarize and value_range == REAL:
        raise DataError(f"{where}: binarize needs values in [0, 1], but this data is real-valued")
    for split, y in datasets_y.items():
        check_partial_labels(y, f"{where} ({split} split)")
    datasets = {"train": train_x, "valid": valid_x, "test": test_x}
    contexts, context_record = _contexts(sources, datasets, options, where)
    record = {"format": fmt, "memmap": True, **sources["train"].steps, **context_record}
    splits = {name: None if x is None else Dataset(x, datasets_y[name], contexts[name]) for name, x in datasets.items()}
    info = describe(where, seed, splits, loader_info=info, value_range=value_range, binarize=binarize, preprocessing=record)
    return DataSplits(splits["train"], splits["valid"], splits["test"], info)


def load_mapped_examples(path: Path, options: dict[str, Any]) -> Dataset:
    """Every example of a memory-mapped source (all shards of all splits, in order) as one Dataset."""
    fmt, files = _files_of(path)
    _check_mapped_options(options, fmt, str(path))
    all_files = [f for split in SPLITS for f in files.get(split, [])]
    source, _ = _open_source(all_files, options, str(path))
    x = MappedArray(source)
    contexts, _ = _contexts({"train": source}, {"train": x}, options, str(path))  # standardised with saved statistics
    return Dataset(x, read_side(source), contexts["train"])
