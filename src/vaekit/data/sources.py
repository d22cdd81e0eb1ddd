"""``load_data``: a dataset name or a path in, train/valid/test tensors and a record of how they were made out.

A source is a registered dataset name ("digits", "mnist", "fashion-mnist", "binarized-mnist", "moses",
or any other ``register_dataset`` added), else a path: ``.npy``, ``.npz``, ``.amat``, an IDX
file, ``.csv``, a folder of PNG/JPEG images, or strings to read as token sequences
(``vaekit.data.sequences``: ``.smi``/``.txt`` files, and a ``.csv``/``.csv.gz`` column given a
``tokenizer``). Every source then goes through the same steps:
the generic preprocessing (``vaekit.data.preprocess``), checks (no empty split, finite values),
the value range inferred from the data, and one ``info`` record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vaekit.data.arrays import array_format, check_finite, infer_value_range, read_array_file
from vaekit.data.base import (
    REAL,
    SPLITS,
    TOKENS,
    Dataset,
    DataSplits,
    SourceSettings,
    check_partial_labels,
    dataset_format,
    dataset_names,
    describe,
    get_loader,
    split_parts,
)
from vaekit.data.images import read_image_folder
from vaekit.data.preprocess import apply_steps, fit_to_shape, image_size_option
from vaekit.data.preprocess import for_source as _for_format
from vaekit.data.sequences import SEQUENCES, is_csv_file, is_text_file, read_sequence_file
from vaekit.data.streaming import load_mapped, load_mapped_examples, shard_folder_splits, use_memmap
from vaekit.data.tables import read_csv
from vaekit.errors import DataError


def load_data(
    source: str = "digits",
    *,
    settings: SourceSettings = SourceSettings(),
    binarize: bool = False,
    image_size: tuple[int, int] | None = None,
    grayscale: bool | None = None,
    preprocessing: dict[str, Any] | None = None,
    expected_shape: tuple[int, ...] | list[int] | None = None,
) -> DataSplits:
    """Load a dataset as train, valid and (where the source has one) test splits.

    Args:
        source: a dataset name (see ``dataset_names()``; default "digits") or a path to an .npy/.npz/.amat/.csv
            file, an IDX file or a folder of images.
        settings: where a named dataset's files are and whether to download them, the validation
            split's share and seed, memory-mapped reading (``SourceSettings``).
        binarize: ask for dynamic binarization: the data stays in [0, 1] and
            ``info["dynamic_binarization"]`` tells the trainer to draw fresh Bernoulli samples
            per batch. Refused for real-valued data.
        image_size: (height, width) to resize images to (bilinear, antialiased).
        grayscale: True for 1-channel images, False for 3-channel; None keeps the source's
            (an image folder: gray when every image is gray).
        preprocessing: a saved ``info["preprocessing"]`` to repeat exactly (saved statistics,
            columns, classes, sizes are reused), or a partial dict of options such as
            ``{"label_column": "species"}`` or ``{"standardize": False}``.
        expected_shape: a trained model's example shape, for data read to be given to it: rows of
            exactly its number of values are read as its one-channel images (``preprocess.fit_to_shape``).

    ``preprocessing`` saved for a source of another format is applied as the steps on the model's
    input (``preprocess.for_source``), so a model reads the same examples from any kind of source.

    Returns ``DataSplits`` whose ``info`` (JSON-serialisable) records source, split_seed,
    valid_fraction (when a split was made), sizes, shape, value_range, dynamic_binarization,
    num_classes, class_names (label i's name, or None: ``base.class_names``), files and preprocessing
    (``base.describe``).

    Raises ``DataError`` for anything wrong with the source or its data.
    """
    s = settings
    options = for_source(_options(preprocessing, image_size, grayscale), source_format(source))
    if source in dataset_names():
        loader = get_loader(source)
        splits = loader(s, options)
        if splits.streaming:  # memory-mapped by its loader (dsprites), which checked the values and made the record
            return DataSplits(splits.train, splits.valid, splits.test, {**splits.info, "dynamic_binarization": bool(binarize)})
        name = source
    else:
        path = resolve_path(source)
        if use_memmap(path, s.memmap, options):
            return load_mapped(path, options, valid_fraction=s.valid_fraction, seed=s.seed, binarize=binarize)
        options.pop("memmap", None)
        parts, record, counts = _read_path(path, options)
        splits = split_parts(parts, s.valid_fraction, s.seed, {"preprocessing": record, "files": [str(path)], **counts})
        name = str(path)
    return _finish(splits, name, options, seed=s.seed, binarize=binarize, expected_shape=expected_shape)


def load_examples(
    source: str,
    *,
    preprocessing: dict[str, Any] | None = None,
    split: str | None = None,
    expected_shape: tuple[int, ...] | list[int] | None = None,
    settings: SourceSettings = SourceSettings(),
) -> Dataset:
    """Examples to score with a trained model, prepared exactly as its training data was.

    Args:
        source: as for ``load_data``.
        preprocessing: the run's saved ``info["preprocessing"]`` (for a source of another format,
            its steps on the model's input: ``preprocess.for_source``).
        split: "train", "valid" or "test" for that split as ``load_data`` makes it; None for
            every example of a path (all rows of a CSV, all arrays of an .npz), or the test
            split of a named dataset.
        expected_shape: the model's example shape (``info["shape"]``); rows of exactly its number of
            values are read as its one-channel images (``preprocess.fit_to_shape``), other shapes are refused.
        settings: as for ``load_data`` (``SourceSettings``).
    """
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split is not None or source in dataset_names():
        splits = load_data(source, settings=settings, preprocessing=preprocessing, expected_shape=expected_shape)
        split = split or "test"
        data = getattr(splits, split)
        if data is None:
            raise DataError(f"{source} has no {split} split")
    else:
        path = resolve_path(source)
        options = for_source(_options(preprocessing, None, None), source_format(path))
        if use_memmap(path, settings.memmap, options):
            data = load_mapped_examples(path, options)
        else:
            options.pop("memmap", None)
            parts, record = read_path(path, options)
            whole = fit_to_shape({"all": _concat([parts[name] for name in SPLITS if name in parts])}, expected_shape, str(path))
            datasets, _ = apply_steps(whole, record, options, str(path), fit_on="all")
            data = datasets["all"]
            check_finite(data.x, str(path))
    if expected_shape is not None and tuple(data.shape) != tuple(expected_shape):
        raise DataError(f"{source}: examples have shape {tuple(data.shape)} but the model expects {tuple(expected_shape)}")
    return data


def resolve_path(source: str | os.PathLike) -> Path:
    """``source`` as an existing path; "no such file" for a missing path, the name list for an unknown name."""
    path = Path(source).expanduser()
    looks_like_path = os.sep in str(source) or "/" in str(source) or path.suffix != "" or path.exists()
    if not looks_like_path:
        get_loader(str(source))  # raises: unknown dataset, with the list of names
    if not path.exists():
        raise DataError(f"no such file: {source}")
    return path.resolve()


def source_format(source: str | os.PathLike) -> str | None:
    """The ``format`` a source's preprocessing record names: a named dataset's (as registered), else by
    the path ("images", "npy-shards", "csv", "npy", "npz", "amat", "idx"); None where it cannot be told."""
    if str(source) in dataset_names():
        return dataset_format(str(source))
    path = Path(source).expanduser()
    if path.is_dir():
        return "npy-shards" if shard_folder_splits(path) is not None else "images"
    if is_text_file(path):
        return SEQUENCES
    return "csv" if is_csv_file(path) else array_format(path)


def for_source(saved: dict[str, Any], fmt: str | None) -> dict[str, Any]:
    """``preprocess.for_source``, but a sequence record stays whole (its tokenizer, vocabulary and length are
    what gives strings the model's ids, from a .smi file, a CSV column or MOSES alike)."""
    return saved if saved.get("format") == SEQUENCES else _for_format(saved, fmt)


def reads_sequences(path: Path, options: dict[str, Any]) -> bool:
    """Whether ``path`` is read as strings of tokens: a .smi/.txt file, or a CSV file given a tokenizer or a sequence record."""
    sequence_options = options.get("format") == SEQUENCES or options.get("tokenizer") is not None
    return is_text_file(path) or (is_csv_file(path) and sequence_options)


def read_path(path: Path, options: dict[str, Any]) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """Read a file or image folder into its splits ("train", maybe "valid"/"test") and its preprocessing record."""
    parts, record, _ = _read_path(path, options)
    return parts, record


def _read_path(path: Path, options: dict[str, Any]) -> tuple[dict[str, Dataset], dict[str, Any], dict[str, Any]]:
    """``read_path``, and what the reader records besides the preprocessing (for the ``info`` record)."""
    if reads_sequences(path, options):
        return read_sequence_file(path, options)
    return *_read_other(path, options), {}


def _read_other(path: Path, options: dict[str, Any]) -> tuple[dict[str, Dataset], dict[str, Any]]:
    if path.is_dir():
        return read_image_folder(path, options)
    if path.suffix.lower() == ".csv":
        return read_csv(path, options)
    if array_format(path) is not None:
        return read_array_file(path, options)
    raise DataError(
        f"{path}: unsupported file type {path.suffix or path.name!r}; "
        "give a .npy, .npz, .amat, .csv or IDX file, a folder of PNG/JPEG images, or strings (.smi, .txt; .csv.gz with a tokenizer)"
    )


def _options(preprocessing: Any, image_size: Any, grayscale: bool | None) -> dict[str, Any]:
    """One options dict from saved/partial preprocessing and the keyword arguments; conflicts are errors."""
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise DataError(f"preprocessing must be a dict (a saved info['preprocessing']), got {type(preprocessing).__name__}")
    options = dict(preprocessing or {})
    if image_size is not None:
        size = image_size_option(image_size)
        saved = image_size_option(options.get("image_size"))
        if saved is not None and saved != size:
            raise DataError(f"image_size {size} conflicts with the saved preprocessing's {saved}")
        options["image_size"] = list(size)
    if grayscale is not None:
        channels = 1 if grayscale else 3
        if options.get("channels") not in (None, channels):
            raise DataError(f"grayscale={grayscale} conflicts with the saved preprocessing's {options['channels']} channels")
        options["channels"] = channels
    return options


def _finish(
    splits: DataSplits, source: str, options: dict[str, Any], *, seed: int, binarize: bool, expected_shape: Any = None
) -> DataSplits:
    """The steps shared by every source: generic preprocessing, checks, value range, the info record."""
    datasets = {name: getattr(splits, name) for name in SPLITS if getattr(splits, name) is not None}
    for name, data in datasets.items():
        if len(data) == 0:
            raise DataError(f"{source}: the {name} split is empty")
        if data.shape != splits.train.shape:
            raise DataError(f"{source}: {name} examples have shape {data.shape} but train has {splits.train.shape}")
    datasets = fit_to_shape(datasets, expected_shape, source)
    info = dict(splits.info)
    datasets, record = apply_steps(datasets, info.pop("preprocessing", {}), options, source, fit_on="train")
    for name, data in datasets.items():
        check_finite(data.x, f"{source} ({name} split)")
        check_partial_labels(data.y, f"{source} ({name} split)")
    value_range = infer_value_range(*(data.x for data in datasets.values()))
    if binarize and value_range in (REAL, TOKENS):
        raise DataError(
            f"{source}: binarize needs values in [0, 1], but this data is {'real-valued' if value_range == REAL else 'integer tokens'}"
        )
    info = describe(source, seed, datasets, loader_info=info, value_range=value_range, binarize=binarize, preprocessing=record)
    return DataSplits(datasets["train"], datasets["valid"], datasets.get("test"), info)


def _concat(parts: list[Dataset]) -> Dataset:
    x = torch.cat([p.x for p in parts])
    labelled = all(p.y is not None for p in parts)
    with_context = all(p.context is not None for p in parts)
    with_lengths = all(p.lengths is not None for p in parts)
    return Dataset(
        x,
        torch.cat([p.y for p in parts]) if labelled else None,
        torch.cat([p.context for p in parts]) if with_context else None,
        lengths=torch.cat([p.lengths for p in parts]) if with_lengths else None,
    )
