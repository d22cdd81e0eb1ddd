"""One command per row of the static-MNIST reproduction table (issue 12).

    python bench/reproduce.py ROW [--resume] [--threads 1] [--epochs N] [--compile] [--precision bf16] [--data-dir ../shared/data]
    python bench/reproduce.py ROW --from-run DIR      # evaluate and record a run trained elsewhere
    python bench/reproduce.py ROW --curve-only --out DIR   # the curve so far of a row still training
    python bench/reproduce.py --list

ROW is one of vae, iwae, vampprior, conv-vampprior, hvae, hvae-vampprior, iwae2.
Each row trains its preset (``vaekit train --preset NAME``, early stopping on the validation ELBO)
into runs/reproduce/ROW; ``--resume`` continues that run directory where it stopped (``vaekit train
--resume``; same numbers as an uninterrupted run). Then it estimates the test NLL by importance
sampling, K = 5000, on the full 10,000 test images (``vaekit evaluate RUN --split test --iw-samples
5000``) and writes the row's object into bench/results/reproduction.json (a list, one object per
row, replaced when the row is recorded again) and its per-epoch validation curve beside it,
bench/results/reproduction-ROW-curve.csv (from the run's metrics.csv).

The row's object: test_nll and test_nll_stderr (nats, mean and standard error over the test images),
k, the literature's and pythae's values (from the preset), epochs trained, best_epoch (lowest
validation loss, the weights evaluated), seconds_per_epoch (median training seconds of an epoch),
wall_seconds (training + validation + evaluation), the command, and where a run recorded with
--from-run was trained with other settings than the preset, those differences.

Every command runs from the project root, so a relative --data-dir or run directory is relative to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import vaekit.presets as presets  # noqa: E402
from vaekit.errors import CheckpointError  # noqa: E402
from vaekit.runs import METRIC_FIELDS, load_state, read_config  # noqa: E402

# row -> the preset that trains it
ROWS = {
    "vae": "vae-static-mnist",
    "iwae": "iwae-gated-static-mnist",
    "vampprior": "vampprior-static-mnist",
    "conv-vampprior": "conv-vampprior-static-mnist",
    "hvae": "hvae-static-mnist",
    "hvae-vampprior": "hvae-vampprior-static-mnist",
    "iwae2": "iwae2-static-mnist",
}
RESULTS = ROOT / "bench" / "results" / "reproduction.json"
CURVE_COLUMNS = [f for f in METRIC_FIELDS if f not in ("step", "lr", "train_neg_elbo", "train_reconstruction", "train_kl", "skipped_steps")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("row", nargs="?", choices=list(ROWS), help="the table row")
    p.add_argument("--list", action="store_true", help="list the rows and their presets")
    p.add_argument("--resume", action="store_true", help="continue the row's run directory where it stopped")
    p.add_argument("--from-run", metavar="DIR", help="evaluate and record this already-trained run of the row (no training)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training and evaluation (default 1)")
    p.add_argument("--epochs", type=int, help="cap the epochs (default: the preset's, with early stopping)")
    p.add_argument("--compile", action="store_true", help="train with vaekit train --compile (a new run; a resumed run keeps its setting)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="train with vaekit train --precision (a new run; a resumed run keeps its setting); evaluation is float32 either way",
    )
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="train with vaekit train --ema DECAY, a moving average of the weights (a new run; a resumed run keeps its setting)",
    )
    p.add_argument(
        "--lr-patience",
        type=int,
        metavar="N",
        help="train with vaekit train --lr-patience N: cut the rate after N epochs without a better validation bound, 0: a constant "
        "rate (default: the preset's; a resumed run takes it too)",
    )
    p.add_argument("--data-dir", default="../shared/data", help="folder with binarized_mnist.npz (default ../shared/data)")
    p.add_argument("--iw-samples", type=int, default=5000, help="importance samples per test image (default 5000)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/reproduce/ROW)")
    p.add_argument("--results", default=str(RESULTS), help=f"the results file (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--train-only", action="store_true", help="train (or resume) without evaluating and recording")
    p.add_argument(
        "--curve-only",
        action="store_true",
        help="write the validation curve so far of the row's run (--out or --from-run) to reproduction-ROW-training-curve.csv "
        "beside the results, for a row still training; nothing is trained, evaluated or recorded",
    )
    args = p.parse_args(argv)

    if args.list or not args.row:
        for row, preset in ROWS.items():
            print(f"{row:16s} {preset}")
        return 0
    preset_name = ROWS[args.row]
    preset = presets.load(preset_name)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    vaekit = [sys.executable, "-m", "vaekit"]

    if args.curve_only:
        run_dir = ROOT / Path(args.from_run or args.out or Path("runs") / "reproduce" / args.row)
        rows = read_metrics(run_dir / "metrics.csv")
        if not rows:
            print(f"reproduce: {run_dir} has no metrics.csv yet", file=sys.stderr)
            return 2
        curve = write_curve(rows, Path(args.results).parent / f"reproduction-{args.row}-training-curve.csv")
        best = min(rows, key=lambda r: float(r["valid_loss"]))
        best_loss = float(best["valid_loss"])
        print(f"{args.row}: {len(rows)} epochs so far, best validation loss {best_loss:.2f} (epoch {best['epoch']}); {curve}")
        return 0
    if args.from_run:
        run_dir, train_command = Path(args.from_run), None
    else:
        run_dir = Path(args.out) if args.out else Path("runs") / "reproduce" / args.row
        if (ROOT / run_dir / "config.json").exists():
            if not args.resume:
                print(f"reproduce: {run_dir} holds a run already; continue it with --resume (or choose --out)", file=sys.stderr)
                return 2
            train_command = [*vaekit, "train", "--resume", str(run_dir), *train_flags(args, new_run=False)]
        else:
            train_command = [
                *vaekit,
                "train",
                "--preset",
                preset_name,
                "--data-dir",
                args.data_dir,
                "--threads",
                str(args.threads),
                "--out",
                str(run_dir),
            ] + train_flags(args, new_run=True)
        print("+", shlex.join(train_command[2:]), flush=True)
        code = subprocess.call(train_command, cwd=ROOT, env=env)
        if code != 0:
            print(
                f"reproduce: training stopped (exit {code}); continue with: python bench/reproduce.py {args.row} --resume", file=sys.stderr
            )
            return code
        if args.train_only:
            return 0

    run_dir = run_dir if run_dir.is_absolute() else ROOT / run_dir
    eval_json = run_dir / f"eval-test-iw{args.iw_samples}.json"
    earlier = evaluated_best(run_dir, eval_json, args.iw_samples)
    if earlier is not None:
        print(f"reusing {eval_json}: it evaluated the run's present best checkpoint (epoch {earlier['checkpoint']['epoch']})")
        record(args, preset, run_dir, eval_json, eval_seconds=earlier["seconds"])
        return 0
    eval_command = [
        *vaekit,
        "evaluate",
        str(run_dir),
        "--split",
        "test",
        "--iw-samples",
        str(args.iw_samples),
        "--no-pca",
        "--quiet",
        "--json",
        str(eval_json),
    ]
    print("+", shlex.join(eval_command[2:]), flush=True)
    start = time.perf_counter()
    code = subprocess.call(eval_command, cwd=ROOT, env=env)
    if code != 0:
        return code
    record(args, preset, run_dir, eval_json, eval_seconds=time.perf_counter() - start)
    return 0


def train_flags(args: argparse.Namespace, *, new_run: bool) -> list[str]:
    """The options of this script that pass on to ``vaekit train``: --epochs and --lr-patience always,
    --compile, --precision and --ema only to a new run (a resumed run keeps its own)."""
    flags = ["--epochs", str(args.epochs)] if args.epochs else []
    if new_run:
        flags += ["--compile"] if args.compile else []
        flags += ["--precision", args.precision] if args.precision else []
        flags += ["--ema", str(args.ema)] if args.ema is not None else []
    return flags + (["--lr-patience", str(args.lr_patience)] if args.lr_patience is not None else [])


def evaluated_best(run_dir: Path, eval_json: Path, k: int) -> dict | None:
    """The evaluation in ``eval_json`` if it is of the run's present best weights (the checkpoint's
    SHA-256 matches) with K = ``k`` and records its time; else None (evaluate again)."""
    try:
        result = json.loads(eval_json.read_text())
        state = load_state(run_dir)
        best = state["files"]["best"]
        same = result["checkpoint"]["sha256"] == state["checksums"][best] and result["iw"]["k"] == k
        return result if same and isinstance(result.get("seconds"), float) else None
    except (OSError, ValueError, KeyError, TypeError, CheckpointError):
        return None


def record(args: argparse.Namespace, preset: presets.Preset, run_dir: Path, eval_json: Path, *, eval_seconds: float) -> dict:
    """Write the row's object into the results list and its validation curve beside it; return the object."""
    result = json.loads(eval_json.read_text())
    rows = read_metrics(run_dir / "metrics.csv")
    best = min(rows, key=lambda r: float(r["valid_loss"])) if rows else None
    train_seconds = [float(r["train_seconds"]) for r in rows]
    valid_seconds = sum(float(r.get("valid_seconds") or 0) for r in rows)
    given = ["--from-run", args.from_run] if args.from_run else ["--threads", str(args.threads), *train_flags(args, new_run=True)]
    command = shlex.join(["python", "bench/reproduce.py", args.row, *given])
    obj = {
        "row": args.row,
        "preset": preset.name,
        "test_nll": result["iw"]["nll"],
        "test_nll_stderr": result["iw"]["nll_stderr"],
        "k": result["iw"]["k"],
        "literature": preset.literature_nll,
        "pythae": preset.pythae_nll,
        "epochs": int(float(rows[-1]["epoch"])) if rows else 0,
        "best_epoch": int(float(best["epoch"])) if best else None,
        "seconds_per_epoch": statistics.median(train_seconds) if train_seconds else None,
        "wall_seconds": sum(train_seconds) + valid_seconds + eval_seconds,
        "command": command,
        "test_neg_elbo": result["neg_elbo"],
        "config_differences_from_preset": config_differences(read_config(run_dir).to_dict(), preset.config().to_dict()),
        "run": str(run_dir),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    results_path = Path(args.results)
    existing = json.loads(results_path.read_text()) if results_path.exists() else []
    merged = [r for r in existing if r.get("row") != args.row] + [obj]
    merged.sort(key=lambda r: list(ROWS).index(r["row"]) if r["row"] in ROWS else len(ROWS))
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(merged, indent=2) + "\n")
    curve = write_curve(rows, results_path.parent / f"reproduction-{args.row}-curve.csv")
    print(
        f"{args.row}: test NLL {obj['test_nll']:.2f} ± {obj['test_nll_stderr']:.2f} nats (K = {obj['k']}; literature "
        f"{obj['literature']}"
        + ("" if obj["pythae"] is None else f", pythae {obj['pythae']}")
        + f"); {obj['epochs']} epochs, best {obj['best_epoch']}; "
        f"written to {results_path}, {curve}"
    )
    return obj


def write_curve(rows: list[dict[str, str]], path: Path) -> Path:
    """The per-epoch validation curve (``CURVE_COLUMNS`` of metrics.csv's rows) as a CSV at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def config_differences(run: dict, preset: dict, where: str = "") -> dict[str, list]:
    """Settings where the run differs from the preset, as {"section.field": [run value, preset value]},
    leaving out the fields a run fills in or that only locate the data."""
    out: dict[str, list] = {}
    for key in sorted(set(run) | set(preset)):
        name = f"{where}{key}"
        a, b = run.get(key), preset.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_differences(a, b, name + "."))
        elif a != b and name not in ("model.input_shape", "data.data_dir", "data.memmap", "train.threads", "train.compile", "version"):
            out[name] = [a, b]
    return out


if __name__ == "__main__":
    sys.exit(main())
