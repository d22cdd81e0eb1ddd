"""Settings as dataclasses, passed whole; saved in a run as JSON and read back strictly.

``RunConfig`` = ``DataConfig`` + ``ModelConfig`` + ``TrainConfig``. Reading a config checks
every key and type, so a run directory can be trusted only as far as its JSON parses.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaekit.corruption import CORRUPTIONS, UNIT_LEVEL
from vaekit.errors import ConfigError

CONFIG_VERSION = 2  # the layout of config.json; older layouts are migrated on read (MIGRATIONS)
PRECISIONS = ("fp32", "bf16")  # TrainConfig.precision
NONFINITE_POLICIES = ("stop", "skip")  # TrainConfig.nonfinite
TC_ESTIMATORS = ("mws", "mss")  # TrainConfig.tc_estimator: minibatch-weighted or minibatch-stratified sampling
CONV_DEFAULT_CHANNELS = (32, 64)  # ModelConfig.hidden of a convolutional network when none is given (vaekit train --arch conv)


def flag(
    help: str,
    *,
    name: str | None = None,
    metavar: str | tuple[str, ...] | None = None,
    nargs: int | str | None = None,
    choices: str | tuple[str, ...] | None = None,
    names: str | None = None,
    negatable: bool = False,
    positive: bool = False,
) -> dict[str, Any]:
    """A settings field's flag of ``vaekit train``, as the field's metadata; ``vaekit.cli.settings_flags``
    builds the flag from it and reads its value back into the field. Its default is always None: a flag
    left out leaves the setting alone.

    help: the flag's help; ``{default}`` in it becomes "default X" (the field's default) and ``{names}``
        the names of ``choices`` or ``names``.
    name: the flag without its dashes, where it is not the field's name with dashes (``dataset`` for ``source``).
    metavar, nargs: as for ``argparse``; nargs defaults to the field's type (``+`` for a tuple of any
        length, N for a tuple of N).
    choices: the values allowed: a tuple, or the name of a registry the command line knows (``"priors"``:
        this module cannot import the registries, which build on it).
    names: like ``choices``, for a value that may also be something else (a dataset name or a path):
        listed in the help, not enforced.
    negatable: a switch (a bool field) with a ``--no-`` form; without it, a switch can only turn its setting on.
    positive: an integer value must be at least 1 (checked as the flag is parsed).
    """
    spec = {"name": name, "help": help, "metavar": metavar, "nargs": nargs, "choices": choices, "names": names}
    return {"flag": spec | {"negatable": negatable, "positive": positive}}


NO_FLAG: dict[str, Any] = {"flag": None}  # the metadata of a field no flag sets (filled from the data, or by another field's flag)


@dataclass
class DataConfig:
    """Where the data comes from and how it is split.

    source: a dataset name (``digits``, ``mnist``, ``fashion-mnist``, ``binarized-mnist``) or a
        path (.npy, .npz, .csv, .amat, an image folder).
    data_dir: folder holding downloaded datasets (default: $VAEKIT_DATA_DIR or ~/.cache/vaekit).
        A run stores ``data_dir`` and a path ``source`` resolved (absolute), so it reads its data from
        any working directory; where the stored folder is gone, ``$VAEKIT_DATA_DIR`` is used, and
        ``Run.load_data(data_dir=...)`` (the commands' ``--data-dir``) points a run at data that moved.
    valid_fraction: share of the training data held out for validation when the source has no
        validation split of its own.
    split_seed: seed of the train/validation split.
    dynamic_binarize: draw a fresh Bernoulli(x) for every batch (grayscale data in [0, 1]).
    image_size: (H, W) to resize image folders to.
    download: fetch a missing named dataset (MNIST family) and verify its checksums.
    memmap: read a .npy file or a folder of .npy shards memory-mapped, batch by batch, instead of
        into memory (``vaekit.data.streaming``). None: automatic (a shard folder always; a .npy
        file that as float32 would exceed a quarter of physical memory); a run saves the resolved choice.
    context_columns: a CSV table's columns that are a conditional model's context, not features
        (``ModelConfig.condition`` ``columns``).
    codes_of: a trained VAE run (M1 of Kingma et al. 2014's M1+M2) whose codes are the data: that run's
        data (its source and split settings, copied here when training starts), each example replaced by
        E_q[z|x], with a fresh draw z ~ q(z|x) in every training batch (``vaekit.codes``); None: the
        examples themselves.
    labelled: keep the labels of this many training examples, class-balanced and chosen by
        ``split_seed``, and hide the rest (``vaekit.data.keep_labels``: the semi-supervised protocol);
        0 keeps the labels as they are (-1 in the data marks an unlabelled example). Validation and
        test keep theirs.
    tokenizer: how strings (a .smi/.txt file, a CSV column, MOSES) become token sequences, a name of
        ``vaekit.data.TOKENIZERS`` (``char``, ``smiles``, ``selfies``); None: ``smiles`` for .smi/.csv files
        and MOSES, ``char`` for .txt files (``vaekit.data.sequences``).
    max_length: the most tokens of a string; a longer one is refused in one line naming its line, or cut
        with ``truncate``. None: the longest string's (recorded).
    truncate: cut strings longer than ``max_length`` to it (counted and logged) instead of refusing them.
    skip_invalid: skip the lines RDKit cannot parse as SMILES (``smiles``/``selfies`` tokenizers; counted
        and logged) instead of refusing the file on the first.
    """

    source: str = field(
        default="digits",
        metadata=flag(
            "a dataset name ({names}; digits is embedded) or a path (.npy/.npz/.csv/.amat/image folder) ({default})",
            name="dataset",
            names="datasets",
        ),
    )
    data_dir: str | None = field(
        default=None, metadata=flag("folder with downloaded datasets (default: $VAEKIT_DATA_DIR or ~/.cache/vaekit)")
    )
    valid_fraction: float = field(default=0.1, metadata=flag("share of training data held out for validation ({default})"))
    split_seed: int = field(default=0, metadata=flag("seed of the train/validation split ({default})"))
    dynamic_binarize: bool = field(
        default=False, metadata=flag("dynamic binarization: a fresh Bernoulli draw of each batch", name="binarize")
    )
    image_size: tuple[int, int] | None = field(
        default=None, metadata=flag("resize image folders to H x W", metavar=("H", "W"), positive=True)
    )
    download: bool = field(default=False, metadata=flag("download a missing MNIST-family dataset (checksums verified)"))
    memmap: bool | None = field(
        default=None,
        metadata=flag(
            "read a .npy file or a folder of .npy shards memory-mapped, batch by batch, in a shuffled order of contiguous blocks "
            "(default: automatic: shard folders, and .npy files too big for memory)",
            negatable=True,
        ),
    )
    context_columns: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "a CSV table's columns that condition the model instead of being modelled (implies --condition columns)", metavar="NAME"
        ),
    )
    codes_of: str | None = field(
        default=None,
        metadata=flag(
            "train on the codes of a trained VAE run (M1 of M1+M2, Kingma et al. 2014): that run's data, each example encoded "
            "by it (a fresh draw z ~ q(z|x) in every training batch, the posterior means elsewhere); the run is recorded in this "
            "one, and every command reads data through it",
            name="on-codes",
            metavar="RUN",
        ),
    )
    labelled: int = field(
        default=0,
        metadata=flag(
            "keep the labels of N training examples (class-balanced, chosen by --split-seed) and hide the rest, for "
            "semi-supervised learning (--model m2); validation and test keep theirs (default: keep every label; -1 in the "
            "data marks an unlabelled example)",
            metavar="N",
        ),
    )
    tokenizer: str | None = field(
        default=None,
        metadata=flag(
            "read strings (.smi/.txt, a CSV column, moses) as token sequences with this tokenizer ({names}; default: smiles, "
            "char for .txt)",
            choices=("char", "smiles", "selfies"),
        ),
    )
    max_length: int | None = field(
        default=None,
        metadata=flag("the most tokens of a string: longer ones are refused, or cut with --truncate (default: the longest)", positive=True),
    )
    truncate: bool = field(default=False, metadata=flag("cut strings longer than --max-length to it (counted and logged)"))
    skip_invalid: bool = field(
        default=False, metadata=flag("skip lines that are not valid SMILES (counted and logged) instead of refusing the file")
    )


@dataclass
class ModelConfig:
    """What network to build; ``vaekit.models.build_model`` turns it into a module.

    Each part is named by a registry of ``vaekit.models`` (the names and what each builds: the
    registered classes' docstrings, ``vaekit train --help``).

    kind: the model kind, a name of ``MODEL_KINDS`` (``vae``: a Gaussian posterior; ``ae``: a point
        mass, the plain autoencoder; ``m2``: the semi-supervised VAE of Kingma et al. 2014, with a
        classifier q(y|x) beside q(z|x, y) and p(x|y, z)).
    arch: the encoder and decoder networks, a name of ``ENCODERS`` and ``DECODERS``.
    input_shape: shape of one example, (C, H, W) or (D,). Filled from the data.
    latent_dim: size of z (for a hierarchical model, of all its layers together).
    latent_layers: sizes of the stochastic layers z_1 (nearest the data) .. z_L of a hierarchical
        model (two or more, summing to ``latent_dim``); empty: one layer.
    hierarchy: how a hierarchical model's layers are wired, a name of ``HIERARCHIES`` (``skip``:
        Tomczak & Welling's HVAE on shared encoder features; ``branched``: the same with their code's
        networks, a layer per input; ``chain``: the IWAE paper's two-layer model).
    latent_hidden: hidden sizes of the networks between stochastic layers (None: two layers as wide
        as the encoder's output).
    hidden: MLP hidden sizes, or conv channels per stride-2 stage.
    classifier_hidden: the hidden sizes of an ``m2`` model's classifier q(y|x) (None: ``hidden``, as the
        encoder's); the classifier runs once per example where the bound runs once per (example, class),
        so a deeper classifier costs little.
    classifier_dropout: the probability with which the dense classifier of an ``m2`` model zeroes each
        hidden unit in training (None: the encoder's, ``dropout[0]``): a regulariser for q(y|x) alone,
        which otherwise learns its few labelled examples by heart.
    auxiliary_dim: the size of an ``m2`` model's auxiliary variable a (Maaløe et al. 2016's ADGM:
        q(a|x) and p(a|x, y, z), the classifier and the encoder reading a beside x); 0: none, M2 itself.
    activation: a name of ``ACTIVATIONS`` (``identity``: a linear model).
    conv_dense: width of the dense layer between the conv stack and the latent (0: none).
    likelihood: p(x|z), a name of ``LIKELIHOODS``.
    likelihood_scale: the fixed standard deviation of ``gaussian``.
    prior: p(z), a name of ``PRIORS``.
    prior_components: components of the ``mixture`` prior; pseudo-inputs of the ``vampprior``.
    flow: ``none``, or a name of ``FLOWS``: the Gaussian posterior pushed through ``flow_steps`` steps
        of an inverse autoregressive (``iaf``) or planar (``planar``) flow.
    flow_steps: number of flow steps.
    condition: ``none``, or a name of ``CONDITIONS``: ``label`` conditions the encoder, the decoder
        (and the ``conditional`` prior) on the data's class label, a conditional VAE.
    context_dim: size of the context vector (the number of classes for ``label``). Filled from the data.
    logvar_range: (min, max) that every Gaussian layer (posterior layers, p(z_l|z_{l+1}), the
        conditional prior p(z|y)) clamps its log-variance to; the VampPrior paper's models use (-6, 2), which keeps each σ above 0.05.
    dropout: (encoder, decoder): the probability with which the dense encoder and decoder (``mlp``,
        ``gated``) zero each hidden unit in training (0: none); evaluation runs without it. For ``gru``:
        dropout on the encoder's features, and word dropout (Bowman et al. 2016: each token the decoder
        reads is blanked).
    vocabulary_size: V, the tokens of token data (with ``<pad>``, ``<start>``, ``<end>``). Filled from the data.
    embedding_dim: the width of the sequence networks' (``gru``) token embeddings.
    """

    kind: str = field(
        default="vae",
        metadata=flag(
            "vae (a Gaussian posterior), ae (a point mass: a plain autoencoder) or m2 (semi-supervised: a classifier q(y|x) "
            "beside q(z|x, y) and p(x|y, z), for partly labelled data): {names} ({default})",
            name="model",
            choices="model kinds",
            metavar="KIND",
        ),
    )
    arch: str = field(
        default="mlp", metadata=flag("encoder and decoder network: {names} ({default})", choices="architectures", metavar="ARCH")
    )
    input_shape: tuple[int, ...] = field(default=(1, 8, 8), metadata=NO_FLAG)  # filled from the data
    latent_dim: int = field(
        default=2,
        metadata=flag(
            "size of z ({default}); several sizes make a hierarchical model, z_1 (nearest the data) first", nargs="+", metavar="L"
        ),
    )
    latent_layers: tuple[int, ...] = field(default=(), metadata=NO_FLAG)  # set by --latent-dim L1 L2 ...
    hierarchy: str = field(
        default="skip",
        metadata=flag(
            "how a hierarchical model's layers connect: skip (Tomczak & Welling's HVAE), branched (the same with their code's "
            "networks: a layer per input), or chain (IWAE's) ({default})",
            choices="hierarchies",
            metavar="NAME",
        ),
    )
    latent_hidden: tuple[int, ...] | None = field(
        default=None,
        metadata=flag(
            "hidden sizes of the networks between a hierarchical model's layers (default: two layers as wide as the encoder's output)",
            metavar="H",
        ),
    )
    hidden: tuple[int, ...] = field(
        default=(256, 128),
        metadata=flag(f"MLP hidden sizes or conv channels per stage ({{default}}; conv {' '.join(map(str, CONV_DEFAULT_CHANNELS))})"),
    )
    classifier_hidden: tuple[int, ...] | None = field(
        default=None,
        metadata=flag("hidden sizes of the m2 classifier q(y|x) (default: --hidden)", metavar="H"),
    )
    classifier_dropout: float | None = field(
        default=None,
        metadata=flag(
            "zero each hidden unit of the m2 classifier q(y|x) (mlp, gated) with probability P in training (default: the "
            "encoder's --dropout)",
            metavar="P",
        ),
    )
    auxiliary_dim: int = field(
        default=0,
        metadata=flag(
            "size of the m2 model's auxiliary variable a: Maaløe et al. 2016's ADGM (0: none, M2 itself) ({default})", metavar="A"
        ),
    )
    activation: str = field(default="relu", metadata=flag("{names} ({default})", choices="activations", metavar="NAME"))
    conv_dense: int = field(default=0, metadata=flag("dense layer width between conv stack and latent, 0: none ({default})"))
    likelihood: str = field(default="bernoulli", metadata=flag("p(x|z): {names} ({default})", choices="likelihoods", metavar="NAME"))
    likelihood_scale: float = field(
        default=1.0, metadata=flag("fixed standard deviation of the gaussian likelihood ({default})", name="sigma")
    )
    prior: str = field(default="normal", metadata=flag("p(z): {names} ({default})", choices="priors", metavar="NAME"))
    prior_components: int = field(default=10, metadata=flag("mixture prior components or vampprior pseudo-inputs ({default})"))
    flow: str = field(
        default="none",
        metadata=flag("flow steps on top of the Gaussian posterior: {names} ({default})", choices="flows", metavar="NAME"),
    )
    flow_steps: int = field(default=4, metadata=flag("number of flow steps ({default})"))
    condition: str = field(
        default="none",
        metadata=flag(
            "a conditional model: label feeds the class label to the encoder and the decoder (with --prior conditional also "
            "p(z|y)), the dataset needs labels; columns feeds numbers per example (a table's --context-columns, an .npz's "
            "context array) ({default})",
            choices="conditions",
            metavar="NAME",
        ),
    )
    context_dim: int = field(default=0, metadata=NO_FLAG)  # filled from the data
    vocabulary_size: int = field(default=0, metadata=NO_FLAG)  # filled from token data
    embedding_dim: int = field(
        default=64, metadata=flag("width of the token embeddings of the sequence networks (gru) ({default})", positive=True)
    )
    logvar_range: tuple[float, float] = field(
        default=(-16.0, 10.0),
        metadata=flag(
            "the range every Gaussian layer clamps its log-variance to; the VampPrior paper's: -6 2 ({default})", metavar=("MIN", "MAX")
        ),
    )
    dropout: tuple[float, float] = field(
        default=(0.0, 0.0),
        metadata=flag(
            "zero each hidden unit of the dense encoder and decoder (mlp, gated) with probability P in training; two values: "
            "the encoder's, then the decoder's; for gru, the encoder's features and word dropout: each token the decoder "
            "reads blanked ({default})",
            nargs="+",
            metavar="P",
        ),
    )


@dataclass
class TrainConfig:
    """How to train.

    epochs, batch_size, lr, weight_decay: Adam settings and length.
    epoch_steps: end each epoch (validation, checkpoint, early stopping) after this many steps, drawn
        from a fresh seeded order of the training split each epoch: a step budget for datasets of
        hundreds of thousands of examples (dSprites: 11,520 steps of 64 a pass); 0: an epoch is one pass.
    adam_betas, adam_eps: Adam's moment decays (β1, β2) and the ε added to the root of the second
        moment. ε is in the units of the gradient of the per-example mean loss; a larger one damps the
        steps of parameters whose gradients are tiny (the IWAE paper's code: β1 0.99, ε 1e-4 on a
        minibatch sum of 20, that is 5e-6 here).
    objective: what training minimises, a name of ``vaekit.objectives.OBJECTIVES`` (``elbo``: the
        ELBO averaged over ``n_samples``; ``iw``: the importance-weighted bound over ``n_samples``
        (IWAE) and its variants below). Each objective reads the settings it uses and checks them.
    beta: weight of the KL term (β-VAE); ignored by an ``ae``; with ``beta-tcvae`` the weight of the
        total correlation alone, the KL's other parts weighted by ``mi_weight`` and ``dimkl_weight``.
    warmup_epochs: β rises linearly from 0 to ``beta`` over this many epochs (0: off).
    free_bits: with ``elbo``, free bits (Kingma et al. 2016): each latent dimension's KL, averaged over
        the batch, counts in the loss as at least this many nats, so a dimension below it gets no push
        towards the prior (against posterior collapse under a strong decoder, e.g. a GRU over tokens);
        the reported KL and bound are the true ones. 0: off. A Gaussian posterior and the standard
        normal prior (one layer, no flow).
    n_samples: latent samples per example in the objective.
    iw_groups: with ``iw``, split the samples into this many groups and average their IW bounds
        (MIWAE of Rainforth et al. 2018; 1: IWAE). Must divide ``n_samples``.
    alpha: with the semi-supervised objective (``m2``), the weight of a labelled example's
        classification loss −log q(y|x) against one example's bound, each time it is drawn; None: the
        paper's α = 0.1·N spread over the labelled examples, 0.1 × (training examples / labelled ones),
        resolved from the data when training starts. Labelled examples fill half of every batch
        (``TrainingBatches``), so the classification loss weighs more against the bound than in the
        paper's sum, in which every example counts once: that balance (0.1 × the bound per example)
        is α = 0.2 here (0.1 × batch / labelled rows), 250 times less than the default at 100 of 50,000.
        Measured on MNIST with 100 labels (bench/README.md): the default is the better for M2 on the
        pixels (validation error 10.5 % against 11.3 % at epoch 36), the balance for M2 on a VAE's
        codes, M1+M2 (test error 3.35 % against 4.92 %, with σ 0.3 against 0.5).
    class_balance: with ``m2``, γ: the loss adds γ·KL(q̄(y) ‖ p(y)) per batch, q̄ the mean of q(y|x)
        over its unlabelled examples, against a classifier that hands one class's cluster to
        another (``vaekit.objectives.semisupervised``). 0: off, the paper's objective.
    iw_elbo_mix: with ``iw``, train on c·ELBO + (1 − c)·IW bound over the same samples (CIWAE of
        Rainforth et al. 2018; 0: the IW bound).
    piwae: with ``iw`` and ``iw_groups`` = M, PIWAE of Rainforth et al. 2018: the decoder is trained on
        the IW bound over all the samples, the encoder on MIWAE(M, K) over the same samples.
    stl: the path-derivative ("sticking the landing") gradient of Roeder et al. 2017 for the
        encoder: log q(z|x) in the KL is taken with the posterior's parameters stopped (the Monte
        Carlo KL, same values, lower-variance gradient). A Gaussian posterior (one or several
        layers, no flow) trained on the averaged ELBO.
    tc_estimator: with ``beta-tcvae`` (β-TCVAE of Chen et al. 2018), how log q(z) and log q(z_j) of the
        aggregate posterior are estimated over the minibatch: ``mss`` (minibatch-stratified sampling, the
        default: its weights add up to one, so the reported terms read as nats) or ``mws``
        (minibatch-weighted sampling, the paper's and disentanglement_lib's: the same gradients, but
        the reported terms are offset by multiples of log N; ``vaekit.objectives.tcvae``). There ``beta`` weighs the total
        correlation alone.
    mi_weight, dimkl_weight: with ``beta-tcvae``, α and γ: the weights of the index-code mutual
        information and of the dimension-wise KL (1 and 1, with β = 1: the ELBO).
    tc_dataset_size: with ``beta-tcvae``, N, the examples the aggregate posterior q(z) is over; None:
        the training examples, resolved from the data when training starts.
    factor_gamma: with ``factor-vae`` (FactorVAE of Kim & Mnih 2018), γ: the weight of the
        discriminator's density-ratio estimate of the total correlation, added to the ELBO's loss.
    discriminator_hidden, discriminator_lr, discriminator_betas: with ``factor-vae``, the discriminator
        (an MLP with leaky ReLUs and two logits: the study's is 6 layers of 1000) and its Adam's
        learning rate and moment decays (the study's: 1e-4, (0.5, 0.9)); the rest of its Adam is the run's.
    dip_lambda_od, dip_lambda_d: with ``dip-vae-i`` and ``dip-vae-ii`` (Kumar et al. 2018), λ_od and
        λ_d: the weights of the squared off-diagonal entries of the covariance of the posterior means
        (I) or of the aggregate posterior (II) and of its squared diagonal's distance to 1; λ_d None:
        10·λ_od for I, λ_od for II (the study's).
    capacity_gamma, capacity_max, capacity_steps: with ``annealed-vae`` (Burgess et al. 2018), the loss
        −E_q log p(x|z) + γ·|KL − C|, the capacity C rising linearly from 0 to ``capacity_max`` nats
        over ``capacity_steps`` training steps (0: at once); the study's γ = 1000, C_max 5 or 25, 100,000 steps.
    noise, noise_level: input corruption for denoising training, a name of ``vaekit.corruption.CORRUPTIONS``
        (the level is a std or a probability); the target stays clean.
    grad_clip: clip the gradient norm to this (0: off).
    normalize_grads: divide each parameter tensor's gradient by its L2 norm before the Adam step
        (the AdamNormGrad optimizer of the VampPrior paper's code).
    ema: decay of an exponential moving average of the weights (Polyak averaging; 0: off). With it,
        validation, early stopping, the best and last checkpoints and every command that loads the
        run use the averaged weights; the raw ones travel with the optimizer's state for ``--resume``.
        Step n averages with min(ema, (1 + n) / (10 + n)), so the average leaves the initial weights quickly.
    patience: stop after this many epochs without a better validation loss (0: off).
    lr_patience, lr_factor, min_lr: learning-rate decay on a plateau: after ``lr_patience`` epochs
        without a better validation loss (counted afresh after each cut), multiply the learning rate
        by ``lr_factor``, down to ``min_lr`` (``lr_patience`` 0: a constant learning rate).
    seed: seed of initialisation, data order and sampling.
    threads: torch intra-op threads (0: vaekit's default, ``vaekit.threads.default_threads``: one, or two for a
        convolutional network on an idle machine, as measured in bench/README.md).
    nonfinite: what a NaN/Inf loss does: ``stop`` (raise, keep the last good checkpoint) or ``skip``
        (skip that step and count it).
    checkpoint_every: also checkpoint every this many steps (0: once per epoch).
    init_decoder_bias: start the decoder's output bias at the training data's mean (per dimension),
        as ``LatentVariableModel.init_output_bias`` does; off: PyTorch's default initialisation.
    compile: compile the training loss (forward and backward) with ``torch.compile``: fused
        elementwise kernels and one autograd node; pays off in long runs, after a compile of some
        seconds (the speed-ups: bench/README.md). Needs a C/C++ compiler on a CPU.
    precision: ``fp32``, or ``bf16``: the networks' matrix products and convolutions in bfloat16
        (``torch.autocast``), while parameters, gradients, Adam and every log-density stay float32;
        validation and evaluation run in float32. Pays on GPUs and on CPUs with bfloat16 matrix
        instructions (AVX512-BF16, AMX); slower than fp32 on CPUs without them.
    """

    epochs: int = field(default=30, metadata=flag("training epochs ({default})"))
    epoch_steps: int = field(
        default=0, metadata=flag("end each epoch after this many steps, drawn from a fresh order of the data (0: one pass; {default})")
    )
    batch_size: int = field(default=100, metadata=flag("examples per step and process ({default}); with N processes a step takes N x this"))
    lr: float = field(default=1e-3, metadata=flag("Adam learning rate ({default})"))
    weight_decay: float = field(default=0.0, metadata=flag("Adam weight decay ({default})"))
    adam_betas: tuple[float, float] = field(
        default=(0.9, 0.999), metadata=flag("Adam's moment decays β1 β2 ({default})", metavar=("B1", "B2"))
    )
    adam_eps: float = field(
        default=1e-8, metadata=flag("Adam's ε, in units of the per-example mean loss's gradient ({default})", metavar="EPS")
    )
    objective: str = field(
        default="elbo",
        metadata=flag("what training minimises: {names} ({default}; --iw-samples K chooses iw)", choices="objectives", metavar="NAME"),
    )
    beta: float = field(
        default=1.0,
        metadata=flag("KL weight β ({default}); with --objective beta-tcvae, the weight of the total correlation alone"),
    )
    warmup_epochs: int = field(
        default=0, metadata=flag("KL warm-up: β rises linearly from 0 over this many epochs ({default})", name="warmup")
    )
    free_bits: float = field(
        default=0.0,
        metadata=flag(
            "free bits: each latent dimension's KL, averaged over the batch, counts as at least this many nats in the loss "
            "(Kingma et al. 2016; against posterior collapse; {default}: off)",
            metavar="NATS",
        ),
    )
    n_samples: int = field(default=1, metadata=flag("latent samples per example ({default})", name="samples"))
    iw_groups: int = field(
        default=1,
        metadata=flag("with --iw-samples: average the IW bounds of M groups of the samples (MIWAE; {default})", metavar="M"),
    )
    iw_elbo_mix: float = field(
        default=0.0,
        metadata=flag("with --iw-samples: train on C x ELBO + (1 - C) x IW bound (CIWAE; {default})", metavar="C"),
    )
    piwae: bool = field(
        default=False,
        metadata=flag("with --iw-samples and --iw-groups M: the decoder trains on the IW bound, the encoder on MIWAE (PIWAE)"),
    )
    alpha: float | None = field(
        default=None,
        metadata=flag(
            "with --model m2: the weight of a labelled example's classification loss -log q(y|x) against one example's bound, "
            "each time it is drawn (default: the paper's 0.1 x training examples / labelled examples; labelled examples fill "
            "half of every batch, so the paper's balance of the two is 0.2)",
            metavar="A",
        ),
    )
    class_balance: float = field(
        default=0.0,
        metadata=flag(
            "with --model m2: the weight of KL(mean q(y|x) || p(y)) over each batch's unlabelled examples, against a "
            "classifier that hands one class's examples to another ({default}: off, the paper's objective)",
            metavar="G",
        ),
    )
    stl: bool = field(
        default=False,
        metadata=flag(
            "the path-derivative ('sticking the landing') gradient: log q(z|x) in the KL with the posterior's parameters stopped"
        ),
    )
    tc_estimator: str = field(
        default="mss",
        metadata=flag(
            "with --objective beta-tcvae: how log q(z) is estimated over the minibatch: mss (minibatch-stratified sampling) "
            "or mws (minibatch-weighted sampling, the paper's; its reported terms are offset by multiples of log N) ({default})",
            choices=TC_ESTIMATORS,
        ),
    )
    mi_weight: float = field(
        default=1.0,
        metadata=flag(
            "with --objective beta-tcvae: α, the weight of the index-code mutual information ({default}; --beta weighs the "
            "total correlation)",
            metavar="A",
        ),
    )
    dimkl_weight: float = field(
        default=1.0, metadata=flag("with --objective beta-tcvae: γ, the weight of the dimension-wise KL ({default})", metavar="G")
    )
    tc_dataset_size: int | None = field(
        default=None,
        metadata=flag(
            "with --objective beta-tcvae: N, the examples the aggregate posterior q(z) is over (default: the training examples)",
            metavar="N",
        ),
    )
    factor_gamma: float = field(
        default=10.0,
        metadata=flag(
            "with --objective factor-vae: γ, the weight of the discriminator's estimate of the total correlation ({default})",
            metavar="G",
        ),
    )
    discriminator_hidden: tuple[int, ...] = field(
        default=(1000,) * 6,
        metadata=flag("with --objective factor-vae: the discriminator's hidden sizes (default 6 layers of 1000)", metavar="H"),
    )
    discriminator_lr: float = field(
        default=1e-4, metadata=flag("with --objective factor-vae: the discriminator's Adam learning rate ({default})", metavar="LR")
    )
    discriminator_betas: tuple[float, float] = field(
        default=(0.5, 0.9),
        metadata=flag("with --objective factor-vae: the discriminator's Adam moment decays ({default})", metavar=("B1", "B2")),
    )
    dip_lambda_od: float = field(
        default=10.0,
        metadata=flag(
            "with --objective dip-vae-i or dip-vae-ii: λ_od, the weight of the covariance's squared off-diagonal entries ({default})",
            metavar="L",
        ),
    )
    dip_lambda_d: float | None = field(
        default=None,
        metadata=flag(
            "with --objective dip-vae-i or dip-vae-ii: λ_d, the weight of the covariance's squared diagonal distance to 1 "
            "(default: 10 x λ_od for dip-vae-i, λ_od for dip-vae-ii)",
            metavar="L",
        ),
    )
    capacity_gamma: float = field(
        default=1000.0, metadata=flag("with --objective annealed-vae: γ, the weight of |KL - C| ({default})", metavar="G")
    )
    capacity_max: float = field(
        default=25.0, metadata=flag("with --objective annealed-vae: the capacity C's final value in nats ({default})", metavar="C")
    )
    capacity_steps: int = field(
        default=100_000,
        metadata=flag("with --objective annealed-vae: the training steps over which C rises from 0 ({default}; 0: at once)", metavar="N"),
    )
    noise: str = field(
        default="none",
        metadata=flag("denoising: corrupt inputs, reconstruct clean targets: {names} ({default})", choices="corruptions", metavar="KIND"),
    )
    noise_level: float = field(default=0.0, metadata=flag("noise std (gaussian) or probability (mask, salt-pepper)"))
    grad_clip: float = field(default=0.0, metadata=flag("clip the gradient norm, 0: off ({default})"))
    normalize_grads: bool = field(
        default=False,
        metadata=flag(
            "divide each parameter tensor's gradient by its norm before the Adam step (the VampPrior code's AdamNormGrad; default off)",
            negatable=True,
        ),
    )
    ema: float = field(
        default=0.0,
        metadata=flag(
            "validate, checkpoint and keep an exponential moving average of the weights with this decay, e.g. 0.999 "
            "(Polyak averaging; {default}: off)",
            metavar="DECAY",
        ),
    )
    patience: int = field(default=0, metadata=flag("early stopping after this many epochs without improvement, 0: off ({default})"))
    lr_patience: int = field(
        default=0,
        metadata=flag(
            "multiply the learning rate by --lr-factor after N epochs with no better validation loss, 0: off ({default})", metavar="N"
        ),
    )
    lr_factor: float = field(default=0.5, metadata=flag("the learning-rate cut of --lr-patience ({default})", metavar="F"))
    min_lr: float = field(default=1e-5, metadata=flag("the learning rate --lr-patience stops at ({default})", metavar="LR"))
    seed: int = field(default=0, metadata=flag("random seed ({default})"))
    threads: int = field(
        default=0, metadata=flag("torch threads (default 1; 2 for a conv network on an idle machine: measured in bench/README.md)")
    )
    nonfinite: str = field(
        default="stop", metadata=flag("on a NaN/Inf loss: stop or skip the step ({default})", choices=NONFINITE_POLICIES)
    )
    checkpoint_every: int = field(default=0, metadata=flag("also checkpoint every N steps, 0: each epoch ({default})"))
    init_decoder_bias: bool = field(
        default=True, metadata=flag("start the decoder's output bias at the training data's mean (default on)", negatable=True)
    )
    compile: bool = field(
        default=False,
        metadata=flag(
            "compile the training loss with torch.compile: faster steps after a compile of ~10 s, for long runs (default off)",
            negatable=True,
        ),
    )
    precision: str = field(
        default="fp32",
        metadata=flag(
            "bf16: matrix products in bfloat16 (autocast), the rest float32; for GPUs and CPUs with bf16 instructions ({default})",
            choices=PRECISIONS,
        ),
    )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        """Read a config of any layout vaekit has written (migrated to this one); strict about keys and types."""
        return _from_dict(cls, migrate(raw), "config")

    @classmethod
    def from_json_file(cls, path: str | Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        return cls.from_dict(raw)


# ----- earlier layouts ------------------------------------------------------------------------
def _v1_to_v2(raw: dict[str, Any]) -> None:
    """Version 1 (vaekit up to the objective registry): ``train.iw`` (a bool) chose the importance-
    weighted bound, now ``train.objective``; ``model.dropout`` was one number for both networks
    before it became the pair (encoder, decoder); a config without ``train.init_decoder_bias``
    was written before the decoder's output bias started at the data's mean. (Keys added since a
    config was written read as their defaults.)"""
    train, model = raw.get("train"), raw.get("model")
    if isinstance(train, dict) and "iw" in train:
        iw = train.pop("iw")
        if not isinstance(iw, bool):
            raise ConfigError(f"config.train.iw: expected true/false, got {iw!r}")
        train.setdefault("objective", "iw" if iw else "elbo")
    if isinstance(model, dict) and isinstance(model.get("dropout"), (int, float)) and not isinstance(model["dropout"], bool):
        model["dropout"] = [model["dropout"], model["dropout"]]
    if isinstance(train, dict):
        train.setdefault("init_decoder_bias", False)  # added later with True as its default; runs before it started at PyTorch's


# MIGRATIONS[v] turns a layout-v config (a dict, in place) into layout v + 1. Every run directory's
# config.json carries its version; a config without one (a preset, a hand-written settings file
# given with --config) is read in the current layout.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], None]] = {1: _v1_to_v2}


def migrate(raw: Any) -> Any:
    """A copy of the config dict ``raw`` in the current layout (``CONFIG_VERSION``); anything not a
    dict is returned as it is, for ``_from_dict`` to refuse."""
    if not isinstance(raw, dict):
        return raw
    raw = json.loads(json.dumps(raw))  # a deep copy: the caller's dict stays as it was
    version = raw.get("version", CONFIG_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"config.version: expected a positive integer, got {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"this config has layout version {version}, written by a newer vaekit (this one reads up to {CONFIG_VERSION})")
    for v in range(version, CONFIG_VERSION):
        MIGRATIONS[v](raw)
    raw["version"] = CONFIG_VERSION
    return raw


def _from_dict(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in raw.items()}
    return cls(**values)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert JSON lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(typing.get_args(tp), value, where)
    if origin is tuple:
        return _coerce_tuple(typing.get_args(tp), value, where)
    if tp is Any:
        return value
    if tp not in _SCALARS:
        raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover
    accepts, wanted, convert = _SCALARS[tp]
    if not accepts(value):
        raise ConfigError(f"{where}: expected {wanted}, got {value!r}")
    return convert(value)


def _coerce_union(args: tuple, value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(arg, value, where)
        except ConfigError:
            pass
    raise ConfigError(f"{where}: invalid value {value!r}")


def _coerce_tuple(args: tuple, value: Any, where: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
    if len(item_types) != len(value):
        raise ConfigError(f"{where}: expected {len(item_types)} items, got {len(value)}")
    return tuple(_coerce(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# a scalar annotation -> (whether a JSON value fits it, what the error says it wanted, the conversion)
_SCALARS: dict[type, tuple[Callable[[Any], bool], str, Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), "true/false", bool),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", int),
    float: (_is_number, "a number", float),
    str: (lambda v: isinstance(v, str), "a string", str),
}


MAX_THREADS = 256


def validate(config: RunConfig) -> None:
    """Raise ``ConfigError`` naming the first invalid value. What the parts a name picks require of the
    other settings is checked above the parts' registries, which build on this module: by
    ``vaekit.settings.check`` (which calls this first) and ``vaekit.models.check_parts``."""
    m, t, d = config.model, config.train, config.data
    checks = [
        (m.latent_dim >= 1, f"latent dim must be at least 1, got {m.latent_dim}"),
        (
            not m.latent_layers or (len(m.latent_layers) >= 2 and all(s >= 1 for s in m.latent_layers)),
            f"a hierarchical model needs two or more layer sizes of at least 1, got {list(m.latent_layers)}",
        ),
        (
            not m.latent_layers or sum(m.latent_layers) == m.latent_dim,
            f"latent dim {m.latent_dim} must be the sum of the layer sizes {list(m.latent_layers)}",
        ),
        (m.latent_hidden is None or all(h >= 1 for h in m.latent_hidden), f"latent hidden sizes must be positive, got {m.latent_hidden}"),
        (all(h >= 1 for h in m.hidden), f"hidden sizes must be positive, got {list(m.hidden)}"),
        (
            m.classifier_hidden is None or all(h >= 1 for h in m.classifier_hidden),
            f"classifier hidden sizes must be positive, got {m.classifier_hidden}",
        ),
        (
            m.classifier_dropout is None or 0 <= m.classifier_dropout < 1,
            f"classifier dropout must be a probability in [0, 1), got {m.classifier_dropout}",
        ),
        (m.auxiliary_dim >= 0, f"auxiliary dim must be >= 0, got {m.auxiliary_dim}"),
        (m.likelihood_scale > 0, f"likelihood scale must be positive, got {m.likelihood_scale}"),
        (m.prior_components >= 1, f"prior components must be at least 1, got {m.prior_components}"),
        (m.flow_steps >= 1, f"flow steps must be at least 1, got {m.flow_steps}"),
        (m.conv_dense >= 0, f"conv dense width must be >= 0, got {m.conv_dense}"),
        (m.context_dim >= 0, f"context dim must be >= 0, got {m.context_dim}"),
        (
            len(m.logvar_range) == 2 and m.logvar_range[0] < m.logvar_range[1],
            f"logvar range must be two numbers, min < max, got {' '.join(map(str, m.logvar_range))}",
        ),
        (
            len(m.dropout) == 2 and all(0 <= p < 1 for p in m.dropout),
            f"dropout must be one or two probabilities (encoder, decoder) in [0, 1), got {' '.join(map(str, m.dropout))}",
        ),
        (t.epochs >= 1, f"epochs must be at least 1, got {t.epochs}"),
        (t.epoch_steps >= 0, f"epoch steps must be >= 0 (0: one pass over the data), got {t.epoch_steps}"),
        (t.batch_size >= 1, f"batch size must be at least 1, got {t.batch_size}"),
        (t.lr > 0, f"learning rate must be positive, got {t.lr}"),
        (t.weight_decay >= 0, f"weight decay must be >= 0, got {t.weight_decay}"),
        (
            len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas),
            f"adam betas must be two numbers in [0, 1), got {' '.join(map(str, t.adam_betas))}",
        ),
        (t.adam_eps > 0, f"adam eps must be positive, got {t.adam_eps}"),
        (t.warmup_epochs >= 0, f"warm-up epochs must be >= 0, got {t.warmup_epochs}"),
        (t.free_bits >= 0, f"free bits must be >= 0 nats, got {t.free_bits}"),
        (t.noise in CORRUPTIONS, f"unknown noise {t.noise!r}; choose one of {', '.join(CORRUPTIONS.names())}"),
        (t.noise_level >= 0, f"noise level must be >= 0, got {t.noise_level}"),
        (t.noise not in UNIT_LEVEL or t.noise_level <= 1, f"noise level for {t.noise} must be in [0, 1], got {t.noise_level}"),
        (t.grad_clip >= 0, f"gradient clip must be >= 0, got {t.grad_clip}"),
        (0 <= t.ema < 1, f"the weight average's decay must be in [0, 1), got {t.ema}"),
        (t.patience >= 0, f"patience must be >= 0, got {t.patience}"),
        (t.lr_patience >= 0, f"lr patience must be >= 0, got {t.lr_patience}"),
        (0 < t.lr_factor < 1, f"lr factor must be in (0, 1), got {t.lr_factor}"),
        (0 <= t.min_lr <= t.lr, f"min lr must be in [0, lr = {t.lr:g}], got {t.min_lr:g}"),
        (0 <= t.threads <= MAX_THREADS, f"threads must be in [0, {MAX_THREADS}], got {t.threads}"),
        (t.nonfinite in NONFINITE_POLICIES, f"nonfinite policy must be one of {', '.join(NONFINITE_POLICIES)}, got {t.nonfinite!r}"),
        (t.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}"),
        (t.checkpoint_every >= 0, f"checkpoint-every must be >= 0, got {t.checkpoint_every}"),
        (0 < d.valid_fraction < 1, f"validation fraction must be in (0, 1), got {d.valid_fraction}"),
        (d.labelled >= 0, f"labelled must be >= 0 (0: keep every label), got {d.labelled}"),
        (t.alpha is None or t.alpha >= 0, f"alpha must be >= 0, got {t.alpha}"),
        (t.class_balance >= 0, f"class balance must be >= 0, got {t.class_balance}"),
        (d.image_size is None or all(s >= 1 for s in d.image_size), f"image size must be positive, got {d.image_size}"),
    ]
    for section in (d, m, t):
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name.replace('_', ' ')} must be a finite number, got {value}")
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
