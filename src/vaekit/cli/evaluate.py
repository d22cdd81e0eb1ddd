"""``vaekit evaluate``: negative ELBO, reconstruction and KL of a split, in nats."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaekit.cli.common import add_run_argument, positive_int, split_of


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="test-set negative ELBO, reconstruction and KL (nats)",
                       description="Evaluate a trained run: negative ELBO = reconstruction + KL, in nats per example and per dimension.")
    add_run_argument(p)
    p.add_argument("--data", metavar="SOURCE", help="dataset name or path (default: the run's dataset), preprocessed like the training data")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test", help="which split (default test)")
    p.add_argument("--samples", type=positive_int, default=1, help="latent samples per example for the ELBO (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=1000, help="examples per batch (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent samples (default 0)")
    p.add_argument("--json", metavar="PATH", help="write the results here (default RUN/eval-SPLIT.json)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import math

    from vaekit.checkpoint import atomic_write_json
    from vaekit.evaluation import elbo_terms, summarize
    from vaekit.runs import load
    from vaekit.training import check_data

    r = load(args.run)
    data = r.load_data(args.data)
    check_data_shape(r, data)
    if args.data:
        check_data(r.config, data)
    split = split_of(data, args.split)
    terms = elbo_terms(r.model, split.x, batch_size=args.batch_size, n_samples=args.samples, seed=args.seed)
    result = {"run": str(r.path), "data": args.data or r.config.data.source, "split": args.split, **summarize(terms, math.prod(r.model.input_shape))}
    print(f"{result['split']} split, {result['examples']} examples ({result['data']}):")
    print(f"  negative ELBO   {result['neg_elbo']:10.3f} ± {result['neg_elbo_stderr']:.3f} nats  ({result['bits_per_dim']:.4f} bits/dim)")
    print(f"  reconstruction  {result['reconstruction']:10.3f} nats")
    print(f"  KL              {result['kl']:10.3f} nats")
    out = Path(args.json) if args.json else r.path / f"eval-{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"written to {out}")
    return 0


def check_data_shape(run, data) -> None:
    from vaekit.errors import DataError

    if tuple(data.shape) != tuple(run.model.input_shape):
        raise DataError(f"the data has examples of shape {tuple(data.shape)}, but the model was trained on {tuple(run.model.input_shape)}")
