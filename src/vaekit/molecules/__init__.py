"""Molecules as SMILES: the MOSES benchmark's metrics (Polykovskiy et al. 2020).

Needs the molecules extra (``pip install vaekit[molecules]``: rdkit, selfies, fcd); without it this
package imports, and its functions raise a one-line ``ConfigError``.

Modules: ``chem`` (RDKit behind one guard: parsing, fingerprints, fragments, scaffolds, MOSES's
filters, reading SMILES files), ``metrics`` (each metric as a function, ``Reference`` statistics
of a set of molecules, and ``evaluate``).
"""

from vaekit.molecules.chem import MolFilters, canonical, parse, read_smiles
from vaekit.molecules.metrics import (
    Reference,
    cosine_similarity,
    evaluate,
    fcd,
    fraction_passes_filters,
    fraction_unique,
    fraction_valid,
    fragment_similarity,
    internal_diversity,
    invalid_reasons,
    novelty,
    scaffold_similarity,
    snn,
    tanimoto_aggregate,
)

__all__ = [
    "MolFilters",
    "Reference",
    "canonical",
    "cosine_similarity",
    "evaluate",
    "fcd",
    "fraction_passes_filters",
    "fraction_unique",
    "fraction_valid",
    "fragment_similarity",
    "internal_diversity",
    "invalid_reasons",
    "novelty",
    "parse",
    "read_smiles",
    "scaffold_similarity",
    "snn",
    "tanimoto_aggregate",
]
