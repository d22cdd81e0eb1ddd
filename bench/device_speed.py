"""Seconds per epoch of each reproduction row's preset on a device, and its K = 5000 test estimate's time.

    python bench/device_speed.py [--device cuda] [--rows vae hvae-vampprior ...] [--epochs 2]
                                 [--precision bf16] [--compile] [--iw-rows vae hvae-vampprior]

For each row it trains the row's preset (``vaekit train --preset NAME``) for ``--epochs`` epochs on
the device into a scratch folder and reads the last epoch's training and validation seconds from
the run's metrics.csv (the first epoch also pays for start-up and compilation). The projected
training time of the row is that epoch time times the epochs the recorded row trained
(bench/results/reproduction.json). For the ``--iw-rows`` it then times ``vaekit evaluate RUN --split
test --iw-samples 5000 --device DEVICE`` on the full 10,000 test images (the weights are the short
run's: the time does not depend on them). Prints a table with the ratio to the recorded CPU epoch
and writes a JSON list to ``--results``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from reproduce import RESULTS, ROWS  # noqa: E402


def vaekit(*args: str, log: Path) -> float:
    """Run ``python -m vaekit ARGS`` (this checkout's source), its output appended to ``log``; its wall seconds."""
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]  # no empty entry: that would put the cwd on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ vaekit {' '.join(args)}\n")
        out.flush()
        subprocess.run([sys.executable, "-m", "vaekit", *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cpu or cuda (default cuda)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="the rows to time (default all)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per row; the last is timed (default 2)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="training precision (default bf16)")
    p.add_argument("--compile", action="store_true", help="train with --compile")
    p.add_argument("--iw-rows", nargs="*", choices=list(ROWS), default=[], help="rows whose K = 5000 test estimate is timed too")
    p.add_argument("--iw-samples", type=int, default=5000, help="importance samples per test image (default 5000)")
    p.add_argument("--data-dir", default="../shared/data", help="folder with binarized_mnist.npz (default ../shared/data)")
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "device-speed.json"), help="the JSON file written")
    p.add_argument("--log", default="device-speed.log", help="the vaekit commands' output (default device-speed.log)")
    args = p.parse_args(argv)
    recorded = {r["row"]: r for r in json.loads(RESULTS.read_text())} if RESULTS.exists() else {}
    log, out = Path(args.log), []
    header = ["s/epoch", "valid s", "CPU s/epoch", "speed-up", "epochs", "projected", "K=5000 s"]
    print(f"{'row':16s} " + " ".join(f"{h:>{w}s}" for h, w in zip(header, [8, 8, 11, 8, 6, 9, 9])))
    with tempfile.TemporaryDirectory() as scratch:
        for row in args.rows:
            run = Path(scratch) / row
            flags = ["--preset", ROWS[row], "--data-dir", args.data_dir, "--device", args.device, "--epochs", str(args.epochs)]
            flags += ["--precision", args.precision, "--out", str(run), "--quiet", *(["--compile"] if args.compile else [])]
            try:
                wall = vaekit("train", *flags, log=log)
            except subprocess.CalledProcessError:
                print(f"{row:16s} training failed: see {log}")
                out.append({"row": row, "error": f"training failed, see {log.name}"})
                continue
            last = list(csv.DictReader((run / "metrics.csv").open()))[-1]
            epoch, valid = float(last["train_seconds"]), float(last["valid_seconds"])
            cpu = recorded.get(row, {})
            result = {
                "row": row,
                "preset": ROWS[row],
                "device": args.device,
                "device_name": device_name(args.device),
                "torch": torch.__version__,
                "precision": args.precision,
                "compile": args.compile,
                "epochs_run": args.epochs,
                "seconds_per_epoch": epoch,
                "valid_seconds": valid,
                "wall_seconds_of_this_run": wall,
                "cpu_seconds_per_epoch": cpu.get("seconds_per_epoch"),
                "row_epochs": cpu.get("epochs"),
            }
            if cpu.get("seconds_per_epoch"):
                result["speed_up"] = cpu["seconds_per_epoch"] / epoch
            if cpu.get("epochs"):
                result["projected_training_seconds"] = (epoch + valid) * cpu["epochs"]
            if row in args.iw_rows:
                eval_json = run / "eval-iw.json"
                try:
                    result["iw_wall_seconds"] = vaekit(
                        "evaluate", str(run), "--split", "test", "--iw-samples", str(args.iw_samples), "--no-pca", "--quiet",
                        "--device", args.device, "--json", str(eval_json), log=log,
                    )  # fmt: skip
                    result["iw_seconds"] = json.loads(eval_json.read_text())["iw"]["seconds"]
                    result["iw_k"] = args.iw_samples
                except subprocess.CalledProcessError:
                    result["iw_error"] = f"evaluation failed, see {log.name}"
            out.append(result)
            cells = [
                f"{epoch:8.2f}",
                f"{valid:8.2f}",
                f"{cpu.get('seconds_per_epoch') or float('nan'):11.2f}",
                f"{result.get('speed_up', float('nan')):7.1f}x",
                f"{cpu.get('epochs') or '':>6}",
                f"{result.get('projected_training_seconds', float('nan')) / 60:7.1f} m",
                f"{result.get('iw_seconds', float('nan')):9.1f}",
            ]
            print(f"{row:16s} " + " ".join(cells), flush=True)
            Path(args.results).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all("error" not in r and "iw_error" not in r for r in out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
