"""The form of the user's own array, kept in a ``.vkz`` file so that decompressing gives it back as it was.

A model codes examples in its input form: float32 in [0, 1], (C, H, W) images or (D,) rows. An array
read into that form from another (uint8 pixels, (H, W) images, (H, W, C) channel-last images, rows of
H*W values of a one-channel image) has that form recorded as the header's ``original``:

    dtype          the array's dtype ("uint8", "bool", "int64", "float64", ...)
    shape          one example's shape in the array
    scale          what its values were divided by on reading (255 for 8-bit pixels, else 1)
    channels_last  its examples are (H, W, C) images of the model's (C, H, W)

``describe`` records it only where going back reproduces the array exactly (checked on the data
before the file is written); ``restore`` goes back. A file without it (written before, or from a
source of the model's own form) decodes to the model's input form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "float32", "float64")
SCALES = (1.0, 255.0)
KEYS = ("dtype", "shape", "scale", "channels_last")


def describe(array: np.ndarray, x: torch.Tensor) -> dict[str, Any] | None:
    """The ``original`` record of ``array`` (N, ...) as it was read into ``x`` (N, *model shape); None
    where its form is the model's already, or where going back would not give the array exactly."""
    shape, model = tuple(array.shape[1:]), tuple(x.shape[1:])
    if array.dtype.name not in DTYPES or len(array) != len(x) or math.prod(shape) != math.prod(model):
        return None
    channels_last = len(shape) == 3 and len(model) == 3 and shape != model and shape == (*model[1:], model[0])
    for scale in SCALES:
        record = {"dtype": array.dtype.name, "shape": list(shape), "scale": scale, "channels_last": channels_last}
        if record == {"dtype": str(x.dtype).removeprefix("torch."), "shape": list(model), "scale": 1.0, "channels_last": False}:
            return None  # nothing to undo
        if np.array_equal(restore(x, record), array):
            return record
    return None


def restore(x: torch.Tensor, original: dict[str, Any]) -> np.ndarray:
    """Examples ``x`` (N, *model shape) in the ``original`` form: scaled back, rounded to an integer
    dtype (and clipped to its range: a lossy file's decoded values), and laid out as the array was."""
    dtype = np.dtype(original["dtype"])
    y = x.detach().cpu().numpy().astype(np.float64) * float(original["scale"])
    if dtype.kind == "b":
        y = y != 0
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    y = y.astype(dtype)
    if original["channels_last"]:
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)
    return y.reshape(len(y), *original["shape"])


def is_valid(original: Any, model_shape: list[int]) -> bool:
    """Whether a header's ``original`` is a record ``describe`` could have written for examples of ``model_shape``."""
    if not isinstance(original, dict) or set(original) != set(KEYS):
        return False
    shape, channels_last = original["shape"], original["channels_last"]
    if not (
        original["dtype"] in DTYPES
        and not isinstance(original["scale"], bool)
        and original["scale"] in SCALES
        and isinstance(channels_last, bool)
        and isinstance(shape, list)
        and 1 <= len(shape) <= 4
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
        and math.prod(shape) == math.prod(model_shape)
    ):
        return False
    return not channels_last or (len(model_shape) == 3 and shape == [*model_shape[1:], model_shape[0]])
