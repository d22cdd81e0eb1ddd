"""Run directories and data files are untrusted input: nothing vaekit loads is ever unpickled.

Each test plants a pickle that would create a marker file if it were executed (first showing that
unpickling it really does), puts it where a user or an attacker could (a checkpoint, state.json,
config.json, a .npy/.npz dataset), and checks that loading refuses it with a clear error and that
the marker never appears. A hypothesis fuzz test feeds random and damaged bytes to the checkpoint
reader: it raises ``CheckpointError`` and nothing else."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaekit
from vaekit.checkpoint import load_tensors, save_tensors, tensors_to_bytes
from vaekit.cli import main
from vaekit.config import RunConfig
from vaekit.data import load_data
from vaekit.errors import CheckpointError, ConfigError, DataError
from vaekit.training import resume, train

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"


class Payload:
    """Unpickling this runs ``exec`` and creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('executed')",)


def malicious_pickles(marker: Path) -> dict[str, bytes]:
    """The same payload in the shapes a model file can take."""
    torch_zip = io.BytesIO()
    with zipfile.ZipFile(torch_zip, "w") as z:  # torch.save's layout: a zip holding data.pkl
        z.writestr("archive/data.pkl", pickle.dumps({"weight": Payload(marker)}, protocol=2))
    return {
        "protocol 4": pickle.dumps({"weight": Payload(marker)}, protocol=4),
        "protocol 2": pickle.dumps(Payload(marker), protocol=2),
        "protocol 0 (text, no magic byte)": pickle.dumps(Payload(marker), protocol=0),
        "torch.save zip": torch_zip.getvalue(),
    }


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "MARKER"
    pickle.loads(malicious_pickles(path)["protocol 2"])  # the payload is live: unpickling it executes it
    assert path.read_text() == "executed"
    path.unlink()
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    cfg = RunConfig()
    cfg.model.hidden, cfg.model.latent_dim = (32,), 2
    cfg.train.epochs, cfg.train.batch_size = 1, 64
    out = tmp_path_factory.mktemp("untrusted") / "run"
    train(cfg, out)
    return out


@pytest.fixture
def run(tmp_path, trained) -> Path:
    import shutil

    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def plant(run: Path, role: str, data: bytes, fix_checksum: bool) -> Path:
    """Replace checkpoint file ``role`` with ``data``; an attacker would also fix its checksum."""
    state = json.loads((run / "state.json").read_text())
    path = run / state["files"][role]
    path.write_bytes(data)
    if fix_checksum:
        state["checksums"][state["files"][role]] = hashlib.sha256(data).hexdigest()
        (run / "state.json").write_text(json.dumps(state))
    return path


PICKLE_NAMES = list(malicious_pickles(Path("x")))


@pytest.mark.parametrize("fix_checksum", [True, False], ids=["checksum-fixed", "checksum-stale"])
@pytest.mark.parametrize("kind", PICKLE_NAMES)
def test_pickled_weights_are_refused_and_never_executed(run, marker, kind, fix_checksum, capsys):
    path = plant(run, "last", malicious_pickles(marker)[kind], fix_checksum)
    for which in ("last", "best"):  # one run's best and last are the same file here
        with pytest.raises(CheckpointError, match=re.escape(path.name)):
            vaekit.load(run, which=which)
    with pytest.raises(CheckpointError):
        resume(run, epochs=2)
    assert main(["evaluate", str(run), "--split", "valid"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error:") and "\n" not in err and path.name in err
    if kind != "protocol 0 (text, no magic byte)" and fix_checksum:
        assert "pickle" in err  # named for what it is
    assert not marker.exists()


@pytest.mark.parametrize("kind", PICKLE_NAMES)
def test_pickled_optimizer_state_is_refused_on_resume(run, marker, kind):
    plant(run, "optimizer", malicious_pickles(marker)[kind], fix_checksum=True)
    with pytest.raises(CheckpointError):
        resume(run, epochs=2)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["state.json", "config.json", "data.json"])
def test_pickle_in_place_of_a_json_file_is_refused(run, marker, name, capsys):
    (run / name).write_bytes(malicious_pickles(marker)["protocol 4"])
    if name != "data.json":  # data.json is read when the run's data is loaded
        with pytest.raises((CheckpointError, ConfigError)):
            resume(run, epochs=2)
    with pytest.raises(CheckpointError):
        vaekit.load(run)
    assert main(["evaluate", str(run), "--split", "valid"]) == 2
    assert capsys.readouterr().err.startswith("vaekit: error:")
    assert not marker.exists()


def test_tensors_file_is_read_without_unpickling(tmp_path, marker):
    """A .safetensors name says nothing: the reader checks the bytes."""
    for data in malicious_pickles(marker).values():
        path = tmp_path / "model.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_tensors(path)
    assert not marker.exists()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make", [_fifo, _dev_zero], ids=["fifo", "dev-zero"])
@pytest.mark.parametrize("name", ["config.json", "state.json", "last"])
def test_endless_or_blocking_files_are_refused_not_read(run, make, name):
    """A FIFO (blocks forever) or a link to /dev/zero (never ends) in a run directory."""
    target = run / json.loads((run / "state.json").read_text())["files"]["last"] if name == "last" else run / name
    make(target)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading the file hung"))
    signal.alarm(20)
    try:
        with pytest.raises(CheckpointError):
            vaekit.load(run, which="last")
        with pytest.raises(CheckpointError):
            resume(run, epochs=2)
    finally:
        signal.alarm(0)


def _npy_with_object(marker: Path) -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([Payload(marker), 1.0], dtype=object), allow_pickle=True)
    return out.getvalue()


def _npz_with_object(marker: Path) -> bytes:
    out = io.BytesIO()
    np.savez(out, train=np.zeros((20, 4), np.float32), test=np.array([Payload(marker)], dtype=object))
    return out.getvalue()


@pytest.mark.parametrize(
    "name,build,words",
    [
        ("objects.npy", _npy_with_object, "Python objects"),
        ("objects.npz", _npz_with_object, "Python objects"),
        ("raw-pickle.npy", lambda m: malicious_pickles(m)["protocol 4"], "not a valid .npy"),
        ("raw-pickle.npz", lambda m: malicious_pickles(m)["protocol 4"], "not a valid .npz"),
        ("torch-save.npz", lambda m: malicious_pickles(m)["torch.save zip"], ".npz"),
    ],
)
def test_pickled_data_files_are_refused_and_never_executed(tmp_path, marker, trained, name, build, words, capsys):
    path = tmp_path / name
    path.write_bytes(build(marker))
    with pytest.raises(DataError, match=re.escape(words)):
        load_data(str(path))
    assert main(["train", "--dataset", str(path), "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert main(["evaluate", str(trained), "--data", str(path)]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert line.startswith("vaekit: error:")
    assert not marker.exists()


def test_no_unpickling_call_in_the_source():
    """The library never calls an unpickler: no pickle.load(s), no torch.load without weights_only=True,
    no allow_pickle=True."""
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for pattern in (r"\bpickle\.loads?\(", r"\bUnpickler\b", r"allow_pickle\s*=\s*True", r"\bdill\b", r"\bjoblib\.load\b"):
            offenders += [f"{path.name}: {m.group()}" for m in re.finditer(pattern, text)]
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{path.name}: {m.group()}")
    assert not offenders, offenders


# ----- fuzzing the checkpoint reader -------------------------------------------------------------
SEED = tensors_to_bytes(
    {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(2, dtype=torch.float64)}, {"format": "vaekit"}
)


@st.composite
def damaged_checkpoint(draw: st.DrawFn) -> bytes:
    """The valid file with bytes overwritten or inserted (often in its JSON header), maybe cut short,
    or with a forged header length."""
    data = bytearray(SEED)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        data[:8] = draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.one_of(damaged_checkpoint(), st.binary(max_size=300)), checksum=st.booleans())
def test_fuzz_checkpoint_reader_raises_only_checkpoint_error(tmp_path, data, checksum):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    try:
        tensors = load_tensors(path, hashlib.sha256(SEED).hexdigest() if checksum else None)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    assert not checksum or data == SEED
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())


def test_checkpoint_round_trip_and_checksum(tmp_path):
    tensors = {"w": torch.randn(3, 4), "step": torch.tensor(7)}
    digest = save_tensors(tmp_path / "t.safetensors", tensors)
    back = load_tensors(tmp_path / "t.safetensors", digest)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_tensors(tmp_path / "t.safetensors", "0" * 64)
