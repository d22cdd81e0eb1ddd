"""MNIST, Fashion-MNIST (IDX files) and statically binarized MNIST (.npz or .amat files).

Files are looked for under a data root: ``data_dir`` if given, else ``$VAEKIT_DATA_DIR``, else
``~/.cache/vaekit``; each dataset first in its own subfolder (``<root>/mnist``,
``<root>/fashion-mnist``, ``<root>/binarized_mnist``) and then in the root itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

import vaekit.data.download as dl
from vaekit.data.arrays import make_dataset, npz_parts, open_npz, read_amat
from vaekit.data.base import SPLITS, Dataset, DataSplits, SourceSettings, register_dataset, split_parts
from vaekit.data.idx import read_idx
from vaekit.data.preprocess import check_options
from vaekit.errors import DataError, DataNotFound

ENV_VAR = "VAEKIT_DATA_DIR"
DEFAULT_ROOT = Path("~/.cache/vaekit")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
BINARIZED_NPZ = "binarized_mnist.npz"
BINARIZED_AMAT = tuple(f"binarized_mnist_{split}.amat" for split in SPLITS)
DIGITS = [str(d) for d in range(10)]
CLASS_NAMES = {  # label i's name, recorded in the data info (a run's data.json)
    "mnist": DIGITS,
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``data_dir``, else ``$VAEKIT_DATA_DIR``, else ``~/.cache/vaekit``."""
    root = data_dir or os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


def cache_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where vaekit keeps what it makes once (generated data, encodings): ``data_dir``, else
    ``$VAEKIT_DATA_DIR``, else ``$XDG_CACHE_HOME/vaekit``, else ``~/.cache/vaekit``."""
    if data_dir or os.environ.get(ENV_VAR) or not os.environ.get("XDG_CACHE_HOME"):
        return data_root(data_dir)
    return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vaekit"


@register_dataset("mnist", format="idx")
def load_mnist(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """MNIST digits, (1, 28, 28) in [0, 1]: 60k train split into train/valid, 10k test."""
    return _load_idx_dataset("mnist", settings, options)


@register_dataset("fashion-mnist", format="idx")
def load_fashion_mnist(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """Fashion-MNIST clothing images, (1, 28, 28) in [0, 1]: 60k train split into train/valid, 10k test."""
    return _load_idx_dataset("fashion-mnist", settings, options)


def _load_idx_dataset(name: str, settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    check_options(options, "idx", ("input_dtype", "divide_by", "layout"))
    root = data_root(settings.data_dir)
    files = _find_idx_files(name, root, settings.download)
    arrays = {key: read_idx(path) for key, path in files.items()}
    parts, steps = {}, {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        where = str(files[f"{prefix}-images-idx3-ubyte"])
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{where}: expected (N, 28, 28) uint8 images, got {images.shape} {images.dtype}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{files[f'{prefix}-labels-idx1-ubyte']}: expected {len(images)} labels, got {labels.shape}")
        parts[split], steps = make_dataset(images, labels, where, saved=steps or options)  # test follows train
    info = {"preprocessing": {"format": "idx", **steps}, "files": [str(p) for p in files.values()], "class_names": CLASS_NAMES[name]}
    return split_parts(parts, settings.valid_fraction, settings.seed, info)


def _find_idx_files(name: str, root: Path, download: bool) -> dict[str, Path]:
    """The four IDX files (``.gz`` or raw) of ``name``, downloading them first if asked and missing."""
    home = root / name
    best: dict[str, Path] = {}
    for directory in (home, root):
        found = {}
        for base in IDX_FILES:
            for candidate in (directory / f"{base}.gz", directory / base):
                if candidate.is_file():
                    found[base] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
        if len(found) > len(best):
            best, home = found, directory
    if download:
        missing = [f"{base}.gz" for base in IDX_FILES if base not in best]
        dl.download_dataset(name, home, files=missing)
        return _find_idx_files(name, root, download=False)
    missing = [f"{base}.gz" for base in IDX_FILES if base not in best]
    raise not_found(f"{name} files not found: place {', '.join(missing)} in {home}", downloadable=True)


def not_found(where: str, *, downloadable: bool) -> DataNotFound:
    """The error for a named dataset's missing files: ``where`` (what to place where), and, when
    ``downloadable``, how to fetch them (``download=True``; the CLI's ``--download``)."""
    if not downloadable:
        return DataNotFound(where, where=where)
    return DataNotFound(
        f"{where} (or pass download=True to fetch them, if online)",
        cli=f"{where} (or add --download to fetch them, if online)",
        where=where,
        downloadable=True,
    )


@register_dataset("binarized-mnist", format="binarized-mnist")
def load_binarized_mnist(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """Statically binarized MNIST, (1, 28, 28) in {0, 1}, with its own 50k/10k/10k train/valid/test split.

    Read from ``binarized_mnist.npz`` (keys train, valid, test, test_labels) or from the three
    ``binarized_mnist_{train,valid,test}.amat`` files. The settings' ``valid_fraction`` and ``seed`` are unused:
    the validation split is the published one.
    """
    check_options(options, "binarized-mnist")
    root = data_root(settings.data_dir)
    for directory in (root / "binarized_mnist", root / "binarized-mnist", root):
        npz = directory / BINARIZED_NPZ
        if npz.is_file():
            with open_npz(npz) as archive:
                arrays = npz_parts(archive)
            missing = [split for split in SPLITS if split not in arrays]
            if missing:
                raise DataError(f"{npz}: missing array(s) {', '.join(missing)}")
            sources = {split: npz for split in arrays}
            break
        if all((directory / name).is_file() for name in BINARIZED_AMAT):
            sources = {split: directory / name for split, name in zip(SPLITS, BINARIZED_AMAT)}
            arrays = {split: (read_amat(f), None) for split, f in sources.items()}
            break
    else:
        no_download = " (there is no checksummed download for it)" if settings.download else ""
        raise not_found(
            f"binarized-mnist files not found: place {BINARIZED_NPZ} or {', '.join(BINARIZED_AMAT)} "
            f"in {root / 'binarized_mnist'}{no_download}",
            downloadable=False,
        )
    parts = {split: _binary_images(x, y, f"{sources[split]} [{split}]") for split, (x, y) in arrays.items()}
    info = {"preprocessing": {"format": "binarized-mnist"}, "files": sorted({str(f) for f in sources.values()}), "class_names": DIGITS}
    return split_parts(parts, settings.valid_fraction, settings.seed, info)


def _binary_images(x: np.ndarray, y: np.ndarray | None, where: str) -> Dataset:
    """(N, 784) 0/1 values as (N, 1, 28, 28) float32 images."""
    if x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"{where}: expected (N, 784) binarized images, got shape {x.shape}")
    if not ((x == 0) | (x == 1)).all():
        raise DataError(f"{where}: values are not all 0 or 1")
    dataset, _ = make_dataset(x.reshape(-1, 28, 28).astype(np.uint8), y, where)
    return dataset
