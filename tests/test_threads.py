"""The thread count: every command that computes takes --threads, and the default is the measured one
(one thread; two for a convolutional network on an idle machine; bench/README.md)."""

from __future__ import annotations

import pytest
import torch

from vaekit.cli import COMMANDS, build_parser, main
from vaekit.config import ModelConfig
from vaekit.data import load_data
from vaekit.threads import default_threads, use_cpu
from vaekit.training import Trainer

from helpers import SMALL_RUN_FLAGS, small_config

COMPUTING = [name for name in COMMANDS if name not in ("presets", "curves")]  # curves only plots a CSV


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_subnormals_are_flushed_to_zero_where_the_cpu_can():
    torch.set_flush_denormal(False)
    subnormal = torch.tensor([1e-39, 1e-30])  # the first below float32's smallest normal, 1.18e-38
    assert float((subnormal * 1.0)[0]) > 0
    use_cpu(1, ModelConfig())
    after = (subnormal * 1.0).tolist()
    if torch.set_flush_denormal(True):  # this CPU can flush (x86 with SSE3)
        assert after == [0.0, pytest.approx(1e-30)]  # the normal number is kept


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
    assert use_cpu(None, ModelConfig()) == 1 and torch.get_num_threads() == 1
    assert use_cpu(2, ModelConfig()) == 2 and torch.get_num_threads() == 2  # asked for: as asked


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
