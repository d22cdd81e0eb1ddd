"""Pictures from arrays (``vaekit.plotting``): sizes that match the grid, labels where asked, never blank."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import plotting


def checker(n: int, c: int = 1, size: int = 8) -> torch.Tensor:
    """n distinct (c, size, size) images in [0, 1]: image i is a ramp of brightness (i + 1) / n."""
    ramp = torch.linspace(0, 1, size * size).view(1, size, size)
    return torch.stack([(ramp * (i + 1) / n).expand(c, -1, -1) for i in range(n)])


def test_image_grid_size_and_cells():
    imgs = checker(6)
    grid = plotting.image_grid(imgs, nrow=4, pad=2, min_cell=32)  # 8 px scaled by 4
    assert grid.shape == (2 * 34 + 2, 4 * 34 + 2, 1)
    # cell (row 1, col 1) is image 5, enlarged by nearest neighbour
    cell = grid[2 + 34 : 2 + 34 + 32, 2 + 34 : 2 + 34 + 32, 0]
    expected = (imgs[5, 0].repeat_interleave(4, 0).repeat_interleave(4, 1).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(cell, expected)
    assert (grid[:, :2] == 255).all()  # padding is white
    assert (grid[2 + 34 : 2 + 34 + 32, 2 + 2 * 34 :] == 255).all()  # the two unused cells too


def test_labelled_grid_keeps_the_grid_exact_in_the_bottom_right_corner():
    imgs = checker(12, c=3).view(3, 4, 3, 8, 8)
    plain = plotting.image_grid(imgs.flatten(0, 1), 4)
    pic = plotting.labelled_grid(imgs, row_labels=["first", "second\nline", "third"], col_labels=list("abcd"), title="a title")
    gh, gw = plain.shape[:2]
    assert pic.dtype == np.uint8 and pic.shape[2] == 3
    assert np.array_equal(pic[-gh:, -gw:], plain)
    left, top = pic.shape[1] - gw, pic.shape[0] - gh
    assert left > 20 and top > 20  # room was made for the labels ...
    assert (pic[-gh:, :left] < 128).any() and (pic[:top] < 128).any()  # ... and they were drawn (dark text)
    bare = plotting.labelled_grid(imgs)
    assert np.array_equal(bare, np.repeat(plain, 3, axis=2) if plain.shape[2] == 1 else plain)


def test_a_title_wider_than_the_grid_is_drawn_whole():
    imgs = checker(6, c=1).view(2, 3, 1, 8, 8)
    plain = plotting.image_grid(imgs.flatten(0, 1), 3)
    title = "each row: one dimension over quantiles of the prior; the others at the posterior mean of test #0, label 0"
    pic = plotting.labelled_grid(imgs, row_labels=["a", "b"], title=title)
    gh, gw = plain.shape[:2]
    assert pic.shape[1] > 400 > gw  # the picture grew to hold the title ...
    assert np.array_equal(pic[-gh:, -gw:], np.repeat(plain, 3, axis=2))  # ... with the grid still in the bottom-right corner
    title_band = pic[: pic.shape[0] - gh]
    dark_columns = np.nonzero((title_band < 128).any(axis=(0, 2)))[0]
    assert dark_columns.max() > pic.shape[1] - gw  # the title's text runs on past the grid's left edge, to its end
    assert (title_band[:, -3:] > 200).all()  # and stops before the picture's right edge


def test_labelled_grid_labels_a_column_subset_when_crowded_and_checks_counts():
    imgs = checker(20).view(1, 20, 1, 8, 8)
    labels = [f"{v:.2f}" for v in np.linspace(-1.64, 1.64, 20)]
    pic = plotting.labelled_grid(imgs, col_labels=labels, layout=plotting.GridLayout(min_cell=16, pad=0))
    assert pic.shape[1] == 20 * 16 and (pic[: pic.shape[0] - 16] < 128).any()
    with pytest.raises(ValueError):
        plotting.labelled_grid(imgs, row_labels=["a", "b"])
    with pytest.raises(ValueError):
        plotting.labelled_grid(imgs, col_labels=["a"])


def test_panels_put_pictures_side_by_side_under_titles():
    a = np.zeros((30, 40, 3), np.uint8)
    b = np.full((50, 20, 1), 100, np.uint8)
    pic = plotting.panels([a, b], ["a", "b"], gap=10)  # titles narrower than the pictures
    assert pic.shape[1] == 40 + 10 + 20 and pic.shape[0] > 50
    top = pic.shape[0] - 50
    assert (pic[top : top + 30, :40] == 0).all()  # panel a, black
    assert (pic[top:, 50:70] == 100).all()  # panel b, grey, after a and the gap
    assert (pic[:top] < 128).any()  # the titles


def _colours(pic: np.ndarray) -> set[tuple[int, int, int]]:
    """Saturated colours present in a picture (greys and anti-aliasing ignored)."""
    flat = pic.reshape(-1, 3).astype(int)
    sat = flat.max(1) - flat.min(1)
    return {tuple(c // 16) for c in flat[sat > 80]}


TRAIN_BLUE, VALID_ORANGE, BETA_PURPLE = np.array([31, 119, 180]), np.array([255, 127, 14]), np.array([148, 103, 189])  # C0, C1, tab:purple


def _pixels_of(pic: np.ndarray, rgb: np.ndarray, tol: int = 60) -> int:
    """How many pixels of ``pic`` (H, W, 3) are within ``tol`` (summed over channels) of the colour ``rgb``."""
    return int((np.abs(pic.astype(int) - rgb).sum(-1) < tol).sum())


def test_scatter_colours_each_label_and_is_not_blank():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2)) + np.repeat(np.arange(3), 100)[:, None] * 4
    labels = np.repeat(np.arange(3), 100)
    pic = plotting.scatter(xy, labels, axes=("z0", "z1"), title="three clusters")
    assert pic.ndim == 3 and pic.shape[2] == 3 and pic.shape[0] > 300
    assert pic.std() > 10
    unlabelled = plotting.scatter(xy)
    assert len(_colours(pic)) > len(_colours(unlabelled))


def test_training_curves_draw_every_panel():
    rows = [
        {
            "epoch": e,
            "beta": min(1.0, e / 5),
            "train_neg_elbo": 40 - e,
            "valid_neg_elbo": 41 - e,
            "train_reconstruction": 35 - e,
            "valid_reconstruction": 36 - e,
            "train_kl": 1 + e / 10,
            "valid_kl": 1.1 + e / 10,
        }
        for e in range(1, 21)
    ]
    pic = plotting.training_curves(rows, title="t")
    h, w = pic.shape[:2]
    quarters = [pic[: h // 2, : w // 2], pic[: h // 2, w // 2 :], pic[h // 2 :, : w // 2], pic[h // 2 :, w // 2 :]]
    # the three loss panels each draw a training line (matplotlib's first colour) and a validation line (its second) ...
    for quarter in quarters[:3]:
        assert _pixels_of(quarter, TRAIN_BLUE) > 50 and _pixels_of(quarter, VALID_ORANGE) > 50
    # ... and the fourth draws β alone, rising over the epochs: its purple pixels span much of the panel's height
    beta = quarters[3]
    assert _pixels_of(beta, TRAIN_BLUE) == 0 and _pixels_of(beta, VALID_ORANGE) == 0
    rows_with_purple = np.flatnonzero((np.abs(beta.astype(int) - BETA_PURPLE).sum(-1) < 60).any(1))
    assert rows_with_purple.max() - rows_with_purple.min() > beta.shape[0] // 3
    with pytest.raises(ValueError):
        plotting.training_curves([])


def test_png_bytes_round_trip(tmp_path):
    arr = (np.arange(24 * 16 * 3) % 256).astype(np.uint8).reshape(24, 16, 3)
    back = np.asarray(Image.open(BytesIO(plotting.png_bytes(arr))))
    assert np.array_equal(back, arr)
    gray = arr[..., :1]
    path = plotting.save_png(gray, tmp_path / "sub" / "g.png")
    assert np.array_equal(np.asarray(Image.open(path)), gray[..., 0])
