"""load_data on the named datasets: shapes, ranges, labels, splits and the info record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import BINARY, UNIT, DataSplits, SourceSettings, dataset_names, load_data, load_examples
from vaekit.data.mnist import ENV_VAR
from vaekit.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="shared datasets not present")


@pytest.fixture(scope="module")
def mnist() -> DataSplits:
    splits = load_data("mnist", settings=SourceSettings(data_dir=str(SHARED)))  # its speed is measured by the bench, not asserted here
    return splits


def check_info(splits: DataSplits) -> dict:
    """The info record is JSON-serialisable and agrees with the tensors."""
    info = json.loads(json.dumps(splits.info))
    assert info["sizes"]["train"] == len(splits.train)
    assert info["sizes"]["valid"] == len(splits.valid)
    assert info["sizes"]["test"] == (None if splits.test is None else len(splits.test))
    assert tuple(info["shape"]) == splits.shape
    assert {"source", "split_seed", "value_range", "preprocessing", "dynamic_binarization"} <= set(info)
    for data in (splits.train, splits.valid, splits.test):
        if data is not None:
            assert data.x.dtype == torch.float32
            assert data.y is None or data.y.dtype == torch.int64
    return info


def test_names_registered():
    assert {"digits", "mnist", "fashion-mnist", "binarized-mnist"} <= set(dataset_names())


def test_a_registered_loader_is_given_the_settings_and_the_options(monkeypatch):
    """The extension point: ``register_dataset`` names a function of (SourceSettings, options); load_data
    hands it the caller's settings and preprocessing options, and finishes its splits like any source's."""
    from vaekit.data import base, register_dataset

    monkeypatch.setattr(base, "_DATASETS", dict(base._DATASETS))
    seen = {}

    @register_dataset("ramp")
    def load_ramp(settings: SourceSettings, options: dict) -> DataSplits:
        seen.update(settings=settings, options=options)
        x = torch.linspace(0, 1, 40 * 3).reshape(40, 3)
        return base.split_parts({"train": base.Dataset(x)}, settings.valid_fraction, settings.seed, {"preprocessing": {"format": "ramp"}})

    settings = SourceSettings(data_dir="/nowhere", valid_fraction=0.25, seed=3)
    splits = load_data("ramp", settings=settings, preprocessing={"standardize": False})
    assert seen["settings"] == settings and seen["options"].get("standardize") is False
    assert (len(splits.train), len(splits.valid)) == (30, 10) and splits.info["split_seed"] == 3


def test_digits():
    splits = load_data("digits")
    info = check_info(splits)
    assert splits.shape == (1, 8, 8) and splits.is_image
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (1347, 180, 270)
    assert splits.value_range == UNIT
    assert float(splits.train.x.max()) == 1.0 and float(splits.train.x.min()) == 0.0
    assert set(splits.train.y.tolist()) == set(range(10))
    assert info["num_classes"] == 10 and info["valid_fraction"] == 0.1


def test_digits_split_is_seeded_and_test_is_fixed():
    a, b, c = (
        load_data("digits", settings=SourceSettings(seed=0)),
        load_data("digits", settings=SourceSettings(seed=0)),
        load_data("digits", settings=SourceSettings(seed=1)),
    )
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.valid.y, b.valid.y)
    assert not torch.equal(a.valid.x, c.valid.x)
    assert torch.equal(a.test.x, c.test.x)  # the same test set for every run
    assert len(a.train) + len(a.valid) + len(a.test) == 1797


def test_binarize_records_dynamic_binarization_and_keeps_gray():
    splits = load_data("digits", binarize=True)
    assert splits.info["dynamic_binarization"] is True
    assert splits.value_range == UNIT
    assert ((splits.train.x > 0) & (splits.train.x < 1)).any()  # data stays gray


def test_resize_and_rgb_of_tensor_images():
    splits = load_data("digits", image_size=(16, 12), grayscale=False)
    assert splits.shape == (3, 16, 12)
    assert splits.info["preprocessing"]["image_size"] == [16, 12]
    assert float(splits.train.x.min()) >= 0 and float(splits.train.x.max()) <= 1
    again = load_data("digits", preprocessing=json.loads(json.dumps(splits.info["preprocessing"])))
    assert torch.equal(again.test.x, splits.test.x)
    with pytest.raises(DataError, match="conflicts"):
        load_data("digits", image_size=(8, 8), preprocessing=splits.info["preprocessing"])


def test_unknown_name_lists_names():
    with pytest.raises(DataError, match="unknown dataset 'nope'.*digits.*mnist"):
        load_data("nope")


def test_missing_path():
    with pytest.raises(DataError, match="no such file: missing.npz"):
        load_data("missing.npz")


def test_missing_mnist_files_say_what_to_place_where(tmp_path):
    with pytest.raises(DataError) as err:
        load_data("mnist", settings=SourceSettings(data_dir=str(tmp_path)))
    message = str(err.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "mnist") in message and "download=True" in message and "--" not in message  # Python's words
    assert "add --download" in err.value.cli and "download=True" not in err.value.cli  # the command line's


def test_saved_preprocessing_for_another_format_keeps_the_steps_on_the_model_input():
    # how a CSV was read (its columns) says nothing about the digits; its standardisation is a step on the model's input
    assert load_data("digits", preprocessing={"format": "csv", "columns": ["a", "b"]}).shape == (1, 8, 8)
    with pytest.raises(DataError, match="standardize applies to flat"):
        load_data("digits", preprocessing={"format": "csv", "standardize": {"mean": [0.0], "std": [1.0]}})
    with pytest.raises(DataError, match="unknown preprocessing option"):
        load_data("digits", preprocessing={"colour": 1})


@needs_shared
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_family(name):
    splits = load_data(name, binarize=True, settings=SourceSettings(data_dir=str(SHARED), valid_fraction=0.1, seed=3))
    info = check_info(splits)
    assert splits.shape == (1, 28, 28)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (54000, 6000, 10000)
    assert splits.value_range == UNIT and info["dynamic_binarization"] is True
    assert set(splits.test.y.tolist()) == set(range(10))
    assert info["split_seed"] == 3 and info["valid_fraction"] == 0.1
    assert info["preprocessing"]["divide_by"] == 255.0


@needs_shared
def test_mnist_from_env_var_and_raw_files(tmp_path, monkeypatch, mnist):
    import gzip

    for f in (SHARED / "mnist").glob("*.gz"):  # raw (unzipped) files directly in the root
        (tmp_path / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    raw = load_data("mnist")
    assert torch.equal(raw.test.x, mnist.test.x) and torch.equal(raw.train.y, mnist.train.y)


@needs_shared
def test_binarized_mnist_npz():
    splits = load_data("binarized-mnist", settings=SourceSettings(data_dir=str(SHARED)))
    info = check_info(splits)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50000, 10000, 10000)
    assert splits.shape == (1, 28, 28) and splits.value_range == BINARY
    assert splits.train.y is None and splits.test.y is not None and info["num_classes"] == 10
    assert "valid_fraction" not in info  # its own validation split


@needs_shared
def test_binarized_mnist_npz_and_amat_agree(tmp_path):
    with np.load(SHARED / "binarized_mnist.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key][:300] for key in ("train", "valid", "test", "test_labels")}
    (tmp_path / "npz").mkdir()
    np.savez_compressed(tmp_path / "npz" / "binarized_mnist.npz", **arrays)
    amat_dir = tmp_path / "amat" / "binarized_mnist"
    amat_dir.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        np.savetxt(amat_dir / f"binarized_mnist_{split}.amat", arrays[split], fmt="%d")
    from_npz = load_data("binarized-mnist", settings=SourceSettings(data_dir=str(tmp_path / "npz")))
    from_amat = load_data("binarized-mnist", settings=SourceSettings(data_dir=str(tmp_path / "amat")))
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(from_npz, split).x, getattr(from_amat, split).x)
    assert from_amat.value_range == BINARY and from_amat.test.y is None


def test_binarized_mnist_missing(tmp_path):
    with pytest.raises(DataError, match="binarized_mnist.npz or binarized_mnist_train.amat"):
        load_data("binarized-mnist", settings=SourceSettings(data_dir=str(tmp_path)))


@needs_shared
def test_load_examples_named_dataset_test_split(mnist):
    test = load_examples(
        "mnist", preprocessing=mnist.info["preprocessing"], expected_shape=[1, 28, 28], settings=SourceSettings(data_dir=str(SHARED))
    )
    assert torch.equal(test.x, mnist.test.x) and torch.equal(test.y, mnist.test.y)
    with pytest.raises(DataError, match=r"shape \(1, 8, 8\) but the model expects \(1, 28, 28\)"):
        load_examples("digits", expected_shape=[1, 28, 28])
