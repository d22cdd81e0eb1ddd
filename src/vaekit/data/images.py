"""Folders of PNG and JPEG images, searched recursively, with class subfolders as labels.

When every image lies in a subfolder and there are at least two subfolders, the first folder
level names the class (``root/cat/1.png`` has class "cat"; classes are sorted by name). Images
are decoded with PIL restricted to the PNG and JPEG decoders, converted to gray ("L") or RGB,
resized bilinearly to one size, and stacked into one (N, C, H, W) float32 tensor in [0, 1].

Preprocessing keys (all recorded, and reused when given back):
    image_size: [H, W]; default the first image's size, and then every image must have it.
    channels: 1 or 3; default 1 when every image is grayscale, else 3.
    classes: the class names (label i is ``classes[i]``), or None for no labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vaekit.data.base import MAX_VALUES, Dataset
from vaekit.data.files import parsing
from vaekit.data.preprocess import channels_option, check_options, image_size_option
from vaekit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIL_FORMATS = ("PNG", "JPEG")  # never let PIL guess other formats from the bytes
MAX_PIXELS = 2**26  # per image; larger headers are refused before decoding
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
OPTIONS = ("classes",)


def read_image_folder(path: Path, options: dict[str, Any]) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """Read every image under ``path`` into {"train": Dataset (N, C, H, W)} and its preprocessing record."""
    check_options(options, "images", OPTIONS)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(path).parts) and p.is_file()
    )
    if not files:
        raise DataError(f"no PNG or JPEG images found under {path}")
    labels, classes = _labels(path, files, options)

    headers = [_header(f) for f in files]  # (mode, (width, height))
    size = image_size_option(options.get("image_size"))
    if size is None:
        width, height = headers[0][1]
        size = (height, width)
        for f, (_, (w, h)) in zip(files, headers):
            if (h, w) != size:
                raise DataError(f"{f} is {w}x{h} but {files[0].name} is {width}x{height}; pass image_size to resize all images")
    channels = channels_option(options.get("channels"))
    if channels is None:
        channels = 1 if all(mode in GRAY_MODES for mode, _ in headers) else 3

    if len(files) * size[0] * size[1] * channels > MAX_VALUES:
        raise DataError(f"{path}: {len(files)} images of {size[0]}x{size[1]} are too many values; pass a smaller image_size")
    pixels = np.empty((len(files), *size, channels), dtype=np.uint8)  # (N, H, W, C)
    for i, f in enumerate(files):
        pixels[i] = _decode(f, size, channels).reshape(*size, channels)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)  # (N, C, H, W)
    record = {"format": "images", "classes": classes, "image_size": list(size), "channels": channels}
    return {"train": Dataset(x.contiguous(), labels)}, record


def _labels(root: Path, files: list[Path], options: dict[str, Any]) -> tuple[torch.Tensor | None, list[str] | None]:
    """Class subfolder labels: auto-detected, or against the saved ``classes`` list."""
    folders = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else None for f in files]
    if "classes" in options:
        classes = options["classes"]
        if classes is None:
            return None, None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise DataError(f"classes must be a list of class folder names or None, got {classes!r}")
        lookup = {c: i for i, c in enumerate(classes)}
        for f, folder in zip(files, folders):
            if folder not in lookup:
                raise DataError(f"{f}: not in a known class folder ({', '.join(classes)})")
        return torch.tensor([lookup[folder] for folder in folders], dtype=torch.int64), classes
    if any(folder is None for folder in folders) or len(set(folders)) < 2:
        return None, None
    classes = sorted(set(folders))
    lookup = {c: i for i, c in enumerate(classes)}
    return torch.tensor([lookup[folder] for folder in folders], dtype=torch.int64), classes


def _open(f: Path) -> Image.Image:
    image = Image.open(f, formats=PIL_FORMATS)
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise DataError(f"{f}: image of {width}x{height} pixels is too large")
    return image


def _header(f: Path) -> tuple[str, tuple[int, int]]:
    with _pil_errors(f), _open(f) as image:
        return image.mode, image.size


def _decode(f: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (H, W) or (H, W, 3), converted and resized."""
    with _pil_errors(f), _open(f) as image:
        image.load()
        if image.mode.startswith("I"):  # 16/32-bit gray: keep the top 8 of 16 bits
            wide = np.asarray(image).astype(np.int64)
            image = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image)


@contextmanager
def _pil_errors(f: Path) -> Iterator[None]:
    """PIL's exceptions on a corrupt file, and its decompression-bomb warning, as DataError."""
    with parsing(f"cannot read image {f}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield
