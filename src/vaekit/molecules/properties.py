"""Molecular properties RDKit computes, registered by name in ``PROPERTIES``: what ``vaekit optimize`` maximises.

Each property maps a SMILES string to a float (higher is better for the optimiser), or ``None`` for a
string RDKit cannot read:

- ``qed``: the quantitative estimate of drug-likeness (Bickerton et al. 2012), in [0, 1].
- ``logp``: Crippen's octanol-water partition coefficient.
- ``sa``: the negated synthetic accessibility score of Ertl & Schuffenhauer 2009 (RDKit's Contrib
  ``sascorer``): SA runs from 1 (easy) to 10 (hard), so −SA is higher for easier molecules.
- ``penalized-logp``: logP − SA − max(0, largest ring − 6), unnormalised (as most later papers use it).
- ``penalized-logp-zinc``: the same three terms each standardised by its mean and standard deviation on
  the 250k ZINC molecules of Gómez-Bombarelli et al. (the score of the grammar VAE and JT-VAE
  latent-optimisation tables: logP 2.4571 ± 1.4343, −SA −3.0526 ± 0.8335, −ring penalty −0.0486 ± 0.2860).

The largest ring is read from RDKit's ring perception (the smallest set of smallest rings).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from vaekit.molecules import chem
from vaekit.registry import Registry

Property = Callable[[Any], float]  # an RDKit molecule -> its value
PROPERTIES: Registry[Property] = Registry("molecular property")

ZINC_STATS = {  # (mean, standard deviation) on ZINC-250k of logP, −SA and −ring penalty
    "logp": (2.4570953396190123, 1.434324401111988),
    "sa": (-3.0525811293166134, 0.8335207024513095),
    "ring": (-0.0485696876403053, 0.2860212110245455),
}


@lru_cache(maxsize=1)
def _sascorer():
    from rdkit.Chem import RDConfig

    sys.path.append(os.path.join(RDConfig.RDContribDir, "SA_Score"))
    import sascorer  # RDKit's Contrib module (shipped with the rdkit wheel)

    return sascorer


def ring_penalty(mol) -> float:
    """max(0, the number of atoms of the largest ring − 6)."""
    rings = mol.GetRingInfo().AtomRings()
    return float(max(0, max((len(r) for r in rings), default=0) - 6))


@PROPERTIES.register("qed")
def qed(mol) -> float:
    from rdkit.Chem import QED

    return float(QED.qed(mol))


@PROPERTIES.register("logp")
def logp(mol) -> float:
    from rdkit.Chem import Crippen

    return float(Crippen.MolLogP(mol))


@PROPERTIES.register("sa")
def negative_sa(mol) -> float:
    return -float(_sascorer().calculateScore(mol))


@PROPERTIES.register("penalized-logp")
def penalized_logp(mol) -> float:
    return logp(mol) + negative_sa(mol) - ring_penalty(mol)


@PROPERTIES.register("penalized-logp-zinc")
def penalized_logp_zinc(mol) -> float:
    terms = {"logp": logp(mol), "sa": negative_sa(mol), "ring": -ring_penalty(mol)}
    return sum((value - ZINC_STATS[k][0]) / ZINC_STATS[k][1] for k, value in terms.items())


def property_of(name: str, smiles: str) -> float | None:
    """The property ``name`` of a SMILES string; None where RDKit cannot read it."""
    mol = chem.parse(smiles)
    if mol is None:
        return None
    with chem.quiet_rdkit():
        return PROPERTIES[name](mol)
