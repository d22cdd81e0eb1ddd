"""A damaged run directory, against every command that reads a run: exit code 2 and one line that
names what is wrong, never a traceback; a command that does not read the damaged file still works.

One tiny run is trained once; each test copies it, damages one of its files (truncated to half,
emptied, replaced by random bytes, made non-UTF-8, or a JSON file replaced by a list) and runs a
command in-process through ``vaekit.cli.main``. Every file gets every damage against a core set of
commands; every command gets one damage of every file. The targeted tests after the fuzz pin the
messages of the damage a user meets most: a ragged metrics.csv, a config edited to another size, a
deleted state.json, a typo in the path, and a library error that speaks Python.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.errors import CheckpointError, ConfigError

# which commands read which file of a run (the role of each file: ``_role``)
EVERY_READER = {"config", "data", "state", "weights"}  # what ``vaekit.load`` reads
READS_METRICS = {"curves", "report", "resume"}
READS_OPTIMIZER = {"resume"}

# every command that reads a run, with its cheapest options; {run} and {out} are filled in
COMMANDS = {
    "evaluate": ["evaluate", "{run}", "--no-pca", "--batch-size", "200", "--json", "{out}/eval.json"],
    "sample": ["sample", "{run}", "-n", "4", "-o", "{out}/samples.png"],
    "reconstruct": ["reconstruct", "{run}", "-n", "2", "-o", "{out}/rec.png"],
    "interpolate": ["interpolate", "{run}", "--between", "0", "1", "--steps", "2", "-o", "{out}/interp.png"],
    "traverse": ["traverse", "{run}", "-k", "1", "--steps", "2", "-o", "{out}/trav.png"],
    "manifold": ["manifold", "{run}", "-n", "2", "-o", "{out}/manifold.png"],
    "embed": ["embed", "{run}", "-o", "{out}/embed.png"],
    "denoise": ["denoise", "{run}", "-n", "2", "--noise", "gaussian", "--noise-level", "0.1", "-o", "{out}/denoise.png"],
    "curves": ["curves", "{run}", "-o", "{out}/curves.png"],
    "report": ["report", "{run}", "-o", "{out}/report.html"],
    "anomaly": "anomaly {run} --samples 0 --contamination 0.1 --scores {out}/s.csv --json {out}/a.json -o {out}/a.png".split(),
    "compress": ["compress", "{run}", "digits", "--lossy", "--quiet", "-o", "{out}/codes.vkz"],
    "decompress": ["decompress", "{run}", "{vkz}", "--quiet", "-o", "{out}/decoded.npy"],
    "resume": ["train", "--resume", "{run}", "--quiet"],  # its epochs are done: it reads the run and stops
}
CORE = ("evaluate", "sample", "curves", "resume")


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _emptied(data: bytes) -> bytes:
    return b""


def _random(data: bytes) -> bytes:
    return random.Random(len(data)).randbytes(max(len(data), 64))


def _non_utf8(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + b"\xff" + data[middle + 1 :]  # one byte that no UTF-8 text holds


DAMAGES = {"truncated": _truncated, "emptied": _emptied, "random": _random, "non-utf8": _non_utf8}
JSON_DAMAGE = {"a-list": lambda data: b"[]"}  # valid JSON of the wrong shape


def _role(name: str) -> str:
    """What a file of the run directory is (``name`` relative to it)."""
    roles = {"config.json": "config", "data.json": "data", "state.json": "state", "metrics.csv": "metrics", ".lock": "lock"}
    if name in roles:
        return roles[name]
    if name.startswith("checkpoints/last-"):
        return "weights"
    if name.startswith("checkpoints/optimizer-"):
        return "optimizer"
    raise AssertionError(f"the run directory holds {name}, which this test does not know: say which commands read it")


def _reads(command: str, role: str) -> bool:
    return role in EVERY_READER or command in {"metrics": READS_METRICS, "optimizer": READS_OPTIMIZER}.get(role, ())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One tiny run (digits, an MLP of 16 units, one epoch, one thread) and a file its model compressed."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    argv = "train --dataset digits --epochs 1 --latent-dim 2 --hidden 16 --batch-size 64 --threads 1 --quiet --out".split()
    assert main([*argv, str(run)]) == 0
    assert main(["compress", str(run), "digits", "--lossy", "--quiet", "-o", str(root / "codes.vkz")]) == 0
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    yield {"run": run, "vkz": root / "codes.vkz", "files": files}
    torch.set_num_threads(threads)


def _files() -> list[str]:
    """The files a run directory of the fixture holds (known without training: checked in ``_damaged``)."""
    return ["config.json", "data.json", "state.json", "metrics.csv", "checkpoints/last-", "checkpoints/optimizer-", ".lock"]


def _damaged(trained: dict, tmp_path: Path, file: str, damage) -> tuple[Path, str]:
    """A copy of the run with ``file`` (a name, or the start of a checkpoint's name) damaged; returns
    (the copy, the damaged file's name)."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    (name,) = [f for f in trained["files"] if f == file or (file.endswith("-") and f.startswith(file))]
    path = run / name
    path.write_bytes(damage(path.read_bytes()))
    return run, name


def _run(command: str, run: Path, trained: dict, tmp_path: Path, capsys) -> tuple[int, str]:
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.format(run=run, out=out, vkz=trained["vkz"]) for a in COMMANDS[command]]
    capsys.readouterr()
    code = main(argv)  # a traceback would end the test here, as it would end the command
    return code, capsys.readouterr().err


def _check(command: str, name: str, code: int, err: str) -> None:
    role = _role(name)
    if not _reads(command, role):
        assert code == 0, f"{command} does not need {name}, but failed: {err}"
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("vaekit: error: "), (code, err)
    named = "config" if role == "config" else Path(name).name  # "invalid run config in RUN: ...", "do not match its config"
    assert named in lines[0], f"the message does not name {named}: {lines[0]}"


def test_every_file_of_the_run_is_known(trained):
    """The fuzz below covers every file a run holds (a new kind of file must say who reads it)."""
    roles = {_role(name) for name in trained["files"]}
    assert {"config", "data", "state", "metrics", "weights", "optimizer", "lock"} <= roles
    for file in _files():
        assert any(f == file or f.startswith(file) for f in trained["files"])


@pytest.mark.parametrize("command", CORE)
@pytest.mark.parametrize("file,damage", [(f, d) for f in _files() for d in (*DAMAGES, *(JSON_DAMAGE if f.endswith(".json") else ()))])
def test_every_damage_of_every_file(trained, tmp_path, capsys, file, damage, command):
    run, name = _damaged(trained, tmp_path, file, {**DAMAGES, **JSON_DAMAGE}[damage])
    _check(command, name, *_run(command, run, trained, tmp_path, capsys))


# one damage per file, each file a different one, against every command
ONE_DAMAGE = {
    "config.json": "truncated",
    "data.json": "non-utf8",
    "state.json": "emptied",
    "metrics.csv": "non-utf8",
    "checkpoints/last-": "random",
    "checkpoints/optimizer-": "random",
    ".lock": "random",
}


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in CORE])
@pytest.mark.parametrize("file", _files())
def test_every_command_against_one_damage_of_every_file(trained, tmp_path, capsys, file, command):
    run, name = _damaged(trained, tmp_path, file, DAMAGES[ONE_DAMAGE[file]])
    _check(command, name, *_run(command, run, trained, tmp_path, capsys))


# ----- the damage a user meets most, message by message ----------------------------------------
def _copy(trained: dict, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    return run


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), lines
    return lines[0]


def test_a_ragged_row_in_metrics_csv_is_named(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    with (run / "metrics.csv").open("a") as f:
        f.write("2,44,1,0.001\r\n")  # a row of 4 values under a header of more
    for command in ("report", "curves"):
        assert main([command, str(run), "-o", str(tmp_path / f"{command}.out")]) == 2
        assert "metrics.csv is damaged: row 3 has 4 values" in _one_line(capsys)
    with pytest.raises(CheckpointError, match="row 3 has 4 values"):
        vaekit.load(run).metrics()


def test_a_config_edited_to_another_latent_size_names_the_tensor_and_both_shapes(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["model"]["latent_dim"] = 3
    (run / "config.json").write_text(json.dumps(config))
    assert main(["sample", str(run), "-o", str(tmp_path / "s.png")]) == 2
    line = _one_line(capsys)
    assert "do not match its config (config.json): " in line and not line.endswith(":")
    assert "has shape (4, 16) in the checkpoint but (6, 16) in the model the config builds" in line  # (2 L, hidden)


def test_a_deleted_state_json_says_the_index_is_missing_and_how_to_recover(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    (run / "state.json").unlink()
    assert main(["evaluate", str(run), "--no-pca", "--json", str(tmp_path / "e.json")]) == 2
    line = _one_line(capsys)
    assert "state.json, the index of the run's checkpoints, is missing" in line and "no checkpoint yet" not in line
    assert "checkpoints/last-" in line and f"vaekit train --config {run / 'config.json'} --out NEW_DIR" in line
    with pytest.raises(CheckpointError, match=r"vaekit\.train\(vaekit\.RunConfig\.from_json_file"):
        vaekit.load(run)


def test_a_run_without_checkpoints_has_none_yet(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    (run / "state.json").unlink()
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(CheckpointError, match="has no checkpoint yet"):
        vaekit.load(run)


def test_a_typo_in_the_run_path_says_no_such_run_directory(trained, capsys):
    typo = str(trained["run"]) + "x"
    assert main(["sample", typo]) == 2
    assert _one_line(capsys) == f"vaekit: error: no such run directory: {typo}"


def test_training_into_an_existing_run_speaks_python_in_python_and_flags_on_the_command_line(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    config = vaekit.load(run).config
    with pytest.raises(ConfigError) as info:
        vaekit.train(config, run)
    assert f"vaekit.resume({str(run)!r})" in str(info.value) and "--" not in str(info.value)
    argv = "train --dataset digits --epochs 1 --latent-dim 2 --hidden 16 --threads 1 --quiet --out".split()
    assert main([*argv, str(run)]) == 2
    assert f"use --resume {run}" in _one_line(capsys)
