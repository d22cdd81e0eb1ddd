"""Where a second intra-op thread helps and where it hurts: training steps per second of a few
model sizes with 1 and 2 threads, on a quiet machine and beside a busy neighbour (a process that
keeps one core busy, as a second training job, a browser or a CI neighbour does).

    python bench/threads.py --out bench/results/threads.json

Each cell runs in a fresh process (the thread count is fixed at start-up) and reports the median
over rounds of ``--seconds`` of steps; the busy rows start the neighbour first. The table is in
bench/README.md; the default thread count (``vaekit.threads``) is set from it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

# name -> (model settings, input shape, batch size)
MODELS = {
    "demo (digits, MLP 64-256-128-2)": ({"hidden": (256, 128), "latent_dim": 2}, (1, 8, 8), 100),
    "B1 (MLP 784-512-16)": ({"hidden": (512,), "latent_dim": 16}, (1, 28, 28), 100),
    "B1, batch 1000": ({"hidden": (512,), "latent_dim": 16}, (1, 28, 28), 1000),
    "gated 300-300, L = 40 (the HVAE rows' network)": ({"arch": "gated", "hidden": (300, 300), "latent_dim": 40}, (1, 28, 28), 100),
    "conv 32-64 (28x28)": ({"arch": "conv", "hidden": (32, 64), "latent_dim": 16}, (1, 28, 28), 100),
}

CELL = r"""
import sys, time, json, statistics, torch
torch.set_num_threads({threads})
from vaekit.config import ModelConfig
from vaekit.models import build_model
from vaekit.objectives import ELBO
from vaekit.data.base import Batch
torch.manual_seed(0)
model = build_model(ModelConfig(input_shape={shape}, likelihood="bernoulli", **{settings}))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
objective = ELBO()
x = torch.rand(4096, *{shape}).round()
def step(i):
    xb = x[(i * {batch}) % (4096 - {batch}):][:{batch}]
    loss = objective(model, Batch(xb, xb)).loss.mean()
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for i in range(20): step(i)
rates = []
for r in range({rounds}):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < {seconds}:
        step(n); n += 1
    rates.append(n * {batch} / (time.perf_counter() - t0))
print(json.dumps({{"images_per_s": statistics.median(rates), "worst": min(rates)}}))
"""


def neighbour() -> None:
    """One core kept busy: a single-threaded matrix product loop."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while True:
        a = torch.tanh(a @ a)


def cell(settings: dict, shape: tuple, batch: int, threads: int, rounds: int, seconds: float) -> dict:
    code = CELL.format(threads=threads, shape=shape, settings=settings, batch=batch, rounds=rounds, seconds=seconds)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "threads.json")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    rows = []
    for condition in ("quiet", "busy"):
        busy = mp.Process(target=neighbour, daemon=True) if condition == "busy" else None
        if busy is not None:
            busy.start()
            time.sleep(1.0)
        try:
            for name, (settings, shape, batch) in MODELS.items():
                one = cell(settings, shape, batch, 1, args.rounds, args.seconds)
                two = cell(settings, shape, batch, 2, args.rounds, args.seconds)
                row = {"model": name, "machine": condition, "batch": batch, "one_thread": one, "two_threads": two}
                row["two_over_one"] = two["images_per_s"] / one["images_per_s"]
                rows.append(row)
                print(
                    f"{condition:6s} {name:50s} 1 thread {one['images_per_s']:9.0f}/s  2 threads {two['images_per_s']:9.0f}/s  "
                    f"ratio {row['two_over_one']:.2f} (worst round {two['worst'] / one['worst']:.2f})",
                    flush=True,
                )
        finally:
            if busy is not None:
                busy.terminate()
    args.out.write_text(json.dumps({"rows": rows, "rounds": args.rounds, "seconds": args.seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
