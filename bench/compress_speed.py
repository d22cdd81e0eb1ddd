"""Throughput of lossless compression of 8-bit (or binary) test images with trained runs, one thread.

    python bench/compress_speed.py RUN [RUN ...] --n 2000 --repeats 3 [--threads 1]

For each run: compress and decompress its test split's first --n images --repeats times, runs interleaved
(run A, run B, A, B, ...) so that a busy machine slows each alike; prints the median images/s of each,
the file's bits/dim (net of the initial bits and with them) and the SHA-256 of the file, so two versions
of the coder can be compared for speed and for bit-identical output.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import statistics
import time

import torch

import vaekit
from vaekit.compression import compress, decompress
from vaekit.compression import format as vkz


def measure(model, x: torch.Tensor) -> dict:
    t0 = time.perf_counter()
    data = compress(model, x)
    t1 = time.perf_counter()
    y = decompress(model, data)
    t2 = time.perf_counter()
    assert torch.equal(y, x)
    header, words = vkz.read(data)
    dims = len(x) * math.prod(x.shape[1:])
    return {
        "compress": len(x) / (t1 - t0),
        "decompress": len(x) / (t2 - t1),
        "bits_per_dim": 32 * len(words) / dims,
        "net_bits_per_dim": (32 * len(words) - header.initial_bits) / dims,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cases = []
    for path in args.runs:
        run = vaekit.load(path)
        cases.append((path, run.model, run.load_data().test.x[: args.n]))
    results: dict[str, list[dict]] = {path: [] for path, _, _ in cases}
    for _ in range(args.repeats):
        for path, model, x in cases:
            results[path].append(measure(model, x))
    for path, rs in results.items():
        c = statistics.median(r["compress"] for r in rs)
        d = statistics.median(r["decompress"] for r in rs)
        r = rs[0]
        each = ", ".join(f"{q['compress']:.0f}/{q['decompress']:.0f}" for q in rs)
        print(
            f"{path}: {c:.0f} / {d:.0f} images/s (compress / decompress, median of {len(rs)}; "
            f"each: {each}), "
            f"{r['net_bits_per_dim']:.4f} bits/dim net ({r['bits_per_dim']:.4f} with initial bits), sha256 {r['sha256'][:16]}"
        )


if __name__ == "__main__":
    main()
