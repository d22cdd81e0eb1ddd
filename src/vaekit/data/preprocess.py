"""The preprocessing record, and the steps every source shares.

A source's ``info["preprocessing"]`` is a JSON-serialisable dict. ``format`` names the reader
("idx", "csv", "images", "npz", ...); reader keys say how the file was read (a CSV's feature
columns and label column, an image folder's classes, how an array was scaled); the generic
keys below say what was done to the tensors afterwards. Given back to
``load_data(..., preprocessing=...)`` the dict repeats exactly the same steps, with saved
statistics reused rather than recomputed; a partial dict (say ``{"label_column": "species"}``)
sets options and the rest is filled in and recorded.

Generic keys:
    image_size: [H, W] of images; other sizes are resized (bilinear, antialiased).
    channels: 1 or 3; RGB becomes gray with the ITU-R 601 weights (as PIL's "L"), gray is repeated.
    standardize: for flat data. ``False``; ``True`` (fit per-feature mean/std on the training
        split); or the fitted ``{"mean": [...], "std": [...]}``, which is what is recorded.
    context_standardize: the mean/std of the context vectors (a table's context columns), fitted on
        the training split like ``standardize`` and always applied, so a conditional model sees
        contexts of unit scale; recorded only for data with a context.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from vaekit.data.base import MAX_VALUES, Dataset
from vaekit.errors import DataError

GENERIC_KEYS = ("format", "image_size", "channels", "standardize", "context_standardize")
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_MIN_STD = 1e-12  # a constant column is centred, not scaled


def check_options(options: dict[str, Any], fmt: str, allowed: tuple[str, ...] = ()) -> None:
    """Refuse preprocessing saved for another format, and keys this format does not know."""
    saved = options.get("format")
    if saved is not None and saved != fmt:
        raise DataError(f"preprocessing was saved for a {saved!r} source, but this source is {fmt!r}")
    unknown = sorted(set(options) - set(GENERIC_KEYS) - set(allowed))
    if unknown:
        known = ", ".join(sorted(set(GENERIC_KEYS) | set(allowed)))
        raise DataError(f"unknown preprocessing option(s) {', '.join(unknown)} for a {fmt!r} source; known: {known}")


def for_source(saved: dict[str, Any], fmt: str | None) -> dict[str, Any]:
    """The preprocessing saved with a model, as options for a source of format ``fmt``.

    For the format it was saved for (or an unknown one): all of it. For another format, how the first
    source was read (its columns, classes, scaling rule, ``format``) says nothing about this one: the
    source is read by its own reader's rules (uint8 and PNG pixels scaled to [0, 1]), and only the steps
    on the model's input are kept: ``channels`` (gray and RGB converted into each other) and the fitted
    ``standardize`` and ``context_standardize`` statistics. The image size is not: images of another
    size are refused (by the caller's shape check), not resized.
    """
    if saved.get("format") in (None, fmt) or fmt is None:
        return saved
    return {k: saved[k] for k in ("channels", "standardize", "context_standardize") if k in saved}


def fit_to_shape(datasets: dict[str, Dataset], shape: tuple[int, ...] | list[int] | None, where: str) -> dict[str, Dataset]:
    """Flat examples read as the model's images where that layout is unambiguous.

    (N, H*W) rows become (N, 1, H, W) images, row by row (as ``.amat`` files and flattened MNIST hold
    them), when the model's input ``shape`` is a one-channel (1, H, W) image of exactly that many values;
    images of the same kind are returned as they are (the caller's shape check refuses another size).
    Refused with one line: flat rows of another length than the model's images, images for a model of
    flat rows, and flat rows of a multi-channel image (channels first and last cannot be told apart).
    """
    if shape is None or not datasets:
        return datasets
    x = next(iter(datasets.values())).x
    model = "x".join(map(str, shape))
    if x.dim() == 4 and len(shape) == 1:
        raise DataError(f"{where}: examples are {'x'.join(map(str, x.shape[1:]))} images, but the model takes rows of {shape[0]} values")
    if x.dim() != 2 or len(shape) != 3:
        return datasets
    if x.shape[1] != math.prod(shape):
        values = math.prod(shape)
        raise DataError(f"{where}: examples are rows of {x.shape[1]} values, but the model takes {model} images ({values} values)")
    if shape[0] != 1:
        c, h, w = shape
        raise DataError(
            f"{where}: rows of {x.shape[1]} values could be {model} images with channels first or last; "
            f"give them as (N, {h}, {w}, {c}) or (N, {c}, {h}, {w}) arrays"
        )
    return {k: _map(ds, lambda t: t.reshape(len(t), *shape)) for k, ds in datasets.items()}


def image_size_option(value: Any) -> tuple[int, int] | None:
    """Normalise an image size given as (H, W), [H, W] or one int for a square."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise DataError(f"image_size must be two positive integers (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def channels_option(value: Any) -> int | None:
    if value is None:
        return None
    if value not in (1, 3) or isinstance(value, bool):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {value!r}")
    return int(value)


def apply_steps(
    datasets: dict[str, Dataset], preprocessing: dict[str, Any], options: dict[str, Any], where: str, fit_on: str
) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """Apply the generic steps to every dataset; statistics are fitted on ``datasets[fit_on]``.

    Args:
        datasets: the splits, all with examples of one shape.
        preprocessing: what the reader recorded (may hold a reader default like ``standardize``).
        options: what the caller asked for or saved before; wins over the reader's defaults.
        where: names the source in error messages.
        fit_on: which dataset statistics (standardisation) are computed from.

    Returns the transformed datasets and the completed preprocessing record.
    """
    record = dict(preprocessing)
    x = datasets[fit_on].x
    size = image_size_option(options.get("image_size"))
    channels = channels_option(options.get("channels"))
    standardize = options.get("standardize", record.get("standardize", False))
    if x.dim() == 4:  # (N, C, H, W) images
        if standardize not in (False, None):
            raise DataError(f"{where}: standardize applies to flat (N, D) data, not images")
        size = size or (x.shape[2], x.shape[3])
        channels = channels or x.shape[1]
        n = sum(len(ds) for ds in datasets.values())
        if n * channels * size[0] * size[1] > MAX_VALUES:
            raise DataError(f"{where}: {n} images of {channels}x{size[0]}x{size[1]} are too many values for memory")
        datasets = {k: _map(ds, lambda t: resize(convert_channels(t, channels, where), size)) for k, ds in datasets.items()}
        record.update(image_size=list(size), channels=channels)
        record.pop("standardize", None)
    else:
        if size is not None or channels is not None:
            raise DataError(f"{where}: image_size and grayscale apply to images; this data is flat {tuple(x.shape[1:])}")
        if standardize in (False, None):
            record["standardize"] = False
        elif not x.is_floating_point():
            raise DataError(f"{where}: standardize applies to real values, not integer tokens")
        else:
            stats = fit_standardize(x) if standardize is True else check_stats(standardize, x.shape[1], where)
            datasets = {k: _map(ds, lambda t: apply_standardize(t, stats)) for k, ds in datasets.items()}
            record["standardize"] = stats
    context = datasets[fit_on].context
    if context is not None:
        saved = options.get("context_standardize")
        stats = fit_standardize(context) if saved in (None, True) else check_stats(saved, context.shape[1], where, "context_standardize")
        datasets = {k: dataclasses.replace(ds, context=apply_standardize(ds.context, stats)) for k, ds in datasets.items()}
        record["context_standardize"] = stats
    return datasets, record


def _map(ds: Dataset, fn: Any) -> Dataset:
    return dataclasses.replace(ds, x=fn(ds.x))


def convert_channels(x: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, channels, H, W): RGB to gray by luma weights, gray to RGB by repetition."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 3 and channels == 1:
        weights = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()  # (N, 3, H, W)
    raise DataError(f"{where}: cannot convert images with {c} channels to {channels}")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) images to ``size`` (bilinear, antialiased); values in [0, 1] stay there."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    in_unit = bool(x.min() >= 0 and x.max() <= 1)
    out = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0, 1) if in_unit else out


def fit_standardize(x: torch.Tensor) -> dict[str, list[float]]:
    """Per-feature mean and (population) std of (N, D) data; a constant feature gets std 1."""
    x64 = x.double()
    mean = x64.mean(dim=0)
    std = x64.std(dim=0, unbiased=False)
    std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
    return {"mean": mean.tolist(), "std": std.tolist()}


def apply_standardize(x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
    mean = torch.tensor(stats["mean"], dtype=torch.float64)
    std = torch.tensor(stats["std"], dtype=torch.float64)
    return ((x.double() - mean) / std).float()


def check_stats(stats: Any, dim: int, where: str, key: str = "standardize") -> dict[str, list[float]]:
    """Saved ``{"mean": [...], "std": [...]}`` statistics of ``dim`` features, checked (finite, positive stds)."""
    ok = isinstance(stats, dict) and set(stats) == {"mean", "std"}
    if ok:
        try:
            mean = [float(v) for v in stats["mean"]]
            std = [float(v) for v in stats["std"]]
        except (TypeError, ValueError):
            ok = False
        else:
            ok = len(mean) == len(std) == dim and all(math.isfinite(v) for v in mean + std) and min(std) > 0
    if not ok:
        raise DataError(f"{where}: {key} must be true, false or {{'mean': [...], 'std': [...]}} with {dim} positive stds each")
    return {"mean": mean, "std": std}
