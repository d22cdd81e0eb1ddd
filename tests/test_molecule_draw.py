"""The molecule grid: every cell drawn, one caption size whatever the string's length, long captions cut
to the cell, an unreadable string in red."""

import numpy as np
import pytest

pytest.importorskip("rdkit")

from PIL import ImageFont

from vaekit.molecules.draw import CAPTION_HEIGHT, fitted, molecule_grid

CELL = 160


def caption_ink(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """The rows and columns (y, x) of the non-white pixels of one cell's caption band."""
    top = row * (CELL + CAPTION_HEIGHT) + CELL
    band = grid[top : top + CAPTION_HEIGHT, col * CELL : (col + 1) * CELL]
    return np.argwhere(band.min(axis=2) < 128)


def test_a_long_caption_is_cut_to_the_width_and_a_short_one_kept():
    font = ImageFont.load_default(12)
    assert fitted("CCO", font, 100) == "CCO"
    cut = fitted("C" * 80, font, 100)
    assert cut.endswith("...") and font.getlength(cut) <= 100
    assert font.getlength("C" * (len(cut) - 2) + "...") > 100  # the longest cut that fits


def test_the_grid_draws_each_molecule_with_captions_of_one_size():
    smiles = ["CCO", "C" * 60, "c1ccccc1", "C1CC("]
    grid = molecule_grid(smiles, cols=2, cell=CELL)
    assert grid.shape == (2 * (CELL + CAPTION_HEIGHT), 2 * CELL, 3) and grid.dtype == np.uint8
    for i in range(3):  # each readable molecule has ink in its picture
        row, col = divmod(i, 2)
        picture = grid[row * (CELL + CAPTION_HEIGHT) : row * (CELL + CAPTION_HEIGHT) + CELL, col * CELL : (col + 1) * CELL]
        assert (picture.min(axis=2) < 128).sum() > 50
    short, long = caption_ink(grid, 0, 0), caption_ink(grid, 0, 1)
    assert np.ptp(short[:, 0]) == np.ptp(long[:, 0])  # the same letters' height: one font size
    assert np.ptp(long[:, 1]) > 3 * np.ptp(short[:, 1]) and long[:, 1].max() < CELL  # longer, and inside its cell
    top = CELL + CAPTION_HEIGHT + CELL
    band = grid[top : top + CAPTION_HEIGHT, CELL : 2 * CELL].astype(int)
    red = (band[..., 0] > 140) & (band[..., 1] < 100) & (band[..., 2] < 100)
    assert red.sum() > 20  # "invalid: C1CC(" in red
