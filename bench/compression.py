"""Compression bench (issue 14): bits-back ANS with trained VAEs against standard codecs, in one run.

    python bench/compression.py --b1 runs/b1 --eight-bit runs/m8bb --threads 1

1. Binarized MNIST test set (10,000 images) with B1: the lossless rate (with and net of the initial
   bits) beside the test negative ELBO, compress and decompress throughput, and gzip / bz2 / lzma of
   the packed bits, PNG (1-bit) and WebP lossless per image, all in bits per pixel.
2. 8-bit MNIST test images with a discretised-likelihood model: rate and negative ELBO beside the
   same codecs on the raw bytes and the published bz2 / BB-ANS / Bit-Swap figures.
3. Lossy latent codes at several --latent-bits against JPEG and WebP (one file per image, and 10x10
   mosaics that amortise the headers): bits per image and PSNR, and the rate-distortion figure.
Timings are wall-clock on a shared machine: read them as rough.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results

import vaekit
from vaekit.compression import compress, decompress
from vaekit.compression import format as vkz
from vaekit.compression.lossy import compress_lossy
from vaekit.data import Dataset
from vaekit.evaluation import elbo_terms

LITERATURE_8BIT = {"bz2 (BB-ANS paper)": 1.42, "BB-ANS": 1.41, "Bit-Swap": 1.29}


def per_image_bytes(images: np.ndarray, fmt: str, **kw) -> int:
    """Total bytes of each image (H, W) uint8 saved as its own file."""
    total = 0
    for img in images:
        buf = io.BytesIO()
        pil = Image.fromarray(img)
        if fmt == "PNG1":  # a 1-bit PNG
            pil.convert("1").save(buf, format="PNG", **kw)
        else:
            pil.save(buf, format=fmt, **kw)
        total += buf.tell()
    return total


def codecs(images: np.ndarray, binary: bool) -> dict[str, float]:
    """Bits per pixel of standard lossless codecs over ``images`` (N, H, W) uint8 (binary: 0/255)."""
    pixels = images.size
    raw = np.packbits(images > 0).tobytes() if binary else images.tobytes()
    out = {
        "gzip -9": 8 * len(gzip.compress(raw, 9)) / pixels,
        "bz2 -9": 8 * len(bz2.compress(raw, 9)) / pixels,
        "lzma -9e": 8 * len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / pixels,
    }
    if binary:
        out["PNG 1-bit (per image)"] = 8 * per_image_bytes(images, "PNG1", optimize=True) / pixels
    else:
        out["PNG (per image)"] = 8 * per_image_bytes(images, "PNG", optimize=True) / pixels
    out["WebP lossless (per image)"] = 8 * per_image_bytes(images, "WEBP", lossless=True, quality=100, method=6) / pixels
    return out


def lossless(model, x: torch.Tensor, label: str) -> dict:
    n, dims = len(x), math.prod(x.shape[1:])
    neg_elbo = elbo_terms(model, Dataset(x), seed=0).neg_elbo.double()  # nats (N,), one latent sample as evaluate
    start = time.perf_counter()
    data = compress(model, x)
    t_c = time.perf_counter() - start
    start = time.perf_counter()
    y = decompress(model, data)
    t_d = time.perf_counter() - start
    assert torch.equal(x, y), "round trip failed"
    header, words = vkz.read(data)
    elbo_bits = neg_elbo.sum().item() / math.log(2)
    net = 32 * len(words) - header.initial_bits
    r = {
        "examples": n,
        "dims": dims,
        "file_bytes": len(data),
        "header_bytes": len(data) - 4 * len(words) - 18,
        "initial_bits": header.initial_bits,
        "batches": len(header.batches),
        "bits_per_pixel": 8 * len(data) / (n * dims),
        "bits_per_pixel_net_of_initial_bits": (8 * len(data) - header.initial_bits) / (n * dims),
        "stream_bits_per_pixel_net": net / (n * dims),
        "neg_elbo_nats": neg_elbo.mean().item(),
        "neg_elbo_bits_per_pixel": elbo_bits / (n * dims),
        "gap_percent": 100 * ((8 * len(data) - header.initial_bits) / elbo_bits - 1),
        "compress_images_per_s": n / t_c,
        "decompress_images_per_s": n / t_d,
        "lossless": True,
    }
    print(
        f"{label}: {r['bits_per_pixel']:.4f} bits/pixel "
        f"({r['bits_per_pixel_net_of_initial_bits']:.4f} net of {r['initial_bits']} initial bits); "
        f"neg ELBO {r['neg_elbo_nats']:.2f} nats = {r['neg_elbo_bits_per_pixel']:.4f} bits/pixel; gap {r['gap_percent']:+.2f}%; "
        f"{r['compress_images_per_s']:.0f} / {r['decompress_images_per_s']:.0f} images/s (compress / decompress)"
    )
    return r


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the PSNR (peak 1) of (N, H, W) arrays in [0, 1]."""
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    return float(np.mean(10 * np.log10(1 / np.maximum(mse, 1e-10))))


def rate_distortion(model, x: torch.Tensor) -> dict:
    """Lossy latent codes vs JPEG and WebP per image: bits per image and mean PSNR."""
    n = len(x)
    ref = x[:, 0].numpy().astype(np.float64)
    u8 = np.round(ref * 255).astype(np.uint8)
    out = {"vaekit lossy": [], "JPEG": [], "WebP": []}
    for bits in (1, 2, 3, 4, 5, 6, 8):
        data = compress_lossy(model, x, latent_bits=bits)
        header, words = vkz.read(data)
        y = decompress(model, data)[:, 0].numpy().astype(np.float64)
        out["vaekit lossy"].append(
            {
                "latent_bits": bits,
                "active_dims": len(header.active),
                "bits_per_image": 32 * len(words) / n,
                "file_bits_per_image": 8 * len(data) / n,
                "psnr": psnr(y, ref),
            }
        )
    for fmt, qualities in (("JPEG", (1, 5, 10, 25, 50, 75, 95)), ("WebP", (0, 5, 10, 25, 50, 75, 95))):
        for q in qualities:
            total, dec = 0, []
            for img in u8:
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format=fmt, quality=q)
                total += buf.tell()
                buf.seek(0)
                dec.append(np.asarray(Image.open(buf).convert("L"), dtype=np.float64) / 255)
            out[fmt].append({"quality": q, "bits_per_image": 8 * total / n, "psnr": psnr(np.stack(dec), ref)})
    for fmt, qualities in (("JPEG", (1, 5, 10, 25, 50, 75, 95)), ("WebP", (0, 5, 10, 25, 50, 75, 95))):
        name, side = f"{fmt} (10x10 mosaics)", 10  # headers amortised over 100 images, as the .vkz header is
        out[name] = []
        for q in qualities:
            total, dec = 0, []
            for m in range(0, n - n % (side * side), side * side):
                tiles = u8[m : m + side * side]
                h, w = tiles.shape[1:]
                mosaic = tiles.reshape(side, side, h, w).transpose(0, 2, 1, 3).reshape(side * h, side * w)
                buf = io.BytesIO()
                Image.fromarray(mosaic).save(buf, format=fmt, quality=q)
                total += buf.tell()
                buf.seek(0)
                back = np.asarray(Image.open(buf).convert("L"), dtype=np.float64) / 255
                dec.append(back.reshape(side, h, side, w).transpose(0, 2, 1, 3).reshape(side * side, h, w))
            used = len(dec) * side * side
            out[name].append({"quality": q, "bits_per_image": 8 * total / used, "psnr": psnr(np.concatenate(dec), ref[:used])})
    return out


def figure(rd: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    for name, style in (
        ("vaekit lossy", "o-"),
        ("JPEG", "s--"),
        ("WebP", "^--"),
        ("JPEG (10x10 mosaics)", "s:"),
        ("WebP (10x10 mosaics)", "^:"),
    ):
        pts = rd[name]
        ax.plot([p.get("file_bits_per_image", p["bits_per_image"]) for p in pts], [p["psnr"] for p in pts], style, label=name, ms=4)
    ax.set_xscale("log")
    ax.set_xlabel("bits per image (file sizes; log scale)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("8-bit MNIST test images: rate-distortion", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"figure written to {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--b1", default="runs/b1", help="the B1 run (binarized MNIST, bernoulli)")
    p.add_argument("--eight-bit", default=None, help="a run on 8-bit MNIST with a discretised likelihood")
    p.add_argument("--n8", type=int, default=10000, help="8-bit test images to code losslessly (default all 10,000)")
    p.add_argument("--n-rd", type=int, default=1000, help="8-bit test images for the rate-distortion curves")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/compression.json")
    p.add_argument("--figure", default="bench/results/compression-rd.png")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "note": "wall-clock timings on a 2-core machine shared with other jobs: rough"}

    run = vaekit.load(args.b1)
    x = run.load_data().test.x
    results["binarized_mnist"] = {
        "run": args.b1,
        "vaekit bits-back (B1)": lossless(run.model, x, "B1, binarized MNIST test"),
        "codecs": codecs((x[:, 0].numpy() * 255).astype(np.uint8), binary=True),
    }
    for k, v in results["binarized_mnist"]["codecs"].items():
        print(f"  {k:28s} {v:.4f} bits/pixel")

    if args.eight_bit:
        run8 = vaekit.load(args.eight_bit)
        x8 = run8.load_data().test.x
        r8 = lossless(run8.model, x8[: args.n8], f"{run8.config.model.likelihood}, 8-bit MNIST test[:{args.n8}]")
        results["mnist_8bit"] = {
            "run": args.eight_bit,
            "likelihood": run8.config.model.likelihood,
            "vaekit bits-back": r8,
            "codecs": codecs(np.round(x8[:, 0].numpy() * 255).astype(np.uint8), binary=False),
            "literature": LITERATURE_8BIT,
        }
        for k, v in results["mnist_8bit"]["codecs"].items():
            print(f"  {k:28s} {v:.4f} bits/pixel")
        rd = rate_distortion(run8.model, x8[: args.n_rd])
        results["rate_distortion"] = {"examples": args.n_rd, **rd}
        for name, pts in rd.items():
            print(f"  {name}: " + ", ".join(f"{pt['bits_per_image']:.0f} b/{pt['psnr']:.1f} dB" for pt in pts))
        figure(rd, Path(args.figure))
    write_results(args.out, results)


if __name__ == "__main__":
    main()
