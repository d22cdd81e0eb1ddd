"""The MOSES benchmark's metrics (Polykovskiy et al. 2020) on RDKit, ChemNet (``fcd``) and torch.

``evaluate(generated, train=..., test=..., test_scaffolds=...)`` returns every metric and the sample
sizes as a JSON-ready dict. Each metric is also a function. The statistics of a set of molecules
(ChemNet mean and covariance, Morgan bits, BRICS fragment and scaffold counts) are a ``Reference``,
built once from SMILES and reused: build the 176k-molecule MOSES test sets once, pass them to every
call (``Reference.kept`` also keeps a large one on disk for the next process). The generated set is
summarised the same way, so each metric compares two ``Reference``s.

Invalid strings count against validity and are left out of every other metric; duplicates stay in
(as in MOSES), except in unique@k and novelty, which count distinct canonical SMILES.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import Pool
from typing import Any

import numpy as np
import torch

from vaekit.errors import ConfigError, DataError
from vaekit.molecules import chem

logger = logging.getLogger(__name__)

UNIQUE_AT = (1000, 10000)
TANIMOTO_BLOCK = 4096  # rows per block of a similarity matrix: 4096 x 4096 float32 is 64 MiB
KEPT_MIN = 20_000  # references of at least this many strings are kept on disk by ``Reference.kept``


@dataclass(frozen=True)
class Reference:
    """The statistics of a set of molecules that the metrics compare; build with ``Reference.build``.

    n_given: how many strings were given; canonical: the canonical SMILES of the valid ones, in order,
    repeats kept; fingerprints: (n_valid, 1024) uint8 Morgan bits (radius 2); fragments / scaffolds:
    counts of BRICS fragments and of Bemis–Murcko scaffolds with two rings or more; fcd_mean (512,) and
    fcd_cov (512, 512): ChemNet's penultimate activations' mean and covariance (``None`` when built
    with ``fcd=False`` or from fewer than two valid molecules); invalid: how many strings did not parse,
    by ``chem.why_invalid``'s reason (every reason a key).
    """

    n_given: int
    canonical: tuple[str, ...]
    fingerprints: np.ndarray = field(repr=False)
    fragments: Counter = field(repr=False)
    scaffolds: Counter = field(repr=False)
    fcd_mean: np.ndarray | None = field(default=None, repr=False)
    fcd_cov: np.ndarray | None = field(default=None, repr=False)
    invalid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(chem.INVALID_REASONS, 0))

    @property
    def n_valid(self) -> int:
        return len(self.canonical)

    @classmethod
    def build(cls, smiles: Iterable[str], *, fcd: bool = True, n_jobs: int = 1, device: str | None = None) -> Reference:
        """Summarise ``smiles``: parse each (invalid ones are dropped), then fingerprints, fragments,
        scaffolds and (``fcd=True``) ChemNet's activation statistics of the canonical SMILES.

        n_jobs: worker processes for the RDKit work; device: torch device for ChemNet (default: CUDA where available).
        """
        smiles = list(smiles)
        described = _map(_describe, smiles, n_jobs)
        invalid = invalid_reasons([s for s, d in zip(smiles, described, strict=True) if d is None], n_jobs=n_jobs)
        described = [d for d in described if d is not None]
        canonical = tuple(d[0] for d in described)
        fps = np.stack([d[1] for d in described]) if described else np.zeros((0, chem.FP_BITS), np.uint8)
        fragments = Counter(f for d in described for f in d[2])
        scaffolds = Counter(d[3] for d in described if d[3] is not None)
        mean = cov = None
        if fcd and len(canonical) >= 2:
            mean, cov = _chemnet_stats(list(canonical), device)
        return cls(len(smiles), canonical, fps, fragments, scaffolds, mean, cov, invalid)

    @classmethod
    def kept(cls, smiles: Sequence[str], *, fcd: bool = True, n_jobs: int = 1, device: str | None = None) -> Reference:
        """``build``, with the statistics of a large reference (``KEPT_MIN`` strings or more: minutes of RDKit
        and ChemNet for MOSES's 176k) kept in ``cache_root()/references``, named by the digest of the
        strings, whether FCD is in, and RDKit's and fcd's versions: the next call for the same strings
        reads them in seconds. Read as arrays only (never unpickled); a file that does not read back
        whole is built again."""
        if len(smiles) < KEPT_MIN:
            return cls.build(smiles, fcd=fcd, n_jobs=n_jobs, device=device)
        path = _kept_path(smiles, fcd)
        kept = _read_reference(path, len(smiles), fcd)
        if kept is not None:
            return kept
        reference = cls.build(smiles, fcd=fcd, n_jobs=n_jobs, device=device)
        _keep_reference(path, reference)
        return reference


def _kept_path(smiles: Sequence[str], fcd: bool):
    from vaekit.data.mnist import cache_root

    versions = f"rdkit-{chem.rdBase.rdkitVersion}" + (f"-fcd-{_fcd_version()}" if fcd else "")
    digest = hashlib.sha256("\n".join(smiles).encode()).hexdigest()[:32]
    return cache_root() / "references" / f"{digest}-{versions}.npz"


def _fcd_version() -> str:
    from importlib.metadata import version

    return version("fcd")


def _keep_reference(path, reference: Reference) -> None:
    """Write ``reference`` to ``path`` whole or not at all; a cache that cannot be written is only logged."""
    from vaekit.checkpoint import atomic_write_bytes

    arrays = {
        "n_given": np.array(reference.n_given),
        "canonical": np.array(reference.canonical, dtype=str),
        "fingerprints": np.packbits(reference.fingerprints, axis=1),
        "fragments": np.array(list(reference.fragments), dtype=str),
        "fragment_counts": np.array(list(reference.fragments.values()), dtype=np.int64),
        "scaffolds": np.array(list(reference.scaffolds), dtype=str),
        "scaffold_counts": np.array(list(reference.scaffolds.values()), dtype=np.int64),
    }
    if reference.n_valid < reference.n_given:
        arrays |= {"invalid": np.array([reference.invalid[r] for r in chem.INVALID_REASONS], dtype=np.int64)}
    if reference.fcd_mean is not None:
        arrays |= {"fcd_mean": reference.fcd_mean, "fcd_cov": reference.fcd_cov}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:
        logger.warning("could not keep the reference statistics in %s: %s", path, e.strerror or e)


def _read_reference(path, n_given: int, fcd: bool) -> Reference | None:
    """The ``Reference`` kept in ``path``, or None where it is missing, unreadable or not of ``n_given`` strings."""
    try:
        with np.load(path, allow_pickle=False) as kept:
            arrays = {name: kept[name] for name in kept.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    names = {"n_given", "canonical", "fingerprints", "fragments", "fragment_counts", "scaffolds", "scaffold_counts"}
    if not names <= arrays.keys() or int(arrays["n_given"]) != n_given or (fcd and "fcd_mean" not in arrays):
        return None
    canonical = tuple(str(c) for c in arrays["canonical"])
    fingerprints = np.unpackbits(arrays["fingerprints"], axis=1, count=chem.FP_BITS)
    if len(fingerprints) != len(canonical):
        return None
    counts = arrays.get("invalid", np.zeros(len(chem.INVALID_REASONS), np.int64)).tolist()
    if len(counts) != len(chem.INVALID_REASONS) or sum(counts) != n_given - len(canonical):
        return None  # (an older file without the reasons of its invalid strings: built again)
    return Reference(
        n_given,
        canonical,
        fingerprints,
        Counter(dict(zip(arrays["fragments"].tolist(), arrays["fragment_counts"].tolist(), strict=True))),
        Counter(dict(zip(arrays["scaffolds"].tolist(), arrays["scaffold_counts"].tolist(), strict=True))),
        arrays.get("fcd_mean"),
        arrays.get("fcd_cov"),
        dict(zip(chem.INVALID_REASONS, counts, strict=True)),
    )


def _describe(smiles: Any) -> tuple[str, np.ndarray, list[str], str | None] | None:
    """One molecule's canonical SMILES, fingerprint, fragments and scaffold; ``None`` when invalid."""
    mol = chem.parse(smiles)
    if mol is None:
        return None
    with chem.quiet_rdkit():  # the statistics do not depend on the input's atom order: no need to reparse the canonical SMILES
        return chem.Chem.MolToSmiles(mol), chem.fingerprint(mol), chem.fragments(mol), chem.scaffold(mol)


def _map(fn: Callable[[Any], Any], items: Sequence[Any], n_jobs: int) -> list[Any]:
    chem.require_rdkit()
    if n_jobs <= 1 or len(items) < 1000:
        return [fn(x) for x in items]
    with Pool(n_jobs) as pool:
        return pool.map(fn, items, chunksize=max(1, min(2000, len(items) // (8 * n_jobs))))


@lru_cache(maxsize=1)
def _chemnet() -> torch.nn.Module:
    import fcd

    return fcd.load_ref_model()


def _chemnet_stats(canonical: list[str], device: str | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        import fcd
    except ImportError:
        raise ConfigError(chem.MISSING) from None
    with warnings.catch_warnings():  # fcd 1.2 calls numpy and scipy aliases deprecated there
        warnings.simplefilter("ignore", DeprecationWarning)
        acts = fcd.get_predictions(_chemnet(), canonical, batch_size=512, n_jobs=0, device=device or _device().type)  # (N, 512)
    acts = acts.astype(np.float64)
    return acts.mean(0), np.cov(acts.T)


def _device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _as_reference(molecules: Sequence[str] | Reference, *, fcd: bool = False, device: str | None = None) -> Reference:
    return molecules if isinstance(molecules, Reference) else Reference.build(molecules, fcd=fcd, device=device)


# ---- the metrics --------------------------------------------------------------------------------


def fraction_valid(generated: Sequence[str]) -> float:
    """Share of ``generated`` strings that RDKit parses and sanitizes to a molecule (MOSES's Valid)."""
    if not generated:
        return math.nan
    return sum(chem.parse(s) is not None for s in generated) / len(generated)


def invalid_reasons(generated: Sequence[str], *, n_jobs: int = 1) -> dict[str, int]:
    """How many of ``generated`` are not molecules, by ``chem.why_invalid``'s reason (every reason a key)."""
    counts = Counter(r for r in _map(chem.why_invalid, list(generated), n_jobs) if r is not None)
    return {reason: counts[reason] for reason in chem.INVALID_REASONS}


def fraction_unique(generated: Sequence[str] | Reference, k: int | None = None) -> float:
    """Unique@k: share of distinct canonical SMILES among the first ``k`` valid molecules (all when
    ``k`` is None). Fewer than ``k`` valid ones: computed on those, with a logged warning, as MOSES does."""
    canonical = _as_reference(generated).canonical
    if k is not None:
        if len(canonical) < k:
            logger.warning("unique@%d from only %d valid molecules", k, len(canonical))
        canonical = canonical[:k]
    return len(set(canonical)) / len(canonical) if canonical else math.nan


def novelty(generated: Sequence[str] | Reference, train: Iterable[str], *, canonicalize_train: bool = False) -> float:
    """Share of distinct valid generated molecules (canonical SMILES) not in ``train``.

    canonicalize_train: canonicalise ``train`` with this RDKit first. MOSES compares against the
        training strings as given (its files hold canonical SMILES; 0.05% of them spell differently
        under a recent RDKit, and canonicalising all 1.6M costs minutes): False does the same.
    """
    distinct = set(_as_reference(generated).canonical)
    if not distinct:
        return math.nan
    known = {chem.canonical(s) for s in train} if canonicalize_train else set(train)
    return len(distinct - known) / len(distinct)


def internal_diversity(generated: Sequence[str] | Reference, p: int = 1, *, device: str | None = None) -> float:
    """IntDiv_p = 1 − mean over molecules x of (mean over y of T(x, y)^p)^(1/p), over all ordered pairs of
    the valid molecules, itself included (MOSES's formula), T the Tanimoto similarity of Morgan bits."""
    fps = _as_reference(generated).fingerprints
    if len(fps) == 0:
        return math.nan
    per_molecule = tanimoto_aggregate(fps, fps, agg="mean", p=p, device=device)
    return float(1 - per_molecule.mean())


def fraction_passes_filters(generated: Sequence[str] | Reference, filters: chem.MolFilters, *, n_jobs: int = 1) -> float:
    """Share of valid molecules that pass MOSES's filters (``MolFilters``: MCF, PAINS, atoms, charges, rings)."""
    canonical = _as_reference(generated).canonical
    if not canonical:
        return math.nan
    return float(np.mean(_map(_FilterCheck(filters), canonical, n_jobs)))


@dataclass(frozen=True)
class _FilterCheck:  # a picklable callable for worker processes
    filters: chem.MolFilters

    def __call__(self, smiles: str) -> bool:
        with chem.quiet_rdkit():
            return self.filters.passes(chem.parse(smiles))


def fcd(generated: Sequence[str] | Reference, reference: Sequence[str] | Reference, *, device: str | None = None) -> float:
    """Fréchet ChemNet Distance between the valid generated molecules and the reference set, both
    canonical SMILES (MOSES canonicalises the generated ones; its test files are canonical already)."""
    gen, ref = (_as_reference(x, fcd=True, device=device) for x in (generated, reference))
    if gen.fcd_mean is None or ref.fcd_mean is None:
        return math.nan
    import fcd as fcd_package

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(fcd_package.calculate_frechet_distance(gen.fcd_mean, gen.fcd_cov, ref.fcd_mean, ref.fcd_cov))


def snn(generated: Sequence[str] | Reference, reference: Sequence[str] | Reference, *, device: str | None = None) -> float:
    """Similarity to a nearest neighbour: mean over valid generated molecules of the largest Tanimoto
    similarity to a reference molecule (Morgan bits, radius 2, 1024 bits)."""
    gen, ref = _as_reference(generated), _as_reference(reference)
    if gen.n_valid == 0 or ref.n_valid == 0:
        return math.nan
    return float(tanimoto_aggregate(gen.fingerprints, ref.fingerprints, agg="max", device=device).mean())


def fragment_similarity(generated: Sequence[str] | Reference, reference: Sequence[str] | Reference) -> float:
    """Frag: cosine similarity of the BRICS fragment count vectors of the two sets."""
    return cosine_similarity(_as_reference(generated).fragments, _as_reference(reference).fragments)


def scaffold_similarity(generated: Sequence[str] | Reference, reference: Sequence[str] | Reference) -> float:
    """Scaf: cosine similarity of the Bemis–Murcko scaffold count vectors (scaffolds with two rings or more, as MOSES)."""
    return cosine_similarity(_as_reference(generated).scaffolds, _as_reference(reference).scaffolds)


def cosine_similarity(a: Counter, b: Counter) -> float:
    """Cosine of two count vectors given as {key: count}; absent keys count zero; NaN when either is empty."""
    if not a or not b:
        return math.nan
    dot = sum(count * b[key] for key, count in a.items() if key in b)
    return float(dot / math.sqrt(sum(c * c for c in a.values()) * sum(c * c for c in b.values())))


def tanimoto_aggregate(a: np.ndarray, b: np.ndarray, *, agg: str = "max", p: int = 1, device: str | None = None) -> np.ndarray:
    """For each row of ``a`` (N, D) 0/1 bits: the largest (``agg="max"``) or the power mean
    ((mean T^p)^(1/p), ``agg="mean"``) of its Tanimoto similarities to the rows of ``b`` (M, D).
    Two empty fingerprints have similarity 1 (as MOSES). Computed in blocks by matrix products on ``device``."""
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', not {agg!r}")
    dev = _device(device)
    x = torch.as_tensor(a, device=dev).float()  # (N, D)
    x_count = x.sum(1, keepdim=True)  # (N, 1)
    acc = torch.zeros(len(x), dtype=torch.float64, device=dev)
    with torch.inference_mode():
        for j in range(0, len(b), TANIMOTO_BLOCK):
            y = torch.as_tensor(b[j : j + TANIMOTO_BLOCK], device=dev).float()  # (Bm, D)
            y_count = y.sum(1)  # (Bm,)
            for i in range(0, len(x), TANIMOTO_BLOCK):
                both = x[i : i + TANIMOTO_BLOCK] @ y.T  # (Bn, Bm): shared bits, exact in float32
                union = x_count[i : i + TANIMOTO_BLOCK] + y_count - both
                sim = torch.where(union > 0, both / union.clamp_min(1), torch.ones_like(both))
                rows = acc[i : i + TANIMOTO_BLOCK]
                if agg == "max":
                    torch.maximum(rows, sim.max(1).values.double(), out=rows)
                else:
                    rows += (sim if p == 1 else sim**p).sum(1, dtype=torch.float64)
    if agg == "mean":
        acc = (acc / len(b)) ** (1 / p)
    return acc.cpu().numpy()


# ---- everything at once -------------------------------------------------------------------------


def evaluate(
    generated: list[str],
    *,
    train: Iterable[str] | None,
    test: Sequence[str] | Reference,
    test_scaffolds: Sequence[str] | Reference | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    filters: chem.MolFilters | str | os.PathLike | None = None,
    unique_at: Sequence[int] = UNIQUE_AT,
    intdiv_sample: int | None = None,
    canonicalize_train: bool = False,
    device: str | None = None,
) -> dict:
    """MOSES's metrics of ``generated`` SMILES, as a JSON-ready dict: ``metrics`` (MOSES's names:
    valid, unique@1000, unique@10000, FCD/Test, SNN/Test, Frag/Test, Scaf/Test, the same four /TestSF,
    IntDiv, IntDiv2, Filters, Novelty; ``None`` where undefined, e.g. no valid molecule), ``sizes``, and
    ``invalid``: how many strings are not molecules, by reason (``Reference.invalid``).

    train: training SMILES for Novelty (None: no Novelty). test, test_scaffolds: reference SMILES or
        ``Reference``s built once with ``Reference.build`` (None for test_scaffolds: no /TestSF metrics).
    n_jobs: worker processes for the RDKit work. seed: draws the IntDiv subsample (``intdiv_sample``).
    filters: a ``MolFilters``, or a folder holding MOSES's ``mcf.csv`` and ``wehi_pains.csv``
        (default: ``moses/`` under the data folder, ``$VAEKIT_DATA_DIR`` or ``~/.cache/vaekit``).
    unique_at: the k of unique@k. intdiv_sample: compute IntDiv on this many valid molecules drawn at
        random (None: all, as MOSES; the cost grows with the square). canonicalize_train: see ``novelty``.
    device: torch device for ChemNet and the similarity products (default: CUDA where available).
    """
    if not generated:
        raise DataError("evaluate: no generated molecules")
    filters = _resolve_filters(filters)
    references = {"Test": _as_reference(test, fcd=True, device=device)}
    if test_scaffolds is not None:
        references["TestSF"] = _as_reference(test_scaffolds, fcd=True, device=device)
    with_fcd = any(ref.fcd_mean is not None for ref in references.values())  # a Reference built with fcd=False: no FCD
    gen = Reference.build(generated, fcd=with_fcd, n_jobs=n_jobs, device=device)
    metrics: dict[str, float] = {"valid": gen.n_valid / gen.n_given}  # (``invalid``: why the others are not molecules)
    metrics.update({f"unique@{k}": fraction_unique(gen, k) for k in unique_at})
    for name, ref in references.items():
        metrics[f"FCD/{name}"] = fcd(gen, ref)
        metrics[f"SNN/{name}"] = snn(gen, ref, device=device)
        metrics[f"Frag/{name}"] = fragment_similarity(gen, ref)
        metrics[f"Scaf/{name}"] = scaffold_similarity(gen, ref)
    diverse = _subsample(gen, intdiv_sample, seed)
    metrics["IntDiv"] = internal_diversity(diverse, 1, device=device)
    metrics["IntDiv2"] = internal_diversity(diverse, 2, device=device)
    metrics["Filters"] = fraction_passes_filters(gen, filters, n_jobs=n_jobs)
    sizes = {"generated": gen.n_given, "valid": gen.n_valid, "intdiv": diverse.n_valid}
    sizes.update({name.lower(): ref.n_valid for name, ref in references.items()})
    if train is not None:
        train = train if isinstance(train, (set, frozenset)) else list(train)
        metrics["Novelty"] = novelty(gen, train, canonicalize_train=canonicalize_train)
        sizes["train"] = len(train)
    return {"metrics": {k: _json_number(v) for k, v in metrics.items()}, "sizes": sizes, "invalid": gen.invalid}


def _resolve_filters(filters: chem.MolFilters | str | os.PathLike | None) -> chem.MolFilters:
    if isinstance(filters, chem.MolFilters):
        return filters
    if filters is None:
        from vaekit.data.mnist import data_root

        filters = data_root() / "moses"
    return chem.MolFilters.from_dir(filters)


def _subsample(stats: Reference, size: int | None, seed: int) -> Reference:
    if size is None or stats.n_valid <= size:
        return stats
    keep = np.sort(np.random.default_rng(seed).choice(stats.n_valid, size, replace=False))
    canonical = tuple(stats.canonical[i] for i in keep)
    return Reference(len(keep), canonical, stats.fingerprints[keep], Counter(), Counter())


def _json_number(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
