"""The thread count: every command that computes takes --threads, and the default is the measured one
(one thread; two for a convolutional network on an idle machine; bench/README.md)."""

from __future__ import annotations

import pytest
import torch

from vaekit.cli import COMMANDS, build_parser, main
from vaekit.config import ModelConfig
from vaekit.data import load_data
from vaekit.threads import default_threads, flushing_subnormals, subnormals_flushed, use_threads
from vaekit.training import Trainer

from helpers import SMALL_RUN_FLAGS, small_config

COMPUTING = [name for name in COMMANDS if name not in ("presets", "curves")]  # curves only plots a CSV


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_subnormals_are_flushed_inside_the_block_and_left_as_they_were_after():
    torch.set_flush_denormal(False)
    subnormal = torch.tensor([1e-39, 1e-30])  # the first below float32's smallest normal, 1.18e-38
    assert not flushing_subnormals() and float((subnormal * 1.0)[0]) > 0
    with subnormals_flushed() as able:
        inside = (subnormal * 1.0).tolist()
    if able:  # this CPU can flush (x86 with SSE3)
        assert inside == [0.0, pytest.approx(1e-30)]  # the normal number is kept
    assert not flushing_subnormals() and float((subnormal * 1.0)[0]) > 0  # the caller's state again
    torch.set_flush_denormal(True)
    with subnormals_flushed():
        pass
    assert flushing_subnormals() or not able  # a caller that flushes keeps flushing
    torch.set_flush_denormal(False)


def test_training_and_commands_flush_subnormals_and_restore_the_state(tmp_path, monkeypatch):
    seen = []
    original = Trainer._fit
    monkeypatch.setattr(Trainer, "_fit", lambda self, progress: (seen.append(flushing_subnormals()), original(self, progress))[1])
    torch.set_flush_denormal(False)
    Trainer(small_config(epochs=1), None, data=load_data("digits")).fit(progress=False)
    run = tmp_path / "run"
    assert main(["train", *SMALL_RUN_FLAGS, "--epochs", "1", "--out", str(run)]) == 0
    assert seen == [True, True] or not torch.set_flush_denormal(False)  # flushed while training (where the CPU can)
    assert not flushing_subnormals()  # and as it was after, for the caller's own code


@pytest.mark.parametrize("command", COMPUTING)
def test_every_command_that_computes_takes_threads(command):
    parser = build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    assert any("--threads" in action.option_strings for action in subparser._actions), command


def test_the_default_is_one_thread_and_two_for_conv_on_an_idle_machine(monkeypatch):
    assert default_threads(ModelConfig(arch="mlp")) == 1 and default_threads(ModelConfig(arch="gated")) == 1
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("os.getloadavg", lambda: (0.2, 0.5, 0.5))
    assert default_threads(ModelConfig(arch="conv", hidden=(8,))) == 2  # a core to spare
    monkeypatch.setattr("os.getloadavg", lambda: (1.4, 1.0, 1.0))
    assert default_threads(ModelConfig(arch="conv", hidden=(8,))) == 1  # a busy neighbour: 2 threads would be 2x slower
    assert use_threads(None, ModelConfig()) == 1 and torch.get_num_threads() == 1
    assert use_threads(2, ModelConfig()) == 2 and torch.get_num_threads() == 2  # asked for: as asked


def test_training_and_the_commands_use_it(tmp_path, capsys):
    torch.set_num_threads(2)
    Trainer(small_config(epochs=1), None, data=load_data("digits"))
    assert torch.get_num_threads() == 1  # threads 0: the measured default for an MLP
    run = tmp_path / "run"
    assert main(["train", *SMALL_RUN_FLAGS, "--epochs", "1", "--out", str(run)]) == 0
    torch.set_num_threads(2)
    assert main(["sample", str(run), "-n", "4", "--threads", "2", "-o", str(tmp_path / "s.png")]) == 0
    assert torch.get_num_threads() == 2
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "t.png")]) == 0
    assert torch.get_num_threads() == 1
