"""Decode round trips of ``vaekit explore``: one client, then a bounded loopback load test.

Starts ``vaekit explore RUN --port 0`` as its own process (as a user would), then, over keep-alive
HTTP connections from this process:
  1. one client, one code per request: the round trip the page sees while a slider moves (p50/p99);
  2. CLIENTS concurrent clients sharing REQUESTS decode requests: errors, p50/p99, requests/s.
The model is B1 unless --run says otherwise (train it first, about a minute):

    vaekit train --dataset binarized-mnist --data-dir ../shared/data --arch mlp --hidden 512 --latent-dim 16 \\
        --epochs 10 --batch-size 100 --lr 1e-3 --seed 1 --threads 1 --out runs/b1
    OMP_NUM_THREADS=1 python bench/explore_latency.py --run runs/b1

Prints the numbers and writes them to bench/results/explore.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results


def start_server(run: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", run, "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line.strip() or 'no output'}")
    port = int(line.split(" at ")[1].split()[0].rstrip("/").rsplit(":", 1)[1])
    return proc, port


def latent_dim(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/api/info")
    dim = json.loads(conn.getresponse().read())["model"]["latent_dim"]
    conn.close()
    return dim


def decode_loop(port: int, dim: int, n: int, seed: int, latencies: list[float], errors: list[str]) -> None:
    """``n`` decode requests of one random code each, one after another on one connection."""
    rng = np.random.default_rng(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(n):
            body = json.dumps({"z": [rng.normal(size=dim).round(4).tolist()]})
            start = time.perf_counter()
            conn.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            latencies.append(time.perf_counter() - start)
            if response.status != 200:
                errors.append(f"{response.status}: {data[:100]!r}")
    except OSError as exc:
        errors.append(str(exc))
    finally:
        conn.close()


def summary(latencies: list[float]) -> dict:
    ms = np.asarray(latencies) * 1e3
    return {
        "requests": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/b1", help="run directory (default runs/b1)")
    parser.add_argument("--sequential", type=int, default=1000, help="single-client requests (default 1000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the load test (default 8)")
    parser.add_argument("--requests", type=int, default=2000, help="decode requests in the load test, all clients together (default 2000)")
    parser.add_argument("--out", default="bench/results/explore.json")
    args = parser.parse_args()

    proc, port = start_server(args.run)
    try:
        dim = latent_dim(port)
        warm, errors = [], []
        decode_loop(port, dim, 50, 0, warm, errors)  # warm-up, not counted

        one: list[float] = []
        decode_loop(port, dim, args.sequential, 1, one, errors)
        single = summary(one)
        print(f"one client, {single['requests']} decodes: p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms")

        many: list[float] = []
        load_errors: list[str] = []
        per_client = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
        threads = [threading.Thread(target=decode_loop, args=(port, dim, n, 100 + i, many, load_errors)) for i, n in enumerate(per_client)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
        load = summary(many) | {"clients": args.clients, "errors": len(load_errors), "requests_per_s": round(len(many) / seconds, 1)}
        print(
            f"{args.clients} clients, {load['requests']} decodes: {load['errors']} errors, p50 {load['p50_ms']} ms, "
            f"p99 {load['p99_ms']} ms, {load['requests_per_s']} requests/s"
        )
        if load_errors:
            print("first errors:", load_errors[:3])
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    write_results(
        args.out,
        {
            "what": "vaekit explore decode round trips over loopback HTTP (one code per request, JSON in, base64 pixels out)",
            "run": args.run,
            "latent_dim": dim,
            "machine": {"cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version()},
            "single_client": single,
            "load_test": load,
            "target": "single-client p50 < 30 ms",
        },
    )
    return 1 if errors or load_errors else 0


if __name__ == "__main__":
    sys.exit(main())
