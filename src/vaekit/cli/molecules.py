"""``vaekit molecules``: sample molecules from a trained SMILES or SELFIES model and score them with the MOSES metrics.

The references are MOSES's test and scaffold-test sets (and its training set, for novelty) for a run
trained on ``--dataset moses``; the run's own test (or validation) and training strings for a run trained on
a file; or the files given with ``--test``, ``--test-scaffolds`` and ``--train``. The samples are written
one SMILES a line, the metrics as JSON, and the first molecules drawn."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vaekit.checkpoint import atomic_write_bytes, atomic_write_json
from vaekit.cli.common import add_data_dir_argument, add_run_argument, add_syntax_argument, load_run, positive_int, resolve_device
from vaekit.errors import ConfigError
from vaekit.plotting import save_png

MOSES_SOURCES = ("moses", "moses-scaffolds")
SHOWN = 16  # molecules drawn


def register(sub) -> None:
    p = sub.add_parser(
        "molecules",
        help="sample molecules from a SMILES/SELFIES model and score them with the MOSES metrics",
        description="Sample N molecules (z ~ p(z), then each SMILES drawn at --temperature) and report MOSES's metrics "
        "(Polykovskiy et al. 2020): validity, unique@1k/@10k, novelty, IntDiv1/2, filters, and FCD, SNN, fragment and "
        "scaffold similarity to the test and scaffold-test sets. Needs vaekit[molecules].",
    )
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=30_000, help="molecules to sample (default 30000, as MOSES)")
    p.add_argument("--temperature", type=float, default=1.0, help="the decoder's sampling temperature, 0: greedy (default 1)")
    add_syntax_argument(p)  # (not MOSES's sampler: the record says so)
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and of any reference subset (default 0)")
    p.add_argument("--test", metavar="FILE", help="reference molecules (CSV with a SMILES column, or .smi/.txt); default: see above")
    p.add_argument("--test-scaffolds", metavar="FILE", help="the scaffold-test reference (default: MOSES's for a moses run, else none)")
    p.add_argument("--train", metavar="FILE", help="training molecules, for novelty (default: the run's training data)")
    p.add_argument(
        "--reference-size",
        type=positive_int,
        metavar="N",
        help="score against N molecules drawn from each reference (seeded) instead of all (MOSES's test sets hold 176k: "
        "minutes of RDKit and ChemNet the first time, then read from the cache folder)",
    )
    p.add_argument(
        "--filters",
        metavar="DIR",
        help="the folder of MOSES's filter files mcf.csv and wehi_pains.csv (default: beside a moses run's files, else "
        "moses/ in the data folder: $VAEKIT_DATA_DIR or ~/.cache/vaekit)",
    )
    p.add_argument("--no-fcd", action="store_true", help="skip the Fréchet ChemNet distance (the slowest metric on a CPU)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes for the RDKit work (default 1)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default auto)")
    p.add_argument("--out", metavar="PATH", help="the samples, one SMILES a line (default RUN/molecules.smi)")
    p.add_argument("--json", metavar="PATH", help="the metrics (default RUN/molecules.json)")
    add_data_dir_argument(p)
    p.set_defaults(handler=run)


def load_molecule_run(args: argparse.Namespace, **kwargs):
    """(the run, its ``StringCodec``) of a model of SMILES or SELFIES; a one-line ``ConfigError`` without RDKit
    or for another run. kwargs: as for ``load_run``."""
    from vaekit.molecules import chem
    from vaekit.report.views.sequences import MOLECULE_TOKENIZERS
    from vaekit.strings import StringCodec

    chem.require_rdkit()
    r = load_run(args, **kwargs)
    codec = StringCodec.of_run(r)
    tokenizer = codec.vocabulary.tokenizer
    if tokenizer not in MOLECULE_TOKENIZERS:
        raise ConfigError(f"{r.path} models {tokenizer} tokens, not molecules: train it on SMILES (--tokenizer smiles or selfies)")
    return r, codec


def run(args: argparse.Namespace) -> int:
    from vaekit.molecules.draw import molecule_grid
    from vaekit.molecules.metrics import Reference, evaluate
    from vaekit.strings import sample_strings

    started = time.perf_counter()
    r, codec = load_molecule_run(args, map_location=resolve_device(args.device))
    refs = _references(r, args, codec)
    t0 = time.perf_counter()
    generated = sample_strings(r.model, codec, args.n, temperature=args.temperature, seed=args.seed, syntax=args.syntax)  # SMILES
    sampling_seconds = time.perf_counter() - t0
    out = Path(args.out) if args.out else r.path / "molecules.smi"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, ("\n".join(generated) + "\n").encode())
    device = None if args.device == "auto" else args.device
    fcd = not args.no_fcd
    test = Reference.kept(refs["test"], fcd=fcd, n_jobs=args.jobs, device=device)
    scaffolds = None if refs["test_scaffolds"] is None else Reference.kept(refs["test_scaffolds"], fcd=fcd, n_jobs=args.jobs, device=device)
    result = evaluate(
        generated,
        train=refs["train"],
        test=test,
        test_scaffolds=scaffolds,
        n_jobs=args.jobs,
        seed=args.seed,
        device=device,
        canonicalize_train=not refs["canonical_train"],
        filters=args.filters or refs["filters"],
    )
    result.update(
        run=str(r.path),
        checkpoint=r.weights,
        samples=str(out),
        temperature=args.temperature,
        syntax=args.syntax,
        seed=args.seed,
        references=refs["described"],
        sampling_seconds=sampling_seconds,
        molecules_per_second=args.n / sampling_seconds,
        seconds=time.perf_counter() - started,
    )
    path = Path(args.json) if args.json else r.path / "molecules.json"
    atomic_write_json(path, result)
    picture = save_png(molecule_grid(generated[:SHOWN], cols=4), out.with_suffix(".png"))
    how = f"at temperature {args.temperature:g}" + (", keeping to SMILES syntax and valences," if args.syntax else "")
    print(f"{args.n} molecules sampled {how} in {sampling_seconds:.1f} s ({args.n / sampling_seconds:.0f}/s)")
    for name, value in result["metrics"].items():
        print(f"  {name:14s} {'n/a' if value is None else f'{value:.4f}'}")
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in result["invalid"].items() if count)
    print(f"  {'invalid':14s} {sum(result['invalid'].values()):,}" + (f" ({reasons})" if reasons else ""))
    print(f"wrote the molecules to {out}, the metrics to {path} and the first {min(SHOWN, args.n)} drawn to {picture}")
    return 0


def _references(r, args: argparse.Namespace, codec) -> dict:
    """{"test", "test_scaffolds" (or None), "train" (or None): SMILES lists; "described": where each came from}."""
    from vaekit.data.mnist import data_root
    from vaekit.data.sequences import find_moses_files

    files: dict[str, Path | None] = {"test": args.test, "test_scaffolds": args.test_scaffolds, "train": args.train}
    refs, described = {"filters": None}, {}
    if r.config.data.source in MOSES_SOURCES:
        root = data_root(getattr(args, "data_dir", None) or r.config.data.data_dir)
        found = find_moses_files(root, ("train", "test", "test_scaffolds"), download=False)
        files = {k: v or found[k] for k, v in files.items()}
        refs["filters"] = found["test"].parent
    own = None
    for name, path in files.items():
        if path is not None:
            refs[name] = _read(Path(path))
            described[name] = str(path)
        elif name == "test_scaffolds":
            refs[name] = None
        else:  # the run's own strings: its test split (its validation split where there is none), its training split
            own = own or r.load_data(data_dir=getattr(args, "data_dir", None))
            split = own.train if name == "train" else (own.test if own.test is not None else own.valid)
            refs[name] = codec.strings(split.x[:])
            described[name] = f"the run's {'training' if name == 'train' else 'test' if own.test is not None else 'validation'} split"
    if args.reference_size:
        rng = np.random.default_rng(args.seed)
        for name in ("test", "test_scaffolds"):
            if refs[name] is not None and len(refs[name]) > args.reference_size:
                keep = np.sort(rng.choice(len(refs[name]), args.reference_size, replace=False))
                refs[name] = [refs[name][i] for i in keep]
                described[name] += f" ({args.reference_size} drawn, seed {args.seed})"
    refs["described"] = described
    refs["canonical_train"] = r.config.data.source in MOSES_SOURCES and args.train is None  # MOSES's files are canonical SMILES
    return refs


def _read(path: Path) -> list[str]:
    """SMILES of a CSV file's SMILES column, or of a .smi/.txt file (first field of each line)."""
    from vaekit.data.sequences import is_text_file, read_strings
    from vaekit.molecules.chem import read_smiles

    if is_text_file(path):
        return read_strings(path).values
    return read_smiles(path)
