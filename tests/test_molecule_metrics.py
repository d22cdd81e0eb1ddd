"""MOSES's metrics on hand-made cases: identical sets, disjoint sets, invalid strings, duplicates, filters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("fcd")

from rdkit import DataStructs

from vaekit.errors import ConfigError, DataError
from vaekit.molecules import (
    MolFilters,
    Reference,
    chem,
    evaluate,
    fcd,
    fraction_passes_filters,
    fraction_unique,
    fraction_valid,
    fragment_similarity,
    internal_diversity,
    invalid_reasons,
    novelty,
    parse,
    read_smiles,
    scaffold_similarity,
    snn,
    tanimoto_aggregate,
)

MOSES = Path(__file__).resolve().parents[2] / "shared" / "data" / "moses"
needs_moses = pytest.mark.skipif(not (MOSES / "test.csv.gz").is_file(), reason="MOSES data not in ../shared/data/moses")

ALIPHATIC = ["C1CCC2CCCCC2C1", "C1CCC(CC1)C1CCCCC1", "CC1CCC2CCCCC2C1", "OC1CCC(CC1)C1CCCCC1", "CCCCCCO", "CC(C)CCN"]
AROMATIC = ["c1ccc2ccccc2c1", "c1ccc(cc1)-c1ccccc1", "Cc1ccc2ccccc2c1", "Oc1ccc(cc1)-c1ccccc1", "c1ccc2[nH]ccc2c1", "c1ccc2ncccc2c1"]
INVALID = ["xyz", "C1CC", "", "c1cccc1", "C(C)(C)(C)(C)C"]  # junk, open ring, empty, bad aromaticity, five-valent carbon


@pytest.fixture(scope="module")
def test_smiles() -> list[str]:
    if not (MOSES / "test.csv.gz").is_file():
        pytest.skip("MOSES data not in ../shared/data/moses")
    return read_smiles(MOSES / "test.csv.gz", limit=2000)


@pytest.fixture(scope="module")
def filters() -> MolFilters:
    if not (MOSES / "mcf.csv").is_file():
        pytest.skip("MOSES data not in ../shared/data/moses")
    return MolFilters.from_dir(MOSES)


@pytest.fixture(scope="module")
def small_ref(test_smiles) -> Reference:
    return Reference.build(test_smiles[:60])  # with ChemNet statistics


def test_identical_sets(test_smiles, small_ref):
    assert fcd(small_ref, small_ref) == pytest.approx(0, abs=1e-3)
    assert snn(small_ref, small_ref) == pytest.approx(1)
    assert fragment_similarity(small_ref, small_ref) == pytest.approx(1)
    assert scaffold_similarity(small_ref, small_ref) == pytest.approx(1)
    assert novelty(test_smiles[:60], test_smiles[:60]) == 0
    # SMILES spelt differently but the same molecules: the same statistics
    shuffled = [chem.Chem.MolToSmiles(parse(s), doRandom=True) for s in test_smiles[:60]]
    same = Reference.build(shuffled, fcd=False)
    assert same.canonical == small_ref.canonical and np.array_equal(same.fingerprints, small_ref.fingerprints)
    assert novelty(shuffled, test_smiles[:60]) == 0


def test_disjoint_sets_score_low():
    assert fragment_similarity(ALIPHATIC, AROMATIC) == pytest.approx(0)
    assert scaffold_similarity(ALIPHATIC, AROMATIC) == pytest.approx(0)
    assert snn(ALIPHATIC, AROMATIC) < 0.3
    assert snn(ALIPHATIC, ALIPHATIC + AROMATIC) == pytest.approx(1)
    assert novelty(ALIPHATIC, AROMATIC) == 1
    assert math.isnan(scaffold_similarity(["CCO"], AROMATIC))  # no two-ring scaffold: undefined, as MOSES


def test_invalid_strings_count_and_are_skipped(filters):
    mixed = ALIPHATIC[:3] + INVALID + [None]
    assert fraction_valid(mixed) == pytest.approx(3 / 9)
    assert all(parse(s) is None for s in [*INVALID, None, 3.5])
    ref = Reference.build(mixed, fcd=False)
    assert (ref.n_given, ref.n_valid) == (9, 3)
    assert ref.invalid == invalid_reasons(mixed) and sum(ref.invalid.values()) == 6  # why, for the failed strings only
    assert snn(mixed, AROMATIC) == pytest.approx(snn(ALIPHATIC[:3], AROMATIC))
    assert internal_diversity(mixed) == pytest.approx(internal_diversity(ALIPHATIC[:3]))
    assert fraction_passes_filters(mixed, filters) == 1
    assert fraction_unique(mixed) == 1
    nothing = Reference.build(INVALID, fcd=False)
    assert math.isnan(snn(nothing, AROMATIC)) and math.isnan(internal_diversity(nothing)) and math.isnan(fraction_unique(nothing))


@pytest.mark.parametrize(
    "smiles, reason",
    [("CCO", None), ("", "empty"), (None, "empty"), ("xyz", "syntax"), ("C1CC", "syntax"), ("CC(C", "syntax"), ("CC)C", "syntax")]
    + [("c1cccc1", "kekulisation"), ("c1ccnc1", "kekulisation"), ("C(C)(C)(C)(C)C", "valence"), ("FO(F)F", "valence")],
)
def test_each_invalid_string_has_its_reason(smiles, reason):
    assert chem.why_invalid(smiles) == reason


def test_unique_at_k_counts_canonical_duplicates():
    gen = ["CCO", "OCC", "C(O)C", "c1ccccc1", "C1=CC=CC=C1", "CCN", "bad"]
    assert fraction_unique(gen) == pytest.approx(3 / 6)
    assert fraction_unique(gen, k=3) == pytest.approx(1 / 3)  # the first three valid are one molecule
    assert fraction_unique(gen, k=5) == pytest.approx(2 / 5)
    assert novelty(gen, ["CCO"]) == pytest.approx(2 / 3)  # distinct molecules, not strings


def test_internal_diversity():
    assert internal_diversity(["c1ccccc1O"] * 5) == pytest.approx(0)
    assert internal_diversity(["c1ccccc1O"] * 5, p=2) == pytest.approx(0)
    assert 0.5 < internal_diversity(ALIPHATIC + AROMATIC) < 1
    assert internal_diversity(ALIPHATIC + AROMATIC, p=2) < internal_diversity(ALIPHATIC + AROMATIC)  # power mean ≥ mean


def test_vectorised_tanimoto_matches_rdkit(test_smiles):
    from rdkit.Chem import rdFingerprintGenerator

    mols = [parse(s) for s in test_smiles[:60]]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    bitvects = [gen.GetFingerprint(m) for m in mols]
    expected = np.array([DataStructs.BulkTanimotoSimilarity(b, bitvects[20:]) for b in bitvects[:20]])  # (20, 40)
    bits = np.stack([chem.fingerprint(m) for m in mols])
    np.testing.assert_allclose(tanimoto_aggregate(bits[:20], bits[20:], agg="max", device="cpu"), expected.max(1), rtol=1e-6)
    mean2 = tanimoto_aggregate(bits[:20], bits[20:], agg="mean", p=2, device="cpu")
    np.testing.assert_allclose(mean2, np.sqrt((expected**2).mean(1)), rtol=1e-6)
    empty = np.zeros((2, 1024), np.uint8)
    np.testing.assert_allclose(tanimoto_aggregate(empty, empty, device="cpu"), [1, 1])  # as MOSES: 0/0 counts as 1


def test_filters(filters, test_smiles):
    assert all(filters.passes(parse(s)) for s in test_smiles[:100])  # MOSES's data pass its own filters
    assert filters.passes(parse("CC(=O)Nc1ccc(cc1)C(=O)NC1CCCC1"))
    for failing in [
        "S=C1SC(=Cc2ccc(O)cc2)C(=O)N1",  # PAINS: ene_rhod (an arylidene rhodanine)
        "C=CC#N",  # MCF1: an acyclic Michael acceptor nitrile
        "C[N+](C)(C)Cc1ccccc1",  # a charged atom
        "CP(C)c1ccccc1",  # an element outside C N S O F Cl Br H
        "C1CCCCCCC1",  # an eight-membered ring
    ]:
        assert not filters.passes(parse(failing)), failing
    assert not filters.passes(None)


def test_evaluate_json_and_deterministic(test_smiles, small_ref, filters):
    gen = test_smiles[100:180] + ["nonsense"] * 4 + test_smiles[100:110]
    scaffold_ref = Reference.build(test_smiles[1000:1500], fcd=False)  # no ChemNet statistics: no FCD/TestSF
    kwargs = dict(train=test_smiles[150:1000], test=small_ref, test_scaffolds=scaffold_ref, filters=filters)
    out = evaluate(gen, **kwargs, intdiv_sample=50, seed=3)
    assert json.loads(json.dumps(out)) == out
    m, sizes = out["metrics"], out["sizes"]
    assert sizes == {"generated": 94, "valid": 90, "intdiv": 50, "test": 60, "testsf": 500, "train": 850}
    assert m["valid"] == pytest.approx(90 / 94)
    assert m["unique@1000"] == pytest.approx(80 / 90)
    assert m["Novelty"] == pytest.approx(50 / 80)
    assert m["FCD/TestSF"] is None
    assert m["Filters"] == 1 and m["FCD/Test"] > 0 and 0 < m["SNN/Test"] < 1 and 0 < m["IntDiv"] < 1
    assert m["Frag/TestSF"] is not None and m["Scaf/TestSF"] is not None
    assert out["invalid"] == {"empty": 0, "syntax": 4, "valence": 0, "kekulisation": 0, "other": 0}  # "nonsense" x 4
    assert evaluate(gen, **kwargs, intdiv_sample=50, seed=3) == out
    everything_bad = evaluate(["xyz", "C1CC"], train=None, test=small_ref, filters=filters)
    assert everything_bad["metrics"]["valid"] == 0 and everything_bad["metrics"]["SNN/Test"] is None


def test_user_errors(monkeypatch, tmp_path):
    with pytest.raises(DataError):
        evaluate([], train=None, test=AROMATIC, filters=tmp_path)
    with pytest.raises(DataError, match="mcf.csv"):
        MolFilters.from_dir(tmp_path)
    monkeypatch.setattr(chem, "Chem", None)
    with pytest.raises(ConfigError, match=r"install vaekit\[molecules\] \(rdkit, selfies, fcd\)"):
        fraction_valid(["CCO"])


def test_a_large_reference_is_kept_on_disk_and_read_back_whole(monkeypatch, tmp_path):
    from vaekit.molecules import metrics

    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(metrics, "KEPT_MIN", 4)
    smiles = ALIPHATIC + AROMATIC + INVALID[:2]
    built = Reference.kept(smiles, fcd=True)
    (path,) = (tmp_path / "references").glob("*.npz")
    monkeypatch.setattr(Reference, "build", lambda *a, **k: pytest.fail("built again instead of read"))
    read = Reference.kept(smiles, fcd=True)
    assert (read.n_given, read.canonical) == (built.n_given, built.canonical) and read.n_given == 14
    assert read.n_valid == 12 and read.invalid == built.invalid and sum(read.invalid.values()) == 2
    np.testing.assert_array_equal(read.fingerprints, built.fingerprints)
    assert read.fragments == built.fragments and read.scaffolds == built.scaffolds and read.scaffolds
    np.testing.assert_array_equal(read.fcd_cov, built.fcd_cov)
    assert fcd(read, built) == pytest.approx(0.0, abs=1e-4) and snn(read, built) == pytest.approx(1.0)

    monkeypatch.undo()
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(metrics, "KEPT_MIN", 4)
    assert Reference.kept(smiles, fcd=False).fcd_mean is None  # kept apart from the one with FCD
    assert len(list((tmp_path / "references").glob("*.npz"))) == 2
    path.write_bytes(path.read_bytes()[:100])  # cut short: built again, and kept whole
    again = Reference.kept(smiles, fcd=True)
    assert again.canonical == built.canonical and np.load(path, allow_pickle=False)["fcd_cov"].shape == (512, 512)
    assert Reference.kept(smiles[:3], fcd=True).n_given == 3  # a small reference is built, not kept
    with np.load(path, allow_pickle=False) as kept:
        older = {name: kept[name] for name in kept.files if name != "invalid"}  # a file from before the reasons were kept
    np.savez_compressed(path, **older)
    assert Reference.kept(smiles, fcd=True).invalid == built.invalid  # built again, and kept with them
    with np.load(path, allow_pickle=False) as kept:
        assert "invalid" in kept.files
    assert len(list((tmp_path / "references").glob("*.npz"))) == 2
