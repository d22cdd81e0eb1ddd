"""Run directories written by earlier releases load, evaluate and resume with this one (issue 32).

Each folder of tests/fixtures/runs/ was written by ``vaekit train`` at the commit its name gives.
tests/fixtures/runs/README.md records the command for each and the layout it stands for. Every test
works on a copy, so the fixtures stay as they were written.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.config import CONFIG_VERSION, RunConfig

FIXTURES = Path(__file__).parent / "fixtures" / "runs"

# The settings each fixture was written with that the current code must read back, as dotted
# config keys with their JSON values. A migrated key gets its new form (a scalar dropout p
# becomes the pair (p, p)).
EXPECTED = {
    "2026-11-20-ac88de2": {"model.hidden": [8], "model.dropout": [0.0, 0.0]},  # flat files, no state index
    "2026-11-21-be524fb": {"model.hidden": [8], "model.dropout": [0.0, 0.0]},  # checkpoints/, before the parts
    "2026-12-02-579803f": {"model.hidden": [8], "model.dropout": [0.0, 0.0]},  # before lr decay, logvar_range, ema
    "2026-12-04-de75703": {"train.ema": 0.9, "model.dropout": [0.0, 0.0]},  # no dropout key; raw weights with the optimizer
    "2026-12-04-365df6e": {"model.dropout": [0.1, 0.1]},  # the scalar dropout
    "2026-12-04-da946c1": {"model.dropout": [0.1, 0.2]},  # the current layout
    "2026-12-04-da946c1-midepoch": {"model.dropout": [0.1, 0.2]},  # killed six steps into epoch 2
}

# The killed run and the complete one it must match once resumed
RESUMED_EQUALS = {"2026-12-04-da946c1-midepoch": "2026-12-04-da946c1"}

# Missing keys that do not read as today's default: runs before 324e3b5 were trained without the
# decoder-bias start, so the migration reads them as False (it matters to a run resumed before its
# first checkpoint); memmap is the loader's resolved choice.
MISSING_READS_AS = {"train.init_decoder_bias": False}
NOT_DEFAULT_WHEN_MISSING = {"data.memmap", *MISSING_READS_AS}


def _flat(config: dict) -> dict:
    """{"model": {"dropout": ...}, "version": 1} -> {"model.dropout": ..., "version": 1}"""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def _as_json(config: RunConfig) -> dict:
    return _flat(json.loads(config.to_json()))


def _written(run_dir: Path) -> dict:
    return _flat(json.loads((run_dir / "config.json").read_text(encoding="utf-8")))


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _copy(name: str, tmp_path: Path) -> Path:
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    return run_dir


def _dropout_rates(module: torch.nn.Module) -> set[float]:
    return {m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)}


def _succeeded(code: int, capsys) -> None:
    """Check that a CLI call returned 0; on failure, show its last line of stderr (the one-line error)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, err[-1] if err else f"exit code {code}"


def test_every_fixture_has_expectations():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads(name, tmp_path):
    run_dir = _copy(name, tmp_path)
    written = _written(run_dir)
    run = vaekit.load(run_dir)
    loaded, defaults = _as_json(run.config), _as_json(RunConfig())
    assert {k: loaded[k] for k in EXPECTED[name]} == EXPECTED[name]
    # a key the file has keeps its value, a key added since reads as its default
    for key, value in loaded.items():
        if key in EXPECTED[name] or key == "version":
            continue
        if key in written:
            assert value == written[key], key
        elif key in MISSING_READS_AS:
            assert value == MISSING_READS_AS[key], key
        elif key not in NOT_DEFAULT_WHEN_MISSING:
            assert value == defaults[key], f"{key} (missing from the file)"
    # the model is built as the config says
    encoder, decoder = run.config.model.dropout
    assert _dropout_rates(run.model.encoder) == ({encoder} if encoder else set())
    assert _dropout_rates(run.model.decoder) == ({decoder} if decoder else set())
    assert vaekit.load(run_dir, which="last").config == run.config


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_evaluates(name, tmp_path, capsys):
    """The best weights give the validation loss recorded when they were the best."""
    run_dir = _copy(name, tmp_path)
    out = tmp_path / "eval.json"
    flags = ["--split", "valid", "--no-pca", "--device", "cpu", "--quiet", "--json", str(out)]
    _succeeded(main(["evaluate", str(run_dir), *flags]), capsys)
    best = min(_rows(run_dir), key=lambda row: float(row["valid_loss"]))
    assert json.loads(out.read_text())["neg_elbo"] == pytest.approx(float(best["valid_neg_elbo"]), abs=0.05)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_resumes(name, tmp_path, capsys):
    run_dir = _copy(name, tmp_path)
    before = _rows(run_dir)
    _succeeded(main(["train", "--resume", str(run_dir), "--epochs", "3", "--quiet"]), capsys)
    rows = _rows(run_dir)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert [{c: row[c] for c in before[0]} for row in rows[: len(before)]] == before  # the rows written before are kept
    if name in RESUMED_EQUALS:  # the unfinished epoch's running sums were restored
        complete = _rows(FIXTURES / RESUMED_EQUALS[name])
        columns = [c for c in complete[0] if c in rows[0] and not c.endswith("_seconds")]
        assert {"train_loss", "valid_loss"} <= set(columns)
        for row, expected in zip(rows, complete):
            assert {c: float(row[c]) for c in columns} == pytest.approx({c: float(expected[c]) for c in columns}, rel=1e-5)
    # the config written back is in the current layout and keeps the run's settings
    written = _written(run_dir)
    assert written["version"] == CONFIG_VERSION
    assert set(written) == set(_as_json(RunConfig()))
    assert written["train.epochs"] == 3
    assert {k: written[k] for k in EXPECTED[name]} == EXPECTED[name]
    assert vaekit.load(run_dir, which="last").config.train.epochs == 3
