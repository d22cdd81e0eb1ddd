"""Molecules (MOSES, Polykovskiy et al. 2020): vaekit's SMILES VAE beside the MOSES paper's baselines, and its training speed.

The CPU recipe trains a GRU VAE (bidirectional GRU encoder of 256, GRU decoder of 256, z of 64, KL weight
rising to 0.05 as MOSES's VAE does) on MOSES's training set, in "epochs" of 200 steps of 256 molecules
drawn afresh (``--epoch-steps``), so that a run of any length sees a fresh sample of the 1.58M molecules
and checkpoints every few minutes; 1% of the training file is held out for validation. One command per
step, resumable: a run directory that exists is resumed.

    python bench/molecules.py train --minutes 100      # train (or resume) the SMILES model for this long, then stop
    python bench/molecules.py train --beta 1 --warmup 5 --minutes 100   # the recipe with another KL weight and warm-up
    python bench/molecules.py train --tokenizer selfies --minutes 60   # the same model on SELFIES
    python bench/molecules.py train --beta 1 --warmup 5 --device cuda --precision bf16 --batch-size 512 --minutes 8   # on a GPU
    python bench/molecules.py score [--tokenizer selfies] [--beta 1 --warmup 5]   # vaekit molecules on the best checkpoint: MOSES's metrics
    python bench/molecules.py validity [--beta 1 ...]   # the same prior draws decoded freely, keeping to SMILES syntax, and to valences too
    python bench/molecules.py speed                    # tokens per second: vaekit's training step against a plain PyTorch loop
    python bench/molecules.py table                    # the table from bench/results/molecules.json

Each record goes into ``bench/results/molecules.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import read_cells, train_for
from common import save_cell as write_cell

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "molecules.json"
RUNS = ROOT / "bench" / "runs" / "molecules"
DATA_DIR = ROOT.parent / "shared" / "data"
SMILES_RECIPE = [
    "--dataset", "moses", "--data-dir", str(DATA_DIR), "--valid-fraction", "0.01",
    "--arch", "gru", "--likelihood", "categorical", "--latent-dim", "64", "--hidden", "256", "256", "--embedding-dim", "64",
    "--batch-size", "256", "--lr", "1e-3", "--beta", "0.05", "--warmup", "2", "--epoch-steps", "200", "--epochs", "1000",
    "--grad-clip", "50", "--ema", "0.999",
]  # fmt: skip

# The MOSES paper's Table (its baselines, metrics against the test set; the VAE row is the anchor of issue 35).
MOSES_ROWS = {
    "MOSES VAE": {"valid": 0.977, "unique@10000": 0.998, "FCD/Test": 0.099, "SNN/Test": 0.626, "Frag/Test": 0.999, "Scaf/Test": 0.939,
                  "IntDiv": 0.856, "Filters": 0.997, "Novelty": 0.695},
    "MOSES CharRNN": {"valid": 0.975, "FCD/Test": 0.073},
    "MOSES JT-VAE": {"valid": 1.0, "FCD/Test": 0.395},
}  # fmt: skip
COLUMNS = (
    "valid",
    "unique@1000",
    "unique@10000",
    "FCD/Test",
    "SNN/Test",
    "Frag/Test",
    "Scaf/Test",
    "IntDiv",
    "IntDiv2",
    "Filters",
    "Novelty",
)


def save_cell(key: str, record: dict) -> None:
    write_cell(RESULTS, key, record)


MOSES_BETA, RECIPE_WARMUP, RECIPE_BATCH = 0.05, 2, 256  # the recipe's KL weight (MOSES's VAE's), the epochs it rises over, its batch
RECIPE_HIDDEN = (256, 256)  # the encoder's GRU width (each direction), then the decoder's layers' widths


def recipe(
    tokenizer: str,
    beta: float = MOSES_BETA,
    warmup: int = RECIPE_WARMUP,
    free_bits: float = 0.0,
    batch_size: int = RECIPE_BATCH,
    data_dir: Path = DATA_DIR,
    hidden: tuple[int, ...] = RECIPE_HIDDEN,
) -> list[str]:
    """The CPU recipe for MOSES read with ``tokenizer`` (smiles or selfies), with KL weight ``beta``
    reached over ``warmup`` epochs, ``free_bits`` nats per latent dimension (0: none), ``batch_size``
    molecules a step, MOSES's files read from ``data_dir``, and the networks' widths ``hidden`` (the
    encoder's, then one a decoder layer)."""
    command = [*SMILES_RECIPE, "--tokenizer", tokenizer] if tokenizer != "smiles" else list(SMILES_RECIPE)
    settings = {"--beta": f"{beta:g}", "--warmup": str(warmup), "--batch-size": str(batch_size), "--data-dir": str(data_dir)}
    for flag, value in settings.items():
        command[command.index(flag) + 1] = value
    at = command.index("--hidden") + 1
    command[at : at + len(RECIPE_HIDDEN)] = map(str, hidden)
    return command + (["--free-bits", f"{free_bits:g}"] if free_bits else [])


def cell_recipe(args) -> list[str]:
    """The recipe as the bench's flags change it, with the device and precision where not the CPU's float32."""
    command = recipe(args.tokenizer, args.beta, args.warmup, args.free_bits, args.batch_size, Path(args.data_dir), tuple(args.hidden))
    command += ["--device", args.device] if args.device != "cpu" else []
    return command + (["--precision", args.precision] if args.precision != "fp32" else [])


def run_name(args) -> str:
    """The run's folder: ``--run-name`` where given, else the tokenizer, what differs from the recipe, the
    seed (``smiles-beta1-s0``, ``smiles-beta1-batch512-cuda-bf16-s0``)."""
    if args.run_name:
        return args.run_name
    differs = f"-beta{args.beta:g}" if args.beta != MOSES_BETA else ""
    differs += f"-warmup{args.warmup}" if args.warmup != RECIPE_WARMUP else ""
    differs += f"-freebits{args.free_bits:g}" if args.free_bits else ""
    differs += f"-batch{args.batch_size}" if args.batch_size != RECIPE_BATCH else ""
    differs += f"-hidden{'x'.join(map(str, args.hidden))}" if tuple(args.hidden) != RECIPE_HIDDEN else ""
    differs += f"-{args.device}" if args.device != "cpu" else ""
    differs += f"-{args.precision}" if args.precision != "fp32" else ""
    return f"{args.tokenizer}{differs}-s{args.seed}"


def run_train(args) -> None:
    """Train (or resume) for ``--minutes``, then stop it the way Ctrl-C does (the run saves and can resume)."""
    out = RUNS / run_name(args)
    command = [sys.executable, "-m", "vaekit", "train"]
    if (out / "config.json").exists():
        command += ["--resume", str(out), "--threads", str(args.threads)]
    else:
        command += [*cell_recipe(args), "--seed", str(args.seed), "--threads", str(args.threads)]
        command += ["--out", str(out)]
    train_for(command, args.minutes * 60)


def run_score(args) -> None:
    """``vaekit molecules`` on the run's best checkpoint, recorded with the run's training figures."""
    from vaekit.runs import read_metrics

    out = RUNS / run_name(args)
    scored_path = out / ("molecules-syntax.json" if args.syntax else "molecules.json")
    command = [sys.executable, "-m", "vaekit", "molecules", str(out), "-n", str(args.n)]
    command += ["--reference-size", str(args.reference_size)] if args.reference_size else []
    command += ["--jobs", str(args.jobs), "--json", str(scored_path), "--threads", str(args.threads)]
    command += ["--no-fcd"] if args.no_fcd else []
    command += ["--syntax", "--out", str(out / "molecules-syntax.smi")] if args.syntax else []
    subprocess.run(command, check=True)
    import json

    scored = json.loads(scored_path.read_text())
    beta = f", β {args.beta:g}" if args.beta != MOSES_BETA else ""
    beta += f", free bits {args.free_bits:g}" if args.free_bits else ""
    beta += f", GRUs {'-'.join(map(str, args.hidden))}" if tuple(args.hidden) != RECIPE_HIDDEN else ""
    sampler = ", sampled keeping to SMILES syntax and valences" if args.syntax else ""
    rows = read_metrics(out / "metrics.csv")
    train_seconds = sum(r["train_seconds"] for r in rows)
    molecules = len(rows) * 200 * args.batch_size
    where = "CPU" if args.device == "cpu" else f"{args.device.upper()}, {args.precision}"
    record = {
        "model": f"vaekit {args.tokenizer.upper()} VAE ({where} recipe{beta}, seed {args.seed}){sampler}",
        "syntax": args.syntax,
        "metrics": scored["metrics"],
        "sizes": scored["sizes"],
        "references": scored["references"],
        "epochs_of_200_steps": len(rows),
        "molecules_seen": molecules,
        "passes_over_moses_train": molecules / 1_568_815,
        "training_seconds": round(train_seconds, 1),
        "molecules_per_second": molecules / train_seconds,
        "best_valid_neg_elbo": min(r["valid_neg_elbo"] for r in rows),
        "sampling_molecules_per_second": scored["molecules_per_second"],
        "scoring_seconds": scored["seconds"],
        "final_valid_kl": rows[-1]["valid_kl"],
        "command": " ".join(["vaekit", "train", *cell_recipe(args), "--seed", str(args.seed)]),
    }
    save_cell(run_name(args) + ("-syntax" if args.syntax else ""), record)


def run_validity(args) -> None:
    """The same prior draws z decoded three ways, freely (MOSES's sampler), keeping to SMILES syntax alone, and
    to syntax and valences (``--syntax``): the share valid, why the others are not, unique@10k, and the
    sampling speed."""
    from vaekit.molecules import chem
    from vaekit.molecules.metrics import fraction_unique, invalid_reasons
    from vaekit.runs import load, read_metrics
    from vaekit.strings import StringCodec, sample_strings

    torch.set_num_threads(args.threads)
    name = run_name(args)
    r = load(RUNS / name)
    codec = StringCodec.of_run(r)
    record = {"run": name, "n": args.n, "temperature": 1.0, "seed": args.seed, "threads": args.threads}
    rules = codec.syntax()
    alone = type(rules)(codec.vocabulary.tokens, valences=False)
    for how, syntax in (("free", None), ("syntax", alone), ("syntax+valences", rules)):
        start = time.perf_counter()
        smiles = sample_strings(r.model, codec, args.n, seed=args.seed, syntax=syntax)
        seconds = time.perf_counter() - start
        parsed = [chem.parse(s) is not None for s in smiles]
        valid = [s for s, ok in zip(smiles, parsed, strict=True) if ok]
        reasons = invalid_reasons([s for s, ok in zip(smiles, parsed, strict=True) if not ok], n_jobs=args.jobs)  # (failed ones only)
        record[how] = {
            "valid": len(valid) / len(smiles),
            "unique@10000": fraction_unique(valid, 10_000),
            "invalid": reasons,
            "sampling_seconds": round(seconds, 1),
            "molecules_per_second": round(len(smiles) / seconds),
        }
        print(f"{how:15s} valid {len(valid) / len(smiles):.4f}  invalid {reasons}  {len(smiles) / seconds:.0f} molecules/s")
    rows = read_metrics(RUNS / name / "metrics.csv")
    record.update(epochs_of_200_steps=len(rows), training_seconds=round(sum(row["train_seconds"] for row in rows), 1))
    save_cell(f"{name}-validity", record)


class PlainGRUVAE(torch.nn.Module):
    """The peer: the same networks written directly in PyTorch (embedding, bidirectional GRU encoder, Gaussian
    q(z|x), GRU decoder with z beside each token, cross-entropy with padding ignored), trained by a bare loop."""

    def __init__(self, vocabulary: int, embedding: int, hidden: int, latent: int):
        super().__init__()
        nn = torch.nn
        self.embed_q, self.embed_p = nn.Embedding(vocabulary, embedding, padding_idx=0), nn.Embedding(vocabulary, embedding)
        self.encoder = nn.GRU(embedding, hidden, batch_first=True, bidirectional=True)
        self.q = nn.Linear(2 * hidden, 2 * latent)
        self.initial = nn.Linear(latent, hidden)
        self.decoder = nn.GRU(embedding + latent, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocabulary)

    def loss(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        lengths = (x != 0).sum(1).cpu()
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.embed_q(x), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)
        mu, logvar = self.q(torch.cat([h[0], h[1]], -1)).chunk(2, -1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        inputs = x[:, :-1]
        zs = z.unsqueeze(1).expand(-1, inputs.shape[1], -1)
        out, _ = self.decoder(torch.cat([self.embed_p(inputs), zs], -1), torch.tanh(self.initial(z)).unsqueeze(0))
        logits = self.out(out)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), ignore_index=0, reduction="none"
        )
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return (nll.view(len(x), -1).sum(1) + beta * kl).mean()


def run_speed(args) -> None:
    """Scored tokens per second of vaekit's training step (``Trainer``'s objective and step, through the model
    it builds) and of the plain loop, on the same batches of MOSES molecules, alternating rounds."""
    from vaekit.config import ModelConfig
    from vaekit.data import SourceSettings, load_data
    from vaekit.data.base import Batch
    from vaekit.models import build_model
    from vaekit.objectives import ELBO

    torch.set_num_threads(args.threads)
    data = load_data("moses", settings=SourceSettings(data_dir=str(DATA_DIR), valid_fraction=0.01), preprocessing={"max_examples": 20_000})
    x = data.train.x
    vocabulary, length = data.info["vocabulary_size"], x.shape[1]
    config = ModelConfig(
        arch="gru",
        likelihood="categorical",
        input_shape=(length,),
        vocabulary_size=vocabulary,
        latent_dim=64,
        hidden=(256, 256),
        embedding_dim=64,
    )
    torch.manual_seed(0)
    ours, peer = build_model(config), PlainGRUVAE(vocabulary, 64, 256, 64)
    objective = ELBO(beta=0.05)
    steps = {
        "vaekit": (ours, lambda b: objective(ours, Batch(b, b)).loss.mean()),
        "plain PyTorch": (peer, lambda b: peer.loss(b, 0.05)),
    }
    optimizers = {name: torch.optim.Adam(m.parameters(), 1e-3) for name, (m, _) in steps.items()}
    g = torch.Generator().manual_seed(0)
    batches = [x[torch.randint(len(x), (256,), generator=g)] for _ in range(args.steps)]
    tokens = sum(int((b[:, 1:] != 0).sum()) for b in batches)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (_, loss_of) in steps.items():
            loss_of(batches[0]).backward()  # warm-up
            start = time.perf_counter()
            for b in batches:
                optimizers[name].zero_grad(set_to_none=True)
                loss_of(b).backward()
                optimizers[name].step()
            times[name].append(time.perf_counter() - start)
    rates = {name: tokens / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"{name:14s} {rate:10.0f} scored tokens/s ({rate * 256 * args.steps / tokens:.0f} molecules/s)")
    ratio = rates["vaekit"] / rates["plain PyTorch"]
    print(f"vaekit / plain: {ratio:.3f}")
    save_cell(
        f"speed-threads{args.threads}",
        {"tokens_per_second": rates, "ratio": ratio, "steps": args.steps, "rounds": args.rounds, "batch": 256, "threads": args.threads},
    )


def table(_args) -> None:
    cells = read_cells(RESULTS)["cells"]
    rows = {**{k: v["metrics"] for k, v in cells.items() if "metrics" in v}, **MOSES_ROWS}
    print("| model | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, metrics in rows.items():
        cells_text = [("" if metrics.get(c) is None else f"{metrics[c]:.3f}") for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells_text) + " |")


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beta", type=float, default=MOSES_BETA, help=f"the KL weight (the recipe's: {MOSES_BETA}, MOSES's VAE's)")
    p.add_argument("--warmup", type=int, default=RECIPE_WARMUP, help="the epochs of 200 steps the KL weight rises over")
    p.add_argument("--free-bits", type=float, default=0.0, help="nats of KL per latent dimension that cost nothing (default 0: none)")
    p.add_argument("--batch-size", type=int, default=RECIPE_BATCH, help=f"molecules a step (default {RECIPE_BATCH})")
    p.add_argument(
        "--hidden", type=int, nargs="+", default=list(RECIPE_HIDDEN), metavar="WIDTH",
        help="the encoder's GRU width, then each decoder layer's (default 256 256)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="where to train: cpu (the recipe) or cuda (a GPU)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast matrix products (for a GPU)")
    p.add_argument("--data-dir", default=str(DATA_DIR), help=f"the folder with moses/ (default {DATA_DIR})")
    p.add_argument("--run-name", help="the run's folder under bench/runs/molecules and its key (default: named by the flags)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("train")
    p.add_argument("--tokenizer", choices=["smiles", "selfies"], default="smiles")
    add_recipe_flags(p)
    p.add_argument("--minutes", type=float, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=run_train)
    p = sub.add_parser("score")
    p.add_argument("--tokenizer", choices=["smiles", "selfies"], default="smiles")
    add_recipe_flags(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-n", type=int, default=30_000)
    p.add_argument("--reference-size", type=int, help="score against this many molecules of each test set (default: all, as MOSES)")
    p.add_argument("--no-fcd", action="store_true")
    p.add_argument("--syntax", action="store_true", help="sample keeping to SMILES syntax and valences (its own row: not MOSES's sampler)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=run_score)
    p = sub.add_parser("validity")
    p.add_argument("--tokenizer", choices=["smiles"], default="smiles")
    add_recipe_flags(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-n", type=int, default=30_000)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=run_validity)
    p = sub.add_parser("speed")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=run_speed)
    sub.add_parser("table").set_defaults(handler=table)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
