"""Pictures of molecules: a grid of 2-D depictions drawn by RDKit, one cell per SMILES, with a caption each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vaekit.molecules import chem


def molecule_grid(smiles: Sequence[str], legends: Sequence[str] | None = None, *, cols: int = 4, cell: int = 220) -> np.ndarray:
    """uint8 (H, W, 3): the molecules of ``smiles`` drawn ``cols`` to a row, each ``cell`` pixels square,
    with its legend beneath (default: the SMILES); a string RDKit cannot read is an empty cell captioned "invalid"."""
    chem.require_rdkit()
    from PIL import ImageDraw, ImageFont
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols, captions = [], []
    for i, s in enumerate(smiles):
        mol = chem.parse(s)
        legend = legends[i] if legends is not None else s
        mols.append(mol if mol is not None else Chem.Mol())
        captions.append(legend if mol is not None else f"invalid: {legend}")
    captions = [c if len(c) <= 34 else c[:31] + "..." for c in captions]
    per_row = max(1, min(cols, len(mols)))
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(cell, cell), legends=captions).convert("RGB")
    pen = ImageDraw.Draw(image)  # RDKit leaves an empty molecule's cell blank, its legend too: write it
    for i, mol in enumerate(mols):
        if mol.GetNumAtoms() == 0:
            x, y = (i % per_row) * cell, (i // per_row) * cell
            pen.text((x + cell // 2, y + cell // 2), captions[i], fill=(180, 0, 0), anchor="mm", font=ImageFont.load_default(13))
    return np.asarray(image, dtype=np.uint8)


def molecule_pictures(smiles: Sequence[str], size: int = 160) -> np.ndarray:
    """uint8 (N, size, size, 3): each molecule drawn alone on white (no caption); a string RDKit cannot read
    is a white cell saying "invalid"."""
    chem.require_rdkit()
    from PIL import Image, ImageDraw, ImageFont
    from rdkit.Chem import Draw

    out = np.full((len(smiles), size, size, 3), 255, dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = chem.parse(s)
        if mol is not None:
            out[i] = np.asarray(Draw.MolToImage(mol, size=(size, size)).convert("RGB"), dtype=np.uint8)
        else:
            cell = Image.new("RGB", (size, size), "white")
            ImageDraw.Draw(cell).text((size // 2, size // 2), "invalid", fill=(180, 0, 0), anchor="mm", font=ImageFont.load_default(14))
            out[i] = np.asarray(cell, dtype=np.uint8)
    return out
