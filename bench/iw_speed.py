"""The K = 5000 importance-weighted estimate with a standard-normal prior, a 500-component Gaussian
mixture prior and a VampPrior of 500 pseudo-inputs: examples per second and the ratio to the
standard-normal prior (issue 12 asks the VampPrior's to be at least half as fast).

    python bench/iw_speed.py [--images 100] [--k 5000] [--threads 1]

The models are the reproduction table's (gated MLP 300-300, latent 40, binarized MNIST's shape),
freshly initialised: the speed of the estimate does not depend on the weights. Each prior's estimate
is timed on the same images, twice, and the faster time is kept; extrapolated to the 10,000 test images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from common import write_results  # noqa: E402

from vaekit.config import ModelConfig  # noqa: E402
from vaekit.data import Dataset  # noqa: E402
from vaekit.evaluation import iw_log_likelihood  # noqa: E402
from vaekit.models import build_model  # noqa: E402

PRIORS = {
    "normal": {},
    "mixture": {"prior": "mixture", "prior_components": 500},
    "vampprior": {"prior": "vampprior", "prior_components": 500},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100, help="test-sized images to estimate (default 100)")
    p.add_argument("--k", type=int, default=5000, help="importance samples per image (default 5000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "iw_speed.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(0)).bernoulli()
    results: dict = {"k": args.k, "images": args.images, "threads": args.threads, "priors": {}}
    print(f"IW estimate, K = {args.k}, {args.images} images, {args.threads} thread(s)")
    for name, fields in PRIORS.items():
        torch.manual_seed(0)
        config = ModelConfig(input_shape=(1, 28, 28), arch="gated", hidden=(300, 300), latent_dim=40, **fields)
        model = build_model(config).eval()
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            iw_log_likelihood(model, Dataset(x), k=args.k)
            seconds.append(time.perf_counter() - start)
        rate = args.images / min(seconds)
        results["priors"][name] = {"images_per_second": rate, "test_set_minutes": 10_000 / rate / 60}
    base = results["priors"]["normal"]["images_per_second"]
    for name, r in results["priors"].items():
        r["speed_vs_normal"] = r["images_per_second"] / base
        print(
            f"  {name:10s} {r['images_per_second']:7.2f} images/s  {r['speed_vs_normal']:5.2f}x the standard normal's  "
            f"(10,000 test images: {r['test_set_minutes']:.1f} min)"
        )
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
