"""Dataset containers and the dataset registry.

A dataset is held as one tensor ``x`` of shape (N, *shape); a batch is an index slice
``x[idx]``, never a per-sample Python loop. Images are (N, C, H, W) float32 in [0, 1];
tables and arrays are (N, D) float32; token sequences are (N, T) int64, with their ``lengths``.
``Dataset.batches`` gives a split's examples in order as ``Batch`` records, each
with the context a conditional model is given (``vaekit.examples.for_model``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vaekit.errors import DataError

# the most values vaekit reads into one tensor: larger declared sizes are refused before allocating
MAX_VALUES = 2**31

# value ranges a likelihood can check against
BINARY = "binary"  # values in {0, 1}
UNIT = "unit"  # values in [0, 1]
REAL = "real"  # any finite value
TOKENS = "tokens"  # integer token ids 0..V-1 (int64 sequences, no value range: nothing is scaled or cast)

UNLABELLED = -1  # the label of an example without one (scikit-learn's convention)

SPLITS = ("train", "valid", "test")  # the splits a source may have, train first

# what a conditional model is given with each example (``Dataset.conditioned_on``)
LABELS = "labels"  # its class label y (N,)
COLUMNS = "columns"  # its context vector (N, K)


@dataclass
class Batch:
    """One example record, as objectives receive it: a batch of B examples with what comes with them.

    inputs: (B, *shape) what the encoder sees (corrupted for denoising).
    target: (B, *shape) what the decoder explains (the clean examples).
    context: their context, when the model is conditional: class labels (B,) (int64) or context
        vectors (B, K) (float); None otherwise.
    labelled: (B,) bool, which examples carry a label (partly labelled data; None: all or none do).
    lengths: (B,) int64, the lengths of sequences padded to a common length (None: fixed-size examples).
    weight: the factor that turns the sum of per-example losses into this process's part of the
        global batch's mean (world / global batch; 0 for a process whose share is empty and stands
        in one example, so that every process takes part in each step; 1 outside training).
    """

    inputs: torch.Tensor
    target: torch.Tensor
    context: torch.Tensor | int | None = None
    labelled: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    weight: float = 1.0


@dataclass
class Dataset:
    """One split: examples ``x`` (N, *shape) (a tensor, or a ``MappedArray`` read batch by batch),
    optional integer labels ``y`` (N,) int64 (classes 0..K-1, and ``UNLABELLED`` (-1) for an example
    without one: partly labelled data) and optional context vectors ``context`` (N, K) float32 (a
    table's context columns: what a ``--condition columns`` model is given).

    lengths: optional (N,) int64 sequence lengths of examples padded to a common length T
        (token sequences: example i is ``x[i, :lengths[i]]``), each in 1..T; None for fixed-size examples.

    factors: optional (N, F) int64 classes of each example's F factors of variation (a dataset made
        from known factors, such as dsprites: its shape, scale, ... class); the record's
        ``info["factors"]`` describes them (``vaekit.data.factors``). Not labels: ``y`` stays what a
        classifier is trained on, and is None for such data unless it has labels too.

    spread: optional (N, *shape) float32 standard deviations of uncertain examples: a training batch
        draws each of its examples x ~ N(x, spread²) afresh (the codes of an M1 VAE: z1 ~ q(z1|x) at every
        step, as Kingma et al. 2014 train M2 on them); evaluation reads ``x`` (the means) itself.

    conditioned_on: what a conditional model is given with each example, as ``batches`` carry it:
        ``LABELS`` (its label y) or ``COLUMNS`` (its context vector); None: nothing (an unconditional
        model, or a split no model has read yet). ``vaekit.examples.for_model`` decides it for a model.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    context: torch.Tensor | None = None
    conditioned_on: Literal["labels", "columns"] | None = None
    lengths: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    spread: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.x):
            raise DataError(f"{len(self.x)} examples but {len(self.y)} labels")
        if self.context is not None and (self.context.dim() != 2 or len(self.context) != len(self.x)):
            raise DataError(f"{len(self.x)} examples but context of shape {tuple(self.context.shape)}")
        if self.conditioned_on not in (None, LABELS, COLUMNS):
            raise DataError(f"a split is conditioned on {LABELS!r}, {COLUMNS!r} or nothing (None), not {self.conditioned_on!r}")
        if self.conditioned_on is not None and self.model_context is None:
            raise DataError(f"a split conditioned on its {self.conditioned_on} needs them, and this one has none")
        if self.lengths is not None:
            check_lengths(self.lengths, self.x)
        if self.factors is not None and (self.factors.dim() != 2 or len(self.factors) != len(self.x)):
            raise DataError(f"{len(self.x)} examples but factors of shape {tuple(self.factors.shape)}")
        if self.factors is not None and (self.factors.is_floating_point() or self.factors.dtype == torch.bool):
            raise DataError(f"factors must be integer classes, got {self.factors.dtype}")
        if self.spread is not None and tuple(self.spread.shape) != tuple(self.x.shape):
            raise DataError(f"examples of shape {tuple(self.x.shape)} but spreads of shape {tuple(self.spread.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) for images, (D,) for flat data."""
        return tuple(self.x.shape[1:])

    @property
    def labelled(self) -> torch.Tensor | None:
        """(N,) bool: which examples carry a label; None where the split has no labels at all."""
        return None if self.y is None else self.y != UNLABELLED

    @property
    def partly_labelled(self) -> bool:
        """Some examples carry a label and some do not."""
        labelled = self.labelled
        return labelled is not None and bool(labelled.any()) and not bool(labelled.all())

    @property
    def model_context(self) -> torch.Tensor | None:
        """What a conditional model is given with each example (``conditioned_on``): the labels y (N,),
        the context vectors (N, K), or None."""
        return self.y if self.conditioned_on == LABELS else self.context if self.conditioned_on == COLUMNS else None

    def _with(self, x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Dataset:
        """The split with examples ``x`` and ``fn`` applied to each per-example field it has (y, context, lengths, factors, spread)."""
        fields = (self.y, self.context, self.lengths, self.factors, self.spread)
        y, context, lengths, factors, spread = (None if t is None else fn(t) for t in fields)
        return Dataset(x, y, context, self.conditioned_on, lengths, factors, spread)

    def subset(self, index: torch.Tensor) -> Dataset:
        return self._with(self.x[index], lambda t: t[index])

    def rows(self, start: int, stop: int) -> Dataset:
        """Examples [start, stop) (clipped to the split), as a view: nothing is copied or read from disk."""
        start, stop = min(max(start, 0), len(self)), min(max(stop, 0), len(self))
        length = max(stop - start, 0)
        return self._with(self.x.narrow(0, start, length), lambda t: t.narrow(0, start, length))

    def to(self, device: torch.device | str) -> Dataset:
        """The split with its tensors on ``device``; memory-mapped examples stay on disk."""
        x = self.x.to(device) if isinstance(self.x, torch.Tensor) else self.x
        return self._with(x, lambda t: t.to(device))

    def batch(self, device: torch.device | str) -> Batch:
        """All of the split's examples as one ``Batch`` on ``device``: inputs = target = the examples,
        ``context`` = ``model_context``, for labels ``labelled`` (-1: an example without one), and ``lengths``."""
        x = self.x[:].to(device, non_blocking=True)  # (B, *shape); a memory-mapped view is read here
        context = self.model_context
        context = None if context is None else context.to(device, non_blocking=True)  # (B,) or (B, K)
        labelled = context != UNLABELLED if self.conditioned_on == LABELS else None  # (B,) bool
        lengths = None if self.lengths is None else self.lengths.to(device, non_blocking=True)  # (B,)
        return Batch(x, x, context=context, labelled=labelled, lengths=lengths)

    def batches(self, size: int, device: torch.device | str) -> Iterator[Batch]:
        """The split's examples in order, ``size`` at a time, as ``Batch`` records on ``device`` (``batch``)."""
        for start in range(0, len(self), size):
            yield self.rows(start, start + size).batch(device)


@dataclass
class DataSplits:
    """Train, validation and (optional) test splits of one source, plus how they were made.

    ``info`` is JSON-serialisable and is saved in the run: the source, the split seed and
    sizes, the value range (``BINARY``, ``UNIT`` or ``REAL``) and any preprocessing
    (e.g. per-column mean/std of a table) needed to treat new data the same way.
    """

    train: Dataset
    valid: Dataset
    test: Dataset | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.train.shape

    @property
    def value_range(self) -> str:
        return self.info.get("value_range", REAL)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def streaming(self) -> bool:
        """The training examples are read from disk batch by batch (a memory-mapped array), not held in memory."""
        return not isinstance(self.train.x, torch.Tensor)


def class_names(info: dict[str, Any]) -> list[str] | None:
    """The class names of a data record (``DataSplits.info``, a run's data.json): label i is named
    ``names[i]``. From ``info["class_names"]`` (a named dataset's, or a table's or image folder's
    classes), else ``info["preprocessing"]["classes"]`` (runs written before names were recorded);
    None where there are none (labels are then shown as numbers)."""
    names = info.get("class_names")
    if names is None:
        names = (info.get("preprocessing") or {}).get("classes")
    return [str(n) for n in names] if isinstance(names, list) and names else None


def label_name(info: dict[str, Any], label: int) -> str:
    """Label ``label`` as shown: its class name (``class_names``), else the number."""
    names = class_names(info)
    return names[label] if names and 0 <= label < len(names) else str(label)


@dataclass(frozen=True)
class SourceSettings:
    """Where a source's files are, how they are read and how its validation split is made
    (``load_data``, ``load_examples``).

    data_dir: where named datasets' files are; default ``$VAEKIT_DATA_DIR``, else ``~/.cache/vaekit``.
    download: fetch missing MNIST / Fashion-MNIST files (checked against their MD5 sums).
    valid_fraction: share split off the training data as validation, for sources without their own
        validation split.
    seed: seed of that split (recorded as ``info["split_seed"]``).
    memmap: read a .npy file or a folder of .npy shards memory-mapped (``vaekit.data.streaming``):
        each split's ``x`` is then a ``MappedArray`` read batch by batch, and a single file's
        validation split is seeded random blocks. None: a saved ``preprocessing["memmap"]``, else
        automatic (``streaming.use_memmap``: shard folders, and .npy files too big for memory).
    """

    data_dir: str | None = None
    download: bool = False
    valid_fraction: float = 0.1
    seed: int = 0
    memmap: bool | None = None


Loader = Callable[[SourceSettings, dict[str, Any]], DataSplits]  # (settings, preprocessing options) -> splits
_DATASETS: dict[str, Loader] = {}
_FORMATS: dict[str, str] = {}  # dataset name -> the ``format`` its preprocessing record names


def register_dataset(*names: str, format: str | None = None) -> Callable[[Loader], Loader]:
    """Register a loader ``fn(settings, options) -> DataSplits``: ``settings`` the ``SourceSettings``
    (where the files are, whether to download them, the validation split's share and seed), ``options``
    the preprocessing options asked for (a dict, possibly empty: a saved ``info["preprocessing"]`` to repeat).

    format: the ``format`` its ``info["preprocessing"]`` names (``dataset_format``), so that the
        preprocessing saved for another format is given to it as the model's input steps only.
    """

    def wrap(fn: Loader) -> Loader:
        for name in names:
            _DATASETS[name] = fn
            if format is not None:
                _FORMATS[name] = format
        return fn

    return wrap


def dataset_format(name: str) -> str | None:
    """The preprocessing format of a registered dataset (None: not declared at registration)."""
    return _FORMATS.get(name)


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def get_loader(name: str) -> Loader:
    try:
        return _DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())} "
            "or give a path to a .npy/.npz/.csv/.amat file or an image folder"
        ) from None


def split_off(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split ``data`` into (rest, held-out) with a seeded permutation; ``fraction`` goes to held-out."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(data)
    n_held = max(1, int(round(n * fraction)))
    if n_held >= n:
        raise DataError(f"dataset of {n} examples is too small to split off a validation set")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[n_held:]), data.subset(perm[:n_held])


def split_parts(parts: dict[str, Dataset], valid_fraction: float, seed: int, info: dict[str, Any] | None = None) -> DataSplits:
    """DataSplits from the splits a source provides ("train", and "valid"/"test" where it has them).

    A source without its own validation split has one split off its training data with
    ``split_off(train, valid_fraction, seed)``; ``info["valid_fraction"]`` then records it.
    """
    info = dict(info or {})
    train, valid = parts["train"], parts.get("valid")
    if valid is None:
        train, valid = split_off(train, valid_fraction, seed)
        info["valid_fraction"] = valid_fraction
    return DataSplits(train, valid, parts.get("test"), info)


def keep_labels(data: Dataset, count: int, classes: int, seed: int) -> Dataset:
    """``data`` with the labels of all but ``count`` examples hidden (set to ``UNLABELLED``): a
    class-balanced subset, ``count // classes`` per class (the first ``count % classes`` classes one
    more), drawn by ``seed`` from the labelled examples; the semi-supervised benchmarks' protocol.
    A one-line ``DataError`` when the data has too few labels of a class."""
    if data.y is None:
        raise DataError("--labelled needs labelled data, and this data has no labels")
    labelled = int(data.labelled.sum())
    if count < classes:
        raise DataError(f"--labelled {count} leaves some of the {classes} classes without a labelled example; give at least {classes}")
    if count > labelled:
        raise DataError(f"--labelled {count} is more than the {labelled} labelled training examples")
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(classes):
        pool = (data.y == c).nonzero().flatten()  # (n_c,)
        want = count // classes + (1 if c < count % classes else 0)
        if len(pool) < want:
            raise DataError(f"--labelled {count} needs {want} labelled examples of class {c}, and the training split has {len(pool)}")
        keep.append(pool[torch.randperm(len(pool), generator=g)[:want]])
    y = torch.full_like(data.y, UNLABELLED)
    kept = torch.cat(keep)
    y[kept] = data.y[kept]
    return dataclasses.replace(data, y=y)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s example order (``batches.data_order``, ``streaming.BlockOrder``):
    a function of (seed, epoch) alone, so a resumed run sees the same order whatever happened before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def count_classes(labels: list[torch.Tensor | None]) -> int | None:
    """K = the largest label + 1 over the splits' labels (-1, unlabelled, is no class); None without any label."""
    found = [y[y != UNLABELLED] for y in labels if y is not None]
    found = [y for y in found if len(y)]
    return max(int(y.max()) for y in found) + 1 if found else None


def check_partial_labels(y: torch.Tensor | None, where: str) -> None:
    """Labels are classes 0, 1, ... or ``UNLABELLED`` (-1); anything below -1 is a one-line ``DataError``."""
    if y is not None and len(y) and int(y.min()) < UNLABELLED:
        raise DataError(f"{where}: labels must be classes 0, 1, ... or -1 for an unlabelled example, found {int(y.min())}")


def check_lengths(lengths: torch.Tensor, x: Any, where: str = "lengths") -> None:
    """Sequence lengths are (N,) integers, one per example of ``x`` (N, T), each in 1..T; else a one-line ``DataError``."""
    if lengths.dim() != 1 or len(lengths) != len(x):
        raise DataError(f"{where}: {len(x)} examples but lengths of shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise DataError(f"{where}: lengths must be integers, got {lengths.dtype}")
    if len(x.shape) != 2:
        raise DataError(f"{where}: lengths go with sequences of shape (N, T), not examples of shape {tuple(x.shape[1:])}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise DataError(
            f"{where}: each length must be in 1..{x.shape[1]} (the padded length), found {int(lengths.min())}..{int(lengths.max())}"
        )


def describe(
    source: str,
    seed: int,
    datasets: dict[str, Dataset | None],
    *,
    loader_info: dict[str, Any],
    value_range: str,
    binarize: bool,
    preprocessing: dict[str, Any],
) -> dict[str, Any]:
    """The ``info`` record of loaded splits (``DataSplits.info``, saved in a run as data.json), the
    one place its keys are made, for data in memory and memory-mapped alike.

    Args:
        source: the dataset name or the resolved path (``info["source"]``).
        seed: the seed of the validation split (``info["split_seed"]``).
        datasets: the splits by name ("train", "valid", maybe "test"; a missing or None split has size None).
        loader_info: what the loader recorded (``files``, ``valid_fraction``, a named dataset's
            ``class_names``, the ``factors`` of data made from known factors of variation (one
            ``{"name", "values", "classes"}`` per column of ``Dataset.factors``: ``factors.Factor.record``),
            ...), kept after ``split_seed`` and before the keys made here.
        value_range: ``BINARY``, ``UNIT``, ``REAL`` or ``TOKENS`` (``info["value_range"]``).
        binarize: dynamic binarization was asked for (``info["dynamic_binarization"]``).
        preprocessing: how the examples were prepared (``info["preprocessing"]``); its ``classes``,
            where it names them, give the class count and names.

    ``num_classes`` is the number of named classes, else ``count_classes`` over the splits' labels;
    ``class_names`` is ``class_names`` of the record; ``context_dim`` is the width of the training
    split's context vectors (None without any); ``vocabulary_size`` is the size of the strings' vocabulary
    (``preprocessing["vocabulary"]``), else the largest token + 1 over the
    splits for ``TOKENS`` data (None otherwise); ``lengths`` says whether the examples carry sequence lengths.
    """
    train = datasets["train"]
    classes = preprocessing.get("classes")
    return {
        "source": source,
        "split_seed": seed,
        **loader_info,
        "sizes": {name: None if datasets.get(name) is None else len(datasets[name]) for name in SPLITS},
        "shape": list(train.shape),
        "value_range": value_range,
        "dynamic_binarization": bool(binarize),
        "num_classes": len(classes) if isinstance(classes, list) else count_classes([d.y for d in datasets.values() if d is not None]),
        "class_names": class_names({"class_names": loader_info.get("class_names"), "preprocessing": preprocessing}),
        "context_dim": None if train.context is None else int(train.context.shape[1]),
        "vocabulary_size": _vocabulary_size(datasets, preprocessing) if value_range == TOKENS else None,
        "lengths": train.lengths is not None,
        "preprocessing": preprocessing,
    }


def _vocabulary_size(datasets: dict[str, Dataset | None], preprocessing: dict[str, Any]) -> int:
    """The token ids' range: the strings' vocabulary where they were read with one (it may hold tokens a
    small file does not use), else the largest id + 1 over the splits (token arrays)."""
    vocabulary = preprocessing.get("vocabulary")
    if vocabulary:
        return len(vocabulary["tokens"])
    return max(int(d.x.max()) for d in datasets.values() if d is not None) + 1
