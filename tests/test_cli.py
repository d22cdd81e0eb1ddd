"""Every core CLI command end to end on small data, and each bad input as a one-line error with exit code 2."""

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli import main
from vaekit.runs import TrainState

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "3",
            "--latent-dim",
            "2",
            "--hidden",
            "64",
            "--batch-size",
            "64",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def run_cli(*args):
    """The installed entry point in a subprocess: exit code, stdout, stderr."""
    proc = subprocess.run([sys.executable, "-m", "vaekit.cli", *map(str, args)], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def run_in_process(capsys, *args):
    """``vaekit.cli.main`` in this process (a subprocess proves nothing more for argument errors):
    exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own exits (a bad flag value)
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("vaekit: error:")
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_train_writes_a_complete_run(run_dir):
    for name in ["config.json", "data.json", "state.json", "metrics.csv"]:
        assert (run_dir / name).is_file(), name
    state = json.loads((run_dir / "state.json").read_text())
    assert set(state["files"]) == {"last", "best", "optimizer"}
    on_disk = {f"checkpoints/{p.name}" for p in (run_dir / "checkpoints").iterdir()}
    assert on_disk == set(state["files"].values())  # older checkpoint files were removed
    assert (run_dir / "figures").is_dir()
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 4


def test_evaluate_prints_and_writes_json(run_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run_dir), "--split", "test", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["neg_elbo"] == pytest.approx(result["reconstruction"] + result["kl"])
    assert 0 < result["kl"] < result["neg_elbo"]
    assert result["bits_per_dim"] is None  # a bernoulli likelihood of grey digits: no code length, so no bits/dim
    assert "negative ELBO" in capsys.readouterr().out
    state = json.loads((run_dir / "state.json").read_text())  # which weights were evaluated
    best = state["files"]["best"]
    assert result["checkpoint"] == {"which": "best", "file": best, "sha256": state["checksums"][best], "epoch": state["best_epoch"]}


def test_sample_and_reconstruct_write_grids_with_content(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "-n", "16"]) == 0
    img = np.asarray(Image.open(run_dir / "figures" / "samples.png"))
    assert img.shape[0] == img.shape[1] and img.shape[0] >= 4 * 56  # 4 x 4 grid of enlarged 8x8 digits
    assert img.std() > 10
    out = tmp_path / "rec.png"
    assert main(["reconstruct", str(run_dir), "-n", "8", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    h = img.shape[0]
    assert img.shape[1] > 3 * h  # one row of originals above one row of reconstructions, 8 wide
    assert img.std() > 10


def test_resume_extends_training(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "4", "--quiet"]) == 0
    assert len((copy / "metrics.csv").read_text().strip().splitlines()) == 5


def test_a_redirected_log_gets_the_epoch_lines_without_progress_bar_redraws(tmp_path):
    code, out, err = run_cli("train", "--dataset", "digits", "--epochs", "2", "--out", tmp_path / "run")  # no --quiet
    assert code == 0, err
    assert "\r" not in err and "it/s" not in err, err[:500]
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]


def test_resume_changes_when_a_run_stops_or_slows_down_and_refuses_other_settings(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    state = json.loads((copy / "state.json").read_text())
    old = {k: v for k, v in state.items() if k != "lr_bad_epochs"} | {"bad_epochs": 1}  # a state.json from before the decay
    (copy / "state.json").write_text(json.dumps(old))
    assert TrainState.from_json(old).lr_bad_epochs == 1  # no cut can have happened: early stopping's count
    args = ["train", "--resume", str(copy), "--epochs", "5", "--patience", "7", "--lr-patience", "2", "--min-lr", "1e-4", "--quiet"]
    assert main(args) == 0
    train = json.loads((copy / "config.json").read_text())["train"]
    assert (train["epochs"], train["patience"], train["lr_patience"], train["min_lr"]) == (5, 7, 2, 1e-4)
    for flag in (["--lr", "0.1"], ["--seed", "2"], ["--latent-dim", "3"], ["--preset", "vae-static-mnist"]):
        assert main(["train", "--resume", str(copy), "--quiet", *flag]) == 2
        err = capsys.readouterr().err
        assert f"it takes --epochs, --lr-factor, --lr-patience, --min-lr, --patience, --threads, not {flag[0]}" in err, err
        assert len(err.strip().splitlines()) == 1
    assert json.loads((copy / "config.json").read_text())["train"]["lr"] == train["lr"]


def test_train_with_a_weight_average_then_evaluate_and_a_bad_decay(tmp_path, capsys):
    from test_cli_latent import one_line_error

    from helpers import SMALL_RUN_FLAGS

    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN_FLAGS, "--ema", "0.99", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["ema"] == 0.99
    assert main(["evaluate", str(out), "--iw-samples", "4"]) == 0
    capsys.readouterr()
    one_line_error(capsys, main(["train", *SMALL_RUN_FLAGS, "--ema", "1", "--out", str(tmp_path / "bad")]), "decay must be in [0, 1)")


def test_train_with_dropout_then_evaluate(tmp_path, capsys):
    from helpers import SMALL_RUN_FLAGS

    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN_FLAGS, "--arch", "gated", "--dropout", "0.2", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["dropout"] == [0.2, 0.2]
    assert main(["evaluate", str(out), "--iw-samples", "4", "--device", "cpu", "--json", str(tmp_path / "e.json")]) == 0
    assert math.isfinite(json.loads((tmp_path / "e.json").read_text())["iw"]["nll"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_evaluate_on_a_missing_gpu_is_a_one_line_error(run_dir):
    code, _, err = run_cli("evaluate", run_dir, "--device", "cuda")
    assert_one_line_error(code, err, "--device cuda was asked for, but no CUDA GPU is available")


def test_train_into_existing_run_is_refused(run_dir):
    code, _, err = run_cli("train", "--epochs", "1", "--quiet", "--out", run_dir)
    assert_one_line_error(code, err, "already holds a run")


def test_console_entry_point_help():
    script = Path(sys.executable).with_name("vaekit")  # the console script pip installed beside this Python
    proc = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--latent-dim" in proc.stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (["evaluate", "/nonexistent/run"], ["no such run directory"]),
        (["train", "--dataset", "nope", "--quiet"], ["unknown dataset"]),
        (["train", "--dataset", "/nonexistent/file.npy", "--quiet"], ["/nonexistent/file.npy"]),
        (["train", "--latent-dim", "0", "--quiet"], ["latent dim"]),
        (["train", "--beta", "-1", "--quiet"], ["beta"]),
        (["train", "--batch-size", "100000", "--quiet"], ["batch size"]),
        (["train", "--epochs", "0", "--quiet"], ["epochs"]),
        (["train", "--lr", "0", "--quiet"], ["learning rate"]),
        (["train", "--adam-eps", "0", "--quiet"], ["adam eps must be positive"]),
        (["train", "--adam-betas", "0.9", "1", "--quiet"], ["adam betas must be two numbers in [0, 1)"]),
        (["train", "--arch", "unknown", "--quiet"], ["arch"]),
        (["train", "--epochs", "many"], ["epochs"]),
        (["train", "--model", "ae", "--prior", "mixture", "--quiet"], ["plain autoencoder", "--prior mixture"]),
        (["train", "--model", "ae", "--iw-samples", "5", "--quiet"], ["plain autoencoder", "--iw-samples"]),
        (["train", "--model", "ae", "--samples", "2", "--quiet"], ["plain autoencoder", "--samples"]),
        (["train", "--noise-level", "0.3", "--quiet"], ["--noise-level has no effect without --noise"]),
        (["train", "--iw-elbo-mix", "0.5", "--quiet"], ["--iw-elbo-mix has no effect without --iw-samples"]),
        (["train", "--iw-groups", "2", "--quiet"], ["iw groups must divide the 1 latent samples", "--iw-samples M·K"]),
        (["train", "--model", "ae", "--logvar-range", "-6", "2", "--quiet"], ["--logvar-range has no effect", "--model vae"]),
        (["train", "--logvar-range", "2", "-6", "--quiet"], ["logvar range", "min < max"]),
        (["train", "--sigma", "0.5", "--quiet"], ["--sigma has no effect", "gaussian"]),
        (["train", "--model", "ae", "--beta", "4", "--quiet"], ["--beta has no effect", "--model vae"]),
        (["train", "--prior-components", "7", "--quiet"], ["--prior-components has no effect", "mixture"]),
        (["train", "--dropout", "1", "--quiet"], ["dropout must be one or two probabilities (encoder, decoder) in [0, 1), got 1.0 1.0"]),
        (["train", "--dropout", "0", "0.1", "0.2", "--quiet"], ["dropout must be one or two probabilities", "got 0.0 0.1 0.2"]),
        (["train", "--arch", "conv", "--dropout", "0.1", "--quiet"], ["--dropout is for the dense networks", "conv"]),
    ],
)
def test_bad_arguments_give_one_line_errors(args, words, tmp_path, capsys):
    code, _, err = run_in_process(capsys, *args, *(["--out", tmp_path / "r"] if args[0] == "train" else []))
    assert_one_line_error(code, err, *words)


def test_bad_files_give_one_line_errors(tmp_path, run_dir):
    trunc = tmp_path / "mnist"
    trunc.mkdir()
    raw = gzip.compress(b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(1000))
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        (trunc / name).write_bytes(raw[: len(raw) // 2])
    code, _, err = run_cli("train", "--dataset", "mnist", "--data-dir", tmp_path, "--quiet", "--out", tmp_path / "r1")
    assert_one_line_error(code, err)
    badmagic = tmp_path / "bm" / "mnist"
    badmagic.mkdir(parents=True)
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (badmagic / name).write_bytes(b"\x12\x34\x56\x78" + bytes(64))
    code, _, err = run_cli("train", "--dataset", "mnist", "--data-dir", tmp_path / "bm", "--quiet", "--out", tmp_path / "r2")
    assert_one_line_error(code, err, "magic")
    notnpy = tmp_path / "x.npy"
    notnpy.write_bytes(b"this is not numpy")
    code, _, err = run_cli("train", "--dataset", notnpy, "--quiet", "--out", tmp_path / "r3")
    assert_one_line_error(code, err)


def test_wrong_image_size_for_trained_model(tmp_path, run_dir):
    arr = np.random.default_rng(0).random((50, 1, 12, 12), dtype=np.float32)
    np.save(tmp_path / "big.npy", arr)
    code, _, err = run_cli("evaluate", run_dir, "--data", tmp_path / "big.npy", "--split", "valid")
    assert_one_line_error(code, err, "shape")


def test_data_outside_unit_interval_with_bernoulli(tmp_path):
    np.save(tmp_path / "real.npy", np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32))
    code, _, err = run_cli("train", "--dataset", tmp_path / "real.npy", "--likelihood", "bernoulli", "--quiet", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "[0, 1]")
    code, _, _ = run_cli(
        "train",
        "--dataset",
        tmp_path / "real.npy",
        "--likelihood",
        "gaussian",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--quiet",
        "--out",
        tmp_path / "r2",
    )
    assert code == 0


def test_nan_in_data(tmp_path):
    arr = np.random.default_rng(0).random((100, 5)).astype(np.float32)
    arr[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    code, _, err = run_cli("train", "--dataset", tmp_path / "nan.npy", "--quiet", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "nan")


def test_tabular_run_cannot_draw_images(tmp_path):
    np.save(tmp_path / "t.npy", np.random.default_rng(0).random((100, 5)).astype(np.float32))
    assert (
        main(
            ["train", "--dataset", str(tmp_path / "t.npy"), "--epochs", "1", "--batch-size", "20", "--quiet", "--out", str(tmp_path / "r")]
        )
        == 0
    )
    code, _, err = run_cli("sample", tmp_path / "r")
    assert_one_line_error(code, err, "images")
    code, _, err = run_cli("sample", tmp_path / "r", "--syntax")
    assert_one_line_error(code, err, "--syntax applies to a model of token sequences")


def test_train_switches_reach_the_config():
    from vaekit.cli import build_parser
    from vaekit.cli.train import config_from_args

    def parse(*argv, section="train"):
        return getattr(config_from_args(build_parser().parse_args(["train", *argv])), section)

    assert parse("--dropout", "0.2", section="model").dropout == (0.2, 0.2)
    assert parse("--dropout", "0", "0.1", section="model").dropout == (0.0, 0.1)

    assert not parse().compile and parse().init_decoder_bias
    assert parse("--compile").compile
    assert not parse("--no-init-decoder-bias").init_decoder_bias


def test_train_help_shows_each_default_once_and_the_registered_names(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    text = " ".join(out.split())
    assert "(default: None)" not in text
    assert text.count("size of z (default 2)") == 1
    unwrapped = "".join(out.split())  # argparse wraps long lines, also after a hyphen
    for name in ("bernoulli", "gaussian-learned", "beta-binomial", "mixture", "vampprior", "salt-pepper", "leaky_relu", "gated", "iaf"):
        assert name in unwrapped


def test_resume_of_a_missing_run_says_it_does_not_exist(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "gone"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run directory" in err[0] and "started again with the command that started it" in err[0]
