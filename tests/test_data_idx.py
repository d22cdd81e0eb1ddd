"""The strict IDX reader: valid files in both encodings, and every kind of damage as DataError."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import SourceSettings, load_data, read_idx
from vaekit.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + big_endian.tobytes()


@pytest.mark.parametrize(
    "dtype, code",
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)],
)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, dtype, code, compress):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    data = idx_bytes(array, code)
    path = tmp_path / "a-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_idx_file_as_a_source(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(20, 5, 6), dtype=np.uint8)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images, 0x08)))
    splits = load_data(str(path), settings=SourceSettings(valid_fraction=0.25))
    assert splits.shape == (1, 5, 6) and len(splits.train) == 15
    assert splits.info["preprocessing"]["format"] == "idx"


def test_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 10)
    with pytest.raises(DataError, match=r"not an IDX file \(bad magic\)"):
        read_idx(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(path)


def test_unsupported_dtype_code(tmp_path):
    path = tmp_path / "f16"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 2) + b"\x00" * 4)
    with pytest.raises(DataError, match="unsupported IDX data type code 0x0a"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_huge_dims_refused_before_allocating(tmp_path, compress):
    data = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**20, 2**20, 2**20) + b"\x00" * 16
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match="more than the limit"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_more_than_the_file_can_hold(tmp_path, compress):
    data = bytes([0, 0, 0x0E, 2]) + struct.pack(">2I", 10000, 10000) + b"\x00" * 16  # 800 MB declared
    path = tmp_path / "big"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match="truncated payload"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_payload(tmp_path, compress):
    data = idx_bytes(np.zeros((10, 4, 4), np.uint8), 0x08)[:-7]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match="truncated payload"):
        read_idx(path)


def test_payload_longer_than_declared(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((3, 2), np.uint8), 0x08) + b"\x00")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8).reshape(10, 100) % 7, 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)


def test_gzip_with_bad_crc(tmp_path):
    compressed = bytearray(gzip.compress(idx_bytes(np.zeros((4, 4), np.uint8), 0x08)))
    compressed[-8] ^= 0xFF  # the CRC32 in the trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nothing")


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="shared datasets not present")
def test_real_mnist_labels():
    labels = read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8 and labels.max() == 9
