"""Memory-mapped .npy files and shard folders: the same examples as the in-memory path, read by
index; splits and block orders; bounded resident memory; training, resume and evaluation on them."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.config import RunConfig
from vaekit.data import Dataset, SourceSettings, load_data, load_examples, streaming
from vaekit.data.streaming import MappedArray, block_order, use_memmap
from vaekit.errors import DataError

from helpers import fit_until_crash


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """uint8 NHWC images (grayscale values) and the in-memory reading of the same file."""
    rng = np.random.default_rng(0)
    path = save(tmp_path_factory.mktemp("img") / "images.npy", rng.integers(0, 256, (300, 6, 5, 3), dtype=np.uint8))
    return path, load_data(str(path), settings=SourceSettings(memmap=False))


def test_mapped_rows_equal_the_in_memory_conversion(images):
    path, memory = images
    whole = torch.cat([memory.train.x, memory.valid.x])  # every row, in some order
    x = load_examples(str(path), settings=SourceSettings(memmap=True)).x
    assert isinstance(x, MappedArray) and x.shape == (300, 3, 6, 5) and len(x) == 300
    reference = load_examples(str(path), settings=SourceSettings(memmap=False)).x  # (300, 3, 6, 5) in file order
    assert torch.equal(x[0:300], reference)
    idx = torch.tensor([7, 3, 299, -1, 3, 150])
    assert torch.equal(x[idx], reference[idx])
    assert torch.equal(x[np.array([5, 4])], reference[[5, 4]])
    assert torch.equal(x[12], reference[12]) and torch.equal(x[-2], reference[-2])
    assert torch.equal(x[10:50:7], reference[10:50:7])
    assert x[torch.tensor([], dtype=torch.long)].shape == (0, 3, 6, 5)
    view = x.narrow(0, 100, 50)
    assert len(view) == 50 and torch.equal(view[0:50], reference[100:150]) and torch.equal(view[torch.tensor([49])], reference[[149]])
    with pytest.raises(IndexError):
        x[torch.tensor([300])]
    with pytest.raises(IndexError):
        x[torch.tensor([0.5])]
    assert whole.shape == reference.shape


def test_memmap_splits_match_the_record_of_the_in_memory_path(images):
    path, memory = images
    mapped = load_data(str(path), settings=SourceSettings(memmap=True, seed=3))
    for key in ("shape", "value_range", "dynamic_binarization", "num_classes"):
        assert mapped.info[key] == memory.info[key], key
    record = mapped.info["preprocessing"]
    assert record["memmap"] is True and record["format"] == "npy"
    for key in ("input_dtype", "divide_by", "layout"):
        assert record[key] == memory.info["preprocessing"][key], key
    n_train, n_valid = len(mapped.train), len(mapped.valid)
    assert n_train + n_valid == 300 and n_valid >= 30 and mapped.info["sizes"] == {"train": n_train, "valid": n_valid, "test": None}
    rows = lambda x: {tuple(r.flatten().tolist()) for r in x[0 : len(x)]}  # noqa: E731
    assert not rows(mapped.train.x) & rows(mapped.valid.x)
    again = load_data(str(path), settings=SourceSettings(memmap=True, seed=3))
    assert torch.equal(again.valid.x[0:n_valid], mapped.valid.x[0:n_valid])
    other = load_data(str(path), settings=SourceSettings(memmap=True, seed=4))
    assert not torch.equal(other.valid.x[0 : len(other.valid)][:10], mapped.valid.x[0:n_valid][:10])
    # the saved record reads the same way again (how a run's evaluation loads its data)
    reread = load_data(str(path), preprocessing=record, settings=SourceSettings(seed=3))
    assert isinstance(reread.train.x, MappedArray) and len(reread.train) == n_train


def test_shard_folders_concatenate_in_name_order(tmp_path):
    rng = np.random.default_rng(1)
    parts = [rng.random((n, 4)).astype(np.float32) for n in (30, 1, 50)]
    for i, part in enumerate(parts):
        save(tmp_path / "flat" / f"part-{i:02d}.npy", part)
    x = load_examples(str(tmp_path / "flat")).x  # a folder is always mapped
    assert isinstance(x, MappedArray)
    whole = torch.from_numpy(np.concatenate(parts))
    assert torch.equal(x[0:81], whole) and torch.equal(x[torch.tensor([80, 30, 29, 31])], whole[[80, 30, 29, 31]])
    data = load_data(str(tmp_path / "flat"))
    assert data.info["preprocessing"]["format"] == "npy-shards" and len(data.train) + len(data.valid) == 81
    for split, n in (("train", 40), ("valid", 10), ("test", 5)):
        save(tmp_path / "splits" / split / "0.npy", rng.random((n, 4)).astype(np.float32))
    data = load_data(str(tmp_path / "splits"))
    assert (len(data.train), len(data.valid), len(data.test)) == (40, 10, 5)
    assert "valid_fraction" not in data.info


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: [save(d / "a.npy", np.zeros((3, 2), np.float32)), save(d / "b.npy", np.zeros((3, 2), np.float64))], "dtype"),
        (lambda d: [save(d / "a.npy", np.asfortranarray(np.zeros((3, 2), np.float32)))], "fortran"),
        (lambda d: [save(d / "a.npy", np.array([[1.0, np.nan]] * 2 + [[0.0, 1.0]], np.float32)[[2, 0, 1]])], "example 1"),
        (lambda d: [save(d / "a.npy", np.zeros(5, np.float32))], "shape"),
        (lambda d: [save(d / "a.npy", np.array([[{}]], dtype=object))], "pickle"),
    ],
)
def test_bad_shards_are_refused_with_a_reason(tmp_path, make, words):
    make(tmp_path)
    with pytest.raises(DataError, match=f"(?i){words}"):
        load_examples(str(tmp_path))


def test_whole_array_preprocessing_is_refused(tmp_path):
    path = save(tmp_path / "a.npy", np.zeros((50, 3), np.float32))
    with pytest.raises(DataError, match="standardize"):
        load_data(str(path), preprocessing={"standardize": True}, settings=SourceSettings(memmap=True))
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match="memory-mapped"):
        load_data(str(table), settings=SourceSettings(memmap=True))


def test_auto_mode_maps_shard_folders_and_npy_files_too_big_for_memory(tmp_path, monkeypatch):
    small = save(tmp_path / "small.npy", np.zeros((10, 4), np.float32))
    assert use_memmap(small, None, {}) is False
    assert use_memmap(small, True, {}) is True and use_memmap(small, None, {"memmap": True}) is True
    monkeypatch.setattr(streaming, "_physical_memory", lambda: 100)  # 10 x 4 float32 = 160 bytes > 25
    assert use_memmap(small, None, {}) is True
    assert use_memmap(tmp_path, None, {}) is True  # the folder holds small.npy
    with pytest.raises(DataError, match="always"):
        use_memmap(tmp_path, False, {})


def test_block_order_is_a_seeded_permutation_of_contiguous_blocks(tmp_path):
    x = load_examples(str(save(tmp_path / "a.npy", np.zeros((1003, 2), np.float32))), settings=SourceSettings(memmap=True)).x
    order = block_order(x, 80, seed=5, epoch=2)  # blocks of 80 // 8 = 10 rows
    full = order[0:1003]
    assert sorted(full.tolist()) == list(range(1003))
    assert torch.equal(full, block_order(x, 80, seed=5, epoch=2)[0:1003])
    assert not torch.equal(full, block_order(x, 80, seed=5, epoch=3)[0:1003])
    assert torch.equal(order[100:180], full[100:180])
    jumps = (full.diff() != 1).sum().item()
    assert jumps <= math.ceil(1003 / 10)  # one jump per block at most: reads stay sequential


def _mapped_kb(name: str) -> int:
    """Resident KB of this process's mappings of files called ``name`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            inside = line.endswith("/" + name)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads resident memory from /proc/self/smaps")
def test_reading_a_mapping_hands_its_pages_back(tmp_path, monkeypatch):
    rows, width = 12_000, 2000  # 96 MB, written in pieces, never held whole
    path = tmp_path / "big.npy"
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, width)})
        for _ in range(rows // 1000):
            f.write(np.full((1000, width), 0.5, np.float32).tobytes())
    peaks = []
    release = streaming._Shard.release

    def measured(shard):  # the mapping's resident size just before each hand-back
        peaks.append(_mapped_kb("big.npy"))
        release(shard)

    monkeypatch.setattr(streaming._Shard, "release", measured)
    x = load_data(str(path), settings=SourceSettings(memmap=True)).train.x  # one pass over every value, in chunks
    order = block_order(x, 256, seed=0, epoch=0)  # 4-row blocks: 64 runs per batch
    for start in range(0, 40 * 256, 256):
        assert x[order[start : start + 256]].shape == (256, width)
    assert x[0:3000].shape == (3000, width)  # one run of 24 MB
    assert _mapped_kb("big.npy") == 0
    bound_kb = (streaming.SCAN_BYTES + 3000 * width * 4) // 1024 + streaming.RUNS_PER_RELEASE * 2048  # chunk + whole folios
    assert max(peaks) < bound_kb < rows * width * 4 // 1024, (max(peaks), bound_kb)


# ----- training and evaluation on mapped data -------------------------------------------------------
def small_config(source: str, **train) -> RunConfig:
    cfg = RunConfig()
    cfg.data.source = source
    cfg.model.hidden = (32,)
    cfg.model.latent_dim = 3
    cfg.train.epochs = 2
    cfg.train.batch_size = 40
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="module")
def binary_npy(tmp_path_factory):
    rng = np.random.default_rng(2)
    prototypes = rng.random((4, 24)) < 0.5
    rows = prototypes[rng.integers(0, 4, 600)] ^ (rng.random((600, 24)) < 0.05)
    return save(tmp_path_factory.mktemp("bin") / "x.npy", rows.astype(np.uint8))


def test_training_on_mapped_data_resumes_to_the_same_weights(tmp_path, binary_npy):
    from vaekit.training import Trainer, resume, train

    full = train(small_config(str(binary_npy), epochs=3), tmp_path / "full")
    assert full.config.data.memmap is False  # small: read into memory automatically
    cfg = small_config(str(binary_npy), epochs=3)
    cfg.data.memmap = True
    mapped = train(cfg, tmp_path / "mapped")
    rows = mapped.metrics()
    assert len(rows) == 3 and rows[-1]["valid_neg_elbo"] < rows[0]["valid_neg_elbo"]
    assert mapped.config.data.memmap is True

    cfg = small_config(str(binary_npy), epochs=3, checkpoint_every=4)
    cfg.data.memmap = True
    trainer = Trainer(cfg, tmp_path / "part")
    trainer.start_run()
    fit_until_crash(trainer, 2, progress=False)
    assert trainer.state.epoch == 0 and trainer.state.step_in_epoch == 8
    resumed = resume(tmp_path / "part")
    for (k, a), b in zip(mapped.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_evaluation_streams_over_mapped_data_with_the_in_memory_numbers(tmp_path, binary_npy):
    from vaekit.anomaly import anomaly_scores
    from vaekit.evaluation import elbo_terms, iw_log_likelihood, latent_diagnostics
    from vaekit.latent import encode
    from vaekit.training import train

    run = train(small_config(str(binary_npy), epochs=1), tmp_path / "run")
    mapped = load_examples(str(binary_npy), preprocessing=run.data_info["preprocessing"], settings=SourceSettings(memmap=True)).x
    memory = load_examples(str(binary_npy), preprocessing=run.data_info["preprocessing"], settings=SourceSettings(memmap=False)).x
    assert isinstance(mapped, MappedArray) and torch.equal(mapped[0:600], memory)
    model = run.model
    a, b = elbo_terms(model, Dataset(mapped), batch_size=128, seed=1), elbo_terms(model, Dataset(memory), batch_size=128, seed=1)
    assert torch.equal(a.neg_elbo, b.neg_elbo)
    assert torch.equal(iw_log_likelihood(model, Dataset(mapped), k=8, seed=2), iw_log_likelihood(model, Dataset(memory), k=8, seed=2))
    assert torch.equal(encode(model, Dataset(mapped)), encode(model, Dataset(memory)))
    assert torch.equal(latent_diagnostics(model, Dataset(mapped)).activity, latent_diagnostics(model, Dataset(memory)).activity)
    assert torch.equal(anomaly_scores(model, Dataset(mapped), samples=2), anomaly_scores(model, Dataset(memory), samples=2))


def test_cli_trains_and_evaluates_a_shard_folder(tmp_path, binary_npy):
    import json

    from vaekit.cli import main

    rows = np.load(binary_npy)
    for i in range(3):
        save(tmp_path / "shards" / f"{i:03d}.npy", rows[i * 200 : (i + 1) * 200])
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tmp_path / "shards"),
                "--epochs",
                "1",
                "--hidden",
                "16",
                "--batch-size",
                "50",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["memmap"] is True
    assert main(["evaluate", str(out), "--split", "valid", "--no-pca", "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["examples"] == json.loads((out / "data.json").read_text())["sizes"]["valid"]
