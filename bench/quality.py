"""B1 quality check: test negative ELBO after 10 epochs, vaekit against the plain DataLoader loop,
and vaekit's speed options (--compile, --precision bf16) against its default.

    python bench/quality.py [--seeds 1 2 3] [--epochs 10] [--variants fp32 compile bf16 bf16-compile]

Both are scored by the same evaluator (vaekit's ``elbo_terms``, one latent sample per example, seed 0)
on the 10,000 test images; the plain model's weights are copied into a vaekit model for that.
Writes bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results
from run import ROOT, PlainVAE, b1_config

import vaekit
from vaekit.data import Dataset, SourceSettings, load_data
from vaekit.evaluation import elbo_terms


def plain_train(x: torch.Tensor, seed: int, epochs: int) -> PlainVAE:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = PlainVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x.flatten(1)), batch_size=100, shuffle=True)
    for _ in range(epochs):
        for (xb,) in loader:
            loss = model(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def as_vaekit(plain: PlainVAE) -> vaekit.LatentVariableModel:
    """The same weights in a vaekit model, so both are scored by one evaluator."""
    cfg = b1_config().model
    cfg.input_shape = (1, 28, 28)
    model = vaekit.build_model(cfg)
    sd = {
        "encoder.net.0.weight": plain.enc.weight,
        "encoder.net.0.bias": plain.enc.bias,
        "posterior.params.weight": torch.cat([plain.mu.weight, plain.logvar.weight]),
        "posterior.params.bias": torch.cat([plain.mu.bias, plain.logvar.bias]),
        "decoder.net.0.weight": plain.dec1.weight,
        "decoder.net.0.bias": plain.dec1.bias,
        "decoder.net.2.weight": plain.dec2.weight,
        "decoder.net.2.bias": plain.dec2.bias,
    }
    missing = model.load_state_dict(sd, strict=False)
    assert not missing.unexpected_keys and all(k.startswith("prior") for k in missing.missing_keys), missing
    return model


VARIANTS = {  # name: TrainConfig changes
    "fp32": {},
    "compile": {"compile": True},
    "bf16": {"precision": "bf16"},
    "bf16-compile": {"precision": "bf16", "compile": True},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["fp32"])
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality.json"))
    args = ap.parse_args()
    data = load_data("binarized-mnist", settings=SourceSettings(data_dir=args.data_dir))
    test = data.test.x
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for variant in args.variants:
            cfg = b1_config(args.epochs)
            cfg.train.seed = seed
            for key, value in VARIANTS[variant].items():
                setattr(cfg.train, key, value)
            t0 = time.perf_counter()
            run = vaekit.train(cfg, Path("/tmp") / f"vaekit-quality-{seed}-{time.time_ns()}", data=data)
            seconds = time.perf_counter() - t0
            last = vaekit.load(run.path, which="last").model
            prefix = "vaekit" if variant == "fp32" else f"vaekit_{variant}"
            row[f"{prefix}_neg_elbo"] = elbo_terms(last, Dataset(test)).neg_elbo.mean().item()
            row[f"{prefix}_train_seconds"] = sum(r["train_seconds"] for r in run.metrics())
            row[f"{prefix}_total_seconds"] = seconds
            shutil.rmtree(run.path, ignore_errors=True)
        if not args.skip_plain:
            t0 = time.perf_counter()
            plain = plain_train(data.train.x, seed, args.epochs)
            row["plain_seconds"] = time.perf_counter() - t0
            row["plain_neg_elbo"] = elbo_terms(as_vaekit(plain), Dataset(test)).neg_elbo.mean().item()
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"epochs": args.epochs, "rows": rows}
    for key in [k for k in rows[0] if k.endswith("_neg_elbo")]:
        summary[key.replace("_neg_elbo", "_median")] = statistics.median(r[key] for r in rows)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    write_results(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
