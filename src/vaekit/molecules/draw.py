"""Pictures of molecules: a grid of 2-D depictions drawn by RDKit, one cell per SMILES, with a caption each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vaekit.molecules import chem

CAPTION_FONT = 12  # one caption size for every cell (RDKit's own legends shrink to fit each string)
CAPTION_HEIGHT = 22


def molecule_grid(smiles: Sequence[str], legends: Sequence[str] | None = None, *, cols: int = 4, cell: int = 220) -> np.ndarray:
    """uint8 (H, W, 3): the molecules of ``smiles`` drawn ``cols`` to a row, each ``cell`` pixels square,
    with its legend beneath (default: the SMILES) in one font size, cut with "..." where wider than the
    cell; a string RDKit cannot read is a cell saying "invalid", captioned in red."""
    from PIL import Image, ImageDraw, ImageFont

    mols = parsed(smiles)
    pictures = drawn(mols, size=cell)
    font = ImageFont.load_default(CAPTION_FONT)
    per_row = max(1, min(cols, len(smiles)))
    rows = -(-len(smiles) // per_row)
    canvas = Image.new("RGB", (per_row * cell, rows * (cell + CAPTION_HEIGHT)), "white")
    pen = ImageDraw.Draw(canvas)
    for i, s in enumerate(smiles):
        x, y = (i % per_row) * cell, (i // per_row) * (cell + CAPTION_HEIGHT)
        canvas.paste(Image.fromarray(pictures[i]), (x, y))
        legend = legends[i] if legends is not None else s
        valid = mols[i] is not None
        caption = fitted(legend if valid else f"invalid: {legend}", font, cell - 8)
        pen.text((x + cell // 2, y + cell + CAPTION_HEIGHT // 2), caption, fill=(0, 0, 0) if valid else (180, 0, 0), anchor="mm", font=font)
    return np.asarray(canvas, dtype=np.uint8)


def fitted(text: str, font, width: float) -> str:
    """``text``, or its longest beginning followed by "..." that is at most ``width`` pixels wide in ``font``."""
    if font.getlength(text) <= width:
        return text
    lo, hi = 0, len(text)  # the longest cut that fits lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if font.getlength(text[:mid] + "...") <= width else (lo, mid)
    return text[:lo] + "..."


def molecule_pictures(smiles: Sequence[str], size: int = 160) -> np.ndarray:
    """uint8 (N, size, size, 3): each molecule drawn alone on white (no caption); a string RDKit cannot read
    is a white cell saying "invalid"."""
    return drawn(parsed(smiles), size)


def parsed(smiles: Sequence[str]) -> list:
    """RDKit's molecule of each string (None where it cannot read one)."""
    chem.require_rdkit()
    return [chem.parse(s) for s in smiles]


def drawn(mols: Sequence, size: int) -> np.ndarray:
    """uint8 (N, size, size, 3): each molecule of ``mols`` drawn alone on white; None a cell saying "invalid"."""
    from PIL import Image, ImageDraw, ImageFont
    from rdkit.Chem import Draw

    out = np.full((len(mols), size, size, 3), 255, dtype=np.uint8)
    for i, mol in enumerate(mols):
        if mol is not None:
            out[i] = np.asarray(Draw.MolToImage(mol, size=(size, size)).convert("RGB"), dtype=np.uint8)
        else:
            cell = Image.new("RGB", (size, size), "white")
            ImageDraw.Draw(cell).text((size // 2, size // 2), "invalid", fill=(180, 0, 0), anchor="mm", font=ImageFont.load_default(14))
            out[i] = np.asarray(cell, dtype=np.uint8)
    return out
