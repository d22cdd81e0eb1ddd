"""``make demo``: train a VAE on the embedded digits, draw what it learned, and end with its HTML report.

Runs the same commands a user would type, so the demo is also a tour of the CLI.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from vaekit.cli import main as cli
from vaekit.report import REPORT

RUN = Path("runs/demo")

STEPS = [
    [
        "train",
        "--dataset",
        "digits",
        "--latent-dim",
        "2",
        "--hidden",
        "256",
        "128",
        "--epochs",
        "150",
        "--batch-size",
        "64",
        "--lr",
        "2e-3",
        "--warmup",
        "10",
        "--seed",
        "0",
        "--threads",
        "1",  # a small MLP: one thread is as fast on a quiet machine and never stalls on a busy one (bench/README.md)
        "--out",
        str(RUN),
    ],
    ["evaluate", str(RUN)],
    ["sample", str(RUN), "-n", "64"],
    ["reconstruct", str(RUN), "-n", "32"],
    ["curves", str(RUN)],
    ["interpolate", str(RUN), "--between", "0", "1"],
    ["traverse", str(RUN)],
    ["manifold", str(RUN)],
    ["embed", str(RUN)],
    ["report", str(RUN)],
]


def main() -> int:
    if RUN.exists():
        shutil.rmtree(RUN)
    start = time.perf_counter()
    for step in STEPS:
        print(f"\n$ vaekit {' '.join(step)}", flush=True)
        code = cli(step)
        if code:
            return code
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; figures in {RUN / 'figures'}")
    print(f"report: {(RUN / REPORT).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
