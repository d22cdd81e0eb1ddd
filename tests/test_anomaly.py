"""Anomaly scores (deterministic per example), thresholds, metrics, the histogram, and
``vaekit anomaly`` end to end on digits, a CSV table and an image folder, with its one-line errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.anomaly import SCORES, anomaly_scores, contamination_threshold, detection_metrics, quantile_threshold, score_histogram
from vaekit.cli import main
from vaekit.data import Dataset
from vaekit.errors import ConfigError, DataError
from vaekit.evaluation import elbo_terms
from vaekit.objectives import ELBO
from vaekit.runs import load

from helpers import SMALL_RUN_FLAGS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("anomaly") / "run"
    code = main(["train", *SMALL_RUN_FLAGS, "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def run(run_dir):
    return load(run_dir)


@pytest.mark.parametrize("score", SCORES)
def test_scores_are_deterministic_per_example_and_higher_off_distribution(run, score):
    x = run.load_data().test.x[:60]
    s = anomaly_scores(run.model, Dataset(x), score=score, samples=3, iw_samples=20, seed=0)
    assert s.shape == (60,) and torch.isfinite(s).all()
    torch.testing.assert_close(s, anomaly_scores(run.model, Dataset(x), score=score, samples=3, iw_samples=20, seed=0), rtol=0, atol=0)
    # an example's score does not depend on the batch or the rows scored with it
    part = anomaly_scores(run.model, Dataset(x[[7, 3, 41]]), score=score, samples=3, iw_samples=20, seed=0, batch_size=2)
    torch.testing.assert_close(part, s[[7, 3, 41]], rtol=1e-5, atol=1e-5)
    noise = torch.rand(60, *x.shape[1:]).round()  # salt-and-pepper images are not digits
    assert anomaly_scores(run.model, Dataset(noise), score=score, samples=3, iw_samples=20).median() > s.median()


def test_neg_elbo_score_is_the_negative_elbo(run):
    x = run.load_data().test.x[:100]
    at_mean = anomaly_scores(run.model, Dataset(x), score="neg-elbo", samples=0)
    averaged = anomaly_scores(run.model, Dataset(x), score="neg-elbo", samples=400)
    mc = elbo_terms(run.model, Dataset(x), objective=ELBO(n_samples=400)).neg_elbo
    assert (averaged - mc).abs().mean() < 0.2
    q = run.model.encode(x)  # samples=0: at the posterior mean
    torch.testing.assert_close(at_mean, elbo_terms(run.model, Dataset(x)).kl - run.model.decode(q.mean).log_prob(x))
    with pytest.raises(ConfigError):
        anomaly_scores(run.model, Dataset(x), score="likelihood")
    with pytest.raises(ConfigError):
        anomaly_scores(run.model, Dataset(x), samples=-1)


def test_thresholds_and_metrics():
    s = np.arange(100, dtype=float)
    assert quantile_threshold(s, 0.9) == pytest.approx(89.1)
    assert (s > contamination_threshold(s, 0.05)).sum() == 5
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError):
            quantile_threshold(s, bad)
    labels = s >= 90
    m = detection_metrics(s, labels)
    assert m["roc_auc"] == 1.0 and m["average_precision"] == pytest.approx(1.0) and m["anomalies"] == 10
    assert detection_metrics(-s, labels)["roc_auc"] == 0.0
    with pytest.raises(DataError, match="only normal"):
        detection_metrics(s, np.zeros(100, bool))
    with pytest.raises(DataError):
        detection_metrics(s, labels[:50])


def test_histogram_has_the_scores_and_the_threshold(tmp_path):
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0, 1, 300), rng.normal(6, 1, 20)]
    labels = np.r_[np.zeros(300, bool), np.ones(20, bool)]
    drawn = score_histogram(s, 3.0, tmp_path / "h.png", is_anomaly=labels, title="test")
    assert sum(drawn["counts"]["normal"]) == 300 and sum(drawn["counts"]["anomaly"]) == 20
    assert drawn["edges"][0] <= s.min() and drawn["edges"][-1] >= s.max()
    img = np.asarray(Image.open(tmp_path / "h.png").convert("RGB"))
    assert img.shape[0] > 200 and img.shape[1] > 300
    r, b = img[..., 0].astype(int), img[..., 2].astype(int)
    red, blue = r > b + 40, b > r + 40
    assert red.sum() > 50 and blue.sum() > 500  # both groups are drawn
    only = score_histogram(s, 3.0, tmp_path / "all.png")
    assert sum(only["counts"]["all"]) == 320


# ----- the command ---------------------------------------------------------------------------
def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("vaekit: error:") and "Traceback" not in err[0]
    for w in words:
        assert w.lower() in err[0].lower(), err[0]


def test_anomaly_command_with_held_out_classes(run_dir, tmp_path, capsys):
    json_path = tmp_path / "summary.json"
    code = main(["anomaly", str(run_dir), "--anomaly-classes", "0", "--samples", "2", "--json", str(json_path), "--quantile", "0.9"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ROC AUC" in out and "flagged" in out
    summary = json.loads(json_path.read_text())
    data = load(run_dir).load_data()
    n, n_train = len(data.test), len(data.train)
    assert summary["examples"] == n and summary["split"] == "test" and summary["score"] == "neg-elbo"
    assert summary["threshold_rule"] == {"quantile_of_training_scores": 0.9, "training_examples": n_train}
    assert summary["metrics"]["anomalies"] == int((data.test.y == 0).sum())
    assert 0 <= summary["metrics"]["roc_auc"] <= 1
    rows = (run_dir / "anomaly-test-neg-elbo.csv").read_text().strip().splitlines()
    assert rows[0] == "index,score,flagged,anomaly" and len(rows) == n + 1
    scores = np.array([float(r.split(",")[1]) for r in rows[1:]])
    flagged = np.array([int(r.split(",")[2]) for r in rows[1:]])
    assert ((scores > summary["threshold"]) == flagged.astype(bool)).all()
    assert (run_dir / "figures" / "anomaly-neg-elbo.png").stat().st_size > 1000
    assert summary["metrics"]["roc_auc"] == pytest.approx(detection_metrics(scores, data.test.y.numpy() == 0)["roc_auc"], abs=1e-6)


def test_anomaly_command_contamination_npy_and_label_file(run_dir, tmp_path, capsys):
    n = len(load(run_dir).load_data().test)
    labels = np.zeros(n, int)
    labels[:10] = 1
    np.savetxt(tmp_path / "labels.txt", labels, fmt="%d")
    code = main(
        [
            "anomaly",
            str(run_dir),
            "--score",
            "reconstruction",
            "--samples",
            "0",
            "--contamination",
            "0.1",
            "--labels",
            str(tmp_path / "labels.txt"),
            "--scores",
            str(tmp_path / "s.npy"),
            "--json",
            str(tmp_path / "s.json"),
            "-o",
            str(tmp_path / "h.png"),
        ]
    )
    assert code == 0
    s = np.load(tmp_path / "s.npy")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert s.shape == (n,) and summary["flagged"] == int((s > summary["threshold"]).sum()) == round(0.1 * n)
    assert summary["metrics"]["anomalies"] == 10 and (tmp_path / "h.png").is_file()
    code = main(
        [
            "anomaly",
            str(run_dir),
            "--score",
            "iw-nll",
            "--iw-samples",
            "10",
            "--contamination",
            "0.05",
            "--json",
            str(tmp_path / "iw.json"),
            "--scores",
            str(tmp_path / "iw.csv"),
            "-o",
            str(tmp_path / "iw.png"),
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "iw.json").read_text())["settings"]["iw_samples"] == 10


def test_anomaly_command_bad_input_is_one_line(run_dir, tmp_path, capsys):
    n = len(load(run_dir).load_data().test)
    np.save(tmp_path / "short.npy", np.zeros(n - 1))
    np.save(tmp_path / "twos.npy", np.full(n, 2))
    cases = [
        (["--labels", str(tmp_path / "short.npy")], ["labels", str(n)]),
        (["--labels", str(tmp_path / "twos.npy")], ["0", "1"]),
        (["--labels", str(tmp_path / "missing.npy")], ["no such"]),
        (["--anomaly-classes", "seven"], ["unknown anomaly class"]),
        (["--anomaly-classes", "11"], ["only normal"]),
        (["--scores", str(tmp_path / "s.txt")], [".csv or .npy"]),
        (["--samples", "-2"], ["samples"]),
        (["--data", str(tmp_path / "nothing.csv")], ["no such file"]),
    ]
    for extra, words in cases:
        capsys.readouterr()
        assert main(["anomaly", str(run_dir), *extra]) == 2, extra
        one_line_error(capsys, *words)
    with pytest.raises(SystemExit) as exit_:  # argparse: one line, exit 2
        main(["anomaly", str(run_dir), "--contamination", "1.5"])
    assert exit_.value.code == 2
    one_line_error(capsys, "between 0 and 1")
    ae = tmp_path / "ae"
    assert main(["train", "--dataset", "digits", "--model", "ae", "--epochs", "1", "--hidden", "32", "--quiet", "--out", str(ae)]) == 0
    capsys.readouterr()
    assert main(["anomaly", str(ae), "--score", "iw-nll"]) == 2
    one_line_error(capsys, "VAE")


def planted_table(path, seed=0, n=400, outliers=20):
    """A CSV with a label column: 3-d structure in 8 columns, plus rows that ignore it."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, 8))
    x = rng.normal(size=(n, 3)) @ basis + 0.05 * rng.normal(size=(n, 8))
    x = x * 10 + 100  # far from standardised: the run's saved preprocessing must be applied
    odd = rng.normal(size=(outliers, 8)) * x.std(0) + x.mean(0)
    rows = np.vstack([x, odd])
    label = np.r_[np.zeros(n, int), np.ones(outliers, int)]
    order = rng.permutation(len(rows))
    header = ",".join([f"f{i}" for i in range(8)] + ["label"])
    lines = [header] + [",".join(f"{v:.6f}" for v in r) + f",{y}" for r, y in zip(rows[order], label[order])]
    path.write_text("\n".join(lines) + "\n")
    return label[order]


def test_anomaly_on_a_csv_table_uses_the_saved_standardisation(tmp_path, capsys):
    label = planted_table(tmp_path / "fit.csv", seed=0)
    new_label = planted_table(tmp_path / "new.csv", seed=0, n=100, outliers=10)  # same structure, other rows
    out = tmp_path / "table-run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tmp_path / "fit.csv"),
                "--likelihood",
                "gaussian-shared",
                "--latent-dim",
                "3",
                "--hidden",
                "32",
                "--epochs",
                "8",
                "--batch-size",
                "32",
                "--lr",
                "1e-2",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    code = main(["anomaly", str(out), "--data", str(tmp_path / "new.csv"), "--anomaly-classes", "1", "--json", str(tmp_path / "t.json")])
    assert code == 0
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["split"] == "all" and summary["examples"] == len(new_label)  # every row, in file order
    assert summary["metrics"]["anomalies"] == 10 and summary["metrics"]["roc_auc"] > 0.9
    rows = (out / "anomaly-new-all-neg-elbo.csv").read_text().strip().splitlines()[1:]  # named by the source's stem
    assert [int(r.split(",")[3]) for r in rows] == new_label.tolist()
    assert len(label) == 420


def test_anomaly_on_an_image_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(40):  # smooth horizontal gradients
        img = np.tile(np.linspace(0, 255 * rng.uniform(0.5, 1), 12), (12, 1))
        Image.fromarray(img.astype(np.uint8)).save(folder / f"g{i:02d}.png")
    out = tmp_path / "img-run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(folder),
                "--latent-dim",
                "2",
                "--hidden",
                "32",
                "--epochs",
                "5",
                "--batch-size",
                "8",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(5):
        Image.fromarray((rng.uniform(size=(12, 12)) * 255).astype(np.uint8)).save(odd / f"n{i}.png")
    assert main(["anomaly", str(out), "--data", str(odd), "--contamination", "0.2", "--json", str(tmp_path / "i.json")]) == 0
    summary = json.loads((tmp_path / "i.json").read_text())
    assert summary["examples"] == 5 and summary["flagged"] == 1
