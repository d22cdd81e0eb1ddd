"""Arrays from ``.npy``, ``.npz`` and ``.amat`` files, and the array-to-tensor rules every source shares.

vaekit parses ``.npy`` itself instead of calling ``np.load``: the header is checked (numeric
dtype, no Python objects, a declared size the file can hold, at most ``2**31`` values) before a
byte of data is read, so a corrupt or hostile file raises ``DataError`` rather than allocating
gigabytes or unpickling anything. Pickled arrays are never loaded (``allow_pickle`` is never on).

Conversion rules (``to_tensor``): (N, D) stays flat; (N, H, W) becomes (N, 1, H, W); a 4-D array
is NHWC when its last axis has at most 4 entries, else NCHW when its second does, and comes out
NCHW. uint8 is divided by 255 (unless it only holds 0 and 1); other dtypes keep their values.
The result is float32.

Token sequences (an .npz with a ``tokens`` array, ``token_dataset``) take the other path: integers
(N, T) kept as int64, with their optional ``lengths``; nothing is scaled, cast or ranged.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch

from vaekit.data.base import BINARY, MAX_VALUES, REAL, SPLITS, TOKENS, UNIT, Dataset, check_lengths
from vaekit.data.files import open_file, parsing
from vaekit.data.idx import read_idx
from vaekit.data.preprocess import check_options
from vaekit.errors import DataError

DEFLATE_MAX_RATIO = 1032  # deflate expands data at most ~1032x; a bigger claim is a corrupt archive
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats

SPLIT_NAMES = SPLITS  # the splits an .npz may hold (an older name of ``base.SPLITS``, read by cli/compress.py)
# names under which an .npz holds its splits and their labels
_SPLIT_KEYS = {"train": ("train",), "valid": ("valid", "validation", "val"), "test": ("test",)}


# ---------------------------------------------------------------------------------------------
# .npy and .npz


def read_npy(path: str | Path) -> np.ndarray:
    """Read one ``.npy`` file after checking its header (see the module docstring)."""
    path = Path(path)
    with open_file(path) as f:
        size = f.seek(0, 2)
        f.seek(0)
        return _read_npy_stream(f, size, str(path))


class NpzArchive:
    """An ``.npz`` file opened for reading; ``archive[key]`` parses one member like ``read_npy``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open_file(self.path)
        try:
            with parsing(f"{self.path}: not a valid .npz archive"):
                self._zip = zipfile.ZipFile(self._file)
        except DataError:
            self._file.close()
            raise
        self._members = {info.filename[: -len(".npy")]: info for info in self._zip.infolist() if info.filename.endswith(".npy")}

    def keys(self) -> list[str]:
        return list(self._members)

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def __getitem__(self, key: str) -> np.ndarray:
        info = self._members[key]
        where = f"{self.path}[{key!r}]"
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 4096:
            raise DataError(f"{where}: corrupt archive (member claims {info.file_size} bytes)")
        with parsing(f"{where}: corrupt archive member"), self._zip.open(info) as member:
            return _read_npy_stream(member, info.file_size, where)

    def close(self) -> None:
        self._zip.close()
        self._file.close()


@contextmanager
def open_npz(path: str | Path) -> Iterator[NpzArchive]:
    """``NpzArchive(path)``, closed on leaving the block."""
    archive = NpzArchive(path)
    try:
        yield archive
    finally:
        archive.close()


class NpyHeader(NamedTuple):
    """What an ``.npy`` header declares: the data starts at byte ``offset`` of the file."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    offset: int

    @property
    def n_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(f: BinaryIO, size: int, where: str, *, max_values: int | None = MAX_VALUES) -> NpyHeader:
    """Parse and check the header of the ``.npy`` bytes at the start of ``f`` (``size`` bytes in
    all): numeric dtype, no Python objects, a declared size the bytes can hold and, unless
    ``max_values`` is None (memory-mapped reading), at most ``max_values`` values. Reads no data."""
    fmt = np.lib.format
    with parsing(f"{where}: not a valid .npy array"):
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(f)
        else:
            raise DataError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
        header_size = f.tell()
    if dtype.hasobject:
        raise DataError(f"{where}: array holds Python objects (pickled data), which vaekit never loads")
    if dtype.kind not in NUMERIC_KINDS or dtype.subdtype is not None:
        raise DataError(f"{where}: array has non-numeric dtype {dtype}; expected integers, floats or booleans")
    if any(d < 0 for d in shape):
        raise DataError(f"{where}: array header declares a negative dimension {shape}")
    count = math.prod(shape)
    if max_values is not None and count > max_values:
        raise DataError(f"{where}: array header declares {count} values {shape}, more than the limit of 2**31")
    n_bytes = count * dtype.itemsize
    if header_size + n_bytes > size:
        raise DataError(f"{where}: truncated: header declares {shape} ({n_bytes} bytes) but the file is {size} bytes")
    return NpyHeader(tuple(shape), bool(fortran_order), dtype, header_size)


def _read_npy_stream(f: BinaryIO, size: int, where: str) -> np.ndarray:
    shape, fortran_order, dtype, _ = read_npy_header(f, size, where)
    count = math.prod(shape)
    n_bytes = count * dtype.itemsize
    payload = bytearray(n_bytes)  # safe to allocate: n_bytes fits in the file, checked above
    with parsing(f"{where}: cannot read the array data"):
        n_read = f.readinto(payload)
    payload = payload[:n_read] if n_read < n_bytes else payload
    if len(payload) < n_bytes:
        raise DataError(f"{where}: truncated: header declares {shape} ({n_bytes} bytes) but only {len(payload)} follow")
    if dtype.kind == "b":  # a bool byte other than 0/1 must still mean True
        array = np.frombuffer(payload, dtype=np.uint8, count=count) != 0
    else:
        array = np.frombuffer(payload, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran_order else "C")


def npz_parts(archive: NpzArchive) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The arrays of an .npz as {split: (x, labels or None)}.

    Accepted layouts: ``train`` (+ ``valid``/``validation``/``val``, ``test``) with labels under
    ``<split>_labels``, ``y_<split>`` or ``<split>_y``; or ``x``/``X`` (+ ``y``/``Y``/``labels``);
    or a single array. The single-array and x/y layouts come back as the ``train`` split.
    """
    keys = archive.keys()

    def first(candidates: tuple[str, ...]) -> str | None:
        return next((k for k in candidates if k in archive), None)

    if "train" in archive:
        parts = {}
        for split in SPLITS:
            key = first(_SPLIT_KEYS[split])
            if key is not None:
                label_key = first((f"{key}_labels", f"y_{key}", f"{key}_y"))
                parts[split] = (archive[key], None if label_key is None else archive[label_key])
        return parts
    data_key = first(("x", "X"))
    if data_key is not None:
        label_key = first(("y", "Y", "labels"))
        return {"train": (archive[data_key], None if label_key is None else archive[label_key])}
    if len(keys) == 1:
        return {"train": (archive[keys[0]], None)}
    if not keys:
        raise DataError(f"{archive.path}: the .npz archive holds no arrays")
    raise DataError(
        f"{archive.path}: cannot tell which arrays are data among {', '.join(sorted(keys))}; "
        "name them train/valid/test (+ train_labels, ...) or x (+ y)"
    )


def npz_contexts(archive: NpzArchive) -> dict[str, np.ndarray]:
    """The context arrays of an .npz (a conditional model's context vectors, ``--condition columns``),
    as {split: array (N, K) or (N,)}: ``<split>_context`` beside ``train``/``valid``/``test``, or
    ``context`` beside ``x``."""
    if "train" in archive:
        found = {split: next((f"{k}_context" for k in _SPLIT_KEYS[split] if f"{k}_context" in archive), None) for split in SPLITS}
        return {split: archive[key] for split, key in found.items() if key is not None}
    return {"train": archive["context"]} if "context" in archive and ("x" in archive or "X" in archive) else {}


def context_to_tensor(context: np.ndarray, n: int, where: str) -> torch.Tensor:
    """Check a context array is (N, K) or (N,) of finite numbers and return it as float32 (N, K)."""
    context = np.asarray(context)
    if context.ndim == 1:
        context = context[:, None]
    if context.ndim != 2 or len(context) != n or context.shape[1] < 1:
        raise DataError(f"{where}: expected a context of shape ({n}, K), got {context.shape}")
    if context.dtype.kind not in "biuf":
        raise DataError(f"{where}: a context must be numbers, got dtype {context.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        tensor = torch.from_numpy(context.astype(np.float32))
    check_finite(tensor, where)
    return tensor


# ---------------------------------------------------------------------------------------------
# .amat text


_AMAT_BINARY_BYTES = np.zeros(256, dtype=bool)
_AMAT_BINARY_BYTES[list(b"01 \t\r\n")] = True


def read_amat(path: str | Path) -> np.ndarray:
    """Read an ``.amat`` text matrix (one example per line, whitespace-separated numbers) as (N, D).

    Files of single 0/1 digits (binarized MNIST) take a vectorised path and come back uint8
    (values 0/1, not to be scaled); anything else is parsed as float64.
    """
    path = Path(path)
    with open_file(path) as f:
        raw = f.read()
    buf = np.frombuffer(raw, dtype=np.uint8)
    if _AMAT_BINARY_BYTES[buf].all():
        is_digit = (buf == ord("0")) | (buf == ord("1"))
        if not (is_digit[1:] & is_digit[:-1]).any():  # every number is one digit
            return _binary_amat(buf, is_digit, path)
    return _text_amat(raw, path)


def _binary_amat(buf: np.ndarray, is_digit: np.ndarray, path: Path) -> np.ndarray:
    newlines = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(buf)]])
    digits_before = np.concatenate([[0], np.cumsum(is_digit)])
    per_line = digits_before[ends] - digits_before[starts]  # numbers on each line
    line_numbers = np.flatnonzero(per_line) + 1
    per_line = per_line[per_line > 0]  # blank lines are skipped
    if len(per_line) == 0:
        raise DataError(f"{path}: no data")
    bad = np.flatnonzero(per_line != per_line[0])
    if len(bad):
        i = bad[0]
        raise DataError(f"{path}: line {line_numbers[i]} has {per_line[i]} values, expected {per_line[0]}")
    values = buf[is_digit] - np.uint8(ord("0"))
    return values.reshape(len(per_line), int(per_line[0]))


def _text_amat(raw: bytes, path: Path) -> np.ndarray:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    rows = [(i + 1, line.split()) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no data")
    width = len(rows[0][1])
    for line_number, fields in rows:
        if len(fields) != width:
            raise DataError(f"{path}: line {line_number} has {len(fields)} values, expected {width}")
    tokens = [token for _, fields in rows for token in fields]
    try:
        values = np.array(tokens, dtype=np.float64)
    except (ValueError, OverflowError):
        for line_number, fields in rows:
            for token in fields:
                try:
                    float(token)
                except ValueError:
                    raise DataError(f"{path}: line {line_number}: non-numeric value {token!r}") from None
        raise DataError(f"{path}: non-numeric values") from None
    return values.reshape(len(rows), width)


# ---------------------------------------------------------------------------------------------
# array -> tensor


def to_tensor(array: np.ndarray, where: str, *, saved: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Convert a numeric array to a float32 tensor of examples (see the module docstring).

    Args:
        array: (N, D), (N, H, W) or 4-D images; bool, integer or float.
        where: names the data in error messages (a file, or a file and key).
        saved: an earlier call's returned steps (from saved preprocessing): its 4-D ``layout``
            is kept, and its ``divide_by`` too when the input dtype is the same.

    Returns the tensor and the steps taken: ``{"input_dtype", "divide_by", "layout"}``.
    uint8 is divided by 255, unless every value is 0 or 1 (binary data stored as bytes).
    Raises ``DataError`` for no examples, no features, an unsupported rank or non-finite values.
    """
    saved = saved or {}
    _check_examples(array, where)
    array, layout = _channels_first(array, where, saved.get("layout"))
    input_dtype = str(array.dtype)
    if saved.get("input_dtype") == input_dtype and saved.get("divide_by") in (1.0, 255.0):
        divide_by = float(saved["divide_by"])
    else:
        divide_by = 255.0 if array.dtype == np.uint8 and array.max() > 1 else 1.0
    if array.dtype == np.uint8:  # the common case (images): torch converts in parallel
        x = torch.from_numpy(_writable(np.ascontiguousarray(array))).to(torch.float32)
    else:
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: caught below
            x = torch.from_numpy(_writable(np.ascontiguousarray(array, dtype=np.float32)))
    if divide_by != 1.0:
        x = x.div_(divide_by) if array.dtype == np.uint8 else x / divide_by
    if array.dtype.kind == "f":
        check_finite(x, where)
    return x, {"input_dtype": input_dtype, "divide_by": divide_by, "layout": layout}


def _check_examples(array: np.ndarray, where: str) -> None:
    """``DataError`` unless ``array`` is numeric, of rank 2 to 4, with examples that are not empty."""
    if array.dtype.kind not in NUMERIC_KINDS:
        raise DataError(f"{where}: non-numeric data of dtype {array.dtype}")
    if array.ndim not in (2, 3, 4):
        hint = "; reshape one feature to (N, 1)" if array.ndim == 1 else ""
        raise DataError(f"{where}: expected (N, D), (N, H, W) or 4-D image data, got shape {array.shape}{hint}")
    if array.shape[0] == 0:
        raise DataError(f"{where}: no examples (shape {array.shape})")
    if 0 in array.shape[1:]:
        raise DataError(f"{where}: examples are empty (shape {array.shape})")


def _channels_first(array: np.ndarray, where: str, layout: str | None) -> tuple[np.ndarray, str | None]:
    """Images as (N, C, H, W) and the 4-D layout they came in (``layout``: a saved one, else detected);
    (N, D) tables as they are, with layout None."""
    if array.ndim == 3:
        return array[:, None], None  # (N, 1, H, W)
    if array.ndim != 4:
        return array, None
    layout = layout or detect_layout(array.shape, where)
    if layout == "nhwc":
        return array.transpose(0, 3, 1, 2), layout  # (N, C, H, W)
    if layout != "nchw":
        raise DataError(f"{where}: unknown layout {layout!r}; use 'nchw' or 'nhwc'")
    return array, layout


def _writable(array: np.ndarray) -> np.ndarray:
    """torch warns on read-only numpy memory (np.frombuffer over bytes): copy such arrays."""
    return array if array.flags.writeable else array.copy()


def detect_layout(shape: tuple[int, ...], where: str) -> str:
    if shape[3] <= 4:
        return "nhwc"
    if shape[1] <= 4:
        return "nchw"
    raise DataError(f"{where}: 4-D array {shape} has no channel axis of size <= 4 (second or last)")


def labels_to_tensor(labels: np.ndarray, n: int, where: str) -> torch.Tensor:
    """Check labels are (N,) integer-like values and return them as int64."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{where}: expected {n} labels of shape ({n},), got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise DataError(f"{where}: labels must be integers")
    elif labels.dtype.kind not in "biu":
        raise DataError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if labels.dtype.kind in "uf" and len(labels) and labels.max() > np.iinfo(np.int64).max:
        raise DataError(f"{where}: labels too large")
    return torch.from_numpy(labels.astype(np.int64))


def check_finite(x: torch.Tensor, where: str) -> None:
    """DataError naming ``where`` and the first bad example if ``x`` holds NaN or ±inf."""
    if not x.is_floating_point() or torch.isfinite(x.sum()):  # a finite sum: no NaN, no inf (fast path)
        return
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    if bad.any():
        raise DataError(f"{where}: contains NaN or infinite values (first in example {int(bad.nonzero()[0, 0])})")


def infer_value_range(*xs: torch.Tensor) -> str:
    """TOKENS for integer examples (token ids: never ranged), else BINARY if every value is 0 or 1,
    UNIT if all lie in [0, 1], else REAL."""
    if any(not x.is_floating_point() for x in xs):
        return TOKENS
    if all(bool(((x == 0) | (x == 1)).all()) for x in xs):
        return BINARY
    if all(bool((x >= 0).all() and (x <= 1).all()) for x in xs):
        return UNIT
    return REAL


def make_dataset(x: np.ndarray, y: np.ndarray | None, where: str, *, saved: dict | None = None) -> tuple[Dataset, dict]:
    """``to_tensor`` and ``labels_to_tensor`` together: one split as a Dataset, plus the steps taken."""
    tensor, steps = to_tensor(x, where, saved=saved)
    labels = None if y is None else labels_to_tensor(y, len(tensor), f"{where} labels")
    return Dataset(tensor, labels), steps


def token_dataset(tokens: np.ndarray, lengths: np.ndarray | None, y: np.ndarray | None, where: str) -> Dataset:
    """Token sequences as one split: ``tokens`` (N, T) non-negative integers, kept as int64 (no float
    cast, no scaling), ``lengths`` (N,) each in 1..T (``base.check_lengths``), labels as ``labels_to_tensor``."""
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise DataError(f"{where}: tokens must be integers, got dtype {tokens.dtype}")
    if tokens.ndim != 2 or 0 in tokens.shape:
        raise DataError(f"{where}: expected tokens of shape (N, T) with N, T > 0, got {tokens.shape}")
    if tokens.min() < 0 or (tokens.dtype.kind == "u" and tokens.max() > np.iinfo(np.int64).max):
        raise DataError(f"{where}: tokens must be ids 0, 1, ..., found {tokens.min()}..{tokens.max()}")
    x = torch.from_numpy(tokens.astype(np.int64))  # (N, T)
    n = len(x)
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu":
            raise DataError(f"{where} lengths: lengths must be integers, got dtype {lengths.dtype}")
        lengths = torch.from_numpy(lengths.astype(np.int64))
        check_lengths(lengths, x, f"{where} lengths")
    labels = None if y is None else labels_to_tensor(y, n, f"{where} labels")
    return Dataset(x, labels, lengths=lengths)


# ---------------------------------------------------------------------------------------------
# a file of arrays as a source

ARRAY_OPTIONS = ("input_dtype", "divide_by", "layout")
_IDX_NAME = re.compile(r"(idx\d-ubyte(\.gz)?|\.idx\d?(\.gz)?)$", re.IGNORECASE)


def array_format(path: Path) -> str | None:
    """The format of a file by its name: "npy", "npz", "amat" or "idx"; None for other files."""
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz", ".amat"):
        return suffix[1:]
    if _IDX_NAME.search(path.name):
        return "idx"
    return None


def read_array_file(path: Path, options: dict) -> tuple[dict[str, Dataset], dict]:
    """Read an .npy, .npz, .amat or IDX file into its splits and its preprocessing record.

    An .npz may carry train/valid/test splits, labels (see ``npz_parts``) and context vectors
    (``npz_contexts``); other files are
    one "train" array. Every split is converted by the training split's rule (``to_tensor``).
    An .npz with a ``tokens`` array (+ ``lengths``, ``y``/``labels``) is token sequences instead
    (``token_dataset``): one "train" split of int64 ids.
    """
    fmt = array_format(path)
    check_options(options, fmt, ARRAY_OPTIONS + ("context_columns",))
    if fmt == "npz":
        with open_npz(path) as archive:
            if "tokens" in archive:
                return _read_tokens(archive, options)
    contexts = {}
    if fmt == "npz":
        with open_npz(path) as archive:
            arrays = npz_parts(archive)
            contexts = npz_contexts(archive)
    else:
        read = {"npy": read_npy, "amat": read_amat, "idx": read_idx}[fmt]
        arrays = {"train": (read(path), None)}
    parts, steps = {}, dict(options)
    for split in SPLITS:
        if split in arrays:
            x, y = arrays[split]
            where = f"{path} [{split}]" if fmt == "npz" else str(path)
            parts[split], split_steps = make_dataset(x, y, where, saved=steps)
            if split in contexts:
                parts[split].context = context_to_tensor(contexts[split], len(parts[split]), f"{where} context")
            steps = steps if split != "train" else split_steps
            if parts[split].shape != parts["train"].shape:
                raise DataError(f"{where}: examples of shape {parts[split].shape}, but train has {parts['train'].shape}")
    if contexts and any(part.context is None for part in parts.values()):
        raise DataError(f"{path}: give every split a context array, or none")
    record = {"format": fmt, **{key: steps[key] for key in ARRAY_OPTIONS}}
    if contexts:  # names for the context's entries, as a table's context columns are named
        record["context_columns"] = [f"context[{i}]" for i in range(parts["train"].context.shape[1])]
    if options.get("context_columns") not in (None, record.get("context_columns")):
        raise DataError(
            f"{path}: an array file holds its context as train_context (valid_context, test_context) or context arrays; "
            "--context-columns names a CSV table's columns"
        )
    return parts, record


def _read_tokens(archive: NpzArchive, options: dict) -> tuple[dict[str, Dataset], dict]:
    """The token sequences of an .npz (``tokens``, maybe ``lengths`` and ``y``/``labels``) and their record."""
    where = f"{archive.path} [tokens]"
    tokens = archive["tokens"]
    label_key = next((k for k in ("y", "Y", "labels") if k in archive), None)
    lengths = archive["lengths"] if "lengths" in archive else None
    data = token_dataset(tokens, lengths, None if label_key is None else archive[label_key], where)
    record = {"format": "npz", "input_dtype": str(tokens.dtype), "divide_by": 1.0, "layout": None}
    if options.get("divide_by", 1.0) != 1.0 or options.get("context_columns") is not None:
        raise DataError(f"{where}: token sequences are read as they are; the saved scaling or context columns do not apply")
    return {"train": data}, record
