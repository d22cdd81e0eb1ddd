"""``vaekit compress`` and ``vaekit decompress``: code data with a trained VAE into a ``.vkz`` file
(lossless bits-back ANS, or ``--lossy`` quantised latent codes) and back."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vaekit.cli.common import add_data_dir_argument, add_run_argument, load_run, positive_int, read_examples
from vaekit.threads import use_threads


def register(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="compress data with a trained VAE (lossless bits-back ANS, or --lossy latent codes)",
        description="Code SOURCE with the run's model into FILE.vkz. Lossless (default): bits-back coding with "
        "ANS, about the model's negative ELBO in bits per example; needs a discrete likelihood "
        "(bernoulli for binary data; beta-binomial or discretized-logistic for 8-bit data). "
        "--lossy: the posterior means quantised to --latent-bits bits per latent dimension.",
    )
    add_run_argument(p)
    p.add_argument("source", metavar="SOURCE", help="a dataset name (its --split) or a path (.npy/.npz, image folder, IDX, ...)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write the compressed file (.vkz)")
    p.add_argument(
        "--split",
        choices=["test", "valid", "train", "all"],
        help="which examples of SOURCE: test, valid, train, or all (every example of a path, in file order); "
        "default: all for a path, test for a dataset name",
    )
    add_data_dir_argument(p)
    p.add_argument("--lossy", action="store_true", help="store quantised posterior means instead (decoded with the decoder mean)")
    p.add_argument(
        "--latent-bits",
        type=positive_int,
        metavar="B",
        help="bits per latent dimension: bucket precision of bits-back coding (default 12), or the lossy code's size (default 8)",
    )
    p.add_argument("--batch-size", type=positive_int, help="examples coded together (default 1000 for binary data, fewer for 8-bit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_compress)

    p = sub.add_parser(
        "decompress",
        help="decode a .vkz file written by 'vaekit compress' with the same run",
        description="Decode FILE.vkz with the run whose model wrote it, into an .npy array or, for images, a folder of PNG files.",
    )
    add_run_argument(p)
    p.add_argument("file", metavar="FILE", help="a .vkz file written by 'vaekit compress'")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="an .npy file, or a folder for PNG images (image data only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_decompress)


class _Progress:
    """A progress bar that appears on the first update (so an early one-line error stands alone)."""

    def __init__(self, args, total: int, desc: str):
        self.quiet, self.total, self.desc, self.bar, self.done = args.quiet, total, desc, None, 0

    def __call__(self, n: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="ex", leave=False, disable=None, mininterval=0.5)
        self.bar.update(n - self.done)
        self.done = n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_compress(args: argparse.Namespace) -> int:
    import math

    from vaekit.compression import check_model, compress
    from vaekit.compression.lossy import compress_lossy
    from vaekit.examples import for_model

    r = load_run(args)
    if not args.lossy:
        check_model(r.model)  # before reading the data: an unsupported model is the likelier mistake
    examples, _, split = read_examples(r, args.source, args.split)
    x = examples.x
    labels = None if args.lossy else for_model(r.model, examples, f"the {split} split").model_context  # a CVAE's file carries them
    original = _original_form(args.source, split, x)  # the user's array, given back by decompress -o FILE.npy
    n, dims = len(x), math.prod(r.model.input_shape)
    progress = _Progress(args, n, "compressing")
    start = time.perf_counter()
    try:
        if args.lossy:
            data = compress_lossy(r.model, x, latent_bits=args.latent_bits or 8, original=original)
        else:
            bits = args.latent_bits or 12
            data = compress(r.model, x, latent_bits=bits, batch_size=args.batch_size, progress=progress, labels=labels, original=original)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    out = Path(args.output)
    _write_bytes(out, data)
    from vaekit.compression.format import read

    header, _ = read(data, str(out))
    bits = 8 * len(data)
    print(
        f"{n} examples ({dims} values each) -> {out}: {len(data):,} bytes, {bits / (n * dims):.4f} bits/dim, "
        f"{bits / n:.1f} bits per example ({'lossy, ' + str(header.latent_bits) + ' bits per latent' if args.lossy else 'lossless'})"
    )
    if not args.lossy:
        print(
            f"  initial bits {header.initial_bits} ({header.initial_bits / (n * dims):.5f} bits/dim over this file); "
            f"net of them {(bits - header.initial_bits) / (n * dims):.4f} bits/dim"
        )
    print(f"  {n / seconds:,.0f} examples/s ({seconds:.2f} s)")
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from vaekit.compression import decompress
    from vaekit.compression.format import check_header, read
    from vaekit.errors import DataError
    from vaekit.runs import load

    path = Path(args.file)
    if not path.is_file():
        raise DataError(f"no such file: {path}" if not path.exists() else f"{path} is not a regular file")
    r = load(args.run)
    use_threads(args.threads, r.config.model)
    data = path.read_bytes()
    header, _ = read(data, str(path))
    check_header(r.model, header, str(path))  # a file from another model is refused before any work
    progress = _Progress(args, header.count, "decompressing")
    start = time.perf_counter()
    try:
        x, labels = decompress(r.model, data, where=str(path), progress=progress, with_labels=True)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    out = Path(args.output)
    if out.suffix == ".npy" and header.original is not None:  # the array as the user gave it: its dtype and shape
        from vaekit.compression.original import restore

        x = restore(x, header.original)
    _write_array(out, x)
    also = ""
    if labels is not None:  # a CVAE's file carries the labels: beside the .npy as NAME.labels.npy, or labels.npy in the folder
        from vaekit.data.streaming import side_path

        where = side_path(out) if out.suffix == ".npy" else out / "labels.npy"
        _write_array(where, labels)
        also = f", their labels -> {where}"
    print(f"{len(x)} examples ({header.mode}) -> {out}{also}; {len(x) / seconds:,.0f} examples/s ({seconds:.2f} s)")
    return 0


def _original_form(source: str, split: str, x) -> dict | None:
    """The form of the array file SOURCE, read whole, for the .vkz header (``compression.original``);
    None for a dataset name, a split of a file, an image folder or a table (decoded as the model's input)."""
    import numpy as np
    import torch

    from vaekit.compression.original import describe
    from vaekit.data import dataset_names
    from vaekit.data.arrays import SPLIT_NAMES, array_format, npz_parts, open_npz, read_amat, read_npy
    from vaekit.data.idx import read_idx
    from vaekit.data.sources import resolve_path

    if split != "all" or source in dataset_names() or not isinstance(x, torch.Tensor):
        return None
    path = resolve_path(source)
    fmt = array_format(path) if path.is_file() else None
    if fmt == "npz":
        with open_npz(path) as archive:
            parts = npz_parts(archive)
        arrays = [parts[name][0] for name in SPLIT_NAMES if name in parts]
        if len({(a.dtype, a.shape[1:]) for a in arrays}) != 1:
            return None
        array = np.concatenate(arrays)
    elif fmt is not None:
        array = {"npy": read_npy, "amat": read_amat, "idx": read_idx}[fmt](path)
    else:
        return None
    return describe(array, x)


def _write_bytes(path: Path, data: bytes) -> None:
    from vaekit.checkpoint import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _write_array(out: Path, x) -> None:
    import io

    import numpy as np

    from vaekit.errors import ConfigError

    if out.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, x if isinstance(x, np.ndarray) else x.numpy(), allow_pickle=False)
        _write_bytes(out, buf.getvalue())
        return
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"{out}: the data are not images (shape {tuple(x.shape[1:])}); write an .npy file instead")
    import torch
    from PIL import Image

    pixels = x if x.dtype == torch.uint8 else (x.clamp(0, 1) * 255).round().to(torch.uint8)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(x) - 1)))
    for i, img in enumerate(pixels.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(out / f"{i:0{width}d}.png")
