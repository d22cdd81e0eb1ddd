"""Semi-supervised MNIST (Kingma et al. 2014's table): test error of M2 with 100, 600, 1000 or 3000 labels.

MNIST as the paper splits it: 50k training, 10k validation, 10k test; the labelled examples are a
class-balanced subset of the training split chosen by the seed (``vaekit.data.keep_labels``), the
rest of the training split is unlabelled; validation keeps its labels and picks the best epoch
(lowest validation error). One command per cell, resumable: a cell whose run directory exists is
resumed where it stopped, and a finished one is only evaluated again.

    python bench/semisupervised.py m2 --labels 100 --seed 0        # train (or resume) and evaluate one cell
    python bench/semisupervised.py m1 --seed 0                     # M1: a VAE on all 50k training images (labels unused)
    python bench/semisupervised.py m1 --arch conv --seed 0         # M1 with convolutional networks (m1-conv-s0)
    python bench/semisupervised.py ceiling --seed 0                # M2's classifier on M1's codes with all 50k labels
    python bench/semisupervised.py m1m2 --labels 100 --seed 0      # M2 on M1's codes (vaekit train --on-codes)
    python bench/semisupervised.py baselines --labels 100 --seed 0 # scikit-learn's estimators on the same subset
    python bench/semisupervised.py table                           # the table from bench/results/semisupervised.json

Each cell's record (model, labels, seed, test error, epochs, seconds per epoch, wall time, command)
goes into ``bench/results/semisupervised.json``; the table gives mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import read_cells, train_for
from common import save_cell as write_cell

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "semisupervised.json"
RUNS = ROOT / "bench" / "runs" / "semisupervised"
DATA_DIR = ROOT.parent / "shared" / "data"
VALID_FRACTION = "0.16666667"  # 10,000 of MNIST's 60,000 training images, as the paper holds out
TRAINING_EXAMPLES = 50_000
M2_RECIPE = [  # the patience and learning-rate cuts: Schedule
    "--model", "m2", "--latent-dim", "50", "--hidden", "500", "--activation", "silu",
    "--batch-size", "200", "--lr", "1e-3", "--ema", "0.999", "--epochs", "1000",
]  # fmt: skip


M1_RECIPE = [
    "--latent-dim", "50", "--activation", "silu",
    "--batch-size", "100", "--lr", "1e-3", "--ema", "0.999", "--epochs", "300", "--patience", "30",
]  # fmt: skip
M1_NETWORKS = {
    "mlp": ["--hidden", "600", "600"],  # the paper's kind of M1 (its own: 500-500 softplus)
    "conv": ["--arch", "conv", "--hidden", "32", "64", "--conv-dense", "500"],  # two stride-2 convolutions, a dense layer of 500
}
M1M2_SIGMA = 0.3  # p(z1|y, z2)'s fixed scale, on the standardised codes (0.5 before 2026-12-06: 4.92 % at 100 labels)
M1M2_RECIPE = [  # the patience and learning-rate cuts: Schedule
    "--model", "m2", "--likelihood", "gaussian", "--latent-dim", "50", "--hidden", "500", "--activation", "silu",
    "--batch-size", "200", "--lr", "1e-3", "--ema", "0.999", "--epochs", "1000",
]  # fmt: skip


def data_args(labels: int, seed: int) -> list[str]:
    return [
        "--dataset", "mnist", "--data-dir", str(DATA_DIR), "--valid-fraction", VALID_FRACTION,
        "--labelled", str(labels), "--split-seed", str(seed),
    ]  # fmt: skip


def read_results() -> dict:
    return read_cells(RESULTS)


def save_cell(key: str, record: dict) -> None:
    write_cell(RESULTS, key, record)


@torch.inference_mode()
def test_error(run_dir: Path) -> float:
    """The best checkpoint's classifier error (%) on the MNIST test split."""
    from vaekit.classification import classify
    from vaekit.runs import load

    run = load(run_dir)
    return 100.0 * classify(run.model, run.load_data().test).error


def epochs_of(out: Path) -> list[dict]:
    """The rows of ``metrics.csv`` of the run in ``out``, one per finished epoch (none before the first)."""
    from vaekit.runs import read_metrics

    return read_metrics(out / "metrics.csv") if (out / "metrics.csv").exists() else []


def seconds_of(rows: list[dict]) -> float:
    """The training and validation seconds of these epochs."""
    return sum(r["train_seconds"] + r.get("valid_seconds", 0.0) for r in rows)


def train_or_resume(out: Path, args_new: list[str], threads: int, minutes: float | None = None) -> bool:
    """``vaekit train`` with ``args_new`` into ``out``, or ``--resume out`` where it has started, until
    its epochs come to ``minutes`` of training in all (None: no limit; a resumed run counts what it
    has done). True when the budget stopped it."""
    command = [sys.executable, "-m", "vaekit", "train"]
    if (out / "config.json").exists():
        command += ["--resume", str(out), "--threads", str(threads)]
    else:
        command += [*args_new, "--threads", str(threads), "--out", str(out)]
    return train_for(command, None if minutes is None else minutes * 60 - seconds_of(epochs_of(out)))


def m1_name(args) -> str:
    """The M1 run's folder: ``--m1`` where given, else the recipe's (``m1-s0``) or its variant's
    (``m1-conv-s0``, ``m1-beta0.5-s0``, ``m1-binarize-s0``)."""
    if args.m1:
        return args.m1
    variant = "" if args.arch == "mlp" else f"-{args.arch}"
    variant += ("" if args.beta == 1 else f"-beta{args.beta:g}") + ("-binarize" if args.binarize else "")
    return f"m1{variant}-s{args.seed}"


def m1_kind(args) -> str:
    """The M1 a model's name gives: its run's name without the seed (``m1-conv``), so that each seed's
    M1+M2 on its own M1 falls in one row of the table; a ``--m1`` name as given."""
    return args.m1 or m1_name(args).removesuffix(f"-s{args.seed}")


def run_m1(args) -> None:
    out = RUNS / m1_name(args)
    m1_data = ["--dataset", "mnist", "--data-dir", str(DATA_DIR), "--valid-fraction", VALID_FRACTION, "--split-seed", str(args.seed)]
    variant = ([] if args.beta == 1 else ["--beta", f"{args.beta:g}"]) + (["--binarize"] if args.binarize else [])
    if not args.evaluate_only:
        recipe = [*M1_RECIPE, *M1_NETWORKS[args.arch]]
        train_or_resume(out, [*m1_data, *recipe, *variant, "--seed", str(args.seed)], args.threads, args.minutes)


def fit_classifier(input_shape: tuple, hidden: tuple, rounds, valid, seed: int, max_rounds: int, patience: float):
    """M2's classifier network (``Classifier``: MLP ``hidden``, SiLU) trained with Adam 1e-3, one round at a
    time (``rounds()`` yields a round's (x, y) batches), keeping the state of lowest validation error and
    stopping ``patience`` rounds past it. Returns the network (eval mode), its validation error (%) and the rounds run."""
    import copy

    from vaekit.config import ModelConfig
    from vaekit.models.classifier import Classifier

    torch.manual_seed(seed)
    net = Classifier.from_config(ModelConfig(input_shape=input_shape, hidden=hidden, activation="silu", context_dim=10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_state, since, done = math.inf, None, 0, 0
    while since < patience and done < max_rounds:
        done += 1
        net.train()
        for x, y in rounds():
            optimizer.zero_grad()
            (-net(x).log_prob(y).mean()).backward()
            optimizer.step()
        error = classifier_error(net, valid.x, valid.y)
        best, best_state, since = (error, copy.deepcopy(net.state_dict()), 0) if error < best else (best, best_state, since + 1)
    net.load_state_dict(best_state)
    return net.eval(), best, done


@torch.inference_mode()
def classifier_error(net, x: torch.Tensor, y: torch.Tensor) -> float:
    """The error (%) of ``net``'s most probable class on (x, y)."""
    net.eval()
    return 100.0 * float((net(x).logits.argmax(-1) != y).double().mean())


def run_ceiling(args) -> None:
    """What M1's codes allow: M2's classifier network (MLP ``--hidden``, default 500, SiLU) trained on the codes of all 50,000
    training images with their labels (draws z1 ~ q(z1|x) as M2 sees them; Adam 1e-3, batches of 200, the
    epoch of lowest validation error kept, stopped 10 epochs past it), scored on the test codes. M1+M2
    cannot be expected below it."""
    from vaekit.codes import encoded_splits
    from vaekit.runs import codes_run

    torch.set_num_threads(args.threads)
    name = m1_name(args)
    run = codes_run(RUNS / name)
    splits = encoded_splits(run, run.load_data())
    train, valid, test = splits.train, splits.valid, splits.test
    hidden = tuple(args.hidden)

    def epoch():
        for batch in torch.randperm(len(train.x)).split(200):
            x = train.x[batch]
            yield (x if train.spread is None else x + train.spread[batch] * torch.randn_like(x)), train.y[batch]

    started = time.time()
    net, valid_error, epochs = fit_classifier(tuple(train.x.shape[1:]), hidden, epoch, valid, args.seed, 200, 10)
    record = {
        "model": "M2's classifier on M1's codes, every training label",
        "hidden": list(hidden),
        "m1": name,
        "units": len(splits.info["codes"]["units"]),
        "m1_epochs": len(epochs_of(RUNS / name)),
        "labels": len(train.x),
        "seed": args.seed,
        "test_error": classifier_error(net, test.x, test.y),
        "valid_error": valid_error,
        "epochs": epochs,
        "wall_seconds": round(time.time() - started, 1),
    }
    save_cell(f"ceiling-{name}" + ("" if hidden == (500,) else "-" + "-".join(map(str, hidden))), record)


PAPERS_BALANCE = 0.2  # the α that weighs classification against the bound as the paper's sum does, in half-labelled batches


def recipe_alpha(what: str) -> float | None:
    """The recipe's α: M2 on the pixels takes vaekit's default (None: 0.1·N/N_l per labelled example; at
    100 labels, validation error 10.5 % against 11.3 % with the paper's balance at epoch 36); M1+M2 the
    paper's balance (test error 3.35 % against 4.92 % with the default and σ 0.5)."""
    return None if what == "m2" else PAPERS_BALANCE


def alpha_name(alpha: float, vaekit_default: bool) -> str:
    """How a cell's α is named: vaekit's default 0.1·N/N_l, the paper's balance, or its value."""
    if vaekit_default:
        return "α = 0.1·N/N_l"
    return "α 0.2, the paper's balance" if math.isclose(alpha, PAPERS_BALANCE) else f"α {alpha:g}"


RECIPE_PATIENCE = 60  # epochs past the best validation error before a cell stops


@dataclass(frozen=True)
class Schedule:
    """When a cell stops and cuts its learning rate: ``patience`` epochs past its best validation error
    (the recipe's 60), and, where ``lr_patience`` is not 0, the rate times ``lr_factor`` after that many
    epochs without a better one (``vaekit train --lr-patience``)."""

    patience: int = RECIPE_PATIENCE
    lr_patience: int = 0
    lr_factor: float = 0.5

    @classmethod
    def of_config(cls, train: dict) -> Schedule:
        return cls(train["patience"], train.get("lr_patience", 0), train.get("lr_factor", 0.5))

    def flags(self) -> list[str]:
        lr = ["--lr-patience", str(self.lr_patience), "--lr-factor", f"{self.lr_factor:g}"] if self.lr_patience else []
        return ["--patience", str(self.patience), *lr]

    def name(self) -> str:
        """The run name's part (``-patience100-lrcut30x0.5``; empty for the recipe's)."""
        part = "" if self.patience == RECIPE_PATIENCE else f"-patience{self.patience}"
        return part + (f"-lrcut{self.lr_patience}x{self.lr_factor:g}" if self.lr_patience else "")

    def words(self) -> list[str]:
        """The model name's part (empty for the recipe's)."""
        part = [] if self.patience == RECIPE_PATIENCE else [f"patience {self.patience}"]
        return part + ([f"learning rate ×{self.lr_factor:g} after {self.lr_patience} epochs without progress"] if self.lr_patience else [])


@dataclass(frozen=True)
class Variant:
    """What a cell's model changes of the recipe's: the classifier's hidden sizes (None: the encoder's)
    and dropout (None: none), the class balance γ (0: off) and an auxiliary variable a (0: none, M2;
    else Maaløe et al. 2016's ADGM)."""

    classifier: tuple[int, ...] | None = None
    dropout: float | None = None
    balance: float = 0.0
    auxiliary: int = 0

    @classmethod
    def of_args(cls, args) -> Variant:
        classifier = None if args.classifier_hidden is None else tuple(args.classifier_hidden)
        return cls(classifier, args.classifier_dropout, args.class_balance, args.auxiliary_dim)

    @classmethod
    def of_config(cls, config: dict) -> Variant:
        model, train = config["model"], config["train"]
        classifier = None if model.get("classifier_hidden") is None else tuple(model["classifier_hidden"])
        return cls(classifier, model.get("classifier_dropout"), train.get("class_balance", 0.0), model.get("auxiliary_dim", 0))

    def flags(self) -> list[str]:
        flags = [] if self.classifier is None else ["--classifier-hidden", *map(str, self.classifier)]
        flags += [] if self.dropout is None else ["--classifier-dropout", f"{self.dropout:g}"]
        flags += ["--class-balance", f"{self.balance:g}"] if self.balance else []
        return flags + (["--auxiliary-dim", str(self.auxiliary)] if self.auxiliary else [])

    def name(self) -> str:
        """The run name's part (``-classifier500x500-dropout0.5-balance2``; empty for the recipe's)."""
        part = "" if self.classifier is None else f"-classifier{'x'.join(map(str, self.classifier))}"
        part += "" if self.dropout is None else f"-dropout{self.dropout:g}"
        part += f"-balance{self.balance:g}" if self.balance else ""
        return part + (f"-auxiliary{self.auxiliary}" if self.auxiliary else "")

    def words(self) -> list[str]:
        """The model name's part (empty for the recipe's)."""
        words = [] if self.classifier is None else [f"classifier {'-'.join(map(str, self.classifier))}"]
        words += [] if self.dropout is None else [f"classifier dropout {self.dropout:g}"]
        words += [f"class balance {self.balance:g}"] if self.balance else []
        return words + ([f"a of {self.auxiliary}"] if self.auxiliary else [])


def cell_recipe(args, sigma: float, alpha: float | None, variant: Variant = Variant(), schedule: Schedule = Schedule()) -> list[str]:
    """``vaekit train``'s flags for the cell (M2 on the pixels, or on M1's codes with p(z1|y, z2)'s scale
    ``sigma``), with ``--alpha`` where it is not vaekit's default (None), the ``variant``'s flags and the
    ``schedule``'s patience and learning-rate cuts."""
    if args.what == "m1m2":
        recipe = ["--on-codes", str(RUNS / m1_name(args)), "--labelled", str(args.labels), *M1M2_RECIPE, "--sigma", f"{sigma:g}"]
    else:
        recipe = [*data_args(args.labels, args.seed), *M2_RECIPE]
    recipe += schedule.flags() + variant.flags()
    return recipe + ([] if alpha is None else ["--alpha", f"{alpha:.10g}"])


def run_m2(args) -> None:
    on_codes = args.what == "m1m2"
    on_other_m1 = args.what == "m1m2" and m1_name(args) != f"m1-s{args.seed}"
    asked_variant, asked_schedule = Variant.of_args(args), Schedule(args.patience, args.lr_patience, args.lr_factor)
    variant_name = (f"-on-{m1_name(args)}" if on_other_m1 else "") + asked_variant.name() + asked_schedule.name()
    name = args.run_name or f"{args.what}{variant_name}-{args.labels}-s{args.seed}"
    out = RUNS / name
    asked_alpha = recipe_alpha(args.what) if args.alpha is None else args.alpha
    recipe = cell_recipe(args, args.sigma, asked_alpha, asked_variant, asked_schedule)
    started = time.time()
    if args.evaluate_only:  # what stopped the training, and its wall time, stay the training call's record's
        trained = read_results()["cells"].get(name, {})
        budget_stopped = trained.get("stopped_by_budget")
    else:
        budget_stopped = train_or_resume(out, [*recipe, "--seed", str(args.seed)], args.threads, args.minutes)

    rows = epochs_of(out)
    if not rows:
        print(f"{name}: no epoch has finished yet; nothing to evaluate")
        return
    best = min(rows, key=lambda r: (r["valid_error"], r["epoch"]))
    # the cell as its run trained, whatever this call's flags say
    config = json.loads((out / "config.json").read_text())
    alpha, sigma = config["train"]["alpha"], config["model"]["likelihood_scale"]
    vaekit_default = math.isclose(alpha, 0.1 * TRAINING_EXAMPLES / args.labels)
    cell, schedule = Variant.of_config(config), Schedule.of_config(config["train"])
    recipe = cell_recipe(args, sigma, None if vaekit_default else alpha, cell, schedule)
    variant = [] if not on_codes or sigma == M1M2_SIGMA else [f"σ {sigma:g}"]
    variant += [f"on {m1_kind(args)}"] if on_other_m1 else []
    variant += cell.words()
    wanted = recipe_alpha(args.what)
    if not math.isclose(alpha, 0.1 * TRAINING_EXAMPLES / args.labels if wanted is None else wanted):
        variant.append(alpha_name(alpha, vaekit_default))  # an α other than the recipe's
    variant += schedule.words()
    model = "ADGM" if cell.auxiliary else "M2"
    if on_codes:  # runs before codes were drawn z1 ~ q(z1|x) at every step trained on the posterior means
        drawn = json.loads((out / "data.json").read_text())["codes"].get("draw", False)
        model = f"M1+{model}" + ("" if drawn else " on M1's posterior means")
    model += f" ({', '.join(variant)})" if variant else ""
    record = {
        "model": model,
        "labels": args.labels,
        "seed": args.seed,
        "alpha": alpha,
        "test_error": test_error(out),
        "best_epoch": int(best["epoch"]),
        "valid_error": 100.0 * best["valid_error"],
        "epochs": len(rows),
        "seconds_per_epoch": statistics.median(r["train_seconds"] for r in rows),
        "training_seconds": round(seconds_of(rows), 1),
        "wall_seconds_this_call": trained.get("wall_seconds_this_call") if args.evaluate_only else round(time.time() - started, 1),
        "command": " ".join(["vaekit", "train", *recipe, "--seed", str(args.seed)]),
    }
    if cell.dropout is not None:
        record["classifier_dropout"] = cell.dropout
    if cell.balance:
        record["class_balance"] = cell.balance
    if cell.auxiliary:
        record["auxiliary_dim"] = cell.auxiliary
    if budget_stopped is not None:
        record["stopped_by_budget"] = budget_stopped  # else early stopping, --epochs or a Ctrl-C ended it
    record["early_stopped"] = len(rows) - record["best_epoch"] >= config["train"]["patience"]  # False: stopped before
    if on_codes:
        record["m1"] = m1_name(args)
        record["sigma"] = sigma
        m1_rows = epochs_of(RUNS / m1_name(args))
        record["m1_epochs"] = len(m1_rows)
        record["m1_training_seconds"] = round(seconds_of(m1_rows), 1)
    save_cell(name, record)


def classifier_alone(train, valid, seed: int):
    """M2's classifier network (MLP 500, SiLU) trained on the labelled examples alone: 2,000 full-batch
    Adam steps, the state of lowest validation error (checked every 20 steps) kept. Returns a predict function."""
    known = train.y >= 0
    x, y = train.x[known], train.y[known]
    net, _, _ = fit_classifier((1, 28, 28), (500,), lambda: [(x, y)] * 20, valid, seed, 100, math.inf)
    return lambda inputs: net(torch.as_tensor(inputs).view(-1, 1, 28, 28)).logits.argmax(-1).numpy()


def run_baselines(args) -> None:
    """scikit-learn's LabelSpreading and SelfTrainingClassifier(LogisticRegression), the logistic regression
    and M2's classifier network on the labelled examples alone, on the same labelled subset as the M2 cell."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

    from vaekit.data import SourceSettings, keep_labels, load_data

    torch.set_num_threads(args.threads)
    splits = load_data("mnist", settings=SourceSettings(data_dir=str(DATA_DIR), valid_fraction=float(VALID_FRACTION), seed=args.seed))
    train = keep_labels(splits.train, args.labels, 10, args.seed)
    x, y = train.x.flatten(1).numpy(), train.y.numpy()
    xt, yt = splits.test.x.flatten(1).numpy(), splits.test.y.numpy()
    estimators = {
        "classifier alone (M2's network, labelled only)": lambda: classifier_alone(train, splits.valid, args.seed),
        "logistic regression (labelled only)": lambda: LogisticRegression(max_iter=2000).fit(x[y >= 0], y[y >= 0]).predict,
        "SelfTrainingClassifier(LogisticRegression)": lambda: SelfTrainingClassifier(LogisticRegression(max_iter=500)).fit(x, y).predict,
        "LabelSpreading (knn, 10)": lambda: LabelSpreading(kernel="knn", n_neighbors=10, max_iter=100).fit(x, y).predict,
    }
    for name, fit in estimators.items():
        if args.only and not any(word.lower() in name.lower() for word in args.only):
            continue
        started = time.time()
        predict = fit()
        error = 100.0 * float(np.mean(predict(xt) != yt))
        save_cell(
            f"{name}-{args.labels}-s{args.seed}",
            {"model": name, "labels": args.labels, "seed": args.seed, "test_error": error, "wall_seconds": round(time.time() - started, 1)},
        )


def table(_args) -> None:
    cells = read_results()["cells"].values()
    models = sorted({c["model"] for c in cells})
    print("| labels | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
    for labels in (100, 600, 1000, 3000):
        row = []
        for model in models:
            errors = [c["test_error"] for c in cells if c["model"] == model and c["labels"] == labels]
            if not errors:
                row.append("")
            elif len(errors) == 1:
                row.append(f"{errors[0]:.2f} (1 seed)")
            else:
                row.append(f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f} ({len(errors)} seeds)")
        print(f"| {labels} | " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name, fn in (("m2", run_m2), ("m1m2", run_m2), ("m1", run_m1), ("ceiling", run_ceiling), ("baselines", run_baselines)):
        p = sub.add_parser(name)
        p.add_argument("--labels", type=int, choices=(100, 600, 1000, 3000), required=name not in ("m1", "ceiling"))
        p.add_argument("--beta", type=float, default=1.0, help="m1: the KL weight of M1 (a run m1-beta<B>-s<seed> where not 1)")
        p.add_argument("--classifier-hidden", type=int, nargs="+", help="m2, m1m2: the classifier's hidden sizes (default: M2's)")
        p.add_argument("--hidden", type=int, nargs="+", default=[500], help="ceiling: the classifier's hidden layers (default 500, M2's)")
        p.add_argument(
            "--arch", choices=sorted(M1_NETWORKS), default="mlp",
            help="m1: M1's networks (a run m1-conv-s<seed> where not mlp); m1m2, ceiling: the M1 to use",
        )  # fmt: skip
        p.add_argument("--binarize", action="store_true", help="m1: dynamic binarization, as the paper's M1 (a run m1-binarize-s<seed>)")
        p.add_argument("--m1", help="m1m2, ceiling: the M1 run's folder under bench/runs/semisupervised (default m1-s<seed>)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument(
            "--minutes", type=float, default=None if name in ("m1", "ceiling") else 120.0,
            help="m2, m1m2: stop the cell's training at this many minutes of epochs in all, resumes included "
            "(default 120, the issue's budget; the run saves and resumes); m1: no limit unless given",
        )  # fmt: skip
        p.add_argument("--evaluate-only", action="store_true", help="evaluate the cell's run as it stands (no training)")
        p.add_argument("--run-name", help="the cell's run directory and key, where not the default (m1m2-means-100-s0: M2 on M1's means)")
        p.add_argument("--sigma", type=float, default=M1M2_SIGMA, help=f"m1m2: p(z1|y, z2)'s scale (default {M1M2_SIGMA:g})")
        p.add_argument("--alpha", type=float, help="the labelled examples' classification weight (default: the recipe's, recipe_alpha)")
        p.add_argument(
            "--classifier-dropout", type=float, help="m2, m1m2: dropout on the classifier q(y|x) alone (train --classifier-dropout)"
        )
        p.add_argument("--class-balance", type=float, default=0.0, help="m2, m1m2: γ of KL(q̄(y) ‖ p(y)) (train --class-balance; 0: off)")
        p.add_argument(
            "--auxiliary-dim", type=int, default=0,
            help="m2, m1m2: an auxiliary variable a of this size, Maaløe et al. 2016's ADGM (train --auxiliary-dim; 0: M2)",
        )  # fmt: skip
        p.add_argument(
            "--patience",
            type=int,
            default=RECIPE_PATIENCE,
            help=f"m2, m1m2: epochs past the best validation error before the cell stops (default {RECIPE_PATIENCE})",
        )
        p.add_argument(
            "--lr-patience",
            type=int,
            default=0,
            help="m2, m1m2: cut the learning rate after this many epochs without progress (train --lr-patience; 0: never)",
        )
        p.add_argument("--lr-factor", type=float, default=0.5, help="m2, m1m2: the cut of --lr-patience (default 0.5)")
        p.add_argument("--only", nargs="+", metavar="WORD", help="baselines: only the estimators whose names hold one of these words")
        p.set_defaults(fn=fn)
    sub.add_parser("table").set_defaults(fn=table)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
