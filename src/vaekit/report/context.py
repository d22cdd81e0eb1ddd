"""What a view of a saved run looks at: one policy for the report, the figure commands and the explorer.

``RunContext`` holds a loaded run and the choices every view of it shares: which split of its data
(``test`` falls back to ``valid`` for data without one), the context a conditional model decodes with
where none was asked, whether the data are pictures, the names of the classes, the stochastic layer
the latent views vary, and the seed of every random choice.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import torch

from vaekit.data.base import Dataset, class_names, label_name
from vaekit.data.sequences import vocabulary_of
from vaekit.data.tables import describe_context
from vaekit.errors import ConfigError, DataError
from vaekit.examples import for_model, with_context
from vaekit.latent_layers import latent_view
from vaekit.models.condition import chosen_context

log = logging.getLogger(__name__)

SPLITS = ("test", "valid", "train")


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """Whether examples of ``shape`` are pictures: (C, H, W) with 1 (grey) or 3 (colour) channels."""
    return len(shape) == 3 and shape[0] in (1, 3)


class RunContext:
    """A loaded run and the choices its views share.

    run: a loaded ``vaekit.runs.Run``. data: its ``DataSplits`` where the caller has read them already;
    default: read on first use from ``source`` (another dataset, preprocessed like the training data;
    default the run's own). split: ``test``, ``valid`` or ``train`` (``test`` falls back to ``valid``
    for data without one). seed: every random choice (samples, noise, projections, subsets) is seeded
    with it, so a view is the same each time.
    context: for a conditional model, the class to decode with (``--class``), or for a model conditioned
        on context columns the standardised context vector (K,) (``--context``); None: each view decodes
        with its own default (the input's own context, or class 0 / the mean context). Inputs are always
        encoded with their own labels or context.
    layer: which stochastic layer of a hierarchical model the latent views vary (default: the top).
    """

    def __init__(
        self,
        run,
        *,
        data=None,
        source: str | None = None,
        split: str = "test",
        seed: int = 0,
        context: int | torch.Tensor | None = None,
        layer: int | None = None,
    ):
        if split not in SPLITS:
            raise ConfigError(f"split must be test, valid or train, got {split!r}")
        self.run, self.model, self.source, self.seed = run, run.model, source, seed
        self.latent_model = latent_view(run.model, layer)  # what the latent views vary: the model, or one layer of a hierarchical one
        self.chosen_context = chosen_context(self.model, context)
        self._given, self._asked = data, split

    # ----- the data -------------------------------------------------------------------------------
    @cached_property
    def data(self):
        """The run's ``DataSplits`` (read once), checked to fit the model."""
        data = self._given if self._given is not None else self.run.load_data(self.source)
        if tuple(data.shape) != tuple(self.model.input_shape):
            raise DataError(
                f"the data has examples of shape {tuple(data.shape)}, but the model was trained on {tuple(self.model.input_shape)}"
            )
        return data

    @cached_property
    def split_name(self) -> str:
        """The split the views use: the one asked for, or ``valid`` where ``test`` was asked of data without one."""
        if self._asked == "test" and self.data.test is None:
            log.info("this dataset has no test split; using the validation split")
            return "valid"
        return self._asked

    @property
    def split(self):
        """The chosen split (``Dataset``)."""
        return getattr(self.data, self.split_name)

    def examples(self, data: Dataset) -> Dataset:
        """A split as the model reads it (``vaekit.examples.for_model``): a conditional model's inputs are
        encoded with their labels or context (``model_context``: labels (N,) or vectors (N, K))."""
        return for_model(self.model, data, f"the {self.split_name if data is self.split else 'training'} split")

    # ----- what the data are ----------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return is_image_shape(tuple(self.model.input_shape))

    @property
    def is_sequences(self) -> bool:
        """The run models token sequences (strings read with a tokenizer): its views are strings."""
        return vocabulary_of(self.run.data_info) is not None

    def require_images(self, what: str) -> None:
        """A one-line ``ConfigError`` saying ``what`` needs images, unless the run models them."""
        if not self.is_image:
            raise ConfigError(f"{what} needs 1- or 3-channel images, but this run models data of shape {tuple(self.model.input_shape)}")

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The run's preprocessing record (its context columns' names and statistics, ...); {} where there is none."""
        return self.run.data_info.get("preprocessing") or {}

    @property
    def class_names(self) -> list[str] | None:
        """Label i's name as ``class_names[i]``, or None: labels are shown as numbers."""
        return class_names(self.run.data_info)

    def label_name(self, label: int) -> str:
        return label_name(self.run.data_info, label)

    # ----- the context decoded with -----------------------------------------------------------------
    @property
    def classes(self) -> int:
        """The conditional model's number of classes (0 for an unconditional model or a context of columns)."""
        return self.model.latent.label_classes

    def decode_context(self, default: int | torch.Tensor | None = None) -> int | torch.Tensor | None:
        """The context a conditional model's view decodes with: ``chosen_context``, else ``default``, else the
        condition's default (class 0, or the mean context (K,)); None when unconditional."""
        if not self.model.latent.conditional:
            return None
        if self.chosen_context is not None:
            return self.chosen_context
        if default is None:
            return int(self.model.condition.default()) if self.classes else self.model.condition.default().cpu()
        return int(default) if self.classes else default

    def class_name(self, label: int | torch.Tensor | None) -> str:
        """``class NAME`` for a label, the columns' values for a context vector (K,), "" for None."""
        if label is None:
            return ""
        if isinstance(label, torch.Tensor) and label.dim() == 1:
            return describe_context(self.preprocessing, label)
        return f"class {self.label_name(int(label))}"

    # ----- one input --------------------------------------------------------------------------------
    def example(self, spec: int | torch.Tensor | tuple[torch.Tensor, str]) -> tuple[torch.Tensor, str]:
        """An input (*input_shape,) and a short name for it, from an index into the split, a tensor,
        or a (tensor, name) pair (e.g. an image read from a file)."""
        if isinstance(spec, tuple):
            x, name = spec
            return self.example(x)[0], name
        if isinstance(spec, torch.Tensor):
            if tuple(spec.shape) != tuple(self.model.input_shape):
                raise DataError(f"an input of shape {tuple(spec.shape)} does not fit the model's {tuple(self.model.input_shape)}")
            return spec.float(), "given input"
        n = len(self.split)
        if not -n <= int(spec) < n:
            raise ConfigError(f"index {spec} is out of range: the {self.split_name} split has {n} examples")
        i = int(spec) % n
        label = "" if self.split.y is None else f", label {self.label_name(int(self.split.y[i]))}"
        return self.split.x[i], f"{self.split_name} #{i}{label}"

    def example_context(self, spec: int | torch.Tensor | tuple[torch.Tensor, str]) -> int | torch.Tensor | None:
        """The context a conditional model encodes the input ``spec`` (as for ``example``) with: an
        example's own label or context vector (K,), or ``chosen_context`` for an input given as a tensor or file;
        None when unconditional."""
        if not self.model.latent.conditional:
            return None
        if isinstance(spec, (tuple, torch.Tensor)):
            if self.chosen_context is None:
                flag = "--class" if self.classes else "--context"
                raise ConfigError(f"a conditional model encodes an input with its context: give {flag} for an input file")
            return self.chosen_context
        y = self.examples(self.split).model_context[int(spec) % len(self.split)]
        return int(y) if self.classes else y

    def input(self, spec: int | torch.Tensor | tuple[torch.Tensor, str]) -> Dataset:
        """The input ``spec`` (as for ``example``) as a one-example ``Dataset`` the model reads: with its
        ``example_context`` for a conditional model."""
        return with_context(self.model, self.example(spec)[0].unsqueeze(0), self.example_context(spec))
