"""Training in two CPU processes (torchrun, gloo, DistributedDataParallel) gives the weights of one
process trained on the same data order with the combined batch; so does a resumed distributed run,
also when it resumes on another number of processes. Only rank 0 writes the run directory."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import vaekit
from vaekit import distributed
from vaekit.cli import build_parser
from vaekit.cli.train import forwarded_argv
from vaekit.config import RunConfig
from vaekit.errors import ConfigError
from vaekit.training import Trainer, resume, train

from helpers import fit_until_crash

PER_PROCESS_BATCH = 24
TOLERANCE = dict(rtol=1e-4, atol=1e-5)  # the all-reduce adds gradients in another order than one process


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small binary table (N, D) as .npy: 534 rows, 481 for training in memory, so the last global
    batch of 2 x 24 has one example and one process's share of it is empty."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((5, 20)) < 0.4
    rows = prototypes[rng.integers(0, 5, 534)] ^ (rng.random((534, 20)) < 0.05)
    path = tmp_path_factory.mktemp("table") / "table.npy"
    np.save(path, rows.astype(np.float32))
    return path


def flags(path, *extra) -> list[str]:
    # a deterministic objective (no latent samples), so one process and two agree to rounding
    return [
        "--dataset",
        str(path),
        "--model",
        "ae",
        "--latent-dim",
        "3",
        "--hidden",
        "16",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--quiet",
        *map(str, extra),
    ]


def vaekit_cli(*args, timeout=240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def config_of(path, *, batch, epochs, memmap=False, **train_settings) -> RunConfig:
    args = build_parser().parse_args(["train", *flags(path, "--batch-size", batch, "--epochs", epochs)])
    from vaekit.cli.train import config_from_args

    config = config_from_args(args)
    config.data.memmap = memmap
    for k, v in train_settings.items():
        setattr(config.train, k, v)
    return config


def assert_same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], **TOLERANCE, msg=k)


def metrics(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_two_processes_equal_one_process_with_the_combined_batch(tmp_path, table):
    one = train(config_of(table, batch=2 * PER_PROCESS_BATCH, epochs=3), tmp_path / "one")
    out = tmp_path / "two"
    proc = vaekit_cli("train", *flags(table, "--batch-size", PER_PROCESS_BATCH, "--epochs", 3, "--out", out, "--nproc", 2))
    assert proc.stdout.count("run saved in") == 1  # rank 0 reports; the other rank says nothing
    two = vaekit.load(out, "last")
    assert_same_weights(vaekit.load(tmp_path / "one", "last"), two)
    state = json.loads((out / "state.json").read_text())
    assert state["global_batch"] == 2 * PER_PROCESS_BATCH and state["step"] == 3 * 11  # ceil(481 / 48) steps per epoch
    rows_one, rows_two = metrics(tmp_path / "one"), metrics(out)
    assert len(rows_two) == 3  # one writer: no duplicated rows
    for r1, r2 in zip(rows_one, rows_two):
        for key in ("step", "train_loss", "valid_loss", "valid_neg_elbo"):
            assert float(r2[key]) == pytest.approx(float(r1[key]), rel=1e-4), key  # train and validation reduced over ranks
    assert sorted(p.name.split("-")[0] for p in (out / "checkpoints").iterdir()) == ["last", "optimizer"]
    assert one.config.data.memmap is False


def test_resumed_distributed_run_equals_the_uninterrupted_one_on_any_number_of_processes(tmp_path, table):
    """One process stops mid-epoch; two processes resume it (reading the data memory-mapped) and
    finish epoch 2; one process finishes epoch 3. The global batch stays 2 x 24 throughout."""
    reference = train(config_of(table, batch=2 * PER_PROCESS_BATCH, epochs=3, memmap=True), tmp_path / "reference")
    config = config_of(table, batch=2 * PER_PROCESS_BATCH, epochs=3, memmap=True, checkpoint_every=4)
    trainer = Trainer(config, tmp_path / "run")
    trainer.start_run()
    fit_until_crash(trainer, 2, progress=False)
    assert trainer.state.epoch == 0 and trainer.state.step_in_epoch == 8  # stopped inside epoch 1 of 10 steps

    vaekit_cli("train", "--resume", tmp_path / "run", "--epochs", 2, "--quiet", "--nproc", 2)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert (state["epoch"], state["step"], state["global_batch"]) == (2, 20, 48)
    resumed = resume(tmp_path / "run", epochs=3)  # back to one process
    assert_same_weights(reference, resumed)
    rows = metrics(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r_ref, r in zip(metrics(tmp_path / "reference"), rows):
        assert float(r["train_loss"]) == pytest.approx(float(r_ref["train_loss"]), rel=1e-4)  # epoch sums survive the hand-overs


# ----- the pieces, without processes ---------------------------------------------------------------
def test_a_single_process_is_a_world_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = distributed.init("cpu")
    assert world == distributed.World() and world.is_main and not world.distributed
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    with pytest.raises(ConfigError):
        distributed.on_main(lambda: (_ for _ in ()).throw(ConfigError("boom")))


def test_environment_and_backend_choice(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = distributed.env_world()
    assert (world.rank, world.size, world.local_rank, world.is_main, world.distributed) == (3, 4, 1, False, True)
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda")) == "nccl"
    if torch.cuda.device_count() >= 2:
        assert distributed.local_device("cuda", world) == torch.device("cuda", 1)
    else:
        with pytest.raises(ConfigError, match="one process per GPU"):
            distributed.local_device("cuda", world)
    assert distributed.local_device("cuda:0", world) == torch.device("cuda", 0)
    assert distributed.local_device("cpu", world) == torch.device("cpu")


def test_the_launcher_forwards_every_flag_but_nproc():
    args = build_parser().parse_args(
        [
            "-v",
            "train",
            "--dataset",
            "x.npy",
            "--hidden",
            "64",
            "32",
            "--no-memmap",
            "--lr",
            "0.003",
            "--quiet",
            "--nproc",
            "2",
            "--out",
            "r",
        ]
    )
    argv = forwarded_argv(args)
    assert "--nproc" not in argv and argv[:2] == ["--verbose", "train"]
    again = build_parser().parse_args(argv)
    for name in ("dataset", "hidden", "memmap", "lr", "quiet", "out", "device"):
        assert getattr(again, name) == getattr(args, name), name
    assert again.nproc is None


def test_a_sequence_model_trains_the_same_in_two_processes(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"] * 30) + "\n")
    common = flags(path, "--arch", "gru", "--likelihood", "categorical", "--epochs", 2)
    vaekit_cli("train", *common, "--batch-size", 48, "--out", tmp_path / "one")
    vaekit_cli("train", *common, "--batch-size", 24, "--nproc", 2, "--out", tmp_path / "two")
    assert_same_weights(vaekit.load(tmp_path / "one", "last"), vaekit.load(tmp_path / "two", "last"))
