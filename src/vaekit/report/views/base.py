"""What every view returns (``View``), and the picture layout two views share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import vaekit.plotting as plotting


@dataclass
class View:
    """picture: uint8 (H, W, 3) or (H, W, 1); caption: one sentence saying what it shows;
    result: the numbers behind it (a dataclass from ``vaekit.latent`` / ``vaekit.generation``, or None)."""

    picture: np.ndarray
    caption: str
    result: Any = None


def paired_rows(top: torch.Tensor, bottom: torch.Tensor, cols: int) -> np.ndarray:
    """Images top (N, *shape) and bottom (N, *shape) as a grid of ``cols`` columns: a row of top, then
    the row of bottom beneath it (white cells fill the last pair of rows)."""
    n, cols = len(top), min(len(top), cols)
    rows = []
    for start in range(0, n, cols):
        chunk = slice(start, start + cols)
        filler = torch.ones(cols - len(top[chunk]), *top.shape[1:])
        rows += [torch.cat([top[chunk], filler]), torch.cat([bottom[chunk], filler])]
    return plotting.image_grid(torch.cat(rows), cols)
