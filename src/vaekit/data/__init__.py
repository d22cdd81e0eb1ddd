"""Datasets as tensors: ``load_data(source)`` gives train/valid/test splits and a record of how they were made.

Sources: "digits" (embedded, the default), "mnist", "fashion-mnist", "binarized-mnist", "dsprites"
(and "color-dsprites", "noisy-dsprites": generated, or the original file), "moses" and "moses-scaffolds"
(SMILES as token sequences: ``vaekit.data.sequences``), or a path to an .npy/.npz/.amat/.csv/IDX file,
a folder of images, or a file of strings (.smi, .txt, a CSV column) read as token sequences. See ``load_data``. Data made from known factors
of variation (dsprites) carries them (``Dataset.factors``) and is read by factor through a ``FactorSpace``.
"""

from vaekit.data import digits, dsprites, mnist, sequences  # noqa: F401  (importing them registers their datasets)
from vaekit.data.base import (
    BINARY,
    REAL,
    TOKENS,
    UNIT,
    UNLABELLED,
    Dataset,
    DataSplits,
    dataset_names,
    get_loader,
    keep_labels,
    register_dataset,
    split_off,
    split_parts,
)
from vaekit.data.download import download_dataset
from vaekit.data.dsprites import factor_space
from vaekit.data.factors import Factor, FactorSpace
from vaekit.data.idx import read_idx
from vaekit.data.mnist import data_root
from vaekit.data.sequences import Vocabulary, vocabulary_of
from vaekit.data.sources import SourceSettings, load_data, load_examples
from vaekit.data.tokenizers import TOKENIZERS, Tokenizer

__all__ = [
    "BINARY",
    "REAL",
    "SourceSettings",
    "TOKENIZERS",
    "TOKENS",
    "Tokenizer",
    "UNIT",
    "UNLABELLED",
    "Vocabulary",
    "DataSplits",
    "Dataset",
    "Factor",
    "FactorSpace",
    "data_root",
    "dataset_names",
    "download_dataset",
    "factor_space",
    "get_loader",
    "keep_labels",
    "load_data",
    "load_examples",
    "read_idx",
    "register_dataset",
    "split_off",
    "split_parts",
    "vocabulary_of",
]
