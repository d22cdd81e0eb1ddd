"""Pieces shared by the sub-commands: run loading, the examples a command reads, output paths, number parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vaekit.data.tables import context_vector
from vaekit.errors import ConfigError, DataError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    """RUN, and ``--threads N`` for the computing the command does with it (``load_run`` sets it)."""
    parser.add_argument("run", metavar="RUN", help="run directory written by 'vaekit train'")
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads (default 1; 2 for a conv network on an idle machine: measured in bench/README.md)",
    )


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-dir DIR`` and ``--download``, for a command that reads a run's data (``load_run``)."""
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the run's data is now: the folder of its named dataset's files, or the folder holding its data file "
        "(default: where it was trained from; $VAEKIT_DATA_DIR where that folder is gone)",
    )
    parser.add_argument(
        "--download", action="store_true", help="fetch the dataset's files if they are missing (MNIST family, checksums verified)"
    )


def load_run(args: argparse.Namespace, **kwargs):
    """``vaekit.load(args.run, **kwargs)``, pointed at its data by ``--data-dir`` and allowed to fetch it
    by ``--download`` where the command has them; for this call only (the run's files are unchanged)."""
    import os

    from vaekit.runs import load

    run = load(args.run, **kwargs)
    from vaekit.threads import use_threads

    use_threads(getattr(args, "threads", None), run.config.model)
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        if not Path(data_dir).expanduser().is_dir():
            raise ConfigError(f"--data-dir {data_dir}: no such folder")
        run.config.data.data_dir = os.path.abspath(os.path.expanduser(data_dir))
    run.config.data.download = bool(getattr(args, "download", False))  # never the stored setting: a reader fetches only when asked
    return run


CLASS_HELP = (
    "a conditional model (--condition label): decode as class C (default: samples show a row per class; "
    "other views decode with their input's class)"
)


CONTEXT_HELP = (
    "a model conditioned on context columns (--context-columns): decode at this context, in the columns' own units, "
    "as VALUE per column or NAME=VALUE (columns not named: their training mean; default: the mean context)"
)


def add_syntax_argument(parser: argparse.ArgumentParser) -> None:
    """``--syntax``: a SMILES model's tokens drawn (or decoded) only among those SMILES syntax and valences admit."""
    parser.add_argument(
        "--syntax",
        action="store_true",
        help="a SMILES model: each token drawn only among those SMILES syntax admits (balanced branches, closed ring "
        "bonds, no atoms bonded twice, no atom given more bonds than its valence; vaekit.data.syntax): the model "
        "renormalised step by step",
    )


def add_class_argument(parser: argparse.ArgumentParser, help: str = CLASS_HELP) -> None:
    """``--class C`` and ``--context V ...``: the class, or the context vector, a conditional model generates
    (``view_context``: ``RunViews(context=)``, ``Explorer(context=)``)."""
    parser.add_argument("--class", dest="label", type=int, metavar="C", help=help)
    parser.add_argument("--context", nargs="+", metavar="V", help=CONTEXT_HELP)


def view_context(run, args: argparse.Namespace) -> int | torch.Tensor | None:
    """What ``--class`` or ``--context`` asks a run's conditional model to decode with: a class, a
    standardised context vector (K,), or None (the views' default)."""
    label, values = getattr(args, "label", None), getattr(args, "context", None)
    if label is not None and values:
        raise ConfigError("give --class or --context, not both")
    if values:
        return context_vector(run.data_info.get("preprocessing") or {}, values)
    return label


def add_output_argument(parser: argparse.ArgumentParser, default_name: str) -> None:
    parser.add_argument("-o", "--output", metavar="PATH", help=f"where to write (default: RUN/figures/{default_name})")


def output_path(args: argparse.Namespace, run_path: Path, default_name: str) -> Path:
    path = Path(args.output) if args.output else run_path / "figures" / default_name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror}") from None
    return path


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available")
    return name


def split_of(data, split: str | None, source: str | None = None) -> tuple[object, str]:
    """The split of a ``DataSplits`` a command reads, and its name. ``split`` None (no ``--split``): the
    test split, or, for the run's own data without one (a table, a file), its validation split, which
    training held out (said on stdout). ``source``: the ``--data`` given (None: the run's own data)."""
    if split is None:
        if data.test is not None or source is not None:
            split = "test"
        else:
            print("the run's data has no test split: using its validation split (held out from training)")
            split = "valid"
    if split == "test" and data.test is None:
        if source is None:
            raise ConfigError("the run's data has no test split; use --split valid (held out from training)")
        raise ConfigError(f"{source} has no test split; use --split all for every example")
    return {"train": data.train, "valid": data.valid, "test": data.test}[split], split


def is_path(source: str) -> bool:
    """Whether a --data ``source`` is a file or folder, not a dataset's name."""
    from vaekit.data import dataset_names

    return source not in dataset_names()


def check_values(run, x, where: str) -> None:
    """Refuse, in one line, examples outside the support of a likelihood of values in [0, 1] (bernoulli, ...)."""
    from vaekit.models import LIKELIHOODS

    if LIKELIHOODS[run.config.model.likelihood].support != "unit" or not isinstance(x, torch.Tensor) or not len(x):
        return
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise DataError(
            f"{where}: values lie in [{low:g}, {high:g}], but the model's {run.config.model.likelihood} likelihood takes values "
            "in [0, 1]; scale the data as the model's training data was"
        )


def check_data_shape(run, data) -> None:
    """Refuse, in one line, data whose examples are not of the shape the model was trained on."""
    if tuple(data.shape) != tuple(run.model.input_shape):
        raise DataError(f"the data has examples of shape {tuple(data.shape)}, but the model was trained on {tuple(run.model.input_shape)}")


def read_examples(run, source: str | None, split: str | None):
    """The examples a command reads (a ``Dataset``, prepared with the run's saved preprocessing), the data
    info, and the split's name. ``split`` None (no ``--split``): every example of a ``source`` path ("all"),
    else ``split_of``'s default (test; the validation split of the run's own data without one)."""
    if split is None and source and is_path(source):
        split = "all"
    if split == "all":
        examples = run.load_examples(source)
        check_values(run, examples.x, source or run.config.data.source)
        return examples, run.data_info, split  # prepared with the run's preprocessing: its class names apply
    data, examples, split = read_split(run, source, split)
    return examples, data.info, split


def read_split(run, source: str | None, split: str | None):
    """The ``DataSplits`` of ``source`` (None: the run's own data) prepared for the run and checked
    against it, the split a command reads (``split_of``) and its name."""
    data = run.load_data(source)
    check_data_shape(run, data)
    examples, split = split_of(data, split, source)
    if source:
        check_values(run, examples.x, source)
    return data, examples, split


def add_layer_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layer",
        type=int,
        metavar="N",
        help="which stochastic layer of a hierarchical model to view, 0 nearest the data (default: the top layer)",
    )
