"""Turning tensors into pictures. Nothing here trains or encodes: it draws arrays it is given.

Every function returns a picture as a uint8 array (H, W, C); ``save_png`` writes one and
``png_bytes`` encodes one (for the HTML report). Image grids are drawn pixel-exact with
Pillow (labels go in margins above and to the left, so the grid itself is the bottom-right
block of the picture); line and scatter plots use matplotlib's object API on an Agg canvas,
which touches no global backend state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vaekit.runs import metric_terms

MIN_CELL = 56  # images smaller than this many pixels are enlarged (nearest) so they can be seen
TEXT = (40, 40, 40)
FONT_SIZE = 13


def image_grid(images: torch.Tensor | np.ndarray, nrow: int, pad: int = 2, pad_value: float = 1.0, min_cell: int = MIN_CELL) -> np.ndarray:
    """Tile images (N, C, H, W) with values in [0, 1] into one uint8 picture (H', W', C) with C in {1, 3},
    ``nrow`` images per row; small images are scaled up by an integer factor."""
    x = torch.as_tensor(images).detach().float().cpu().clamp(0, 1)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"can only draw 1- or 3-channel images, got {c} channels")
    scale = cell_scale(h, w, min_cell)
    if scale > 1:
        x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        h, w = h * scale, w * scale
    ncol = nrow
    rows = -(-n // ncol)
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = x[i]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def cell_scale(h: int, w: int, min_cell: int = MIN_CELL) -> int:
    """The integer factor ``image_grid`` enlarges an h x w image by."""
    return max(1, -(-min_cell // max(h, w)))


def grid_columns(n: int) -> int:
    """Columns of a near-square grid of n images."""
    return max(1, math.ceil(math.sqrt(n)))


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W, C) or (H, W) array as a PNG (atomically); returns the path."""
    from vaekit.checkpoint import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, png_bytes(array))
    return path


def png_bytes(array: np.ndarray) -> bytes:
    """The PNG encoding of a uint8 (H, W, C) or (H, W) array."""
    from io import BytesIO

    from PIL import Image

    arr = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
    buf = BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


# ----- labelled grids (Pillow) ------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    try:  # matplotlib's own DejaVu Sans: the same on every machine, with Greek letters (σ) that Pillow's default font lacks
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)
    except (ValueError, OSError):  # pragma: no cover - a matplotlib without its fonts
        return ImageFont.load_default(size=size)


def _text_size(text: str, size: int = FONT_SIZE) -> tuple[int, int]:
    from PIL import Image, ImageDraw

    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, font=_font(size), spacing=2)
    return right - left, bottom - min(top, 0)


@dataclass(frozen=True)
class GridLayout:
    """How ``labelled_grid`` lays a grid out: ``pad`` pixels of ``pad_value`` between cells, cells of at
    least ``min_cell`` pixels (``image_grid``), text of ``font_size``, row labels aligned by ``row_align``
    (``right``: against the grid; ``left``: at the picture's edge)."""

    pad: int = 2
    pad_value: float = 1.0
    min_cell: int = MIN_CELL
    font_size: int = FONT_SIZE
    row_align: str = "right"


def labelled_grid(
    images: torch.Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    corner: str | None = None,
    layout: GridLayout = GridLayout(),
) -> np.ndarray:
    """Images (R, K, C, H, W) in [0, 1] as an R x K grid with text around it -> uint8 (H', W', 3).

    row_labels: R strings (may hold newlines) left of each row, aligned by ``layout.row_align``.
    col_labels: K strings centred above each column; when they do not fit side by side, every
        s-th one is drawn (first and last always).
    title: one line above everything. corner: a short line above the row labels (an axis name).
    layout: spacing, cell size, font size and row-label alignment (``GridLayout``).
    The grid is exactly ``image_grid(images.flatten(0, 1), K, pad, pad_value, min_cell)`` and sits in the
    bottom-right corner.
    """
    from PIL import Image, ImageDraw

    pad, pad_value, min_cell, font_size, row_align = layout.pad, layout.pad_value, layout.min_cell, layout.font_size, layout.row_align
    images = torch.as_tensor(images)
    rows, cols = images.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    grid = image_grid(images.flatten(0, 1), cols, pad=pad, pad_value=pad_value, min_cell=min_cell)
    if grid.shape[2] == 1:
        grid = np.repeat(grid, 3, axis=2)
    gh, gw = grid.shape[:2]
    scale = cell_scale(*images.shape[-2:], min_cell)
    ch, cw = images.shape[-2] * scale, images.shape[-1] * scale
    line = _text_size("Ag", font_size)[1] + 4
    left = 0
    if row_labels is not None or corner:
        widths = [_text_size(t, font_size)[0] for t in (row_labels or [])] + [_text_size(corner or "", font_size)[0]]
        left = max(widths) + (10 if row_align == "right" else 14)
    top = (line + 4 if title else 0) + (line if col_labels is not None else 0) + (line if corner and col_labels is None else 0)
    if title:  # a title wider than the labels and grid widens the picture on the left: the grid stays in the bottom-right corner
        left = max(left, _text_size(title, font_size + 1)[0] + 8 - gw)
    canvas = Image.new("RGB", (left + gw, top + gh), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (left, top))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    y = 2
    if title:
        draw.text((4, y), title, fill=TEXT, font=_font(font_size + 1))
        y += line + 4
    if col_labels is not None:
        widest = max(_text_size(t, font_size)[0] for t in col_labels) + 6
        stride = max(1, math.ceil(widest / (cw + pad)))
        show = list(range(0, cols, stride))
        if show[-1] != cols - 1:  # the last column always gets its label, replacing a too-close neighbour
            show[-1 if cols - 1 - show[-1] < stride and len(show) > 1 else len(show) :] = [cols - 1]
        for k in show:
            tw = _text_size(col_labels[k], font_size)[0]
            x = left + pad + k * (cw + pad) + cw // 2 - tw // 2
            draw.text((min(max(x, left), left + gw - tw), y), col_labels[k], fill=TEXT, font=font)
    if corner:
        draw.text((4, top - line), corner, fill=TEXT, font=font)
    for r, text in enumerate(row_labels or []):
        tw, th = _text_size(text, font_size)
        cy = top + pad + r * (ch + pad) + ch // 2
        x = left - 6 - tw if row_align == "right" else 4
        draw.multiline_text((x, cy - th // 2), text, fill=TEXT, font=font, spacing=2, align=row_align)
    return np.asarray(canvas)


def panels(pictures: Sequence[np.ndarray], titles: Sequence[str], gap: int = 16, font_size: int = FONT_SIZE + 1) -> np.ndarray:
    """Pictures (H_i, W_i, C) side by side, each under its title -> uint8 (H, W, 3)."""
    from PIL import Image, ImageDraw

    pics = [np.repeat(p, 3, axis=2) if p.ndim == 3 and p.shape[2] == 1 else p for p in pictures]
    line = _text_size("Ag", font_size)[1] + 8
    widths = [max(p.shape[1], _text_size(t, font_size)[0] + 4) for p, t in zip(pics, titles)]
    height = line + max(p.shape[0] for p in pics)
    canvas = Image.new("RGB", (sum(widths) + gap * (len(pics) - 1), height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for p, t, w in zip(pics, titles, widths):
        draw.text((x + 2, 2), t, fill=TEXT, font=_font(font_size))
        canvas.paste(Image.fromarray(p), (x, line))
        x += w + gap
    return np.asarray(canvas)


# ----- plots (matplotlib, Agg canvas) -----------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_array(fig) -> np.ndarray:
    """Render a matplotlib figure (with an Agg canvas) to uint8 (H, W, 3)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def scatter(
    xy: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    names: Sequence[str] | None = None,
    axes: tuple[str, str] = ("z0", "z1"),
    title: str = "",
    size: tuple[float, float] = (6.4, 5.4),
) -> np.ndarray:
    """A scatter plot of points (N, 2), coloured by ``labels`` (N,) if given -> uint8 (H, W, 3), ``size`` inches at 100 dpi.

    names: integer label i's name in the legend (``names[i]``; labels beyond it by number), legend in label order."""
    xy = np.asarray(xy, dtype=float)
    fig = _figure(*size)
    ax = fig.add_subplot()
    dot = float(np.clip(3000 / max(len(xy), 1), 3, 30))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=dot, alpha=0.7, color="tab:blue", linewidths=0)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        if len(classes) <= 20:
            import matplotlib

            cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
            for i, c in enumerate(classes):
                pts = xy[labels == c]
                name = names[int(c)] if names is not None and 0 <= int(c) < len(names) else str(c)
                ax.scatter(pts[:, 0], pts[:, 1], s=dot, alpha=0.75, color=cmap(i), linewidths=0, label=name)
            ax.legend(
                title="class" if names is not None else "label",
                loc="center left",
                bbox_to_anchor=(1.01, 0.5),
                frameon=False,
                markerscale=max(1.0, 6 / math.sqrt(dot)),
            )
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=dot, c=labels, cmap="viridis", alpha=0.75, linewidths=0)
            fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.25)
    return figure_array(fig)


CURVES = {  # the ELBO family's terms: their panel titles; another objective's terms get a panel each, titled by name
    "neg_elbo": "negative ELBO (nats)",
    "reconstruction": "reconstruction −log p(x|z) (nats)",
    "kl": "KL(q(z|x) ‖ p(z)) (nats)",
}


def curve_terms(rows: Sequence[dict[str, float]]) -> list[str]:
    """The terms ``training_curves`` draws a panel for: every term the objective reported but the
    loss (the ELBO family's loss is the negative ELBO or a bound beside it), or the loss alone."""
    return [t for t in metric_terms(list(rows)) if t != "loss"] or ["loss"]


def training_curves(rows: Sequence[dict[str, float]], *, title: str = "") -> np.ndarray:
    """Per-epoch metrics (rows of metrics.csv) as panels: one per term the objective reports (train
    and validation; the loss itself where it differs from the negative ELBO's panel only by an
    objective's own terms is left out) and the β schedule -> uint8 (H, W, 3)."""
    if not rows:
        raise ValueError("no metrics to plot")
    terms = curve_terms(rows)
    epochs = np.array([r["epoch"] for r in rows])
    panels = len(terms) + 1
    fig = _figure(10, 2.7 * math.ceil(panels / 2))
    axs = np.atleast_1d(fig.subplots(math.ceil(panels / 2), 2)).flat
    for ax, key in zip(axs, terms):
        for split, style in (("train", "-"), ("valid", "--")):
            values = np.array([r.get(f"{split}_{key}", np.nan) for r in rows], dtype=float)
            if np.isfinite(values).any():
                ax.plot(
                    epochs,
                    values,
                    style,
                    label="train" if split == "train" else "validation",
                    lw=1.5,
                    marker="o" if len(rows) == 1 else None,
                )
        _zoom(ax, [r.get(f"valid_{key}", np.nan) for r in rows] + [r.get(f"train_{key}", np.nan) for r in rows])
        ax.set_title(CURVES.get(key, key.replace("_", " ")), fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(frameon=False, fontsize=9)
        ax.grid(alpha=0.25)
    ax = fig.axes[len(terms)]
    ax.plot(epochs, [r.get("beta", np.nan) for r in rows], color="tab:purple", lw=1.5, marker="o" if len(rows) == 1 else None)
    ax.set_title("β (KL weight) at the end of each epoch", fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylim(bottom=0, top=max(1.05 * max(r.get("beta", 0.0) for r in rows), 0.1))
    ax.grid(alpha=0.25)
    for spare in fig.axes[panels:]:
        spare.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return figure_array(fig)


def _zoom(ax, values: list[float]) -> None:
    """Keep the first epochs' large losses from flattening the rest: cap the y range a little
    above the 90th percentile of the values when the largest ones lie far beyond it."""
    v = np.array(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 10:
        return
    lo, hi = np.percentile(v, 1), np.percentile(v, 90)
    top = hi + 0.6 * (hi - lo) if hi > lo else hi + 1
    if top < v.max():
        ax.set_ylim(lo - 0.05 * (top - lo), top)


def heatmap(
    shares: np.ndarray,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    axes: tuple[str, str],
    cells: np.ndarray | None = None,
    scale: str = "",
    title: str = "",
) -> np.ndarray:
    """A matrix (R, K) of values in [0, 1] as a heat map -> uint8 (H, W, 3).

    rows, columns: the names along the y and x axes; axes: their titles (y, x).
    cells: the text written in each cell (R, K) (empty strings for none; default: the values, 2 decimals).
    scale: the colour bar's label.
    """
    shares = np.asarray(shares, dtype=float)
    r, k = shares.shape
    cells = np.vectorize(lambda v: f"{v:.2f}")(shares) if cells is None else np.asarray(cells)
    fig = _figure(max(4.0, 0.5 * k + 2.6), max(3.0, 0.4 * r + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, label=scale, shrink=0.8)
    for (i, j), text in np.ndenumerate(cells):
        if text:
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shares[i, j] > 0.5 else "black")
    crowded = sum(map(len, columns)) > 5 * k  # names too long to sit side by side
    ax.set_xticks(range(k), labels=list(columns), rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_yticks(range(r), labels=list(rows))
    ax.set_ylabel(axes[0])
    ax.set_xlabel(axes[1])
    if title:
        ax.set_title(title, fontsize=11)
    return figure_array(fig)


def confusion_matrix(counts: np.ndarray, names: Sequence[str], *, title: str = "") -> np.ndarray:
    """A confusion matrix (K, K) of counts (row: true class, column: predicted) as a heat map of each
    true class's shares with each cell's count written in it -> uint8 (H, W, 3)."""
    counts = np.asarray(counts)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # each true class's row as shares
    cells = np.where(counts > 0, counts.astype(int).astype(str), "")
    return heatmap(
        shares, rows=names, columns=names, axes=("true class", "predicted class"), cells=cells, scale="share of the true class", title=title
    )


def text_lines(lines: Sequence[str], font_size: int = FONT_SIZE, pad: int = 8) -> np.ndarray:
    """Lines of text, one under another on white -> uint8 (H, W, 3) (strings a sequence model wrote)."""
    from PIL import Image, ImageDraw

    lines = list(lines) or [""]
    font = _font(font_size)
    sizes = [_text_size(line, font_size) for line in lines]
    step = max(h for _, h in sizes) + 4
    image = Image.new("RGB", (max(w for w, _ in sizes) + 2 * pad, step * len(lines) + 2 * pad), "white")
    pen = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        pen.text((pad, pad + i * step), line, fill=TEXT, font=font)
    return np.asarray(image, dtype=np.uint8)
