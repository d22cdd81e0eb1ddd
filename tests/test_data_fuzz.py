"""Malformed bytes in any format either load or raise DataError: never another exception, never a hang."""

from __future__ import annotations

import gzip
import io
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaekit.data import DataSplits, SourceSettings, load_data, read_idx
from vaekit.errors import DataError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _idx() -> bytes:
    images = (np.arange(10 * 4 * 4) % 251).astype(np.uint8)
    return bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 10, 4, 4) + images.tobytes()


def _npy() -> bytes:
    out = io.BytesIO()
    np.save(out, np.linspace(0, 1, 30, dtype=np.float32).reshape(10, 3))
    return out.getvalue()


def _npz() -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, train=np.eye(8, 4), test=np.ones((3, 4)), train_labels=np.arange(8))
    return out.getvalue()


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray((np.arange(48) * 5 % 256).astype(np.uint8).reshape(6, 8)).save(out, format=fmt)
    return out.getvalue()


# file name -> a valid file of that kind, which the mutation strategy damages
SEEDS = {
    "data-idx3-ubyte": _idx(),
    "data-idx3-ubyte.gz": gzip.compress(_idx()),
    "data.npy": _npy(),
    "data.npz": _npz(),
    "data.csv": b"a,b,label\n1,2,0\n3.5,-4,1\n5,6e2,0\n7,8,1\n",
    "data.amat": b"0 1 1 0\n1 0 0 1\n1 1 1 1\n0 0 0 0\n",
    "images/a.png": _image("PNG"),
    "images/b.jpg": _image("JPEG"),
}


@st.composite
def damaged(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed with a few bytes overwritten, bytes inserted, and maybe cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if draw(st.booleans()) and data:
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def write(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``name`` under ``folder``; return what to load (the file, or its image folder)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if not name.startswith("images/"):
        return path
    (path.parent / ("z" + path.name)).write_bytes(SEEDS[name])  # a second, valid image: something to split
    return path.parent


def load_bytes(name: str, data: bytes) -> None:
    """Load ``data`` the way a user would: it loads, or raises DataError and nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        target = write(Path(tmp), name, data)
        try:
            result = load_data(str(target), settings=SourceSettings(valid_fraction=0.3))
        except DataError:
            return
        assert isinstance(result, DataSplits)
        if "idx" in name:
            read_idx(target)  # it loaded, so it reads


def test_seeds_are_valid(tmp_path):
    for name, data in SEEDS.items():
        splits = load_data(str(write(tmp_path / name.replace("/", "_"), name, data)), settings=SourceSettings(valid_fraction=0.3))
        assert len(splits.train) >= 1


def _fuzz(name: str):
    @FUZZ
    @given(data=st.one_of(damaged(SEEDS[name]), st.binary(max_size=200)))
    def test(data: bytes) -> None:
        load_bytes(name, data)

    test.__name__ = f"test_fuzz_{name.replace('/', '_').replace('.', '_').replace('-', '_')}"
    return test


for _name in SEEDS:
    _test = _fuzz(_name)
    globals()[_test.__name__] = _test
del _name, _test
