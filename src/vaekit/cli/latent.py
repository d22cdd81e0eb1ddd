"""Latent-space figures and the report: ``interpolate``, ``traverse``, ``manifold``, ``embed``,
``denoise``, ``curves`` and ``report``. Each draws one ``vaekit.report.RunViews`` view; figures go
to RUN/figures/ unless ``-o PATH`` says otherwise."""

from __future__ import annotations

import argparse
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vaekit.checkpoint import atomic_write_bytes
from vaekit.cli.common import (
    add_class_argument,
    add_data_dir_argument,
    add_layer_argument,
    add_output_argument,
    add_run_argument,
    load_run,
    output_path,
    positive_int,
    view_context,
)
from vaekit.corruption import CORRUPTIONS
from vaekit.errors import ConfigError, DataError
from vaekit.plotting import save_png
from vaekit.report import MANIFOLD_GRID, RunViews, write_report
from vaekit.runs import load


def _common(p: argparse.ArgumentParser, default_name: str, *, split: bool = True, seed: bool = False, layer: bool = False) -> None:
    add_run_argument(p)
    if layer:
        add_layer_argument(p)
    if split:
        p.add_argument("--split", choices=["test", "valid", "train"], default="test", help="which split to use (default test)")
        p.add_argument(
            "--data", metavar="SOURCE", help="dataset name or path (default: the run's dataset), preprocessed like the training data"
        )
        add_data_dir_argument(p)
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_output_argument(p, default_name)


def _float_in(low: float, high: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low < value < high:
            raise argparse.ArgumentTypeError(f"expected a number between {low:g} and {high:g}, got {value:g}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _steps(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 steps, got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "interpolate",
        help="decode the path between two inputs' posterior means (PNG strip)",
        description="Decode the linear and spherical (slerp) paths between the posterior means of two inputs: "
        "a PNG strip per method with the two originals at the ends.",
    )
    _common(p, "interpolation.png", layer=True)
    add_class_argument(p)
    p.add_argument(
        "--between",
        nargs=2,
        metavar=("A", "B"),
        required=True,
        help="two inputs: indices into --split, or image files of the model's input size (a sequence model: strings, e.g. SMILES)",
    )
    p.add_argument("--steps", type=_steps, default=10, help="points on the path, both ends included (default 10)")
    p.add_argument(
        "--method",
        choices=["linear", "slerp", "both"],
        default="both",
        help="path: straight line, great circle, or both rows (default both)",
    )
    p.set_defaults(handler=run_interpolate)

    p = sub.add_parser(
        "traverse",
        help="vary the most informative latent dimensions one at a time (PNG grid)",
        description="Latent traversal: for the K dimensions with the highest average KL to the prior, vary one at a time over "
        "the prior's quantiles (or ±3σ) while the others stay at an encoded input's mean (or the prior's mean).",
    )
    _common(p, "traversal.png", layer=True)
    add_class_argument(p)
    p.add_argument(
        "-k", type=positive_int, default=8, help="number of dimensions, most informative first (default 8, at most the latent size)"
    )
    p.add_argument("--dims", type=int, nargs="+", metavar="D", help="traverse these dimensions instead of the top K")
    p.add_argument("--steps", type=_steps, default=11, help="values per dimension (default 11)")
    p.add_argument(
        "--span",
        choices=["quantile", "sigma"],
        default="quantile",
        help="quantiles 0.05..0.95 of the prior, or ±WIDTH standard deviations (default quantile)",
    )
    p.add_argument("--width", type=_positive_float, default=3.0, help="the range of --span sigma in standard deviations (default 3)")
    p.add_argument(
        "--at",
        choices=["input", "mean"],
        default="input",
        help="hold the other dimensions at an input's posterior mean or at the prior's mean (default input)",
    )
    p.add_argument("--index", type=int, default=0, help="which example of --split is the input for --at input (default 0)")
    p.set_defaults(handler=run_traverse)

    p = sub.add_parser(
        "manifold",
        help="decoded grid over two latent dimensions (PNG)",
        description="The learned manifold: decode a grid of z over the prior's inverse CDF in two dimensions "
        "(both of a 2-D latent; otherwise the two with the highest KL, or --dims), the others fixed.",
    )
    _common(p, "manifold.png", layer=True)
    add_class_argument(p)
    p.add_argument("-n", type=_steps, default=MANIFOLD_GRID, help=f"grid size n x n (default {MANIFOLD_GRID})")
    p.add_argument(
        "--dims",
        type=int,
        nargs=2,
        metavar=("I", "J"),
        help="the horizontal and vertical dimensions (default: the two with the highest KL)",
    )
    p.add_argument(
        "--at",
        choices=["mean", "input"],
        default="mean",
        help="hold the other dimensions at the prior's mean or at an input's posterior mean (default mean)",
    )
    p.add_argument("--index", type=int, default=0, help="which example of --split is the input for --at input (default 0)")
    p.add_argument(
        "--p-range",
        type=_float_in(0, 1),
        nargs=2,
        default=[0.05, 0.95],
        metavar=("LOW", "HIGH"),
        help="the quantile range the grid spans (default 0.05 0.95)",
    )
    p.set_defaults(handler=run_manifold)

    p = sub.add_parser(
        "embed",
        help="encode a split: codes as NPY and CSV, and a scatter plot coloured by label",
        description="Encode a split (posterior means, or seeded samples with --sample) and write the codes "
        "(PATH.npy, and PATH.csv with labels where known) and a scatter plot (PATH.png): the two "
        "dimensions of a 2-D latent, otherwise PCA, or t-SNE with --method tsne.",
    )
    _common(p, "embedding.png", seed=True, layer=True)
    p.add_argument("--sample", action="store_true", help="codes are draws z ~ q(z|x) (seeded) instead of posterior means")
    p.add_argument(
        "--method",
        choices=["auto", "pca", "tsne"],
        default="auto",
        help="2-D projection: auto (the latent itself when 2-D, else PCA), pca or tsne",
    )
    p.set_defaults(handler=run_embed)

    p = sub.add_parser(
        "denoise",
        help="corrupted, denoised and clean images with MSE/PSNR per row (PNG)",
        description="Corrupt clean examples (the run's training noise by default), reconstruct them, and show "
        "corrupted | denoised | clean with MSE and PSNR per row. Works for any model, as a comparison.",
    )
    _common(p, "denoising.png", seed=True)
    p.add_argument("-n", type=positive_int, default=8, help="number of examples (default 8)")
    p.add_argument(
        "--noise", choices=[n for n in CORRUPTIONS.names() if n != "none"], help="corruption (default: what the run was trained with)"
    )
    p.add_argument("--noise-level", type=_positive_float, help="noise std (gaussian) or probability (mask, salt-pepper)")
    p.add_argument("--compare", metavar="RUN2", help="another run to denoise the same corrupted inputs, in an extra column")
    p.set_defaults(handler=run_denoise)

    p = sub.add_parser(
        "curves",
        help="training curves: negative ELBO, reconstruction, KL and β per epoch (PNG)",
        description="Plot metrics.csv: negative ELBO, reconstruction and KL (train and validation) per epoch, and the β schedule.",
    )
    _common(p, "curves.png", split=False)
    p.set_defaults(handler=run_curves)

    p = sub.add_parser(
        "report",
        help="one self-contained HTML report of a run",
        description="Write one HTML file (images embedded, opens offline): config, metrics, curves, reconstructions, "
        "samples, interpolation, traversal, manifold and latent scatter.",
    )
    add_run_argument(p)
    p.add_argument("--split", choices=["test", "valid", "train"], default="test", help="which split the views use (default test)")
    p.add_argument("--seed", type=int, default=0, help="random seed of samples and projections (default 0)")
    add_layer_argument(p)
    add_data_dir_argument(p)
    p.add_argument("-o", "--output", metavar="PATH", help="where to write (default: RUN/report.html)")
    p.set_defaults(handler=run_report)


def _views(args: argparse.Namespace):

    run = load_run(args)
    return RunViews(
        run,
        source=getattr(args, "data", None),
        split=getattr(args, "split", "test"),
        seed=getattr(args, "seed", 0),
        layer=getattr(args, "layer", None),
        context=view_context(run, args),
    )


def _save(view, args: argparse.Namespace, views, default_name: str) -> Path:

    return save_png(view.picture, output_path(args, views.run.path, default_name))


def read_image(path: str | Path, shape: tuple[int, ...]):
    """An image file as a tensor of the model's input ``shape`` (C, H, W) with values in [0, 1];
    ``DataError`` (one line) when it cannot be read or does not have that size and channel count."""

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode, size = img.mode, img.size
            if mode in ("P", "PA"):
                img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
            bands = img.getbands()
            colour = len(bands) >= 3
            array = np.asarray(img.convert("RGB" if colour else "L"))
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as an image: {exc}") from None
    channels = 3 if colour else 1
    got = (channels, size[1], size[0])
    if len(shape) != 3:
        raise DataError(f"{path} is an image, but the model takes data of shape {tuple(shape)}")
    if got != tuple(shape):
        raise DataError(
            f"{path} is a {'colour' if colour else 'grayscale'} {size[0]}x{size[1]} image {got}, "
            f"but the model takes {tuple(shape)} (C, H, W)"
        )
    x = torch.from_numpy(array.astype(np.float32) / 255.0)  # (H, W) or (H, W, 3)
    return x.unsqueeze(0) if channels == 1 else x.permute(2, 0, 1).contiguous()


def _input_spec(text: str, shape: tuple[int, ...]):
    """An index (a whole number) or an image file."""
    try:
        return int(text)
    except ValueError:
        pass
    if not Path(text).exists():
        raise DataError(f"{text!r} is neither an example index nor an existing image file")
    return read_image(text, shape), Path(text).name


def run_interpolate(args: argparse.Namespace) -> int:
    views = _views(args)
    if views.is_sequences:  # A and B: indices or strings; the strings decoded along the line
        view = views.interpolation(*args.between, steps=args.steps)
        print("\n".join(f"{t:5.2f}  {s}" for t, s in zip(torch.linspace(0, 1, args.steps).tolist(), view.result)))
        print(f"wrote the interpolation ({args.steps} steps) to {_save(view, args, views, 'interpolation.png')}")
        return 0
    views.require_images("interpolation")
    a, b = (_input_spec(t, views.model.input_shape) for t in args.between)
    methods = ("linear", "slerp") if args.method == "both" else (args.method,)
    view = views.interpolation(a, b, steps=args.steps, methods=methods)
    path = _save(view, args, views, "interpolation.png")
    print(f"wrote the {' and '.join(methods)} interpolation ({args.steps} steps) to {path}")
    return 0


def run_traverse(args: argparse.Namespace) -> int:
    views = _views(args)
    view = views.traversal(args.k, dims=args.dims, steps=args.steps, span=args.span, width=args.width, at=args.at, index=args.index)
    path = _save(view, args, views, "traversal.png")
    dims = ", ".join(f"z{int(d)}" for d in view.result.dims)
    print(f"wrote the traversal of {dims} to {path}")
    return 0


def run_manifold(args: argparse.Namespace) -> int:
    views = _views(args)
    low, high = args.p_range
    if not low < high:
        raise ConfigError(f"--p-range needs LOW < HIGH, got {low:g} {high:g}")
    view = views.manifold(args.n, dims=tuple(args.dims) if args.dims else None, at=args.at, index=args.index, p_range=(low, high))
    path = _save(view, args, views, "manifold.png")
    i, j = view.result.dims
    print(f"wrote the {args.n}x{args.n} manifold over z{i} and z{j} to {path}")
    return 0


def run_embed(args: argparse.Namespace) -> int:

    views = _views(args)
    view = views.embedding(sample_codes=args.sample, method=args.method)
    png = _save(view, args, views, "embedding.png")
    codes = view.result.codes.numpy().astype(np.float32)  # (N, L)
    npy, csv_path = png.with_suffix(".npy"), png.with_suffix(".csv")
    buf = BytesIO()
    np.save(buf, codes)
    atomic_write_bytes(npy, buf.getvalue())
    header = [f"z{d}" for d in range(codes.shape[1])]
    labels = view.result.labels
    lines = [",".join((["label"] if labels is not None else []) + header)]
    for i, row in enumerate(codes):
        cells = [f"{v:.7g}" for v in row]
        lines.append(",".join(([str(int(labels[i]))] if labels is not None else []) + cells))
    atomic_write_bytes(csv_path, ("\n".join(lines) + "\n").encode())
    print(
        f"wrote {len(codes)} codes of dimension {codes.shape[1]} to {npy} and {csv_path}" + (" (with labels)" if labels is not None else "")
    )
    print(f"wrote the scatter plot to {png}")
    return 0


def run_denoise(args: argparse.Namespace) -> int:

    views = _views(args)
    compare = load(args.compare) if args.compare else None
    view = views.denoising(args.n, noise=args.noise, level=args.noise_level, compare=compare)
    result = view.result[0] if isinstance(view.result, tuple) else view.result
    path = _save(view, args, views, "denoising.png")
    print(
        f"mean PSNR: corrupted {result.psnr_noisy.mean():.2f} dB, denoised {result.psnr_denoised.mean():.2f} dB "
        f"(MSE {result.mse_noisy.mean():.4f} -> {result.mse_denoised.mean():.4f})"
    )
    print(f"wrote {len(result.clean)} corrupted / denoised / clean rows to {path}")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    views = _views(args)
    view = views.curves()
    path = _save(view, args, views, "curves.png")
    print(f"wrote the training curves ({len(view.result)} epochs) to {path}")
    return 0


def run_report(args: argparse.Namespace) -> int:

    path = write_report(load_run(args), args.output, split=args.split, seed=args.seed, layer=args.layer)
    print(f"wrote the report to {path}")
    return 0
