"""``vaekit optimize``: property-guided molecule design in a SMILES/SELFIES model's latent space
(``vaekit.molecules.design``): fit a predictor of the property on training molecules' codes, climb it
from a seed molecule or from the best training molecules, and print and draw the best valid, novel
molecules found, with the number of property evaluations used."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vaekit.checkpoint import atomic_write_json
from vaekit.cli.common import add_data_dir_argument, add_run_argument, add_syntax_argument, positive_int
from vaekit.errors import ConfigError
from vaekit.plotting import save_png


def register(sub) -> None:
    from vaekit.molecules.properties import PROPERTIES

    p = sub.add_parser(
        "optimize",
        help="search a molecule model's latent space for molecules with a high QED, logP or penalized logP",
        description="Fit a network f(z) to a property of training molecules at their codes, then climb f(z) - λ||z||²/2 "
        "by gradient ascent from several codes at once, decoding each path as it goes; print and draw the best valid, "
        "novel molecules found (RDKit computes every property). Needs vaekit[molecules].",
    )
    add_run_argument(p)
    p.add_argument("--objective", required=True, choices=PROPERTIES.names(), help="the property to maximise")
    p.add_argument(
        "--from", dest="seed_molecule", metavar="SMILES", help="start around this molecule (default: the best fitted training molecules)"
    )
    p.add_argument("--starts", type=positive_int, default=32, help="paths climbed at once (default 32)")
    p.add_argument("--steps", type=positive_int, default=100, help="gradient steps per path (default 100)")
    p.add_argument("--step-size", type=float, default=0.05, help="the step along f's gradient (default 0.05)")
    p.add_argument("--prior-weight", type=float, default=0.1, help="λ of the -λ||z||²/2 term keeping codes near p(z) (default 0.1)")
    p.add_argument("--decode-every", type=positive_int, default=5, help="decode every path every this many steps (default 5)")
    p.add_argument("--fit-molecules", type=positive_int, default=5000, help="training molecules the predictor is fitted on (default 5000)")
    p.add_argument("--top", type=positive_int, default=3, help="molecules to print and draw (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fitted subset, the predictor and the starts (default 0)")
    add_syntax_argument(p)
    p.add_argument("--json", metavar="PATH", help="the result (default RUN/optimize-OBJECTIVE.json)")
    p.add_argument("--out", metavar="PATH", help="the picture of the best molecules (default RUN/figures/optimize-OBJECTIVE.png)")
    add_data_dir_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.cli.molecules import load_molecule_run
    from vaekit.molecules import chem
    from vaekit.molecules.design import fit_predictor, optimise
    from vaekit.molecules.draw import molecule_grid
    from vaekit.molecules.properties import property_of
    from vaekit.strings import codes_of, decode_codes

    started = time.perf_counter()
    r, codec = load_molecule_run(args)
    train = r.load_data(data_dir=getattr(args, "data_dir", None)).train.x
    g = torch.Generator().manual_seed(args.seed)
    rows = torch.randperm(len(train), generator=g)[: args.fit_molecules]
    strings = codec.strings(train[rows])  # SMILES (a SELFIES model's decoded)
    values = [property_of(args.objective, s) for s in strings]
    valid = [i for i, v in enumerate(values) if v is not None]
    codes = codes_of(r.model, train[rows][valid])
    y = torch.tensor([values[i] for i in valid], dtype=torch.float32)
    predictor = fit_predictor(codes, y, seed=args.seed)
    if args.seed_molecule:
        start = codes_of(r.model, codec.ids([args.seed_molecule]))
        starts = start + 0.1 * torch.randn(args.starts, start.shape[1], generator=g)
        starts[0] = start[0]
        where = f"around {args.seed_molecule} ({args.objective} {property_of(args.objective, args.seed_molecule)})"
    else:
        best = y.argsort(descending=True)[: args.starts]
        starts = codes[best]
        where = f"from the {len(best)} best of {len(y)} training molecules (best {float(y[best[0]]):.3f})"
    training = {chem.canonical(s) or s for s in codec.strings(train)} if len(train) <= 200_000 else _canonical_set(r)

    syntax = codec.syntax() if args.syntax else None

    def decode(z: torch.Tensor) -> list[str]:
        return codec.strings(decode_codes(r.model, z, syntax=syntax))

    design = optimise(
        decode,
        predictor,
        starts,
        args.objective,
        training,
        steps=args.steps,
        step_size=args.step_size,
        prior_weight=args.prior_weight,
        decode_every=args.decode_every,
    )
    best = design.best(args.top)
    print(
        f"predictor of {args.objective} on {len(y)} training codes: R² {predictor.r2:.3f} (held-out fifth); "
        f"searched {where}: {design.decoded} decodings, {design.invalid} invalid, {design.evaluations} property evaluations"
    )
    for i, f in enumerate(best, 1):
        print(f"  {i}. {args.objective} {f.value:8.3f}  {f.smiles}  (step {f.step})")
    if not best:
        print("  no valid novel molecule was found")
    result = {
        "run": str(r.path),
        "objective": args.objective,
        "start": where,
        "settings": {
            k: getattr(args, k) for k in ("starts", "steps", "step_size", "prior_weight", "decode_every", "fit_molecules", "seed", "syntax")
        },
        "predictor_r2": predictor.r2,
        "fitted_on": len(y),
        "decoded": design.decoded,
        "invalid": design.invalid,
        "property_evaluations": design.evaluations,
        "best": [vars(f) for f in best],
        "found": len(design.found),
        "seconds": time.perf_counter() - started,
    }
    path = Path(args.json) if args.json else r.path / f"optimize-{args.objective}.json"
    atomic_write_json(path, result)
    if best:
        legends = [f"{args.objective} {f.value:.2f}" for f in best]
        out = save_png(
            molecule_grid([f.smiles for f in best], legends, cols=len(best)),
            args.out or r.path / "figures" / f"optimize-{args.objective}.png",
        )
        print(f"wrote the result to {path} and the molecules to {out}")
    else:
        print(f"wrote the result to {path}")
    return 0


def _canonical_set(r) -> set[str]:
    """The training molecules of a large (MOSES) run as a set: its training file's SMILES, canonical as MOSES stores them."""
    from vaekit.data.mnist import data_root
    from vaekit.data.sequences import find_moses_files
    from vaekit.molecules.chem import read_smiles

    if r.config.data.source not in ("moses", "moses-scaffolds"):
        raise ConfigError(f"{r.path}: novelty against more than 200,000 training molecules is checked for MOSES runs only")
    found = find_moses_files(data_root(r.config.data.data_dir), ("train",), download=False)
    return set(read_smiles(found["train"]))
