"""Disentanglement on dSprites-like data: Locatello et al. 2019's study, reduced to what fits this machine.

Each cell is one model at one setting and one seed, trained with the study's network (``--arch
study-conv``: 32-32-64-64 convolutions, FC 256, latent 10), optimiser (Adam 1e-4, batch 64) and
Bernoulli likelihood for a step budget (the study trains 300,000 steps), then scored by every metric
of ``vaekit disentanglement`` at the study's sample counts. Resumable: a cell whose run exists is
resumed where it stopped; a scored cell is skipped.

    python bench/disentanglement.py run --seeds 0 --steps 3000        # every model and setting, seed 0
    python bench/disentanglement.py run --models factor-vae --seeds 0 1 2
    python bench/disentanglement.py table                             # median [min, max] per model and setting
    python bench/disentanglement.py speed                             # the metrics' seconds, fast vs scikit-learn-default DCI

Results: ``bench/results/disentanglement.json`` (per cell: model, setting, seed, steps, wall time,
every metric's scores and seconds, the command).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import read_cells
from common import save_cell as write_cell

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "disentanglement.json"
RUNS = ROOT / "bench" / "runs" / "disentanglement"
EPOCH_STEPS = 500  # validation and checkpoint every this many steps
STUDY = [
    "--dataset", "dsprites", "--valid-fraction", "0.01", "--arch", "study-conv", "--latent-dim", "10",
    "--batch-size", "64", "--lr", "1e-4", "--epoch-steps", str(EPOCH_STEPS),
]  # fmt: skip
# each model's settings in the study's grid, as the flags that set them
MODELS = {
    "beta-vae": {f"beta={b}": ["--objective", "elbo", "--beta", str(b)] for b in (1, 4, 16)},
    "beta-tcvae": {f"beta={b}": ["--objective", "beta-tcvae", "--tc-estimator", "mws", "--beta", str(b)] for b in (1, 4, 16)},
    "factor-vae": {f"gamma={g}": ["--objective", "factor-vae", "--factor-gamma", str(g)] for g in (10, 40)},
    "dip-vae-i": {f"lambda_od={v}": ["--objective", "dip-vae-i", "--dip-lambda-od", str(v)] for v in (1, 10)},
    "dip-vae-ii": {f"lambda_od={v}": ["--objective", "dip-vae-ii", "--dip-lambda-od", str(v)] for v in (1, 10)},
    "annealed-vae": {f"c_max={c}": ["--objective", "annealed-vae", "--capacity-max", str(c)] for c in (5, 25)},
}
HEADLINE = [  # (metric, score) columns of the table
    ("beta_vae", "eval_accuracy"),
    ("factor_vae", "eval_accuracy"),
    ("mig", "mig"),
    ("dci", "disentanglement"),
    ("sap", "sap"),
    ("modularity", "modularity"),
    ("unsupervised", "gaussian_total_correlation"),
]


def read_results() -> dict:
    return read_cells(RESULTS)


def save_cell(key: str, record: dict) -> None:
    write_cell(RESULTS, key, record)


def cell_flags(model: str, setting: str, steps: int, seed: int) -> list[str]:
    flags = MODELS[model][setting]
    if model == "annealed-vae":  # C rises over a third of training, as the study's 100,000 of 300,000 steps
        flags = [*flags, "--capacity-steps", str(max(1, steps // 3))]
    return [*STUDY, *flags, "--epochs", str(max(1, steps // EPOCH_STEPS)), "--seed", str(seed)]


def train_or_resume(out: Path, flags: list[str], threads: int) -> None:
    command = [sys.executable, "-m", "vaekit", "train", "--quiet", "--threads", str(threads)]
    command += ["--resume", str(out)] if (out / "config.json").exists() else [*flags, "--out", str(out)]
    subprocess.run(command, check=True)


def run_cell(model: str, setting: str, seed: int, args) -> None:
    key = f"{model}/{setting}/s{seed}"
    if key in read_results()["cells"] and read_results()["cells"][key]["steps"] >= args.steps:
        print(f"{key}: scored already")
        return
    out = RUNS / f"{model}-{setting.replace('=', '')}-s{seed}"
    flags = cell_flags(model, setting, args.steps, seed)
    started = time.time()
    train_or_resume(out, flags, args.threads)
    import torch

    import vaekit
    from vaekit.disentanglement.runs import score
    from vaekit.runs import read_metrics

    torch.set_num_threads(args.threads)
    run = vaekit.load(out, which="last")  # the study scores the trained model, not a validation-picked one
    scored = time.time()
    result = score(run, seed=seed, threads=args.threads)
    rows = read_metrics(out / "metrics.csv")
    record = {
        "model": model,
        "setting": setting,
        "seed": seed,
        "steps": int(rows[-1]["step"]),
        "training_seconds": round(sum(r["train_seconds"] + r.get("valid_seconds", 0.0) for r in rows), 1),
        "valid_neg_elbo": rows[-1]["valid_neg_elbo"],
        "metric_seconds": round(time.time() - scored, 1),
        "wall_seconds_this_call": round(time.time() - started, 1),
        "scores": {name: m["scores"] for name, m in result["metrics"].items()},
        "seconds": {name: round(m["seconds"], 2) for name, m in result["metrics"].items()},
        "command": " ".join(["vaekit", "train", *flags]),
    }
    save_cell(key, record)
    print(f"{key}: " + ", ".join(f"{m}.{s} {record['scores'][m][s]:.3f}" for m, s in HEADLINE))


def run(args) -> None:
    """Seed by seed, each model's first setting, then each model's second, ...: every model early on."""
    rounds = max(len(MODELS[m]) for m in args.models)
    for seed in args.seeds:
        for i in range(rounds):
            for model in args.models:
                settings = list(MODELS[model])
                if i < len(settings):
                    run_cell(model, settings[i], seed, args)


def _spread(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def table(_args) -> None:
    """Median [min, max] over seeds per model and setting; then the spread across seeds beside the spread across models."""
    cells = list(read_results()["cells"].values())
    names = [f"{m}.{s}" for m, s in HEADLINE]
    print("| model | setting | seeds | steps | " + " | ".join(names) + " |\n|---|---|---|---|" + "---|" * len(names))
    for model, settings in MODELS.items():
        for setting in settings:
            mine = [c for c in cells if c["model"] == model and c["setting"] == setting]
            if mine:
                values = [_spread([c["scores"][m][s] for c in mine]) for m, s in HEADLINE]
                steps = sorted({c["steps"] for c in mine})
                print(f"| {model} | {setting} | {len(mine)} | {'/'.join(map(str, steps))} | " + " | ".join(values) + " |")
    # a model whose every setting reconstructs far worse than the best cell has not learned the images at
    # this budget (AnnealedVAE's capacity ramp at 1,500 steps): its scores say little about disentangling
    elbo: dict[str, list[float]] = {}
    for c in cells:
        elbo.setdefault(c["model"], []).append(c["valid_neg_elbo"])
    bound = 2 * min(min(v) for v in elbo.values())
    unlearned = sorted(model for model, v in elbo.items() if min(v) > bound)
    print("\nspread of each score (max - min): across the seeds of one model and setting (median over them), across the models' medians")
    if unlearned:
        why = f"validation -ELBO over {bound:.0f} nats, twice the best cell's"
        print(f"  (and in brackets across the models' medians without {', '.join(unlearned)}: {why})")
    for m, s in HEADLINE:
        groups: dict[tuple[str, str], list[float]] = {}
        for c in cells:
            groups.setdefault((c["model"], c["setting"]), []).append(c["scores"][m][s])
        seeded = [max(v) - min(v) for v in groups.values() if len(v) > 1]
        medians: dict[str, list[float]] = {}
        for (model, _), v in groups.items():
            medians.setdefault(model, []).append(statistics.median(v))
        best = {model: max(v) for model, v in medians.items()}
        learned = [v for model, v in best.items() if model not in unlearned]
        across_seeds = f"{statistics.median(seeded):.3f}" if seeded else "(one seed)"
        across_models = f"{max(best.values()) - min(best.values()):.3f}" if len(best) > 1 else "(one model)"
        if unlearned and len(learned) > 1:
            across_models += f" ({max(learned) - min(learned):.3f})"
        print(f"  {m}.{s}: seeds {across_seeds}, models {across_models}")


def speed(args) -> None:
    """Every metric at the study's sample counts on one trained cell, and DCI with scikit-learn's default trees beside the fast one."""
    import vaekit
    from vaekit.disentanglement.runs import score

    out = next(iter(sorted(RUNS.glob("*-s0"))), None)
    if out is None:
        sys.exit("train a cell first (python bench/disentanglement.py run ...)")
    import torch

    torch.set_num_threads(args.threads)
    run = vaekit.load(out, which="last")
    started = time.perf_counter()
    encoded = []
    fast = score(run, seed=0, threads=args.threads, progress=lambda done, total: encoded.append(time.perf_counter() - started))
    total = time.perf_counter() - started
    default_trees = {"estimator": "sklearn-default", "num_train": args.slow_train, "num_test": args.slow_train // 2}
    slow = score(run, ["dci"], seed=0, threads=args.threads, dci=default_trees)
    record = {
        "run": out.name,
        "threads": args.threads,
        "all_metrics_seconds": round(total, 1),
        "encoding_seconds": round(encoded[-1], 1) if encoded else 0.0,
        "sample_seconds": round(fast["sample_seconds"], 1),
        "seconds": {name: round(m["seconds"], 2) for name, m in fast["metrics"].items()},
        "dci_fast": fast["metrics"]["dci"]["scores"],
        "dci_sklearn_default": {
            "num_train": args.slow_train,
            "seconds": round(slow["metrics"]["dci"]["seconds"], 1),
            **slow["metrics"]["dci"]["scores"],
        },
    }
    results = read_results()
    results["speed"] = record
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("run")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=3000, help="training steps per cell (the study: 300,000)")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(fn=run)
    sub.add_parser("table").set_defaults(fn=table)
    p = sub.add_parser("speed")
    p.add_argument("--slow-train", type=int, default=10_000, help="codes scikit-learn-default DCI trains on")
    p.add_argument("--threads", type=int, default=2, help="torch's and scikit-learn's threads (this machine has 2 cores)")
    p.set_defaults(fn=speed)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
