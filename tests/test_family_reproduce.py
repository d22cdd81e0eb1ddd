"""bench/reproduce.py: rows, --from-run on a tiny trained run (evaluate, record, curve), refusing to overwrite a run."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from vaekit.cli import main
from vaekit.data import load_data
from vaekit.runs import METRIC_FIELDS
from vaekit.training import train

from helpers import small_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_list_their_presets(reproduce, capsys):
    assert reproduce.main(["--list"]) == 0
    out = capsys.readouterr().out
    for preset in (
        "iwae-gated-static-mnist",
        "vampprior-static-mnist",
        "hvae-static-mnist",
        "hvae-vampprior-static-mnist",
        "iwae2-static-mnist",
    ):
        assert preset in out


def test_from_run_evaluates_and_records_the_row_and_its_curve(reproduce, tmp_path, monkeypatch):
    commands = []

    def in_process(command, cwd, env):  # the vaekit commands the script runs, without a new interpreter
        commands.append(command[3:])
        return main(command[3:])

    monkeypatch.setattr(reproduce.subprocess, "call", in_process)
    run_dir = tmp_path / "run"
    train(small_config(epochs=2, threads=1), run_dir, data=load_data("digits"))
    results = tmp_path / "results" / "reproduction.json"
    results.parent.mkdir()
    results.write_text(json.dumps([{"row": "vampprior", "test_nll": 1.0}, {"row": "vae", "test_nll": 2.0}]))
    assert reproduce.main(["vae", "--from-run", str(run_dir), "--iw-samples", "3", "--results", str(results)]) == 0
    assert commands == [
        [
            "evaluate",
            str(run_dir),
            "--split",
            "test",
            "--iw-samples",
            "3",
            "--no-pca",
            "--quiet",
            "--json",
            str(run_dir / "eval-test-iw3.json"),
        ]
    ]
    rows = json.loads(results.read_text())
    assert [r["row"] for r in rows] == ["vae", "vampprior"]  # replaced, not appended; table order
    row = rows[0]
    for key in (
        "row",
        "preset",
        "test_nll",
        "test_nll_stderr",
        "k",
        "literature",
        "pythae",
        "epochs",
        "best_epoch",
        "seconds_per_epoch",
        "wall_seconds",
        "command",
    ):
        assert key in row
    assert row["k"] == 3 and row["epochs"] == 2 and row["literature"] == 88.56 and row["pythae"] == 89.78
    assert row["test_nll"] > 0 and row["best_epoch"] in (1, 2)
    assert row["config_differences_from_preset"]["model.arch"] == ["mlp", "gated"]
    with (results.parent / "reproduction-vae-curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == 2 and "valid_neg_elbo" in curve[0]

    # recorded again: the evaluation of the same best weights with the same K is reused, not repeated
    evaluated = json.loads((run_dir / "eval-test-iw3.json").read_text())
    assert reproduce.main(["vae", "--from-run", str(run_dir), "--iw-samples", "3", "--results", str(results)]) == 0
    assert len(commands) == 1 and json.loads(results.read_text())[0]["test_nll"] == row["test_nll"]
    evaluated["checkpoint"]["sha256"] = "0" * 64  # as if the run had found better weights since
    (run_dir / "eval-test-iw3.json").write_text(json.dumps(evaluated))
    assert reproduce.main(["vae", "--from-run", str(run_dir), "--iw-samples", "3", "--results", str(results)]) == 0
    assert len(commands) == 2


def test_curve_only_writes_the_curve_so_far_of_a_row_still_training(reproduce, tmp_path, capsys):
    run_dir, results = tmp_path / "run", tmp_path / "results" / "reproduction.json"
    run_dir.mkdir()
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        for epoch, loss in ((1, 120.0), (2, 101.5), (3, 103.0)):
            writer.writerow(dict.fromkeys(METRIC_FIELDS, 0) | {"epoch": epoch, "valid_loss": loss, "valid_neg_elbo": loss + 1})
    assert reproduce.main(["iwae", "--curve-only", "--out", str(run_dir), "--results", str(results)]) == 0
    assert "3 epochs so far, best validation loss 101.50 (epoch 2)" in capsys.readouterr().out
    with (results.parent / "reproduction-iwae-training-curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert [float(r["valid_loss"]) for r in curve] == [120.0, 101.5, 103.0] and "step" not in curve[0]
    assert not results.exists()  # nothing recorded
    assert reproduce.main(["iwae", "--curve-only", "--out", str(tmp_path / "none"), "--results", str(results)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err


def test_an_existing_run_needs_resume(reproduce, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert reproduce.main(["vae", "--out", str(tmp_path / "run")]) == 2
    assert "--resume" in capsys.readouterr().err


def test_train_and_resume_commands(reproduce, tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(reproduce.subprocess, "call", lambda command, cwd, env: commands.append((command[3:], env["OMP_NUM_THREADS"])) or 0)
    out = tmp_path / "row"
    assert reproduce.main(["vampprior", "--out", str(out), "--epochs", "3", "--threads", "1", "--train-only"]) == 0
    assert commands[-1] == (
        [
            "train",
            "--preset",
            "vampprior-static-mnist",
            "--data-dir",
            "../shared/data",
            "--threads",
            "1",
            "--out",
            str(out),
            "--epochs",
            "3",
        ],
        "1",
    )
    flags = ["--compile", "--precision", "bf16", "--ema", "0.999", "--lr-patience", "4"]
    assert reproduce.main(["vampprior", "--out", str(out), *flags, "--train-only"]) == 0
    assert commands[-1][0][-7:] == flags
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert reproduce.main(["vampprior", "--out", str(out), "--resume", "--train-only"]) == 0
    assert commands[-1][0] == ["train", "--resume", str(out)]
    assert reproduce.main(["vampprior", "--out", str(out), "--resume", "--lr-patience", "2", "--train-only"]) == 0
    assert commands[-1][0] == ["train", "--resume", str(out), "--lr-patience", "2"]
