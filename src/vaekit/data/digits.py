"""scikit-learn's embedded 8x8 digits: the default dataset, needing no files and no network."""

from __future__ import annotations

from typing import Any

import torch

from vaekit.data.base import Dataset, DataSplits, SourceSettings, register_dataset, split_off, split_parts
from vaekit.data.preprocess import check_options
from vaekit.errors import DataError

TEST_FRACTION = 0.15
TEST_SEED = 0  # the test split is the same for every run, whatever its split seed
MAX_VALUE = 16.0  # pixel values are counts 0..16


@register_dataset("digits", format="digits")
def load_digits(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """1797 handwritten digits, (1, 8, 8) in [0, 1] (values / 16), labels 0-9.

    A fixed 15% is the test split; ``valid_fraction`` of the whole set (default 10%) is split
    off the rest with the seed as validation. ``data_dir`` and ``download`` are not used.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # sklearn is slow to import; only here

    check_options(options, "digits", ("divide_by",))
    valid_fraction = settings.valid_fraction
    if not 0 < valid_fraction < 1 - TEST_FRACTION:
        raise DataError(f"digits: valid_fraction must be in (0, {1 - TEST_FRACTION}), got {valid_fraction}")
    bunch = sklearn_digits()
    x = torch.from_numpy(bunch.images).float().div_(MAX_VALUE).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(bunch.target).long()  # (N,)
    rest, test = split_off(Dataset(x, y), TEST_FRACTION, TEST_SEED)
    info = {
        "preprocessing": {"format": "digits", "divide_by": MAX_VALUE},
        "test_fraction": TEST_FRACTION,
        "test_seed": TEST_SEED,
        "class_names": [str(d) for d in range(10)],
    }
    splits = split_parts({"train": rest, "test": test}, valid_fraction / (1 - TEST_FRACTION), settings.seed, info)
    splits.info["valid_fraction"] = valid_fraction
    return splits
