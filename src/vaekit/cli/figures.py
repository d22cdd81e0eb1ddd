"""``vaekit sample``, ``vaekit reconstruct`` and ``vaekit pseudo-inputs``: PNG grids from a trained run (views from ``vaekit.report``)."""

from __future__ import annotations

import argparse

from vaekit.cli.common import (
    add_class_argument,
    add_data_dir_argument,
    add_output_argument,
    add_run_argument,
    add_syntax_argument,
    load_run,
    output_path,
    positive_int,
    view_context,
)
from vaekit.errors import ConfigError
from vaekit.plotting import save_png
from vaekit.report import RunViews
from vaekit.runs import load


def register(sub) -> None:
    p = sub.add_parser("sample", help="a PNG grid of decoded prior samples", description="Decode draws from the prior into a PNG grid.")
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="scale of the prior draws (default 1); a sequence model: the decoder's sampling temperature (0: greedy)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of showing the decoder mean")
    add_syntax_argument(p)
    p.add_argument(
        "--density",
        choices=["prior", "gaussian", "gmm"],
        help="draw z from the prior, or from a full-covariance Gaussian or a Gaussian mixture fitted to the training codes "
        "(default: prior for a VAE, gaussian for a plain autoencoder, whose codes follow no prior)",
    )
    p.add_argument("--components", type=positive_int, default=10, help="mixture components of --density gmm (default 10)")
    p.add_argument("--compare", action="store_true", help="prior, Gaussian and mixture samples side by side in one figure")
    add_data_dir_argument(p)  # a Gaussian or mixture density is fitted to the training codes
    add_class_argument(p)
    add_output_argument(p, "samples.png")
    p.set_defaults(handler=run_sample)

    p = sub.add_parser(
        "pseudo-inputs",
        help="a PNG of a VampPrior's learned pseudo-inputs and their decodings",
        description="Show a VampPrior model's learned pseudo-inputs u_k (odd rows) above the decoder mean at q(z|u_k) (even rows).",
    )
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=64, help="number of pseudo-inputs, the first n (default 64)")
    add_output_argument(p, "pseudo-inputs.png")
    p.set_defaults(handler=run_pseudo_inputs)

    p = sub.add_parser(
        "reconstruct",
        help="a PNG of originals above their reconstructions",
        description="Encode examples and decode their posterior means: originals above reconstructions.",
    )
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=16, help="number of examples (default 16)")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test", help="which split (default test)")
    p.add_argument("--data", metavar="SOURCE", help="dataset name or path (default: the run's dataset)")
    add_data_dir_argument(p)
    add_output_argument(p, "reconstructions.png")
    p.set_defaults(handler=run_reconstruct)


def run_sample(args: argparse.Namespace) -> int:

    r = load_run(args)
    views = RunViews(r, seed=args.seed, context=view_context(r, args))
    if views.is_sequences:  # strings: decoded at --temperature from z ~ p(z)
        view = views.samples(args.n, temperature=args.temperature, syntax=args.syntax)
        print("\n".join(view.result))
        print(f"wrote {args.n} samples to {save_png(view.picture, output_path(args, r.path, 'samples.png'))}")
        return 0
    if args.temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {args.temperature}")
    if args.syntax:
        raise ConfigError("--syntax applies to a model of token sequences (SMILES), not to this run's data")
    views.require_images("sampling")
    if args.compare:
        view = views.sample_comparison(args.n, temperature=args.temperature, components=args.components)
        what = "prior, Gaussian-fit and mixture-fit samples side by side"
    else:
        density = args.density or ("gaussian" if r.model.latent.deterministic else "prior")
        view = views.samples(args.n, temperature=args.temperature, density=density, components=args.components, draw=args.draw)
        per_class = views.classes and views.chosen_context is None
        what = (
            f"{max(1, args.n // views.classes)} samples per class (z from {density})"
            if per_class
            else f"{args.n} samples (z from {density})"
        )
    path = save_png(view.picture, output_path(args, r.path, "samples.png"))
    print(f"wrote {what} to {path}")
    return 0


def run_pseudo_inputs(args: argparse.Namespace) -> int:

    r = load(args.run)
    view = RunViews(r).pseudo_inputs(args.n)
    path = save_png(view.picture, output_path(args, r.path, "pseudo-inputs.png"))
    print(f"wrote {len(view.result)} pseudo-inputs (odd rows) and their decodings (even rows) to {path}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:

    r = load_run(args)
    views = RunViews(r, source=args.data, split=args.split)
    view = views.reconstructions(args.n)
    path = save_png(view.picture, output_path(args, r.path, "reconstructions.png"))
    if views.is_sequences:
        rec = view.result
        print("\n".join(f"{'=' if same else 'x'} {a}  ->  {b}" for a, b, same in zip(rec.originals, rec.decoded, rec.exact.tolist())))
        print(f"{int(rec.exact.sum())} of {len(rec.exact)} decoded exactly; wrote the pairs to {path}")
        return 0
    print(f"wrote {len(view.result)} originals (odd rows) and reconstructions (even rows) to {path}")
    return 0
