"""``vaekit disentanglement``: a run's disentanglement metrics on its factors of variation (a table, a
JSON file) and, with ``--figures``, its latent units labelled by the factor each captures."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from vaekit.checkpoint import atomic_write_json
from vaekit.cli.common import add_data_dir_argument, add_run_argument, load_run, positive_int, resolve_device
from vaekit.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "disentanglement",
        help="metrics of how a run's latent units separate known factors of variation (MIG, DCI, ...)",
        description="Score how well a run's latent units separate the known factors of variation of its data "
        "(dsprites and its variants): the metrics of Locatello et al. 2019 with their sample counts, every setting "
        "and the seed printed with the result. Writes RUN/disentanglement.json (or --output).",
    )
    add_run_argument(p)
    p.add_argument("--metrics", nargs="+", metavar="NAME", help="which metrics (default: all; names as in the table)")
    p.add_argument(
        "--codes", choices=("mean", "sample"), default="mean", help="the representation: posterior means (default) or one draw z ~ q(z|x)"
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="a metric setting: num_train=2000 (every metric that has it), or dci.estimator=sklearn-default (one metric's)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds every draw and estimator (default 0)")
    p.add_argument(
        "--estimator-threads",
        type=positive_int,
        help="threads scikit-learn's estimators use (default: the command's --threads; the scores do not depend on it)",
    )
    p.add_argument("--data", metavar="SOURCE", help="another dataset made from the same factors (default: the run's own)")
    p.add_argument(
        "--device", default="auto", help="where the images are encoded: cpu, cuda, or auto: a GPU where there is one (default auto)"
    )
    add_data_dir_argument(p)
    p.add_argument("-o", "--output", metavar="PATH", help="where to write the JSON (default: RUN/disentanglement.json)")
    p.add_argument(
        "--figures",
        action="store_true",
        help="also write RUN/figures/factor-traversal.png and factor-information.png (units labelled by factor)",
    )
    p.set_defaults(handler=run_disentanglement)


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as ``evaluate``'s settings: ``num_train=2000`` -> {"num_train": 2000},
    ``dci.estimator=lasso`` -> {"dci": {"estimator": "lasso"}}; a value is read as JSON where it can be (numbers)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE pairs, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        metric, dot, name = key.rpartition(".")
        if dot:
            settings.setdefault(metric, {})[name] = value
        else:
            settings[key] = value
    return settings


def table(result: dict[str, Any]) -> str:
    """The scores as an aligned text table, then each metric's settings on one line."""
    metrics = result["metrics"]
    rows = [(name, score, f"{value:.4f}", f"{m['seconds']:.1f}") for name, m in metrics.items() for score, value in m["scores"].items()]
    header = ("metric", "score", "value", "seconds")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:  # the names left-aligned, the numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    settings = [f"  {name}: " + " ".join(f"{k}={v}" for k, v in m["settings"].items()) for name, m in result["metrics"].items()]
    return "\n".join([line(header), *map(line, rows), "settings:", *settings])


@contextlib.contextmanager
def _progress_bar():
    """A progress callback (done, total) drawing a bar on a terminal, opened at its first call."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="encoding every image", unit="img", leave=False, disable=None, mininterval=1.0)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def run_disentanglement(args: argparse.Namespace) -> int:
    import torch

    from vaekit.disentanglement.runs import score

    r = load_run(args, map_location=resolve_device(args.device))  # sets torch's threads: --threads, or the run's default
    with _progress_bar() as progress:
        result = score(
            r,
            args.metrics,
            codes=args.codes,
            source=args.data,
            seed=args.seed,
            threads=args.estimator_threads or torch.get_num_threads(),
            progress=progress,
            **parse_settings(args.set),
        )
    what = "posterior means" if args.codes == "mean" else "one draw z ~ q(z|x) per image"
    print(f"{r.path.name} on {result['data']} ({', '.join(result['factors'])}); codes: {what}; seed {args.seed}")
    print(table(result))
    path = Path(args.output) if args.output else r.path / "disentanglement.json"
    atomic_write_json(path, result)
    print(f"written to {path}")
    if args.figures:
        from vaekit.plotting import save_png
        from vaekit.report.run_views import RunViews

        views = RunViews(r, source=args.data, split="valid", seed=args.seed)
        for name, view in (("factor-traversal", views.factor_traversal()), ("factor-information", views.factor_information())):
            figure = r.path / "figures" / f"{name}.png"
            figure.parent.mkdir(parents=True, exist_ok=True)
            save_png(view.picture, figure)
            print(f"{view.caption}\n  written to {figure}")
    return 0
