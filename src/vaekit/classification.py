"""What a semi-supervised model's classifier q(y|x) says about a set of examples, under ``torch.inference_mode``:
class probabilities, predictions, and (where the labels are known) the error and the confusion matrix;
and ``VAEClassifier``, the scikit-learn estimator that trains one on partly labelled rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from vaekit.data.base import Dataset
from vaekit.estimators import StandardizedRows, train_in_memory
from vaekit.examples import class_probabilities


@dataclass
class Classification:
    """probabilities: q(y|x) (N, K); predicted: argmax (N,); labels: the true labels (N,) (-1: unknown) or None.
    error: the share of labelled examples predicted wrongly (None without labels); confusion: (K, K) counts,
    row = true class, column = predicted class."""

    probabilities: torch.Tensor
    predicted: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def known(self) -> torch.Tensor | None:
        return None if self.labels is None else self.labels >= 0

    @property
    def error(self) -> float | None:
        known = self.known
        if known is None or not bool(known.any()):
            return None
        return float((self.predicted[known] != self.labels[known]).double().mean())

    @property
    def confusion(self) -> torch.Tensor | None:
        known = self.known
        if known is None or not bool(known.any()):
            return None
        k = self.probabilities.shape[1]
        return torch.bincount(self.labels[known] * k + self.predicted[known], minlength=k * k).view(k, k)


def classify(model, data: Dataset, batch_size: int = 1000) -> Classification:
    """The classifier's view of the examples of ``data``, compared with its labels ``data.y`` (N,) where it has them."""
    probabilities = class_probabilities(model, data, batch_size)
    return Classification(probabilities, probabilities.argmax(-1), data.y)


class VAEClassifier(StandardizedRows, ClassifierMixin, BaseEstimator):
    """Semi-supervised classifier for tables and arrays: Kingma et al. 2014's M2 (``--model m2``) trained on
    the (standardised) rows of X and their labels y, where -1 marks an unlabelled row (scikit-learn's
    convention, as ``sklearn.semi_supervised``). The unlabelled rows teach the generative model p(x|y, z),
    and through it the classifier q(y|x); ``predict_proba`` is q(y|x).

    latent_dim: size of the style z. hidden: MLP hidden sizes (the encoder's, the decoder's and, unless
        ``classifier_hidden`` is given, the classifier's). classifier_dropout: the probability with which
        the classifier zeroes each hidden unit in training (None: none), a regulariser for few labels.
        auxiliary_dim: size of an auxiliary variable a (Maaløe et al. 2016's ADGM; 0: none, M2 itself);
        ``predict_proba`` is then q(y|a, x) at E[a|x].
        activation: hidden activation. likelihood: p(x|y, z) (``gaussian-shared``: a learned scale per
        column; any name of ``vaekit.models.LIKELIHOODS``).
    epochs, batch_size, lr: training (Adam). alpha: weight of a labelled row's classification loss (None:
        the paper's 0.1 × rows / labelled rows). class_balance: γ of KL(mean q(y|x) ‖ p(y)) over each
        batch's unlabelled rows (0: off; ``TrainConfig.class_balance``). The best epoch is the one with
        the lowest error on the labelled rows.
    standardize: centre and scale each column with the training mean and standard deviation.
    random_state: seed of initialisation, data order and draws (None: random). device: torch device.

    Learned attributes: ``model_`` (the ``LatentVariableModel`` with its classifier), ``classes_`` (the
    labels seen, sorted; -1 is none of them), ``mean_``/``scale_`` (D,), ``n_features_in_``, ``seed_``.
    """

    def __init__(
        self,
        *,
        latent_dim: int = 8,
        hidden: tuple[int, ...] = (64,),
        classifier_hidden: tuple[int, ...] | None = None,
        classifier_dropout: float | None = None,
        auxiliary_dim: int = 0,
        activation: str = "relu",
        likelihood: str = "gaussian-shared",
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 1e-3,
        alpha: float | None = None,
        class_balance: float = 0.0,
        standardize: bool = True,
        random_state: int | None = None,
        device: str = "cpu",
    ):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.classifier_hidden = classifier_hidden
        self.classifier_dropout = classifier_dropout
        self.auxiliary_dim = auxiliary_dim
        self.activation = activation
        self.likelihood = likelihood
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.alpha = alpha
        self.class_balance = class_balance
        self.standardize = standardize
        self.random_state = random_state
        self.device = device

    def fit(self, X, y):
        """Standardise X (N, D) and train M2 on its rows, labelled by y (N,) (-1: unlabelled). Returns self."""
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import validate_data

        from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
        from vaekit.data.arrays import infer_value_range
        from vaekit.data.base import DataSplits
        from vaekit.models.kinds import SemiSupervised
        from vaekit.models.networks import MLPEncoder

        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2)
        check_classification_targets(y)
        known = ~_unlabelled(y)
        self.classes_ = np.unique(y[known])
        if len(self.classes_) < 2:
            raise ValueError(f"VAEClassifier needs labelled rows of at least 2 classes, got {len(self.classes_)} class(es)")
        codes = np.full(len(y), -1, dtype=np.int64)
        codes[known] = np.searchsorted(self.classes_, y[known])
        x = self._fit_rows(X)  # (N, D)
        labels = torch.from_numpy(codes)
        rows = Dataset(x, labels)
        labelled = rows.subset(torch.from_numpy(np.flatnonzero(known)))  # the best epoch: the lowest error on them
        info = {"source": "array", "value_range": infer_value_range(x), "shape": [x.shape[1]], "num_classes": len(self.classes_)}
        config = RunConfig(
            data=DataConfig(source="array", split_seed=self.seed_),
            model=ModelConfig(
                kind=SemiSupervised.name,
                arch=MLPEncoder.name,
                input_shape=(x.shape[1],),
                latent_dim=self.latent_dim,
                hidden=tuple(self.hidden),
                classifier_hidden=None if self.classifier_hidden is None else tuple(self.classifier_hidden),
                classifier_dropout=self.classifier_dropout,
                auxiliary_dim=self.auxiliary_dim,
                activation=self.activation,
                likelihood=self.likelihood,
            ),  # fmt: skip
            train=TrainConfig(
                epochs=self.epochs,
                batch_size=max(2, min(self.batch_size, len(rows))),
                lr=self.lr,
                alpha=self.alpha,
                class_balance=self.class_balance,
                seed=self.seed_,
            ),
        )
        run = train_in_memory(config, DataSplits(rows, labelled, None, info), self.device)
        self.model_ = run.model.eval()
        return self

    def predict_proba(self, X) -> np.ndarray:
        """q(y|x) (N, K), columns in the order of ``classes_``."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return class_probabilities(self.model_, Dataset(self._rows(X))).double().numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (N,), one of ``classes_``."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


def _unlabelled(y: np.ndarray) -> np.ndarray:
    """(N,) bool: the rows whose label is -1 (numeric labels only; a string label is always a label)."""
    if y.dtype.kind in "iuf":
        return y == -1
    return np.zeros(len(y), dtype=bool)
