"""Setting a run up: the config resolved from the data, the data's fitness for the model, seeds,
compilation, and the loop's surroundings (progress bar, TensorBoard, the stop signal)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaekit.codes import encoded_splits
from vaekit.config import DataConfig, RunConfig
from vaekit.data import DataSplits, SourceSettings, keep_labels, load_data
from vaekit.data.base import BINARY, TOKENS, UNIT, Batch, Dataset
from vaekit.data.batches import InputSteps, TrainingBatches
from vaekit.data.context import context_count
from vaekit.data.sequences import vocabulary_of
from vaekit.errors import ConfigError, DataError, TrainingError
from vaekit.evaluation import posterior_collapse_warning
from vaekit.models import CONDITIONS, ENCODERS, LIKELIHOODS, MODEL_KINDS
from vaekit.objectives import ELBO, OBJECTIVES, Objective
from vaekit.runs import codes_run, read_config

log = logging.getLogger(__name__)

INIT_EXAMPLES = 10_000  # training examples whose mean starts the decoder's output bias
COLLAPSE_CHECK_EXAMPLES = 2000  # validation examples the end-of-training posterior-collapse check looks at


def resolved(config: RunConfig, data: DataSplits) -> RunConfig:
    """A copy of ``config`` with what the data decides filled in (the input shape, a conditional
    model's context size, whether the data is read memory-mapped); the caller's config is left as
    it is. This copy is what the run saves, so a resumed run reads its data the same way."""
    config = copy.deepcopy(config)
    if config.data.codes_of is not None:  # the codes' run's data settings, for the record (and --labelled's seed)
        config.data = codes_data_config(config.data)
    config.model.input_shape = tuple(data.shape)
    config.model.vocabulary_size = data.info.get("vocabulary_size") or 0
    config.data.memmap = data.streaming
    kind = MODEL_KINDS[config.model.kind]
    config.model = kind.resolved(config.model)  # the condition the kind always has (M2's class label)
    if kind.objective is not None:  # a kind with an objective of its own trains with it
        if config.train.objective not in (ELBO.name, kind.objective):
            raise ConfigError(
                f"--model {kind.name} trains with its own objective ({kind.objective}), not --objective {config.train.objective}"
            )
        config.train.objective = kind.objective
    if kind.condition is not None and not data.info.get("num_classes"):
        raise ConfigError(f"--model {kind.name} needs class labels (-1 marks an unlabelled example), and {config.data.source} has none")
    check_data(config, data)
    if config.model.condition != "none":
        config.model.context_dim = context_count(data, CONDITIONS[config.model.condition].reads, config.data.source)
    OBJECTIVES[config.train.objective].resolve(config, data)
    return config


def codes_data_config(d: DataConfig) -> DataConfig:
    """``d`` with the source and split settings of the run whose codes are the data (``codes_of``)."""
    source = read_config(Path(d.codes_of)).data
    return dataclasses.replace(
        source, codes_of=str(Path(d.codes_of).resolve()), labelled=d.labelled, memmap=source.memmap, download=d.download
    )


def kept_labels(config: RunConfig, data: DataSplits) -> DataSplits:
    """``data`` with all but ``config.data.labelled`` training labels hidden (``keep_labels``: class-balanced,
    by the split seed), as the semi-supervised protocol trains; the data as it is when ``labelled`` is 0."""
    n = config.data.labelled
    if not n:
        return data
    classes = data.info.get("num_classes")
    if data.train.y is None or not classes:
        raise ConfigError(f"--labelled needs class labels, and {config.data.source} has none")
    train = keep_labels(data.train, n, classes, config.data.split_seed)
    return DataSplits(train, data.valid, data.test, {**data.info, "labelled": n})


def check_data(config: RunConfig, data: DataSplits) -> None:
    """Refuse data that the model or likelihood cannot explain, with a one-line reason."""
    if (data.value_range == TOKENS) != ENCODERS[config.model.arch].reads_tokens:
        if data.value_range == TOKENS:
            raise ConfigError(f"{config.data.source} holds token sequences: train them with --arch gru --likelihood categorical")
        raise ConfigError(
            f"the {config.model.arch} network reads token sequences, and {config.data.source} holds numbers of shape {data.shape}"
        )
    if data.value_range == TOKENS and vocabulary_of(data.info) is None:
        raise ConfigError(
            f"{config.data.source} holds token ids without a vocabulary: a sequence model reads strings "
            "(.smi/.txt files, a CSV column with --tokenizer, --dataset moses), stored <start> tokens <end> and padded"
        )
    if LIKELIHOODS[config.model.likelihood].support == "unit" and data.value_range not in (BINARY, UNIT):
        raise DataError(
            f"the {config.model.likelihood} likelihood needs data in [0, 1], but {config.data.source} has values outside it; "
            "use --likelihood gaussian (or gaussian-learned)"
        )
    if config.data.dynamic_binarize and data.value_range not in (BINARY, UNIT):
        raise DataError("dynamic binarization needs data in [0, 1]")
    if ENCODERS[config.model.arch].needs_images and not data.is_image:
        raise ConfigError(f"a {config.model.arch} model needs image data, {config.data.source} has shape {data.shape}; use --arch mlp")
    if config.model.condition != "none":
        k = context_count(data, CONDITIONS[config.model.condition].reads, config.data.source)
        if config.model.context_dim not in (0, k):
            raise ConfigError(f"the model was built for a context of {config.model.context_dim}, but {config.data.source} gives {k}")
    if config.train.batch_size > len(data.train):
        raise ConfigError(f"batch size {config.train.batch_size} is larger than the training set ({len(data.train)} examples)")


def warn_if_no_code_length(config: RunConfig, data: DataSplits) -> None:
    """One warning at the start of training: a likelihood that is a probability mass on {0, 1}
    (bernoulli) trained on data that is not binary treats grey values as soft targets, so its
    negative ELBO is no code length (no bits/dim) for this data; the discrete likelihoods are."""
    if LIKELIHOODS[config.model.likelihood].binary and data.value_range != BINARY and not config.data.dynamic_binarize:
        log.warning(
            "the %s likelihood is a code length only for binary data, and %s is not binary (values in [0, 1]): "
            "its negative ELBO is not a code length for this data; for one, train with the beta-binomial "
            "or discretized-logistic likelihood (8-bit data), or binarize it (dynamic binarization)",
            config.model.likelihood,
            config.data.source,
        )


def load_splits(config: RunConfig) -> DataSplits:
    d = config.data
    if d.codes_of is not None:  # M1+M2: the data is a trained VAE's codes of its own data
        m1 = codes_run(d.codes_of)
        return encoded_splits(m1, m1.load_data())
    return load_data(
        d.source,
        settings=SourceSettings(
            data_dir=d.data_dir, download=d.download, valid_fraction=d.valid_fraction, seed=d.split_seed, memmap=d.memmap
        ),
        binarize=d.dynamic_binarize,
        image_size=d.image_size,
        preprocessing=reading_options(d) or None,
    )


def reading_options(d) -> dict:
    """The preprocessing options a run's data settings ask of the loader: context columns, and for
    strings read as token sequences the tokenizer, maximum length, truncation and skipping of invalid lines."""
    options = {
        "context_columns": list(d.context_columns) or None,
        "tokenizer": d.tokenizer,
        "max_length": d.max_length,
        "truncate": d.truncate or None,
        "skip_invalid": d.skip_invalid or None,
    }
    return {k: v for k, v in options.items() if v is not None}


def init_sample(n: int, seed: int) -> torch.Tensor:
    """A seeded, sorted subset of at most INIT_EXAMPLES indices (sorted: sequential reads from disk)."""
    if n <= INIT_EXAMPLES:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:INIT_EXAMPLES].sort().values


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def seed_rank(seed: int, rank: int, step: int) -> None:
    """Random streams of their own for the processes after the first (latent samples, dynamic
    binarization, input noise), from (seed, rank, step) alone, so a resumed process gets one too."""
    seed_all((seed * 1_000_003 + rank * 7_919 + step * 104_729) % 2**63)


def cpu_has_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def compiled(fn):
    """``fn`` compiled by ``torch.compile`` (shapes static: one graph per batch size), its
    compile failures turned into a one-line ``TrainingError``. The first call runs eagerly: it
    fills lazy caches that dynamo cannot trace without a graph break (``torch.distributions``'
    KL lookup), so that the compiled function is one graph."""
    import torch._dynamo  # for its exception types; loaded only when compiling (it is slow to import)

    compiled = torch.compile(fn, dynamic=False)
    calls = 0

    def call(*args):
        nonlocal calls
        calls += 1
        if calls == 1:
            return fn(*args)
        try:
            return compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            inner = exc.inner_exception
            reason = f"{type(inner).__name__}: {str(inner).strip().splitlines()[0] if str(inner).strip() else ''}".rstrip(": ")
            raise TrainingError(f"torch.compile failed ({reason}); train without --compile") from None

    return call


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm  # the CLI's progress bar; library callers without one never import it

    # leave=False: the epoch's log line stays; disable=None: a bar only on a terminal, so a log file
    # written with `> train.log` holds the log lines alone, not carriage-return redraws
    return tqdm(total=total, desc=desc, initial=initial, leave=False, dynamic_ncols=True, mininterval=0.5, disable=None)


def tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # the optional extra: imported only where installed
    except Exception:
        return None
    return SummaryWriter(str(out / "tensorboard"))


class StopOnInterrupt:
    """While active, the first SIGINT/SIGTERM only sets ``requested`` (the loop checkpoints and
    stops after the current step); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this step (press Ctrl-C again to abort at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Forward(nn.Module):
    """The model and its objective joined in one module, whose ``forward`` is the training loss's
    reported terms (so DistributedDataParallel can wrap it, and ``torch.compile`` trace it)."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, beta, batch: Batch) -> dict[str, torch.Tensor]:
        return self.objective(self.model, batch, beta=beta).reported()


def cut_lr(optimizer: torch.optim.Optimizer, factor: float, min_lr: float, patience: int) -> None:
    """Multiply the learning rate by ``factor`` (not below ``min_lr``): no better validation loss for
    ``patience`` epochs. The optimizer's state (saved with the checkpoint) carries the new rate."""
    old = optimizer.param_groups[0]["lr"]
    new = max(old * factor, min_lr)
    if new < old:
        for group in optimizer.param_groups:
            group["lr"] = new
        log.info("no better validation loss for %d epochs: learning rate %.3g -> %.3g", patience, old, new)


def training_batches(config: RunConfig, train: Dataset, context, global_batch: int, device: torch.device, world) -> TrainingBatches:
    """The run's training batches of the ``train`` split (with a conditional model's ``context``, and the
    split's sequence lengths and spreads), this process's share."""
    t = config.train
    return TrainingBatches(
        train.x,
        context=context,
        lengths=train.lengths,
        spread=train.spread,
        global_batch=global_batch,
        seed=t.seed,
        device=device,
        rank=world.rank,
        world=world.size,
        steps=InputSteps(config.data.dynamic_binarize, t.noise, t.noise_level),
        epoch_steps=t.epoch_steps,
    )


def warn_if_slow_precision(precision: str, device: torch.device) -> None:
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        log.warning("this CPU has no bfloat16 matrix instructions (AVX512-BF16 or AMX): --precision bf16 will be slower than fp32")


def warn_if_collapsed(model, valid: Dataset) -> None:
    """Log the posterior-collapse warning of the trained model on the first validation examples, if any."""
    collapse = posterior_collapse_warning(model, valid.rows(0, COLLAPSE_CHECK_EXAMPLES))
    if collapse:
        log.warning("%s", collapse)
