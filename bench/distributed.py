"""Distributed training and larger-than-memory data (issue 7): prints a table and writes
bench/results/distributed.json.

1. Throughput of ``vaekit train`` in 1 process and in 2 processes (``--nproc 2``: torchrun, gloo,
   DistributedDataParallel), 1 thread each, the same per-process batch (so 2 processes take twice
   the examples per step), and the scaling efficiency = throughput(2) / (2 x throughput(1)), for
   per-process batches of 100 (vaekit's default) and 500. Beside them, two independent 1-process
   runs at the same time: what the machine allows two processes without any communication, so
   "DDP vs independent" is the cost of the gradient all-reduce alone, apart from CPU contention.
   Throughput is training examples per second of the last epoch's training time (metrics.csv),
   which leaves out process start-up and validation.
2. Peak resident memory (the process's own peak RSS, VmHWM, read by the process as it exits;
   page cache is not the process's memory) of ``vaekit train --memmap`` for one epoch over a synthetic float32
   array of at least 4 GB, and of ``vaekit evaluate`` on its validation split. The array is
   generated into a temporary folder in pieces and deleted afterwards.

    .venv/bin/python bench/distributed.py [--rows 60000] [--batches 100 500] [--epochs 2]
        [--big-gb 4.4] [--work DIR] [--skip throughput memmap]

The machine's other load changes the throughput numbers; the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "distributed.json"
BIG_SHAPE = (64, 64)  # one example of the big array: a 64 x 64 float32 image (16 KiB)


# Runs ``vaekit ARGS`` and, when it exits, writes its own peak resident set (VmHWM, KiB) to a file.
# Read inside the process: a child's ru_maxrss from wait4 also counts the parent's memory at fork.
_PEAK_WRAPPER = """
import os, sys
from vaekit.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["VAEKIT_BENCH_PEAK"], "w") as f:
        f.write(str(peak))
sys.exit(code)
"""


def vaekit(*args: object) -> tuple[float, int]:
    """Run ``vaekit ARGS`` to completion; (wall seconds, that process's peak RSS in MiB). Under
    ``--nproc`` the process measured is the launcher, not the workers."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak_file:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "VAEKIT_BENCH_PEAK": peak_file.name}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *map(str, args)], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"vaekit {' '.join(map(str, args))} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
        return seconds, int(Path(peak_file.name).read_text()) // 1024


def last_epoch_throughput(run_dir: Path) -> dict:
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    sizes = json.loads((run_dir / "data.json").read_text())["sizes"]
    seconds = float(rows[-1]["train_seconds"])
    return {
        "examples_per_second": sizes["train"] / seconds,
        "epoch_seconds": seconds,
        "train_examples": sizes["train"],
        "valid_neg_elbo": float(rows[-1]["valid_neg_elbo"]),
    }


def throughput(args, work: Path) -> dict:
    rng = np.random.default_rng(0)
    prototypes = rng.random((10, 784)) < 0.2
    rows = prototypes[rng.integers(0, 10, args.rows)] ^ (rng.random((args.rows, 784)) < 0.05)
    data = work / "binary-784.npy"
    np.save(data, rows.astype(np.uint8))
    out = {
        "data": f"synthetic binary {args.rows} x 784 (uint8)",
        "model": "default VAE: MLP 784-256-128-2, Bernoulli, Adam 1e-3",
        "epochs": args.epochs,
        "runs": [],
    }
    for batch in args.batches:
        common = ["--dataset", data, "--epochs", args.epochs, "--batch-size", batch, "--threads", 1, "--quiet"]
        row = {"per_process_batch": batch}
        for name, extra in (("one_process", []), ("two_processes", ["--nproc", 2])):
            run_dir = work / f"{name}-{batch}"
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"  batch {batch}, {name.replace('_', ' ')} ...", flush=True)
            wall, _ = vaekit("train", *common, "--out", run_dir, *extra)
            row[name] = {**last_epoch_throughput(run_dir), "wall_seconds": wall, "load_average": os.getloadavg()}
        # the ceiling this machine allows: two independent 1-process runs at once (no communication)
        print(f"  batch {batch}, two independent processes at once ...", flush=True)
        pair = [work / f"independent-{batch}-{k}" for k in (0, 1)]
        for run_dir in pair:
            shutil.rmtree(run_dir, ignore_errors=True)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "vaekit", "train", *map(str, common), "--out", str(d)],
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for d in pair
        ]
        if any(proc.wait() for proc in procs):
            raise SystemExit("an independent run failed")
        row["two_independent_processes"] = {
            "examples_per_second": sum(last_epoch_throughput(d)["examples_per_second"] for d in pair),
            "load_average": os.getloadavg(),
        }
        one, two = row["one_process"]["examples_per_second"], row["two_processes"]["examples_per_second"]
        row["speedup"] = two / one
        row["scaling_efficiency"] = two / (2 * one)
        row["efficiency_vs_independent"] = two / row["two_independent_processes"]["examples_per_second"]
        out["runs"].append(row)
    if not args.skip_memmap_throughput:
        batch = args.batches[0]
        print(f"  batch {batch}, one process, memory-mapped ...", flush=True)
        run_dir = work / "memmap"
        shutil.rmtree(run_dir, ignore_errors=True)
        wall, _ = vaekit(
            "train",
            "--dataset",
            data,
            "--epochs",
            args.epochs,
            "--batch-size",
            batch,
            "--threads",
            1,
            "--quiet",
            "--out",
            run_dir,
            "--memmap",
        )
        out["one_process_memmap"] = {"per_process_batch": batch, **last_epoch_throughput(run_dir), "wall_seconds": wall}
    return out


def write_big_array(path: Path, n_rows: int) -> int:
    """A float32 (n_rows, 64, 64) .npy in [0, 1], written 256 MiB at a time; returns its size in bytes."""
    rng = np.random.default_rng(1)
    chunk = (256 * 2**20) // (4 * math.prod(BIG_SHAPE))
    with path.open("wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n_rows, *BIG_SHAPE)})
        for start in range(0, n_rows, chunk):
            f.write(rng.random((min(chunk, n_rows - start), *BIG_SHAPE), dtype=np.float32).tobytes())
    return path.stat().st_size


def memmap_rss(args, work: Path) -> dict:
    n_rows = math.ceil(args.big_gb * 1e9 / (4 * math.prod(BIG_SHAPE)))
    folder = Path(tempfile.mkdtemp(prefix="vaekit-bigarray-", dir=work))
    try:
        path = folder / "big.npy"
        print(f"  writing a {n_rows} x 64 x 64 float32 array ...", flush=True)
        start = time.perf_counter()
        size = write_big_array(path, n_rows)
        write_seconds = time.perf_counter() - start
        _, baseline = vaekit("train", "--help")  # python with vaekit's CLI imported, nothing loaded
        run_dir = folder / "run"
        print(f"  training one epoch over {size / 1e9:.2f} GB memory-mapped ...", flush=True)
        train_wall, train_rss = vaekit(
            "train",
            "--dataset",
            path,
            "--memmap",
            "--epochs",
            1,
            "--hidden",
            64,
            "--latent-dim",
            8,
            "--batch-size",
            args.batch,
            "--threads",
            1,
            "--quiet",
            "--out",
            run_dir,
        )
        print("  evaluating its validation split ...", flush=True)
        eval_wall, eval_rss = vaekit("evaluate", run_dir, "--split", "valid", "--no-pca", "--quiet", "--json", folder / "eval.json")
        evaluation = json.loads((folder / "eval.json").read_text())
        return {
            "array": {"shape": [n_rows, *BIG_SHAPE], "dtype": "float32", "bytes": size, "gb": size / 1e9, "write_seconds": write_seconds},
            "model": f"VAE MLP 4096-64-8, Bernoulli, batch {args.batch}, 1 thread",
            "train": {"peak_rss_mib": train_rss, "wall_seconds": train_wall, **last_epoch_throughput(run_dir)},
            "evaluate": {"peak_rss_mib": eval_rss, "wall_seconds": eval_wall, "examples": evaluation["examples"]},
            "vaekit_imported_rss_mib": baseline,
            "bound_mib": 1024,
            "under_bound": max(train_rss, eval_rss) < 1024,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_table(results: dict) -> None:
    t = results.get("throughput")
    if t:
        print(f"\nthroughput ({t['data']}), {t['model']}, 1 thread per process:")
        print(
            f"  {'batch/process':>13s} {'1 process ex/s':>15s} {'2 processes ex/s':>17s} {'speedup':>8s} {'efficiency':>11s}"
            f" {'2 independent ex/s':>19s} {'DDP vs independent':>19s}"
        )
        for r in t["runs"]:
            print(
                f"  {r['per_process_batch']:13d} {r['one_process']['examples_per_second']:15.0f} "
                f"{r['two_processes']['examples_per_second']:17.0f} "
                f"{r['speedup']:7.2f}x {100 * r['scaling_efficiency']:10.0f}% {r['two_independent_processes']['examples_per_second']:19.0f}"
                f" {100 * r['efficiency_vs_independent']:18.0f}%"
            )
        if "one_process_memmap" in t:
            r = t["one_process_memmap"]
            print(f"  {r['per_process_batch']:13d} {r['examples_per_second']:15.0f}  (1 process, memory-mapped)")
        loads = [r[k]["load_average"][0] for r in t["runs"] for k in ("one_process", "two_processes", "two_independent_processes")]
        print(
            "  1-minute load average at the end of each run: "
            + ", ".join(f"{v:.1f}" for v in loads)
            + f" ({results['machine']['cpus']} CPUs)"
        )
    m = results.get("memmap")
    if m:
        a = m["array"]
        print(f"\nmemory-mapped {a['gb']:.2f} GB array ({' x '.join(map(str, a['shape']))} float32):")
        print(
            f"  train one epoch: peak RSS {m['train']['peak_rss_mib']} MiB, {m['train']['examples_per_second']:.0f} examples/s, "
            f"{m['train']['wall_seconds']:.0f} s wall"
        )
        print(f"  evaluate valid split ({m['evaluate']['examples']} examples): peak RSS {m['evaluate']['peak_rss_mib']} MiB")
        print(f"  (a process with vaekit imported, nothing loaded: {m['vaekit_imported_rss_mib']} MiB); under 1 GiB: {m['under_bound']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=60_000, help="examples of the throughput data (default 60000)")
    p.add_argument("--batches", type=int, nargs="+", default=[100, 500], help="batches per process to time (default 100 500)")
    p.add_argument("--batch", type=int, default=100, help="batch of the memory-mapped training run (default 100)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the throughput runs; the last is timed (default 2)")
    p.add_argument("--big-gb", type=float, default=4.4, help="size of the memory-mapped array in GB (default 4.4, at least 4)")
    p.add_argument("--work", default=None, help="folder for temporary files (default: a new temporary folder, deleted)")
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memmap"], help="parts to leave out")
    p.add_argument("--skip-memmap-throughput", action="store_true", help="leave out the 1-process memmap throughput run")
    args = p.parse_args()
    if "memmap" not in args.skip and args.big_gb < 4:
        raise SystemExit("--big-gb must be at least 4")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vaekit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    import torch

    results: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}  # a skipped part keeps its last figures
    results["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        if "throughput" not in args.skip:
            print("[1] throughput: 1 vs 2 processes", flush=True)
            results["throughput"] = {"date": now, **throughput(args, work)}
        if "memmap" not in args.skip:
            print("[2] peak RSS on a memory-mapped array", flush=True)
            results["memmap"] = {"date": now, **memmap_rss(args, work)}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    write_results(RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
