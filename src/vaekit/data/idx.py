"""A strict reader for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the values in C order. The reader checks all of it before trusting
any of it: the magic, the dtype code, the declared element count (refused above ``2**31``,
or when the file is too small to hold it, before anything is allocated) and that the payload
is exactly as long as declared. Every failure is a ``DataError``.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vaekit.data.base import MAX_VALUES
from vaekit.data.files import open_file
from vaekit.errors import DataError

# IDX dtype code -> numpy dtype (multi-byte values are big-endian)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_NDIM = 16
# deflate cannot expand data more than ~1032x: a gzip file of n bytes holds at most this much
GZIP_MAX_RATIO = 1032
_CHUNK = 1 << 22


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw, told apart by content) into a native-endian array.

    Raises ``DataError`` for a missing file ("no such file"), a damaged gzip stream
    ("corrupt gzip"), a wrong magic number ("not an IDX file (bad magic)"), an unsupported
    dtype code, an absurd declared size, or a payload shorter or longer than declared.
    """
    path = Path(path)
    with open_file(path) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        is_gzip = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        if not is_gzip:
            return _read_stream(handle, path, max_bytes=file_size, compressed=False)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                return _read_stream(stream, path, max_bytes=GZIP_MAX_RATIO * file_size, compressed=True)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise DataError(f"corrupt gzip: {path} ({e})") from None


def _read_stream(stream: BinaryIO, path: Path, *, max_bytes: int, compressed: bool) -> np.ndarray:
    magic = _read_exactly(stream, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(f"not an IDX file (bad magic): {path}")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: unsupported IDX data type code 0x{code:02x}")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions (expected 1 to {MAX_NDIM})")
    header = _read_exactly(stream, 4 * ndim)
    if len(header) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(header, dtype=">u4"))
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    if count > MAX_VALUES:
        raise DataError(f"{path}: IDX header declares {count} values {dims}, more than the limit of 2**31")
    n_bytes = count * dtype.itemsize
    if 4 + 4 * ndim + n_bytes > max_bytes:
        holds = "the gzip file can hold" if compressed else f"the file holds ({max_bytes} bytes)"
        raise DataError(f"{path}: truncated payload: IDX header declares {dims} ({n_bytes} bytes), more than {holds}")
    payload = _read_exactly(stream, n_bytes)
    if len(payload) < n_bytes:
        raise DataError(f"{path}: truncated payload: IDX header declares {dims} ({n_bytes} bytes) but only {len(payload)} follow")
    if stream.read(1):
        raise DataError(f"{path}: IDX payload is longer than its header declares {dims}")
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_exactly(stream: BinaryIO, n: int) -> bytearray:
    """Read up to ``n`` bytes in chunks, so a lying header cannot make us allocate ``n`` up front."""
    chunks = []
    left = n
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return bytearray().join(chunks)  # writable, so arrays over it are too
