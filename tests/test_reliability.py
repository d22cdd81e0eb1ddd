"""Crash safety and exact resume, as a user meets them: a training process killed with SIGKILL
(mid-epoch, and again and again, also while it writes a checkpoint) and resumed ends with the same
weights and metrics as an uninterrupted run; Ctrl-C stops cleanly with a resume command; a full
disk, an unwritable output folder and damaged run files give one-line errors and leave the
previous checkpoint intact; a NaN/Inf loss or gradient is caught under both policies.

The subprocess runs use the real command line (``python -m vaekit.cli train``) with ``--threads 1``,
so "the same" means bit-identical."""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.config import RunConfig
from vaekit.data import load_data
from vaekit.errors import CheckpointError, ConfigError, TrainingError
from vaekit.training import Trainer, resume

import helpers

# 85 steps per epoch, 255 in all; a few seconds on one thread
TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--epochs",
    "3",
    "--hidden",
    "64",
    "--latent-dim",
    "4",
    "--batch-size",
    "16",
    "--threads",
    "1",
    "--seed",
    "3",
    "--device",
    "cpu",
    "--quiet",
]
STEPS = 255
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# ----- helpers -------------------------------------------------------------------------------
def launch(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaekit.cli", *map(str, args)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def run_cli(*args) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "vaekit.cli", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def saved_step(run: Path) -> int:
    try:
        return json.loads((run / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):  # not written yet
        return -1


def wait_until(proc: subprocess.Popen, done, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None, f"training ended (code {proc.returncode}) before it could be interrupted: {proc.stderr.read()}"
        assert time.monotonic() < end, "training made no progress"
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # it was still running: the kill cut it short


def outcome(run: Path):
    """What a finished run is judged by: last and best weights, the metrics without timings, the step."""
    weights = {which: vaekit.load(run, which=which).model.state_dict() for which in ("last", "best")}
    with (run / "metrics.csv").open(newline="") as f:
        metrics = [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in csv.DictReader(f)]
    state = json.loads((run / "state.json").read_text())
    return weights, metrics, {k: state[k] for k in ("epoch", "step", "best_epoch", "skipped_steps")}


def assert_same_outcome(run: Path, reference: Path) -> None:
    (weights, metrics, state), (ref_weights, ref_metrics, ref_state) = outcome(run), outcome(reference)
    assert len(metrics) == 3 and state["step"] == STEPS
    assert metrics == ref_metrics
    assert state == ref_state
    for which in ("last", "best"):
        for name, value in ref_weights[which].items():
            assert torch.equal(weights[which][name], value), f"{which} {name} differs"


def assert_clean(run: Path) -> None:
    """Only the files state.json names are in checkpoints/, and no temp file is left over."""
    state = json.loads((run / "state.json").read_text())
    assert {f"checkpoints/{p.name}" for p in (run / "checkpoints").iterdir()} == set(state["files"].values())
    assert not list(run.glob(".*.tmp"))


def one_line(err: str) -> str:
    """The error line; there is exactly one (log lines of the training before it are allowed)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("vaekit")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (no step checkpoints: checkpointing must not change a single bit)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    code, err = run_cli(*TRAIN, "--out", out)
    assert code == 0, err
    return out


# ----- SIGKILL and resume ------------------------------------------------------------------------
# where the kills land is drawn from this seed, new for each session unless given; a failure prints it,
# and VAEKIT_KILL_SEED=N pytest ... draws the same kill points again
KILL_SEED = int(os.environ.get("VAEKIT_KILL_SEED") or random.SystemRandom().randrange(2**32))


def kill_points(test: str) -> random.Random:
    print(f"kill points of {test}: VAEKIT_KILL_SEED={KILL_SEED}")  # shown if the test fails
    return random.Random(f"{KILL_SEED}-{test}")


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, reference):
    run, rng = tmp_path / "run", kill_points("mid-epoch")
    # in the second epoch (steps 86-170), 30 steps before its end: a kill that lands late must not reach the epoch-end checkpoint
    target = rng.randrange(90, 140)
    proc = launch(*TRAIN, "--checkpoint-every", "10", "--out", run)
    wait_until(proc, lambda: saved_step(run) >= target)
    time.sleep(rng.uniform(0, 0.02))
    kill(proc)
    state = json.loads((run / "state.json").read_text())
    print(f"killed with the checkpoint of step {state['step']} saved")  # shown if the test fails
    assert state["step"] < STEPS and state["step_in_epoch"] > 0  # stopped mid-epoch, with a step checkpoint
    code, err = run_cli("train", "--resume", run, "--quiet")
    assert code == 0, err
    assert_same_outcome(run, reference)
    assert_clean(run)


def test_killed_again_and_again_even_while_writing_checkpoints(tmp_path, reference):
    """A checkpoint every 4 steps, so kills often land while one is being written (a new file
    written but state.json not yet replaced, or stale files not yet deleted)."""
    run, rng, step = tmp_path / "run", kill_points("again-and-again"), 0
    for attempt in range(3):
        proc = launch(*TRAIN, "--checkpoint-every", "4", "--out", run) if attempt == 0 else launch("train", "--resume", run, "--quiet")
        wait_until(proc, lambda step=step: saved_step(run) > step + 10)
        time.sleep(rng.uniform(0, 0.05))
        kill(proc)
        step = saved_step(run)
        assert step < STEPS
        vaekit.load(run, which="last")  # what state.json names is there and matches its checksums
    code, err = run_cli("train", "--resume", run, "--quiet")
    assert code == 0, err
    assert_same_outcome(run, reference)
    assert_clean(run)


class _Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing catches it, nothing is cleaned up."""


def test_killed_between_weight_files_and_state_json(tmp_path, reference, monkeypatch):
    """The worst moment: new step files written, state.json not yet replaced, a temp file half written."""
    import vaekit.runs as runs

    run, writes = tmp_path / "run", []

    def dies_on_third_checkpoint(path, obj):
        if Path(path).name == "state.json":
            writes.append(path)
            if len(writes) == 2:
                (run / "checkpoints" / ".last-000000099.safetensors.x1y2.tmp").write_bytes(b"\x00" * 100)
                (run / ".state.json.x1y2.tmp").write_text('{"epoch": ')
                raise _Killed
        real(path, obj)

    real = runs.atomic_write_json
    monkeypatch.setattr(runs, "atomic_write_json", dies_on_third_checkpoint)
    with pytest.raises(_Killed):
        main([*TRAIN, "--checkpoint-every", "33", "--out", str(run)])
    monkeypatch.setattr(runs, "atomic_write_json", real)
    state = json.loads((run / "state.json").read_text())
    assert state["step"] == 33  # the step-66 files were written but state.json still names step 33
    assert {p.name for p in (run / "checkpoints").glob("*.safetensors")} >= {"last-000000066.safetensors", "last-000000033.safetensors"}
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_same_outcome(run, reference)
    assert_clean(run)


def test_killed_before_the_first_checkpoint_starts_again(tmp_path, reference, monkeypatch, caplog):
    run = tmp_path / "run"

    def killed(self, progress=True):
        self.writer.close()  # as the kernel does for a killed process: its run lock goes with it
        raise _Killed

    monkeypatch.setattr(Trainer, "fit", killed)
    with pytest.raises(_Killed):
        main([*TRAIN, "--out", str(run)])
    monkeypatch.undo()
    assert (run / "config.json").exists() and not (run / "state.json").exists()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "no checkpoint yet" in caplog.text
    assert_same_outcome(run, reference)


# ----- Ctrl-C -------------------------------------------------------------------------------------
def test_ctrl_c_stops_with_a_checkpoint_and_says_how_to_resume(tmp_path, reference):
    run = tmp_path / "run"
    proc = launch(*TRAIN, "--checkpoint-every", "10", "--out", run)
    wait_until(proc, lambda: saved_step(run) >= 90)  # a step checkpoint of the second epoch: the loop is running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"vaekit train --resume {run}" in err and "checkpoint saved" in err
    state = json.loads((run / "state.json").read_text())
    assert state["step"] < STEPS and state["step_in_epoch"] > 0  # the stop wrote a checkpoint mid-epoch
    code, err = run_cli("train", "--resume", run, "--quiet")
    assert code == 0, err
    assert_same_outcome(run, reference)


# ----- the environment ----------------------------------------------------------------------------
small_config = partial(helpers.small_config, hidden=(32,), latent_dim=2, epochs=1, lr=RunConfig().train.lr)  # one epoch, the default lr


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class _FullDisk:
    """The ``os`` module as ``vaekit.checkpoint`` sees it, with a disk that fills up after ``room`` bytes."""

    def __init__(self, room: int):
        self.room = room

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode="r", *args, **kwargs):
        f, disk = os.fdopen(fd, mode, *args, **kwargs), self

        class Writer:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                if len(data) > disk.room:
                    f.write(data[: disk.room])
                    disk.room = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.room -= len(data)
                return f.write(data)

            def __getattr__(self, name):
                return getattr(f, name)

        return Writer()


@pytest.mark.parametrize("fails_in", ["weights", "optimizer", "state.json"])
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, digits, monkeypatch, fails_in):
    import vaekit.checkpoint as checkpoint

    run = tmp_path / "run"
    trainer = Trainer(small_config(), run, data=digits)
    trainer.start_run()
    trainer.fit(progress=False)
    before_state = (run / "state.json").read_bytes()
    before = vaekit.load(run, which="last").model.state_dict()
    files = json.loads(before_state)["files"]
    sizes = [(run / files[role]).stat().st_size for role in ("last", "optimizer")]  # the new files are as large
    room = {"weights": 1000, "optimizer": sizes[0] + 1000, "state.json": sum(sizes) + 1000}[fails_in]
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    trainer.state.step += 1
    monkeypatch.setattr(checkpoint, "os", _FullDisk(room))
    with pytest.raises(CheckpointError) as info:
        trainer.checkpoint()
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "previous checkpoint is kept" in message
    assert (run / "state.json").read_bytes() == before_state
    kept = vaekit.load(run, which="last").model.state_dict()
    assert all(torch.equal(kept[k], before[k]) for k in before)
    assert_clean(run)  # the half-written temp file and any new step file are gone


def test_disk_full_through_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    import vaekit.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "os", _FullDisk(200_000))  # config, data.json and one checkpoint (~140 kB) fit
    code = main([*TRAIN, "--epochs", "1", "--checkpoint-every", "5", "--out", str(tmp_path / "run")])
    monkeypatch.undo()
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("vaekit: error: could not write") and "No space left on device" in line
    vaekit.load(tmp_path / "run", which="last")  # the checkpoint before the full disk is there and sound
    assert_clean(tmp_path / "run")


def test_output_folder_that_cannot_be_created_or_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("a regular file, not a folder")
    assert main([*TRAIN, "--out", str(tmp_path / "file" / "run")]) == 2
    assert "cannot create run directory" in one_line(capsys.readouterr().err)

    import vaekit.checkpoint as checkpoint

    class NoPermission:
        @staticmethod
        def mkstemp(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(checkpoint, "tempfile", NoPermission)  # root ignores chmod, so refuse the write itself
    assert main([*TRAIN, "--out", str(tmp_path / "ro")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "cannot write to run directory" in line and "Permission denied" in line


# ----- non-finite values --------------------------------------------------------------------------
def _inf_gradient_at(model, step: int):
    """A hook that makes one gradient infinite at the ``step``-th backward pass; the loss stays finite."""
    calls = []

    def hook(grad):
        calls.append(1)
        return grad * float("inf") if len(calls) == step else grad

    return model.decoder.net[-1].bias.register_hook(hook)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_infinite_gradient_with_finite_loss_is_caught(tmp_path, digits, policy):
    trainer = Trainer(small_config(epochs=2, nonfinite=policy), tmp_path / "run", data=digits)
    trainer.start_run()
    trainer.config.train.epochs = 1
    trainer.fit(progress=False)
    good = vaekit.load(tmp_path / "run", which="last").model.state_dict()
    trainer.config.train.epochs = 2
    _inf_gradient_at(trainer.model, 5)
    if policy == "stop":
        with pytest.raises(TrainingError, match="non-finite loss or gradient at epoch 2, step 5"):
            trainer.fit(progress=False)
        kept = vaekit.load(tmp_path / "run", which="last").model.state_dict()
        assert all(torch.equal(kept[k], good[k]) for k in good)
    else:
        run = trainer.fit(progress=False)
        assert run.metrics()[-1]["skipped_steps"] == 1
        assert all(torch.isfinite(p).all() for p in run.model.parameters())


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_checks_on_the_device_apply_exactly_the_steps_host_checks_apply(tmp_path, digits, monkeypatch, policy):
    """A GPU checks each step on the device and reads the checks every few steps (here every 4th): the
    same steps must be applied, the same one named, and the weight average and the sums the same."""
    import vaekit.training.loop as loop

    finals = {}
    for where in ("host", "device"):
        monkeypatch.setattr(loop, "checks_on_device", lambda device, where=where: where == "device")
        trainer = Trainer(small_config(epochs=1, batch_size=16, ema=0.9, nonfinite=policy), None, data=digits)
        assert (trainer.health.checks is not None) == (where == "device") and trainer.batches.steps_per_epoch // 20 == 4
        _inf_gradient_at(trainer.model, 5)  # step 5 of 85: the device's reads come after steps 4 and 8
        if policy == "stop":
            with pytest.raises(TrainingError, match="non-finite loss or gradient at epoch 1, step 5; training stopped"):
                trainer.fit(progress=False)
        else:
            trainer.fit(progress=False)
            assert trainer.state.skipped_steps == 1 and trainer.rows[-1]["skipped_steps"] == 1
        finals[where] = {
            "weights": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "average": [a.clone() for a in trainer.average.average],
            "adam steps": {float(s["step"]) for s in trainer.optimizer.state.values()},
            "sums": trainer.sums.values.clone() if policy == "stop" else torch.tensor(list(trainer.rows[-1].values())[:8]),
        }
    host, device = finals["host"], finals["device"]
    assert all(torch.equal(host["weights"][k], device["weights"][k]) for k in host["weights"])  # steps 6-8 not applied either
    assert all(torch.equal(a, b) for a, b in zip(host["average"], device["average"]))
    assert host["adam steps"] == device["adam steps"] == ({4.0} if policy == "stop" else {84.0})  # 85 steps, one skipped
    torch.testing.assert_close(host["sums"], device["sums"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("objective", ["elbo", "factor-vae"])
def test_checks_on_the_device_change_nothing_when_every_step_is_finite(digits, monkeypatch, objective):
    import vaekit.training.loop as loop

    weights = []
    for on_device in (False, True):
        monkeypatch.setattr(loop, "checks_on_device", lambda device, on_device=on_device: on_device)
        trainer = Trainer(small_config(epochs=1, ema=0.99, grad_clip=5.0, objective=objective), None, data=digits)
        trainer.fit(progress=False)
        weights.append([t.clone() for t in (*trainer.model.state_dict().values(), *trainer.objective.state_dict().values())])
        rows = trainer.rows
    assert all(torch.equal(a, b) for a, b in zip(*weights)) and rows[-1]["skipped_steps"] == 0


def test_non_finite_weights_never_become_the_best_checkpoint(tmp_path, digits):
    trainer = Trainer(small_config(), tmp_path / "run", data=digits)
    trainer.start_run()
    trainer.fit(progress=False)
    state = (tmp_path / "run" / "state.json").read_bytes()
    with torch.no_grad():
        trainer.model.decoder.net[-1].weight[0, 0] = float("inf")
    trainer.state.step += 1
    with pytest.raises(TrainingError, match="non-finite"):
        trainer.checkpoint(best=True)
    assert (tmp_path / "run" / "state.json").read_bytes() == state
    assert all(torch.isfinite(t).all() for t in vaekit.load(tmp_path / "run", which="best").model.state_dict().values())


# ----- damaged run files ---------------------------------------------------------------------------
@pytest.fixture
def damaged(tmp_path, reference) -> Path:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    return run


def _last_file(run: Path) -> Path:
    return run / json.loads((run / "state.json").read_text())["files"]["last"]


def _truncate(run):
    f = _last_file(run)
    f.write_bytes(f.read_bytes()[:-100])


def _flip_a_byte(run):
    f = _last_file(run)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def _delete(run):
    _last_file(run).unlink()


@pytest.mark.parametrize(
    "damage,words",
    [
        (_truncate, "truncated or corrupted"),
        (_flip_a_byte, "truncated or corrupted"),
        (_delete, "missing file"),
    ],
)
def test_damaged_checkpoint_file_is_named_in_a_clear_error(damaged, damage, words, capsys):
    damage(damaged)
    name = _last_file(damaged).name
    with pytest.raises(CheckpointError, match=words) as info:
        vaekit.load(damaged, which="last")
    assert name in str(info.value)
    for command in (["evaluate", str(damaged), "--split", "valid"], ["train", "--resume", str(damaged), "--quiet"]):
        assert main(command) == 2
        line = one_line(capsys.readouterr().err)
        assert name in line and words in line


def _state(run, **changes):
    state = json.loads((run / "state.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            state[section][field] = value
        else:
            state[key] = value
    (run / "state.json").write_text(json.dumps(state))


def _with_lr(optimizer: dict, lr) -> dict:
    return {**optimizer, "param_groups": [{**g, "lr": lr} for g in optimizer["param_groups"]]}


STATE_DAMAGE = {
    "not JSON": lambda run: (run / "state.json").write_bytes(os.urandom(64)),
    "cut short": lambda run: (run / "state.json").write_text((run / "state.json").read_text()[:200]),
    "empty": lambda run: (run / "state.json").write_text(""),
    "a list": lambda run: (run / "state.json").write_text("[1, 2]"),
    "epoch a string": lambda run: _state(run, epoch="two"),
    "negative step": lambda run: _state(run, step=-5),
    "files not a dict": lambda run: _state(run, files=["checkpoints/x"]),
    "file outside the run": lambda run: _state(run, files__last="checkpoints/../../../etc/passwd"),
    "rng garbage": lambda run: _state(run, rng={"numpy": "x", "python": 3}),
    "optimizer lr a string": lambda run: _state(run, optimizer=_with_lr(json.loads((run / "state.json").read_text())["optimizer"], "fast")),
}


@pytest.mark.parametrize("damage", list(STATE_DAMAGE), ids=list(STATE_DAMAGE))
def test_damaged_state_json_is_refused_on_resume(damaged, damage, capsys):
    STATE_DAMAGE[damage](damaged)
    with pytest.raises(CheckpointError):
        resume(damaged, epochs=4)
    assert main(["train", "--resume", str(damaged), "--epochs", "4", "--quiet"]) == 2
    assert one_line(capsys.readouterr().err).startswith("vaekit: error:")


CONFIG_DAMAGE = {
    "unknown key": {"train": {"epochz": 3}},
    "unknown section": {"optimizer": {}},
    "wrong type": {"train": {"epochs": "ten"}},
    "bool for int": {"model": {"latent_dim": True}},
    "string for list": {"model": {"hidden": "64"}},
    "not an object": [1, 2, 3],
}


@pytest.mark.parametrize("raw", list(CONFIG_DAMAGE.values()), ids=list(CONFIG_DAMAGE))
def test_config_with_unknown_keys_or_wrong_types_is_refused(damaged, tmp_path, raw, capsys):
    with pytest.raises(ConfigError):
        RunConfig.from_dict(raw)
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    assert main([*TRAIN, "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "new")]) == 2
    assert one_line(capsys.readouterr().err).startswith("vaekit: error: config")
    (damaged / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="invalid run config"):
        vaekit.load(damaged)
    assert main(["train", "--resume", str(damaged), "--quiet"]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"vaekit: error: invalid run config in {damaged}: config")
