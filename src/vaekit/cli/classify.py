"""``vaekit classify``: a semi-supervised run's predictions (CSV with class probabilities), its accuracy and
confusion matrix where labels are known; ``vaekit analogies``: each example's style written as every class."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from vaekit.checkpoint import atomic_write_bytes
from vaekit.cli.common import (
    add_data_dir_argument,
    add_output_argument,
    add_run_argument,
    load_run,
    output_path,
    positive_int,
    read_examples,
)
from vaekit.data.base import class_names
from vaekit.errors import ConfigError

SPLITS = ["test", "valid", "train", "all"]


def register(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="a semi-supervised run's class predictions (CSV), accuracy and confusion matrix",
        description="Classify examples with a semi-supervised run's classifier q(y|x) (--model m2): a CSV of each "
        "example's predicted class and class probabilities; where the examples have labels, the accuracy and a "
        "confusion-matrix figure.",
    )
    _common(p, "predictions.csv")
    p.add_argument("--confusion", metavar="PATH", help="where to write the confusion matrix (default RUN/figures/confusion-SPLIT.png)")
    p.set_defaults(handler=run_classify)

    p = sub.add_parser(
        "analogies",
        help="each example's style z decoded as every class (PNG grid)",
        description="Analogies (Kingma et al. 2014): each row is one example's style, its posterior mean z given its "
        "label (or, without one, the class the classifier finds), decoded as every class, one per column. For a model "
        "conditioned on class labels: --model m2, or --condition label.",
    )
    _common(p, "analogies.png", SPLITS[:3])
    p.add_argument("-n", type=positive_int, default=10, help="examples, one per row (default 10: the first of each class where labelled)")
    p.set_defaults(handler=run_analogies)


def _common(p: argparse.ArgumentParser, default_name: str, splits: list[str] = SPLITS) -> None:
    add_run_argument(p)
    p.add_argument(
        "--data", metavar="SOURCE", help="dataset name or path (default: the run's dataset), preprocessed like the training data"
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--split", choices=splits, help="which examples (default: all for a --data path, else test; valid for a run's data without one)"
    )
    add_output_argument(p, default_name)


def run_classify(args: argparse.Namespace) -> int:
    from vaekit.classification import classify
    from vaekit.plotting import confusion_matrix, save_png

    r = load_run(args)
    if r.model.classifier is None:
        raise ConfigError(f"{args.run} has no classifier q(y|x): classify needs a semi-supervised run (vaekit train --model m2)")
    examples, info, split = read_examples(r, args.data, args.split)
    labels = examples.y
    if labels is not None and len(labels) and (int(labels.min()) < -1 or int(labels.max()) >= r.model.classes):
        raise ConfigError(f"the {split} examples have labels outside 0..{r.model.classes - 1} (and -1 for unlabelled), the model's classes")
    result = classify(r.model, examples)
    names = class_names(r.data_info) or [str(i) for i in range(r.model.classes)]
    path = output_path(args, r.path, "predictions.csv") if args.output else r.path / f"predictions-{split}.csv"
    atomic_write_bytes(path, _predictions_csv(result, names).encode())
    print(f"{split} split, {len(examples)} examples: predictions written to {path}")
    if result.error is None:
        print("  no labels to compare with: accuracy not measured")
        return 0
    known = int(result.known.sum())
    print(f"  accuracy {100 * (1 - result.error):.2f}% (error {100 * result.error:.2f}%) on {known} labelled examples")
    figure = Path(args.confusion) if args.confusion else r.path / "figures" / f"confusion-{split}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    title = f"{r.path.name}: {split} split, error {100 * result.error:.2f}%"
    save_png(confusion_matrix(result.confusion.numpy(), names, title=title), figure)
    print(f"  confusion matrix written to {figure}")
    return 0


def _predictions_csv(result, names: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    has_labels = result.labels is not None
    writer.writerow(["index", "predicted", *(["label"] if has_labels else []), *(f"p_{n}" for n in names)])
    for i, (p, row) in enumerate(zip(result.predicted.tolist(), result.probabilities.tolist())):
        label = [names[int(result.labels[i])] if int(result.labels[i]) >= 0 else ""] if has_labels else []
        writer.writerow([i, names[p], *label, *(f"{v:.6g}" for v in row)])
    return out.getvalue()


def run_analogies(args: argparse.Namespace) -> int:
    from vaekit.plotting import save_png
    from vaekit.report import RunViews

    r = load_run(args)
    if not r.model.latent.label_classes:
        raise ConfigError("analogies need a model conditioned on class labels (--model m2, or --condition label)")
    view = RunViews(r, source=args.data, split=args.split or "test").analogies(args.n)
    path = save_png(view.picture, output_path(args, r.path, "analogies.png"))
    print(f"wrote {path}: {view.caption}")
    return 0
