"""Molecular properties on hand-made molecules, and the latent search: gradient ascent on a fitted predictor
finds better molecules, counts each distinct valid one once, and tells novel ones from training ones."""

import pytest
import torch

pytest.importorskip("rdkit")

from vaekit.molecules import chem
from vaekit.molecules.design import fit_predictor, optimise
from vaekit.molecules.properties import PROPERTIES, ZINC_STATS, property_of, ring_penalty


def test_properties_of_hand_made_molecules():
    assert property_of("qed", "CC(=O)Oc1ccccc1C(=O)O") == pytest.approx(0.550, abs=0.005)  # aspirin
    assert property_of("logp", "CCO") == pytest.approx(-0.0014, abs=1e-3)  # Crippen's ethanol
    assert property_of("logp", "CCCCCCCC") > property_of("logp", "CCCC") > property_of("logp", "CCO")
    assert property_of("qed", "C1CC(") is None
    assert ring_penalty(chem.parse("C1CCCCCCC1")) == 2 and ring_penalty(chem.parse("c1ccccc1")) == 0
    for smiles in ("C1CCCCCCC1", "CC(=O)Nc1ccc(O)cc1"):
        lp, sa, ring = property_of("logp", smiles), property_of("sa", smiles), ring_penalty(chem.parse(smiles))
        assert 1 <= -sa <= 10
        assert property_of("penalized-logp", smiles) == pytest.approx(lp + sa - ring)
        standard = sum((v - ZINC_STATS[k][0]) / ZINC_STATS[k][1] for k, v in (("logp", lp), ("sa", sa), ("ring", -ring)))
        assert property_of("penalized-logp-zinc", smiles) == pytest.approx(standard)
    assert set(PROPERTIES.names()) == {"qed", "logp", "sa", "penalized-logp", "penalized-logp-zinc"}


def chain(z: torch.Tensor) -> list[str]:
    """A stand-in decoder: the code's first unit gives the length of a carbon chain (1 to 12 atoms)."""
    return ["C" * int(k) for k in (z[:, 0].round() + 4).clamp(1, 12).tolist()]


def test_gradient_ascent_on_the_fitted_predictor_finds_longer_chains_and_counts_each_once():
    g = torch.Generator().manual_seed(0)
    codes = torch.rand(400, 3, generator=g) * 6 - 3  # first unit in [-3, 3]: chains of 1 to 7 atoms
    values = torch.tensor([property_of("logp", s) for s in chain(codes)])
    predictor = fit_predictor(codes, values, seed=0)
    assert predictor.r2 > 0.9
    starts = torch.zeros(4, 3)  # chains of 4 atoms
    training = {"CCCC", "CCCCC"}
    design = optimise(chain, predictor, starts, "logp", training, steps=60, step_size=0.2, prior_weight=0.0, decode_every=3)
    lengths = [len(f.smiles) for f in design.found]
    assert max(lengths) >= 8 and design.found[0].value == max(f.value for f in design.found)
    assert design.evaluations == len(design.found) == len(set(f.smiles for f in design.found))
    assert {f.smiles for f in design.found if not f.novel} <= training and "CCCC" in {f.smiles for f in design.found}
    assert all(f.novel for f in design.best(3)) and design.decoded == 4 * (60 // 3 + 1)
    held = optimise(chain, predictor, starts, "logp", training, steps=60, step_size=0.2, prior_weight=4.0, decode_every=3)
    assert max(len(f.smiles) for f in held.found) < max(lengths)  # the prior term holds the codes near zero
