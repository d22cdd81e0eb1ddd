""".npy, .npz and .amat files as sources: layouts, scaling, value ranges, labels and refusals."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from vaekit.data import BINARY, REAL, UNIT, SourceSettings, load_data, load_examples
from vaekit.data.arrays import read_amat, read_npy
from vaekit.errors import DataError

rng = np.random.default_rng(0)


def save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def test_flat_float_array(tmp_path):
    splits = load_data(save(tmp_path, "a.npy", rng.normal(size=(50, 6))), settings=SourceSettings(valid_fraction=0.2, seed=1))
    assert splits.shape == (6,) and not splits.is_image
    assert (len(splits.train), len(splits.valid), splits.test) == (40, 10, None)
    assert splits.value_range == REAL and splits.train.y is None
    assert splits.info["valid_fraction"] == 0.2 and splits.info["split_seed"] == 1
    assert json.loads(json.dumps(splits.info)) == splits.info


@pytest.mark.parametrize(
    "shape, expected",
    [((30, 5, 7), (1, 5, 7)), ((30, 5, 7, 3), (3, 5, 7)), ((30, 3, 5, 7), (3, 5, 7)), ((30, 1, 9, 9), (1, 9, 9))],
)
def test_image_layouts(tmp_path, shape, expected):
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    splits = load_data(save(tmp_path, "img.npy", array))
    assert splits.shape == expected and splits.value_range == UNIT
    assert splits.info["preprocessing"]["divide_by"] == 255.0
    everything = torch.cat([splits.train.x, splits.valid.x])
    assert float(everything.max()) <= 1.0 and float(everything.min()) >= 0.0
    if len(shape) == 4 and shape[3] == 3:  # NHWC is transposed, not reshaped
        first = torch.from_numpy(array.transpose(0, 3, 1, 2).astype(np.float32) / 255)
        assert any(torch.equal(first[i], splits.train.x[0]) for i in range(len(first)))


def test_ambiguous_4d_is_refused(tmp_path):
    with pytest.raises(DataError, match="no channel axis"):
        load_data(save(tmp_path, "x.npy", np.zeros((4, 8, 8, 8), np.float32)))


def test_binary_uint8_is_not_scaled(tmp_path):
    splits = load_data(save(tmp_path, "b.npy", rng.integers(0, 2, size=(40, 10)).astype(np.uint8)))
    assert splits.value_range == BINARY and splits.info["preprocessing"]["divide_by"] == 1.0


def test_bool_array_is_binary(tmp_path):
    assert load_data(save(tmp_path, "b.npy", rng.random((40, 10)) > 0.5)).value_range == BINARY


def test_fortran_order(tmp_path):
    array = np.asfortranarray(rng.random((20, 4)))
    splits = load_data(save(tmp_path, "f.npy", array))
    got = torch.cat([splits.train.x, splits.valid.x]).double()
    assert sorted(map(tuple, got.numpy().round(6))) == sorted(map(tuple, array.round(6)))


def test_npz_with_splits_and_labels(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(
        path,
        train=rng.random((30, 4)),
        validation=rng.random((10, 4)),
        test=rng.random((8, 4)),
        y_train=np.arange(30) % 3,
        test_labels=np.arange(8.0) % 3,  # integer-valued floats are fine
    )
    splits = load_data(str(path))
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (30, 10, 8)
    assert splits.train.y.tolist() == (np.arange(30) % 3).tolist()
    assert splits.valid.y is None and splits.test.y.dtype == torch.int64
    assert "valid_fraction" not in splits.info and splits.info["num_classes"] == 3


def test_npz_x_y(tmp_path):
    path = tmp_path / "xy.npz"
    np.savez(path, X=rng.random((20, 3)), y=np.arange(20) % 2)
    splits = load_data(str(path), settings=SourceSettings(valid_fraction=0.25))
    assert len(splits.train) == 15 and splits.train.y is not None


def test_npz_single_array_and_unclear_keys(tmp_path):
    np.savez(tmp_path / "one.npz", whatever=rng.random((20, 3)))
    assert load_data(str(tmp_path / "one.npz")).shape == (3,)
    np.savez(tmp_path / "two.npz", a=rng.random((20, 3)), b=rng.random((20, 3)))
    with pytest.raises(DataError, match="cannot tell which arrays are data among a, b"):
        load_data(str(tmp_path / "two.npz"))


def test_npz_split_shapes_must_agree(tmp_path):
    np.savez(tmp_path / "s.npz", train=rng.random((20, 3)), test=rng.random((5, 4)))
    with pytest.raises(DataError, match="shape"):
        load_data(str(tmp_path / "s.npz"))


def test_labels_must_match(tmp_path):
    np.savez(tmp_path / "s.npz", x=rng.random((20, 3)), y=np.arange(19))
    with pytest.raises(DataError, match="expected 20 labels"):
        load_data(str(tmp_path / "s.npz"))
    np.savez(tmp_path / "t.npz", x=rng.random((20, 3)), y=np.full(20, 0.5))
    with pytest.raises(DataError, match="labels must be integers"):
        load_data(str(tmp_path / "t.npz"))


def test_nan_names_the_file(tmp_path):
    array = rng.random((20, 3))
    array[7, 1] = np.nan
    with pytest.raises(DataError, match=r"nan\.npy.*NaN or infinite"):
        load_data(save(tmp_path, "nan.npy", array))
    np.savez(tmp_path / "inf.npz", train=np.where(array > 0.5, np.inf, 0.0))
    with pytest.raises(DataError, match=r"inf\.npz \[train\].*NaN or infinite"):
        load_data(str(tmp_path / "inf.npz"))


def test_float64_overflowing_float32(tmp_path):
    with pytest.raises(DataError, match="NaN or infinite"):
        load_data(save(tmp_path, "big.npy", np.full((10, 2), 1e300)))


@pytest.mark.parametrize("shape", [(0, 4), (5, 0), (7,), (2, 2, 2, 2, 2)])
def test_empty_or_wrong_rank(tmp_path, shape):
    with pytest.raises(DataError):
        load_data(save(tmp_path, "e.npy", np.zeros(shape, np.float32)))


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        read_npy(path)
    np.savez(tmp_path / "obj.npz", x=np.array([1, "a"], dtype=object))
    with pytest.raises(DataError, match="Python objects"):
        load_data(str(tmp_path / "obj.npz"))


def test_strings_refused(tmp_path):
    with pytest.raises(DataError, match="non-numeric dtype"):
        load_data(save(tmp_path, "s.npy", np.array([["a", "b"]] * 5)))


def test_npy_header_declaring_more_than_the_file(tmp_path):
    path = tmp_path / "lie.npy"
    np.save(path, np.zeros((10, 10), np.float64))
    raw = path.read_bytes().replace(b"(10, 10)", b"(99999999, 10)", 1)
    path.write_bytes(raw)
    with pytest.raises(DataError, match="truncated"):
        read_npy(path)
    path.write_bytes(raw.replace(b"(99999999, 10)", b"(99999999999, 99)", 1))
    with pytest.raises(DataError, match="more than the limit"):
        read_npy(path)


def test_corrupt_npz(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros((100, 100)))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    raw[60:80] = b"\xff" * 20
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError):
        load_data(str(tmp_path / "c.npz"))
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a valid .npz"):
        load_data(str(tmp_path / "d.npz"))


def test_zip_bomb_member_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", b"\x00" * 5_000_000)
    with pytest.raises(DataError):
        load_data(str(path))


def test_amat_binary_and_real(tmp_path):
    binary = rng.integers(0, 2, size=(12, 9))
    np.savetxt(tmp_path / "b.amat", binary, fmt="%d")
    np.testing.assert_array_equal(read_amat(tmp_path / "b.amat"), binary)
    real = rng.normal(size=(12, 5))
    np.savetxt(tmp_path / "r.amat", real)
    np.testing.assert_allclose(read_amat(tmp_path / "r.amat"), real)
    splits = load_data(str(tmp_path / "b.amat"))
    assert splits.shape == (9,) and splits.value_range == BINARY


def test_amat_ragged_or_text(tmp_path):
    (tmp_path / "r.amat").write_text("0 1 1\n1 0\n")
    with pytest.raises(DataError, match="line 2 has 2 values, expected 3"):
        read_amat(tmp_path / "r.amat")
    (tmp_path / "t.amat").write_text("0.5 1\n1 abc\n")
    with pytest.raises(DataError, match="line 2: non-numeric value 'abc'"):
        read_amat(tmp_path / "t.amat")


def test_standardize_option_and_reuse_for_arrays(tmp_path):
    path = save(tmp_path, "a.npy", rng.normal(3.0, 2.0, size=(200, 4)))
    splits = load_data(path, preprocessing={"standardize": True})
    stats = splits.info["preprocessing"]["standardize"]
    assert abs(float(splits.train.x.mean())) < 1e-5
    saved = json.loads(json.dumps(splits.info["preprocessing"]))
    new = load_examples(save(tmp_path, "new.npy", np.full((3, 4), 3.0)), preprocessing=saved)
    expected = (3.0 - np.array(stats["mean"])) / np.array(stats["std"])
    np.testing.assert_allclose(new.x[0].numpy(), expected, rtol=1e-5)


def test_layout_is_reused(tmp_path):
    splits = load_data(save(tmp_path, "a.npy", rng.random((10, 3, 4, 4)).astype(np.float32)))
    assert splits.info["preprocessing"]["layout"] == "nhwc"  # last axis <= 4 reads as channels
    forced = load_data(save(tmp_path, "b.npy", rng.random((10, 3, 4, 4)).astype(np.float32)), preprocessing={"layout": "nchw"})
    assert forced.shape == (3, 4, 4)


def test_load_examples_takes_every_split(tmp_path):
    np.savez(tmp_path / "s.npz", train=rng.random((30, 4)), valid=rng.random((10, 4)), test=rng.random((8, 4)))
    splits = load_data(str(tmp_path / "s.npz"))
    everything = load_examples(str(tmp_path / "s.npz"), preprocessing=splits.info["preprocessing"])
    assert len(everything) == 48
    test = load_examples(str(tmp_path / "s.npz"), preprocessing=splits.info["preprocessing"], split="test")
    assert torch.equal(test.x, splits.test.x)


def test_binarize_refused_for_real_data(tmp_path):
    with pytest.raises(DataError, match="binarize needs values in"):
        load_data(save(tmp_path, "r.npy", rng.normal(size=(20, 3))), binarize=True)


def test_unsupported_suffix(tmp_path):
    (tmp_path / "x.xyz").write_text("1 2 3")  # (.txt is a file of strings, one a line: tests/test_sequences.py)
    with pytest.raises(DataError, match="unsupported file type '.xyz'"):
        load_data(str(tmp_path / "x.xyz"))


def test_image_options_need_images_and_standardize_needs_flat(tmp_path):
    flat = save(tmp_path, "flat.npy", rng.random((20, 4)))
    with pytest.raises(DataError, match="apply to images"):
        load_data(flat, image_size=(2, 2))
    images = save(tmp_path, "img.npy", rng.random((20, 6, 6)))
    with pytest.raises(DataError, match="standardize applies to flat"):
        load_data(images, preprocessing={"standardize": True})
    with pytest.raises(DataError, match="image_size must be two positive integers"):
        load_data(images, image_size=(0, 3))
