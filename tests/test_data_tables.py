"""CSV tables: standardisation fitted on the training split and reused, labels, and errors by column and line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaekit.data import REAL, SourceSettings, load_data, load_examples
from vaekit.errors import DataError


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["a,b,label"] + [f"{rng.normal(5, 2):.4f},{rng.normal(-1, 0.5):.4f},{i % 3}" for i in range(n)]
    return "\n".join(rows) + "\n"


def test_standardised_on_the_training_split(tmp_path):
    splits = load_data(write(tmp_path, table()), settings=SourceSettings(valid_fraction=0.25))
    assert splits.shape == (2,) and splits.value_range == REAL
    assert (len(splits.train), len(splits.valid)) == (30, 10)
    record = splits.info["preprocessing"]
    assert record["format"] == "csv" and record["columns"] == ["a", "b"] and record["label_column"] == "label"
    np.testing.assert_allclose(splits.train.x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(splits.train.x.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    assert splits.train.y.dtype == torch.int64 and splits.info["num_classes"] == 3


def test_saved_statistics_are_reused_not_recomputed(tmp_path):
    splits = load_data(write(tmp_path, table()))
    saved = json.loads(json.dumps(splits.info["preprocessing"]))
    other = write(tmp_path, table(seed=1), "other.csv")
    reused = load_data(other, preprocessing=saved)
    assert reused.info["preprocessing"]["standardize"] == saved["standardize"]
    refit = load_data(other)
    assert refit.info["preprocessing"]["standardize"] != saved["standardize"]
    # new rows without labels, columns in another order: scored with the saved statistics
    rows = write(tmp_path, "b,a\n-1,5\n0,7\n", "new.csv")
    new = load_examples(rows, preprocessing=saved, expected_shape=splits.info["shape"])
    mean, std = np.array(saved["standardize"]["mean"]), np.array(saved["standardize"]["std"])
    np.testing.assert_allclose(new.x.numpy(), (np.array([[5, -1], [7, 0]]) - mean) / std, rtol=1e-5)
    assert new.y is None


def test_reuse_refuses_missing_and_unexpected_columns(tmp_path):
    saved = load_data(write(tmp_path, table())).info["preprocessing"]
    with pytest.raises(DataError, match="missing column"):
        load_examples(write(tmp_path, "a\n1\n", "n.csv"), preprocessing=saved)
    with pytest.raises(DataError, match="unexpected column"):
        load_examples(write(tmp_path, "a,b,c\n1,2,3\n", "n.csv"), preprocessing=saved)


def test_label_column_option_with_class_names(tmp_path):
    text = "x,species\n" + "".join(f"{i},{'cat' if i % 2 else 'dog'}\n" for i in range(20))
    splits = load_data(write(tmp_path, text), preprocessing={"label_column": "species"})
    record = splits.info["preprocessing"]
    assert record["classes"] == ["cat", "dog"] and splits.info["num_classes"] == 2
    saved = json.loads(json.dumps(record))
    new = load_examples(write(tmp_path, "x,species\n1,dog\n2,cat\n", "n.csv"), preprocessing=saved)
    assert new.y.tolist() == [1, 0]
    with pytest.raises(DataError, match="line 3: unknown class 'bird'"):
        load_examples(write(tmp_path, "x,species\n1,dog\n2,bird\n", "n.csv"), preprocessing=saved)


def test_no_labels_and_drop_columns(tmp_path):
    text = "id,a,b,label\n" + "".join(f"r{i},{i},{i * 2},{i % 2}\n" for i in range(20))
    splits = load_data(write(tmp_path, text), preprocessing={"label_column": None, "drop_columns": ["id"]})
    assert splits.shape == (3,) and splits.train.y is None
    assert splits.info["preprocessing"]["columns"] == ["a", "b", "label"]


def test_label_named_column_that_is_not_integer_is_a_feature(tmp_path):
    text = "a,target\n" + "".join(f"{i},{i / 3:.3f}\n" for i in range(20))
    splits = load_data(write(tmp_path, text))
    assert splits.shape == (2,) and splits.train.y is None


def test_standardize_off(tmp_path):
    splits = load_data(write(tmp_path, "a,b\n" + "0,1\n1,0\n" * 10), preprocessing={"standardize": False})
    assert splits.info["preprocessing"]["standardize"] is False and splits.value_range == "binary"


def test_constant_column_is_centred_not_divided(tmp_path):
    splits = load_data(write(tmp_path, "a,b\n" + "".join(f"{i},7\n" for i in range(20))))
    assert splits.info["preprocessing"]["standardize"]["std"][1] == 1.0
    assert torch.all(splits.train.x[:, 1] == 0)


@pytest.mark.parametrize(
    "cell, problem",
    [("", "missing value"), ("abc", "non-numeric value 'abc'"), ("nan", "non-finite value 'nan'"), ("inf", "non-finite")],
)
def test_bad_cell_names_column_and_line(tmp_path, cell, problem):
    text = "a,b\n1,2\n3,4\n\n5," + cell + "\n7,8\n"  # a blank line before: line 5 of the file
    with pytest.raises(DataError, match=f"column 'b', line 5: {problem}"):
        load_data(write(tmp_path, text))


def test_bad_label_cell_hint(tmp_path):
    with pytest.raises(DataError, match="column 'class', line 3: non-numeric value 'x'.*label_column"):
        load_data(write(tmp_path, "a,class\n1,0\n2,x\n3,1\n"))


def test_ragged_row(tmp_path):
    with pytest.raises(DataError, match="line 3 has 3 fields, expected 2"):
        load_data(write(tmp_path, "a,b\n1,2\n1,2,3\n"))


def test_quoted_multiline_field_keeps_line_numbers(tmp_path):
    with pytest.raises(DataError, match="column 'b', line 3: non-numeric value"):
        load_data(write(tmp_path, 'a,b\n1,"2"\n3,"x\ny"\n5,6\n'))


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty CSV"),
        ("a,b\n", "no data rows"),
        ("1,2\n3,4\n", "looks like data"),
        ("a,a\n1,2\n", "duplicate column name 'a'"),
        ("label\n1\n2\n", "no feature columns"),
    ],
)
def test_malformed_tables(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_data(write(tmp_path, text))


def test_not_utf8(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="not a UTF-8"):
        load_data(str(path))


def test_unknown_label_column(tmp_path):
    with pytest.raises(DataError, match="label column 'kind' not in the header"):
        load_data(write(tmp_path, table()), preprocessing={"label_column": "kind"})
