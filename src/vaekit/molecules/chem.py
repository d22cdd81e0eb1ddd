"""RDKit behind one guard: parsing, canonical SMILES, Morgan bits, BRICS fragments, scaffolds and MOSES's filters.

RDKit is an optional dependency (``vaekit[molecules]``); this module imports without it and every
function that needs it raises a one-line ``ConfigError`` when it is missing. Parsing never raises:
a string RDKit cannot read (or anything that is not a string) is ``None``, and RDKit's own log
lines about it are silenced.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import ConfigError, DataError

try:
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdFingerprintGenerator
    from rdkit.Chem.Scaffolds import MurckoScaffold
except ImportError:  # the molecules extra is missing: fail where it is used, not on import
    Chem = None

MISSING = "install vaekit[molecules] (rdkit, selfies, fcd)"
FP_RADIUS, FP_BITS = 2, 1024  # MOSES's Morgan fingerprints for SNN and IntDiv
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})  # MOSES's filter: no other elements
MAX_RING_SIZE = 7  # MOSES's filter: a ring of 8 atoms or more fails
FILTER_FILES = ("mcf.csv", "wehi_pains.csv")


def require_rdkit() -> None:
    """Raise the one-line ``ConfigError`` when RDKit (the molecules extra) is not installed."""
    if Chem is None:
        raise ConfigError(MISSING)


@contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's log (parse errors, deprecation lines) inside the block; restore it after."""
    require_rdkit()
    block = rdBase.BlockLogs()
    try:
        yield
    finally:
        del block


def parse(smiles: Any) -> Any:
    """The RDKit molecule of a SMILES string, sanitized; ``None`` for anything unreadable (MOSES's ``get_mol``)."""
    require_rdkit()
    if not isinstance(smiles, str) or not smiles:
        return None
    with quiet_rdkit():
        try:
            mol = Chem.MolFromSmiles(smiles)
            if mol is not None:
                Chem.SanitizeMol(mol)
        except Exception:  # RDKit raises several types for malformed input; any of them means invalid
            return None
    return mol


INVALID_REASONS = ("empty", "syntax", "valence", "kekulisation", "other")
_PROBLEMS = {"AtomValenceException": "valence", "KekulizeException": "kekulisation", "AtomKekulizeException": "kekulisation"}


def why_invalid(smiles: Any) -> str | None:
    """Why ``smiles`` is not a molecule (``parse`` gives None), one of ``INVALID_REASONS``: ``empty``;
    ``syntax`` (it does not read as SMILES: an unbalanced branch, an unclosed ring bond, an unknown
    symbol); ``valence`` (an atom with more bonds than it can have); ``kekulisation`` (an aromatic ring
    that cannot be given alternating single and double bonds); ``other``. None for a valid molecule."""
    if parse(smiles) is not None:
        return None
    if not isinstance(smiles, str) or not smiles:
        return "empty"
    with quiet_rdkit():
        try:
            mol = Chem.MolFromSmiles(smiles, sanitize=False)
            problems = [] if mol is None else [p.GetType() for p in Chem.DetectChemistryProblems(mol)]
        except Exception:  # RDKit raises several types for malformed input
            return "other"
    if mol is None:
        return "syntax"
    return next((_PROBLEMS[p] for p in problems if p in _PROBLEMS), "other")


def canonical(smiles: Any) -> str | None:
    """RDKit's canonical (isomeric) SMILES of ``smiles``; ``None`` when it does not parse."""
    mol = parse(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def fingerprint(mol: Any) -> np.ndarray:
    """Morgan fingerprint, radius 2, 1024 bits, as a (1024,) uint8 array of 0/1 (MOSES's ``morgan``)."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    return generator.GetFingerprintAsNumPy(mol).astype(np.uint8)


def fragments(mol: Any) -> list[str]:
    """The SMILES of the BRICS fragments of ``mol`` (cut at every BRICS bond), with repeats."""
    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def scaffold(mol: Any, min_rings: int = 2) -> str | None:
    """Canonical SMILES of the Bemis–Murcko scaffold of ``mol``; ``None`` where it has fewer than
    ``min_rings`` rings (MOSES's Scaf metric counts only scaffolds with two rings or more)."""
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(core)
    if not smiles or core.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


@dataclass(frozen=True)
class MolFilters:
    """MOSES's Filters: a molecule passes when it has only allowed atoms, no formal charge, no ring of
    8 atoms or more, and matches none of the substructure patterns (the MCF and PAINS lists).

    patterns: SMARTS strings; build from MOSES's files with ``MolFilters.from_dir``.
    """

    patterns: tuple[str, ...]

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> MolFilters:
        """Read ``mcf.csv`` (columns names, smarts) and ``wehi_pains.csv`` (no header: smarts, name) from ``folder``."""
        folder = Path(folder).expanduser()
        missing = [name for name in FILTER_FILES if not (folder / name).is_file()]
        if missing:
            raise DataError(f"MOSES filter files {', '.join(missing)} not found in {folder}")
        with open(folder / "mcf.csv", newline="") as f:
            mcf = [row["smarts"] for row in csv.DictReader(f)]
        with open(folder / "wehi_pains.csv", newline="") as f:
            pains = [row[0].strip() for row in csv.reader(f) if row]
        return cls(tuple(mcf + pains))

    def __post_init__(self) -> None:
        require_rdkit()
        compiled = [Chem.MolFromSmarts(s) for s in self.patterns]
        bad = [s for s, m in zip(self.patterns, compiled) if m is None]
        if bad:
            raise DataError(f"{len(bad)} filter SMARTS do not parse, the first: {bad[0]!r}")
        object.__setattr__(self, "_compiled", compiled)

    def __getstate__(self) -> dict:  # compiled patterns are rebuilt in a worker process
        return {"patterns": self.patterns}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "patterns", state["patterns"])
        self.__post_init__()

    def passes(self, mol: Any) -> bool:
        """Whether the molecule ``mol`` (RDKit, or ``None`` for invalid: fails) passes every rule (MOSES's ``mol_passes_filters``)."""
        if mol is None:
            return False
        if any(len(ring) > MAX_RING_SIZE for ring in mol.GetRingInfo().AtomRings()):
            return False
        atoms = list(mol.GetAtoms())
        if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in ALLOWED_ATOMS for a in atoms):
            return False
        with_h = Chem.AddHs(mol)  # PAINS patterns name explicit hydrogens
        if any(with_h.HasSubstructMatch(p) for p in self._compiled):
            return False
        return parse(Chem.MolToSmiles(mol, isomericSmiles=False)) is not None


def read_smiles(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The ``SMILES`` column of a CSV file (gzip where it ends in .gz), as MOSES's data files hold them; the first ``limit`` rows."""
    path = Path(path).expanduser()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "SMILES" not in reader.fieldnames:
                raise DataError(f"{path}: no SMILES column (columns: {reader.fieldnames})")
            return [row["SMILES"] for row, _ in zip(reader, _count(limit))]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _count(limit: int | None) -> Iterable[int]:
    return range(limit) if limit is not None else iter(int, 1)  # iter(int, 1): endless zeros
