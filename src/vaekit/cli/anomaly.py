"""``vaekit anomaly``: an anomaly score per example, a threshold, a histogram, and (with labels)
ROC AUC and average precision."""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from io import BytesIO, StringIO
from pathlib import Path

import numpy as np

from vaekit.checkpoint import atomic_write_bytes, atomic_write_json
from vaekit.cli.common import (
    add_data_dir_argument,
    add_output_argument,
    add_run_argument,
    is_path,
    load_run,
    output_path,
    positive_int,
    read_examples,
)
from vaekit.data.base import class_names
from vaekit.errors import ConfigError, DataError, VaekitError
from vaekit.examples import for_model

SPLITS = ("test", "valid", "train", "all")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {value}")
    return value


def register(sub) -> None:
    from vaekit.anomaly import SCORES

    p = sub.add_parser(
        "anomaly",
        help="anomaly scores per example, a threshold, a histogram, ROC AUC with labels",
        description="Score every example of a split with a trained run (higher = more anomalous), set a threshold from a "
        "contamination rate or a quantile of the training scores, and draw a histogram. Scores are deterministic: "
        "at the posterior mean (--samples 0) or averaged over fixed latent draws shared by all examples. "
        "With --anomaly-classes or --labels, ROC AUC and average precision are reported.",
    )
    add_run_argument(p)
    p.add_argument(
        "--data", metavar="SOURCE", help="dataset name or path (default: the run's dataset), preprocessed like the training data"
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="which examples: test, valid, train, or all (every example of a file, in file order; a named "
        "dataset's test split); default: all for a --data path, else test (the validation split of a run's data that has no test split)",
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--score",
        choices=SCORES,
        default="neg-elbo",
        help="neg-elbo (default): KL - E_q log p(x|z); iw-nll: importance-weighted -log p(x) (VAE only); "
        "reconstruction: squared error of the decoder mean",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=10,
        help="fixed latent draws averaged for neg-elbo and reconstruction; 0: the posterior mean (default 10)",
    )
    p.add_argument("--iw-samples", type=positive_int, default=100, metavar="K", help="importance samples for --score iw-nll (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fixed latent draws (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=1000, help="examples per batch (default 1000)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--contamination", type=_rate, metavar="RATE", help="flag this share of the scored examples")
    g.add_argument(
        "--quantile", type=_rate, metavar="Q", help="flag examples scoring above this quantile of the run's training scores (default 0.99)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--anomaly-classes", nargs="+", metavar="CLASS", help="labels (numbers or class names) of the examples that are anomalies"
    )
    g.add_argument("--labels", metavar="PATH", help="a .npy, .csv or .txt file with one 0/1 per scored example (1: anomaly)")
    p.add_argument(
        "--scores",
        metavar="PATH",
        help="per-example scores, .csv (index,score,flagged[,anomaly]) or .npy (default RUN/anomaly-SPLIT-SCORE.csv; "
        "for --data other than the run's own, RUN/anomaly-SOURCE-SPLIT-SCORE.csv, SOURCE the file's stem or the dataset's name)",
    )
    p.add_argument("--json", metavar="PATH", help="the summary (default RUN/anomaly-SPLIT-SCORE.json, or with -SOURCE as for --scores)")
    add_output_argument(p, "anomaly-SCORE.png, or anomaly-SOURCE-SCORE.png for other --data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.anomaly import SCORE_LABELS, anomaly_scores, contamination_threshold, detection_metrics, quantile_threshold, score_histogram

    if args.samples < 0:
        raise ConfigError(f"--samples must be >= 0 (0: the posterior mean), got {args.samples}")
    scores_path = Path(args.scores) if args.scores else None
    if scores_path is not None and scores_path.suffix.lower() not in (".csv", ".npy"):
        raise ConfigError(f"--scores must end in .csv or .npy, got {scores_path.name}")
    r = load_run(args)
    if args.score == "iw-nll" and r.model.latent.deterministic:
        raise ConfigError("--score iw-nll needs a VAE: a plain autoencoder has no likelihood; use neg-elbo or reconstruction")
    examples, info, split_name = read_examples(r, args.data, args.split)
    labels = _labels(args, examples, info)

    def score(data, where: str, desc: str) -> tuple[np.ndarray, float]:
        """The scores (N,) of ``data`` with a progress bar titled ``desc``, and the seconds they took."""
        data = for_model(r.model, data, where)  # a conditional model scores x given its label or context
        started = time.perf_counter()
        with _progress(len(data), desc, args.quiet) as progress:
            out = anomaly_scores(
                r.model,
                data,
                score=args.score,
                samples=args.samples,
                iw_samples=args.iw_samples,
                seed=args.seed,
                batch_size=args.batch_size,
                progress=progress,
            )
        return out.double().cpu().numpy(), time.perf_counter() - started

    s, seconds = score(examples, f"the {split_name} examples", f"scoring the {split_name} examples")
    threshold_seconds = None
    if args.contamination is not None:
        threshold = contamination_threshold(s, args.contamination)
        rule = {"contamination": args.contamination}
    else:
        q = 0.99 if args.quantile is None else args.quantile
        train = examples if (split_name == "train" and not args.data) else _training_split(r)
        train_scores = s
        if train is not examples:
            train_scores, threshold_seconds = score(train, "the training split", "scoring the training split for the threshold")
        threshold = quantile_threshold(train_scores, q)
        rule = {"quantile_of_training_scores": q, "training_examples": len(train)}
    flagged = s > threshold

    source = _source_tag(r, args.data)  # outputs for other data are named by it, so they never replace the run's own
    tag = f"{source}-{split_name}-{args.score}" if source else f"{split_name}-{args.score}"
    scores_path = scores_path or r.path / f"anomaly-{tag}.csv"
    json_path = Path(args.json) if args.json else r.path / f"anomaly-{tag}.json"
    figure = output_path(args, r.path, f"anomaly-{source}-{args.score}.png" if source else f"anomaly-{args.score}.png")
    for path in (scores_path, json_path):
        _mkdir(path.parent)
    replaced = [str(path) for path in (scores_path, json_path, figure) if path.exists()]
    _write_scores(scores_path, s, flagged, labels)
    data_name = args.data or r.config.data.source
    score_histogram(
        s, threshold, figure, is_anomaly=labels, label=SCORE_LABELS[args.score], title=f"{data_name} ({split_name}): {args.score}"
    )

    summary = {
        "run": str(r.path),
        "data": data_name,
        "split": split_name,
        "score": args.score,
        "settings": {"samples": args.samples, "iw_samples": args.iw_samples if args.score == "iw-nll" else None, "seed": args.seed},
        "examples": len(s),
        "threshold": threshold,
        "threshold_rule": rule,
        "flagged": int(flagged.sum()),
        "flagged_fraction": float(flagged.mean()),
        "score_stats": {
            "mean": float(s.mean()),
            "std": float(s.std()),
            "min": float(s.min()),
            "median": float(np.median(s)),
            "max": float(s.max()),
        },
        "seconds": seconds,
        "threshold_seconds": threshold_seconds,  # scoring the training split for a --quantile threshold (None: not scored)
        "outputs": {"scores": str(scores_path), "figure": str(figure)},
    }
    print(f"{len(s)} examples of {data_name} ({split_name}) scored by {args.score} in {seconds:.1f} s")
    if threshold_seconds is not None:
        print(f"  {rule['training_examples']} training examples scored for the threshold in {threshold_seconds:.1f} s")
    print(f"  threshold {threshold:.4g} ({_describe(rule)}): {summary['flagged']} flagged ({100 * summary['flagged_fraction']:.1f}%)")
    if labels is not None:
        metrics = detection_metrics(s, labels)
        tp = int((flagged & labels).sum())
        metrics["precision_at_threshold"] = tp / max(1, int(flagged.sum()))
        metrics["recall_at_threshold"] = tp / metrics["anomalies"]
        summary["metrics"] = metrics
        print(
            f"  {metrics['anomalies']} labelled anomalies: ROC AUC {metrics['roc_auc']:.4f}, "
            f"average precision {metrics['average_precision']:.4f}; "
            f"at the threshold precision {metrics['precision_at_threshold']:.3f}, recall {metrics['recall_at_threshold']:.3f}"
        )
    atomic_write_json(json_path, summary)
    print(f"scores written to {scores_path}, summary to {json_path}, histogram to {figure}")
    if replaced:
        print(f"  (these replace the earlier {', '.join(replaced)})")
    return 0


def _training_split(r):

    try:
        return r.load_data().train
    except VaekitError as exc:
        raise DataError(
            f"cannot load the run's training data for a --quantile threshold ({exc.cli or exc}); give --contamination instead"
        ) from None


def _labels(args, examples, info) -> np.ndarray | None:
    """Boolean anomaly labels (N,) from --anomaly-classes (the examples' labels) or --labels (a file)."""
    if args.anomaly_classes:
        if examples.y is None:
            raise DataError("these examples have no labels to pick --anomaly-classes from; give --labels PATH instead")
        y = examples.y.cpu().numpy()
        labels = np.isin(y, [_class_index(c, info, y) for c in args.anomaly_classes])
    elif args.labels:
        labels = _read_labels(Path(args.labels), len(examples))
    else:
        return None
    if labels.all() or not labels.any():
        kind = "anomalies" if labels.all() else "normal examples"
        raise DataError(f"the labels mark only {kind}: ROC AUC needs both anomalies and normal examples")
    return labels


def _class_index(name: str, info: dict, y: np.ndarray) -> int:
    """The label of ``name``: a class name of the data (``class_names``; exact, else the one name equal
    ignoring case), else a label number."""
    names = class_names(info) or []
    if name in names:
        return names.index(name)
    folded = [i for i, c in enumerate(names) if c.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    try:
        return int(name)
    except ValueError:
        known = f"; the classes are {', '.join(names)}" if names else "; this data's labels are numbers"
        raise DataError(f"unknown anomaly class {name!r}{known}") from None


def _source_tag(r, source: str | None) -> str:
    """What outputs for ``source`` are named by: "" for the run's own data, else the dataset's name or
    the file's (or folder's) stem, in file-name-safe characters."""
    own = r.config.data.source
    if source is None or source == own:
        return ""
    if not is_path(source):
        return source
    path = Path(source).expanduser()
    if not is_path(own) or path.resolve() != Path(own).expanduser().resolve():
        return re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem if path.is_file() else path.name).strip("-.") or "data"
    return ""


def _read_labels(path: Path, n: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"no such labels file: {path}")
    try:
        if path.suffix.lower() == ".npy":
            raw = np.load(path, allow_pickle=False)
        else:
            raw = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=1)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read labels from {path}: {exc}") from None
    raw = np.asarray(raw).reshape(-1) if np.ndim(raw) == 2 and 1 in np.shape(raw) else np.asarray(raw)
    if raw.ndim != 1:
        raise DataError(f"{path}: expected one label per example, got an array of shape {raw.shape}")
    if len(raw) != n:
        raise DataError(f"{path} has {len(raw)} labels but {n} examples are scored")
    if raw.dtype.kind not in "biuf" or not np.isin(raw, (0, 1)).all():
        raise DataError(f"{path}: labels must be 0 (normal) or 1 (anomaly)")
    return raw.astype(bool)


def _write_scores(path: Path, scores: np.ndarray, flagged: np.ndarray, labels: np.ndarray | None) -> None:

    if path.suffix.lower() == ".npy":
        buf = BytesIO()
        np.save(buf, scores.astype(np.float64))
        atomic_write_bytes(path, buf.getvalue())
        return
    text = StringIO()
    text.write("index,score,flagged" + (",anomaly" if labels is not None else "") + "\n")
    for i, (s, f) in enumerate(zip(scores.tolist(), flagged.tolist())):
        text.write(f"{i},{s:.9g},{int(f)}" + (f",{int(labels[i])}" if labels is not None else "") + "\n")
    atomic_write_bytes(path, text.getvalue().encode())


@contextlib.contextmanager
def _progress(total: int, desc: str, quiet: bool):
    """A progress callback (examples done so far) drawing a bar on a terminal; nothing when ``quiet``."""
    if quiet:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="ex", leave=False, disable=None, mininterval=1.0)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        bar.update(n - done)
        done = n

    try:
        yield progress
    finally:
        bar.close()


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None


def _describe(rule: dict) -> str:
    if "contamination" in rule:
        return f"contamination {rule['contamination']:g}"
    return f"{rule['quantile_of_training_scores']:g} quantile of {rule['training_examples']} training scores"
