"""Token sequences: an .npz of integer ``tokens`` (with ``lengths`` and labels) loads as int64 without a
float cast or a value range, its lengths travel into batches, bad lengths and training are refused in one line."""

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.data import SourceSettings, load_data
from vaekit.data.base import TOKENS, Dataset
from vaekit.data.batches import TrainingBatches
from vaekit.errors import DataError

N, T, V = 40, 7, 11


def token_file(tmp_path, *, lengths=None, labels=True, name="tokens.npz"):
    g = np.random.default_rng(0)
    tokens = g.integers(0, V, size=(N, T)).astype(np.int32)
    tokens[0, 0] = V - 1  # the largest id is there: vocabulary_size is V
    arrays = {"tokens": tokens, "lengths": g.integers(1, T + 1, size=N) if lengths is None else lengths}
    if labels:
        arrays["y"] = np.where(np.arange(N) % 4 == 0, -1, np.arange(N) % 3)  # partly labelled
    path = tmp_path / name
    np.savez(path, **arrays)
    return path, arrays


def test_tokens_load_as_int64_with_lengths_labels_and_their_record(tmp_path):
    path, arrays = token_file(tmp_path)
    data = load_data(str(path), settings=SourceSettings(valid_fraction=0.25, seed=1))
    assert data.train.x.dtype == torch.int64 and data.train.x.shape[1] == T
    assert data.train.lengths.dtype == torch.int64 and data.valid.lengths is not None
    assert len(data.train) + len(data.valid) == N
    whole = torch.cat([data.train.x, data.valid.x])
    both = torch.cat([data.train.lengths, data.valid.lengths])
    # each example keeps its own length and values (no scaling: uint8-style division would show here)
    by_row = {tuple(r): int(n) for r, n in zip(arrays["tokens"].tolist(), arrays["lengths"].tolist())}
    assert all(by_row[tuple(r)] == int(n) for r, n in zip(whole.tolist(), both.tolist()))
    info = data.info
    assert info["value_range"] == TOKENS and data.value_range == TOKENS
    assert info["vocabulary_size"] == V and info["lengths"] is True and info["shape"] == [T]
    assert info["num_classes"] == 3 and (data.train.partly_labelled or data.valid.partly_labelled)
    plain = load_data(str(token_file(tmp_path, labels=False, name="plain.npz")[0]))
    assert plain.train.y is None and plain.info["value_range"] == TOKENS


def test_lengths_travel_into_batches(tmp_path):
    data = load_data(str(token_file(tmp_path)[0])).train
    batches = list(data.batches(8, "cpu"))
    assert torch.equal(torch.cat([b.lengths for b in batches]), data.lengths)
    assert all(b.inputs.dtype == torch.int64 for b in batches)
    assert torch.equal(data.subset(torch.tensor([2, 0])).lengths, data.lengths[[2, 0]])
    assert torch.equal(data.rows(3, 5).lengths, data.lengths[3:5]) and data.to("cpu").lengths is not None
    training = TrainingBatches(data.x, lengths=data.lengths, global_batch=8, seed=0, device=torch.device("cpu"))
    for _, b in training.epoch(0):
        rows = [data.x.tolist().index(r) for r in b.inputs.tolist()]
        assert b.lengths.tolist() == data.lengths[rows].tolist()
    assert next(Dataset(torch.zeros(3, 2)).batches(2, "cpu")).lengths is None


@pytest.mark.parametrize(
    "lengths, message",
    [
        (np.zeros(N, dtype=np.int64), "each length must be in 1..7"),
        (np.full(N, T + 1), "each length must be in 1..7"),
        (np.ones(N - 1, dtype=np.int64), "lengths of shape"),
        (np.ones(N, dtype=np.float32), "lengths must be integers"),
    ],
)
def test_bad_lengths_are_one_line(tmp_path, lengths, message):
    path, _ = token_file(tmp_path, lengths=lengths)
    with pytest.raises(DataError, match=message) as error:
        load_data(str(path))
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="each length"):
        Dataset(torch.zeros(2, 3, dtype=torch.int64), lengths=torch.tensor([1, 4]))


def test_tokens_refuse_scaling_memmap_and_binarize(tmp_path):
    path, _ = token_file(tmp_path)
    with pytest.raises(DataError, match="integer tokens"):
        load_data(str(path), binarize=True)
    with pytest.raises(DataError, match="integer tokens"):
        load_data(str(path), preprocessing={"standardize": True})
    with pytest.raises(DataError, match="memory-mapped"):
        load_data(str(path), settings=SourceSettings(memmap=True))
    np.savez(tmp_path / "floats.npz", tokens=np.zeros((4, 3)))
    with pytest.raises(DataError, match="tokens must be integers"):
        load_data(str(tmp_path / "floats.npz"))


def test_training_on_tokens_is_refused_in_one_line(tmp_path, capsys):
    path, _ = token_file(tmp_path)
    assert main(["train", "--dataset", str(path), "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "token sequences: train them with --arch gru" in err and "\n" not in err and "Traceback" not in err
    sequence_model = ["--arch", "gru", "--likelihood", "categorical"]
    assert main(["train", "--dataset", str(path), *sequence_model, "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "token ids without a vocabulary" in err and "\n" not in err
