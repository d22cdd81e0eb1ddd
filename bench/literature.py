"""Checks against the literature (issue 4): prints a table and writes bench/results/literature.json.

1. Statically binarized MNIST, model B1 (MLP 784-512-16, Bernoulli decoder, Adam 1e-3, batch 100,
   10 epochs): the importance-weighted NLL on the full test set for K = 1, 10, 100, 1000, 5000,
   each timed, beside the negative ELBO. Expected: IW-NLL(K=5000) <= negative ELBO, decreasing in K.
2. MNIST with one digit held out of training (same architecture): ROC AUC and average precision of
   the held-out digit against the rest of the test set, for each anomaly score.
3. Tables: breast cancer with malignant rows as anomalies (novelty: fit on benign rows; outliers:
   5% malignant rows mixed in, fit unlabelled) and a synthetic table with 5% planted outliers:
   VAEAnomalyDetector's AUROC beside scikit-learn's IsolationForest on the same split.

    .venv/bin/python bench/literature.py [--data-dir ../shared/data] [--work runs/bench-literature]
        [--ks 1 10 100 1000 5000] [--held-out 0] [--epochs 10] [--skip b1 heldout tables]

Trained runs are kept in --work and reused when they are there (delete them to retrain).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vaekit import runs  # noqa: E402
from vaekit.anomaly import SCORES, VAEAnomalyDetector, anomaly_scores, detection_metrics  # noqa: E402
from vaekit.baselines import compare_reconstruction  # noqa: E402
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from vaekit.data import Dataset, DataSplits, SourceSettings, load_data  # noqa: E402
from vaekit.errors import CheckpointError  # noqa: E402
from vaekit.evaluation import elbo_terms, iw_log_likelihood, latent_diagnostics, summarize, summarize_log_likelihood  # noqa: E402
from vaekit.training import train  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from common import write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "literature.json"


def b1_config(source: str, data_dir: str, epochs: int) -> RunConfig:
    """B1: MLP 784 -> 512 ReLU -> 16-d Gaussian latent; decoder 16 -> 512 ReLU -> 784 Bernoulli logits."""
    return RunConfig(
        data=DataConfig(source=source, data_dir=data_dir),
        model=ModelConfig(kind="vae", arch="mlp", latent_dim=16, hidden=(512,), activation="relu", likelihood="bernoulli"),
        train=TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, seed=0),
    )


def trained(config: RunConfig, out: Path, data: DataSplits | None = None) -> tuple[runs.Run, float | None]:
    """The run in ``out`` if it finished, else a new one trained there (with its training time)."""
    if (out / runs.STATE).exists():
        try:
            run = runs.load(out)
            if len(run.metrics()) >= config.train.epochs:
                print(f"  reusing the trained run in {out}", flush=True)
                return run, None
        except CheckpointError as exc:  # saved by an older model layout
            print(f"  retraining: {exc}", flush=True)
        shutil.rmtree(out)
    start = time.perf_counter()
    run = train(config, out, data=data)
    return run, time.perf_counter() - start


def check_b1(args) -> dict:
    print("\n[1] binarized MNIST, B1: importance-weighted NLL vs K", flush=True)
    config = b1_config("binarized-mnist", args.data_dir, args.epochs)
    data = load_data("binarized-mnist", settings=SourceSettings(data_dir=args.data_dir))
    run, train_seconds = trained(config, Path(args.work) / "b1", data)
    model, x = run.model, data.test.x
    dims = math.prod(model.input_shape)
    start = time.perf_counter()
    neg = summarize(elbo_terms(model, Dataset(x), seed=0), dims)
    elbo_seconds = time.perf_counter() - start
    rows = []
    for k in args.ks:
        start = time.perf_counter()
        log_px = iw_log_likelihood(model, Dataset(x), k=k, seed=0)
        seconds = time.perf_counter() - start
        rows.append({"k": k, **summarize_log_likelihood(log_px, dims), "seconds": seconds})
        r = rows[-1]
        print(
            f"  K={k:5d}: IW-NLL {r['nll']:.3f} ± {r['nll_stderr']:.3f} nats, {r['bits_per_dim']:.4f} bits/dim ({seconds:.1f} s)",
            flush=True,
        )
    nlls = [r["nll"] for r in rows]
    diag = latent_diagnostics(model, Dataset(x))
    return {
        "model": "B1: MLP 784-512-16 (ReLU), Bernoulli decoder, Adam 1e-3, batch 100",
        "epochs": config.train.epochs,
        "train_seconds": train_seconds,
        "test_examples": len(x),
        "neg_elbo": neg["neg_elbo"],
        "neg_elbo_stderr": neg["neg_elbo_stderr"],
        "neg_elbo_bits_per_dim": neg["bits_per_dim"],
        "reconstruction": neg["reconstruction"],
        "kl": neg["kl"],
        "neg_elbo_seconds": elbo_seconds,
        "iw": rows,
        "active_units": diag.n_active,
        "latent_dim": len(diag.activity),
        "pca": compare_reconstruction(model, data.train.x, Dataset(x)),
        "checks": {
            "iw_nll_at_max_k_below_neg_elbo": nlls[-1] <= neg["neg_elbo"],
            "iw_nll_decreases_with_k": all(b <= a for a, b in zip(nlls, nlls[1:])),
        },
    }


def check_held_out(args) -> list[dict]:
    out = []
    data = load_data("mnist", settings=SourceSettings(data_dir=args.data_dir))
    for digit in args.held_out:
        print(f"\n[2] MNIST with digit {digit} held out of training: anomaly scores", flush=True)
        keep_train, keep_valid = data.train.y != digit, data.valid.y != digit
        train_rows, valid_rows = data.train.subset(keep_train.nonzero().squeeze(1)), data.valid.subset(keep_valid.nonzero().squeeze(1))
        held = DataSplits(train_rows, valid_rows, data.test, dict(data.info))
        config = b1_config("mnist", args.data_dir, args.epochs)
        run, train_seconds = trained(config, Path(args.work) / f"mnist-without-{digit}", held)
        is_anomaly = (data.test.y == digit).numpy()
        row = {
            "digit": digit,
            "train_examples": len(held.train),
            "train_seconds": train_seconds,
            "test_examples": len(data.test),
            "anomalies": int(is_anomaly.sum()),
            "scores": {},
        }
        for score in SCORES:
            start = time.perf_counter()
            s = anomaly_scores(run.model, Dataset(data.test.x), score=score, samples=10, iw_samples=args.anomaly_iw, seed=0)
            metrics = detection_metrics(s, is_anomaly)
            row["scores"][score] = {
                "roc_auc": metrics["roc_auc"],
                "average_precision": metrics["average_precision"],
                "seconds": time.perf_counter() - start,
            }
            print(f"  {score:15s} ROC AUC {metrics['roc_auc']:.4f}  AP {metrics['average_precision']:.4f}", flush=True)
        row["settings"] = {"samples": 10, "iw_samples": args.anomaly_iw, "seed": 0}
        out.append(row)
    return out


def planted_outliers(seed: int, n: int = 2000, d: int = 12, rank: int = 3, rate: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Inliers near a random 3-d subspace of R^12 (plus small noise); outliers have the same
    per-column spread but ignore the subspace (each column drawn independently). Labels: 1 = outlier."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, d))
    inliers = rng.normal(size=(n, rank)) @ basis + 0.1 * rng.normal(size=(n, d))
    m = int(rate * n)
    outliers = rng.normal(size=(m, d)) * inliers.std(0) + inliers.mean(0)
    x = np.vstack([inliers, outliers])
    y = np.r_[np.zeros(n), np.ones(m)].astype(int)
    order = rng.permutation(len(x))
    return x[order], y[order]


def check_tables(args) -> list[dict]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    print("\n[3] tables: VAEAnomalyDetector vs IsolationForest (AUROC on held-out rows)", flush=True)
    bc = load_breast_cancer()
    benign, malignant = bc.data[bc.target == 1], bc.data[bc.target == 0]
    settings = {
        # novelty detection: fit on benign rows only, score held-out benign rows and every malignant row
        "breast-cancer, novelty (fit on benign)": lambda seed: novelty_split(benign, malignant, seed),
        # outlier detection (as ODDS 'wbc'): 5% malignant rows among the benign ones, fit unlabelled
        "breast-cancer, 5% malignant (unsupervised)": lambda seed: contaminated_split(*subsample(benign, malignant, 0.05, seed), seed),
        "synthetic, 5% planted outliers (unsupervised)": lambda seed: contaminated_split(*planted_outliers(seed), seed),
    }
    out = []
    for name, make in settings.items():
        aucs: dict[str, list[float]] = {"isolation_forest": [], **{f"vae_{s}": [] for s in SCORES}}
        for seed in args.table_seeds:
            x_tr, x_te, y_te = make(seed)
            iso = IsolationForest(random_state=seed).fit(x_tr)
            aucs["isolation_forest"].append(float(roc_auc_score(y_te, -iso.score_samples(x_te))))
            for score in SCORES:
                det = VAEAnomalyDetector(anomaly_score=score, random_state=seed).fit(x_tr)
                aucs[f"vae_{score}"].append(float(roc_auc_score(y_te, -det.score_samples(x_te))))
        row = {
            "table": name,
            "fit_rows": len(x_tr),
            "test_rows": len(x_te),
            "test_anomalies": int(y_te.sum()),
            "features": x_tr.shape[1],
            "seeds": list(args.table_seeds),
            "detector": "VAEAnomalyDetector() defaults (latent 2, hidden 64-32, gaussian-shared, 100 epochs)",
        }
        row["auroc"] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": v} for k, v in aucs.items()}
        for k, v in row["auroc"].items():
            print(f"  {name:46s} {k:22s} AUROC {v['mean']:.4f} ± {v['std']:.4f}", flush=True)
        out.append(row)
    return out


def novelty_split(normal: np.ndarray, anomalies: np.ndarray, seed: int, test_size: float = 0.3):
    """Fit rows: 70% of the normal rows; test rows: the other normal rows and every anomaly."""
    from sklearn.model_selection import train_test_split

    fit, held = train_test_split(normal, test_size=test_size, random_state=seed)
    return fit, np.vstack([held, anomalies]), np.r_[np.zeros(len(held)), np.ones(len(anomalies))].astype(int)


def subsample(normal: np.ndarray, anomalies: np.ndarray, rate: float, seed: int):
    """All normal rows and enough randomly chosen anomalies to make up ``rate`` of the rows; labels 1 = anomaly."""
    rng = np.random.default_rng(seed)
    m = max(1, round(rate * len(normal) / (1 - rate)))
    picked = anomalies[rng.choice(len(anomalies), m, replace=False)]
    return np.vstack([normal, picked]), np.r_[np.zeros(len(normal)), np.ones(m)].astype(int)


def contaminated_split(X: np.ndarray, y: np.ndarray, seed: int, test_size: float = 0.3):
    """A stratified split; the fit rows keep their (unseen) anomalies."""
    from sklearn.model_selection import train_test_split

    x_tr, x_te, _, y_te = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    return x_tr, x_te, y_te


def print_table(results: dict) -> None:
    print("\n" + "=" * 78)
    b1 = results.get("b1")
    if b1:
        print(f"binarized MNIST, B1, {b1['epochs']} epochs (test set, {b1['test_examples']} examples)")
        print(f"  {'estimate':22s} {'nats':>10s} {'± s.e.':>8s} {'bits/dim':>9s} {'seconds':>9s}")
        print(
            f"  {'negative ELBO':22s} {b1['neg_elbo']:10.3f} {b1['neg_elbo_stderr']:8.3f} {b1['neg_elbo_bits_per_dim']:9.4f} "
            f"{b1['neg_elbo_seconds']:9.1f}"
        )
        for r in b1["iw"]:
            print(f"  {'IW-NLL K=' + str(r['k']):22s} {r['nll']:10.3f} {r['nll_stderr']:8.3f} {r['bits_per_dim']:9.4f} {r['seconds']:9.1f}")
        print(
            f"  active units {b1['active_units']}/{b1['latent_dim']}; "
            f"squared reconstruction error: model {b1['pca']['model_squared_error']:.2f}, "
            f"PCA({b1['pca']['components']}) {b1['pca']['pca_squared_error']:.2f}"
        )
        print(f"  checks: {b1['checks']}")
    for row in results.get("held_out", []):
        print(f"MNIST, digit {row['digit']} held out ({row['anomalies']} of {row['test_examples']} test images are anomalies)")
        for score, m in row["scores"].items():
            print(f"  {score:15s} ROC AUC {m['roc_auc']:.4f}   average precision {m['average_precision']:.4f}")
    for row in results.get("tables", []):
        print(
            f"{row['table']}: {row['features']} features, {row['fit_rows']} fit rows, {row['test_rows']} test rows "
            f"({row['test_anomalies']} anomalies), mean ± sd over seeds {row['seeds']}"
        )
        for k, v in row["auroc"].items():
            print(f"  {k:22s} AUROC {v['mean']:.4f} ± {v['std']:.4f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-literature"), help="where trained runs are kept")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000, 5000])
    p.add_argument("--held-out", type=int, nargs="+", default=[0])
    p.add_argument("--anomaly-iw", type=int, default=100, help="importance samples of the iw-nll anomaly score")
    p.add_argument("--table-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--skip", nargs="*", default=[], choices=["b1", "heldout", "tables"])
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_at_start": list(os.getloadavg()),
    }
    if "tables" not in args.skip:
        results["tables"] = check_tables(args)
    if "heldout" not in args.skip:
        results["held_out"] = check_held_out(args)
    if "b1" not in args.skip:
        results["b1"] = check_b1(args)
    results["load_average_at_end"] = list(os.getloadavg())
    results["note"] = "timings are wall-clock on a shared CPU machine; see the load averages"
    print_table(results)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
