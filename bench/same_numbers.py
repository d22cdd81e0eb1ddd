"""The first epochs of every preset and of B1, for comparing two versions of vaekit number for number.

Trains each shipped preset for ``--epochs`` epochs (default 2) with one thread and writes the
metrics rows without their timing columns to one JSON file; run it on two checkouts
(``PYTHONPATH=OTHER/src``) and compare the files with ``--compare A B``: the losses must agree to
the last digit that ``metrics.csv`` keeps.

    python bench/same_numbers.py --out /tmp/after.json
    python bench/same_numbers.py --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING = ("train_seconds", "valid_seconds")
# beyond the presets: the objective's and the step's other settings, on the embedded digits
VARIANTS = {
    "digits-ae": ["--model", "ae"],
    "digits-samples": ["--samples", "3", "--warmup", "1", "--ema", "0.99"],
    "digits-miwae": ["--iw-samples", "8", "--iw-groups", "2"],
    "digits-ciwae": ["--iw-samples", "4", "--iw-elbo-mix", "0.5"],
    "digits-piwae": ["--iw-samples", "4", "--iw-groups", "2", "--piwae"],
    "digits-stl": ["--stl", "--beta", "0.5"],
    "digits-cvae": ["--condition", "label", "--prior", "conditional"],
    "digits-iaf": ["--flow", "iaf", "--noise", "gaussian", "--noise-level", "0.1"],
    "digits-hvae-vamp": ["--latent-dim", "2", "2", "--prior", "vampprior", "--normalize-grads", "--grad-clip", "5"],
}


def presets() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "vaekit", "presets"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip() and not line.startswith(" ")]


def first_epochs(name: str, epochs: int, data_dir: str) -> list[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        settings = ["--dataset", "digits", "--seed", "1", *VARIANTS[name]] if name in VARIANTS else ["--preset", name]
        cmd = [sys.executable, "-m", "vaekit", "train", *settings, "--epochs", str(epochs), "--threads", "1"]
        subprocess.run([*cmd, "--data-dir", data_dir, "--out", str(run)], check=True, capture_output=True)
        with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
            return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _as_kept(value: str) -> str:
    """A metrics value as metrics.csv kept it up to now (6 significant figures), whatever precision it was written with."""
    try:
        return f"{float(value):.6g}"
    except ValueError:
        return value


def compare(a: Path, b: Path) -> int:
    before, after = json.loads(a.read_text()), json.loads(b.read_text())
    bad = 0
    for name in sorted(set(before) | set(after)):
        rows_a, rows_b = before.get(name), after.get(name)
        same = rows_a is not None and rows_b is not None and len(rows_a) == len(rows_b)
        for ra, rb in zip(rows_a or [], rows_b or []):
            shared = ra.keys() & rb.keys()
            same = same and all(_as_kept(ra[k]) == _as_kept(rb[k]) for k in shared)
        bad += not same
        print(f"{name:40s} {'identical' if same else 'DIFFERENT'}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--only", nargs="*", help="these presets only")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only or [*VARIANTS, *presets()]:
        if name in results:
            continue
        results[name] = first_epochs(name, args.epochs, args.data_dir)
        args.out.write_text(json.dumps(results, indent=1))
        print(name, results[name][-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
