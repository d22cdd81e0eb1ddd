"""A run reads its data from any working directory: its paths are stored absolute, and a run whose
data has moved is pointed at it again with ``--data-dir`` (``load_data(data_dir=...)``) or
``$VAEKIT_DATA_DIR``; the message for missing data says which, in the caller's language."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.errors import DataNotFound

TINY = "--epochs 1 --latent-dim 2 --hidden 16 --batch-size 32 --threads 1 --quiet".split()


def _idx(array: np.ndarray) -> bytes:
    return gzip.compress(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def _tiny_mnist(folder: Path) -> None:
    """MNIST's four IDX files with 60 training and 20 test images."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, n in (("train", 60), ("t10k", 20)):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(rng.integers(0, 10, n, dtype=np.uint8)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs trained from a working directory with relative paths: on MNIST in ``data/`` and on
    an .npy file ``arrays/x.npy``."""
    threads, cwd = torch.get_num_threads(), os.getcwd()
    root = tmp_path_factory.mktemp("portable")
    _tiny_mnist(root / "data" / "mnist")
    (root / "arrays").mkdir()
    np.save(root / "arrays" / "x.npy", np.random.default_rng(1).random((80, 6), dtype=np.float32))
    env = os.environ.pop("VAEKIT_DATA_DIR", None)
    os.chdir(root)
    try:
        assert main(["train", "--dataset", "mnist", "--data-dir", "data", *TINY, "--out", "mnist-run"]) == 0
        assert main(["train", "--dataset", "arrays/x.npy", "--likelihood", "gaussian", *TINY, "--out", "npy-run"]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
        if env is not None:
            os.environ["VAEKIT_DATA_DIR"] = env
    return root


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Another working directory, and no $VAEKIT_DATA_DIR."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    return tmp_path


def _moved(runs: Path, tmp_path: Path, name: str, data: str) -> tuple[Path, Path]:
    """A copy of run ``name`` whose data folder ``data`` has moved to tmp_path/moved; (the run, the new folder)."""
    run = tmp_path / name
    shutil.copytree(runs / name, run)
    moved = tmp_path / "moved"
    shutil.copytree(runs / data, moved)
    config = json.loads((run / "config.json").read_text())
    gone = str(tmp_path / "gone")  # as if the run's data folder had been moved away
    if config["data"]["data_dir"] is not None:
        config["data"]["data_dir"] = gone
    else:
        config["data"]["source"] = f"{gone}/{Path(config['data']['source']).name}"
    (run / "config.json").write_text(json.dumps(config))
    return run, moved


def _evaluate(run: Path, tmp_path: Path, *extra: str) -> int:
    return main(["evaluate", str(run), "--no-pca", "--json", str(tmp_path / "eval.json"), *extra])


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), lines
    return lines[0]


def test_a_run_stores_its_paths_absolute_and_works_from_anywhere(runs, elsewhere, capsys):
    mnist = json.loads((runs / "mnist-run" / "config.json").read_text())["data"]
    assert mnist["source"] == "mnist" and mnist["data_dir"] == str(runs / "data")  # a name stays a name
    npy = json.loads((runs / "npy-run" / "config.json").read_text())["data"]
    assert npy["source"] == str(runs / "arrays" / "x.npy") and npy["data_dir"] is None
    for name in ("mnist-run", "npy-run"):
        assert _evaluate(runs / name, elsewhere, "--split", "valid") == 0
        assert main(["embed", str(runs / name), "-o", str(elsewhere / f"{name}.png")]) == 0
        assert len(vaekit.load(runs / name).load_data().train) > 0


def test_a_named_dataset_that_moved_is_found_with_data_dir_or_the_environment(runs, elsewhere, capsys, monkeypatch):
    run, moved = _moved(runs, elsewhere, "mnist-run", "data")
    assert _evaluate(run, elsewhere) == 2
    line = _one_line(capsys)
    assert "mnist files not found" in line and str(elsewhere / "gone" / "mnist") in line
    assert "--data-dir DIR or VAEKIT_DATA_DIR" in line and "--download, if online" in line and "download=True" not in line
    with pytest.raises(DataNotFound) as info:
        vaekit.load(run).load_data()
    python = str(info.value)
    assert "load_data(data_dir=...)" in python and "VAEKIT_DATA_DIR" in python and "download=True" in python and "--" not in python

    assert _evaluate(run, elsewhere, "--data-dir", str(moved)) == 0
    assert main(["embed", str(run), "--data-dir", str(moved), "-o", str(elsewhere / "e.png")]) == 0
    assert len(vaekit.load(run).load_data(data_dir=str(moved)).test) == 20
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(moved))  # honoured because the stored folder is gone
    assert _evaluate(run, elsewhere) == 0
    assert len(vaekit.load(run).load_data().test) == 20


def test_the_environment_is_not_offered_where_the_stored_folder_exists(runs, elsewhere, capsys):
    run, _ = _moved(runs, elsewhere, "mnist-run", "data")
    (elsewhere / "gone").mkdir()  # the folder is there, without the files
    assert _evaluate(run, elsewhere) == 2
    line = _one_line(capsys)
    assert "--data-dir DIR" in line and "VAEKIT_DATA_DIR" not in line


def test_a_data_file_that_moved_is_found_by_its_name_in_data_dir(runs, elsewhere, capsys):
    run, moved = _moved(runs, elsewhere, "npy-run", "arrays")
    assert _evaluate(run, elsewhere, "--split", "valid") == 2
    line = _one_line(capsys)
    assert f"the run's data {elsewhere / 'gone' / 'x.npy'} is gone" in line and "--data-dir DIR" in line
    with pytest.raises(DataNotFound, match=r"load_data\(data_dir=\.\.\.\)"):
        vaekit.load(run).load_data()
    assert _evaluate(run, elsewhere, "--split", "valid", "--data-dir", str(moved)) == 0
    assert len(vaekit.load(run).load_data(data_dir=str(moved)).train) > 0


def test_data_dir_that_does_not_exist_is_a_one_line_error(runs, elsewhere, capsys):
    assert _evaluate(runs / "mnist-run", elsewhere, "--data-dir", str(elsewhere / "typo")) == 2
    assert _one_line(capsys) == f"vaekit: error: --data-dir {elsewhere / 'typo'}: no such folder"


# the commands that read a run's data, with the options under which they do
READING = {
    "evaluate": ["--no-pca", "--json", "{out}/eval.json"],
    "reconstruct": ["-n", "2", "-o", "{out}/rec.png"],
    "interpolate": ["--between", "0", "1", "--steps", "2", "-o", "{out}/interp.png"],
    "traverse": ["-k", "1", "--steps", "2", "-o", "{out}/trav.png"],
    "embed": ["-o", "{out}/embed.png"],
    "denoise": ["-n", "2", "--noise", "gaussian", "--noise-level", "0.1", "-o", "{out}/denoise.png"],
    "report": ["-o", "{out}/report.html"],
    "anomaly": ["--samples", "0", "--scores", "{out}/s.csv", "--json", "{out}/a.json", "-o", "{out}/a.png"],
    "sample": ["--density", "gaussian", "-n", "4", "-o", "{out}/samples.png"],
}


@pytest.mark.parametrize("command", [*READING, "compress"])
def test_every_command_that_reads_a_runs_data_says_how_to_point_it_there_and_takes_data_dir(runs, elsewhere, capsys, command):
    run, moved = _moved(runs, elsewhere, "mnist-run", "data")
    out = elsewhere / "out"
    out.mkdir()
    if command == "compress":
        argv = ["compress", str(run), "mnist", "--lossy", "--quiet", "-o", str(out / "codes.vkz")]
    else:
        argv = [command, str(run), *(a.format(out=out) for a in READING[command])]
    assert main(argv) == 2
    assert "; point the run at the folder that holds them with --data-dir DIR or VAEKIT_DATA_DIR" in _one_line(capsys)
    assert main([*argv, "--data-dir", str(moved)]) == 0


@pytest.mark.parametrize("command", [*READING, "compress", "explore"])
def test_every_command_that_reads_a_runs_data_takes_data_dir(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--data-dir DIR" in text and "--download" in text
