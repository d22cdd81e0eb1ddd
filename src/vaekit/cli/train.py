"""``vaekit train``: train a model and write a run directory."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import vaekit.distributed as distributed
import vaekit.presets as presets
from vaekit.cli.common import positive_int, resolve_device
from vaekit.config import NONFINITE_POLICIES, PRECISIONS, DataConfig, ModelConfig, RunConfig, TrainConfig, validate
from vaekit.corruption import CORRUPTIONS
from vaekit.data.base import dataset_names
from vaekit.errors import ConfigError, VaekitError
from vaekit.models import ACTIVATIONS, CONDITIONS, ENCODERS, FLOWS, HIERARCHIES, LIKELIHOODS, MODEL_KINDS, PRIORS, check_parts
from vaekit.objectives import OBJECTIVES, ImportanceWeighted
from vaekit.settings import TAKES_EFFECT, takes_effect
from vaekit.training import RESUME_SETTINGS, TrainingInterrupted, resume, train

# flag -> (section, field); flags whose default is None leave the config (or its default) alone
_FIELDS = {
    "dataset": ("data", "source"),
    "data_dir": ("data", "data_dir"),
    "valid_fraction": ("data", "valid_fraction"),
    "split_seed": ("data", "split_seed"),
    "binarize": ("data", "dynamic_binarize"),
    "image_size": ("data", "image_size"),
    "download": ("data", "download"),
    "memmap": ("data", "memmap"),
    "context_columns": ("data", "context_columns"),
    "labelled": ("data", "labelled"),
    "on_codes": ("data", "codes_of"),
    "model": ("model", "kind"),
    "arch": ("model", "arch"),
    "latent_dim": ("model", "latent_dim"),
    "hierarchy": ("model", "hierarchy"),
    "latent_hidden": ("model", "latent_hidden"),
    "hidden": ("model", "hidden"),
    "activation": ("model", "activation"),
    "conv_dense": ("model", "conv_dense"),
    "likelihood": ("model", "likelihood"),
    "sigma": ("model", "likelihood_scale"),
    "prior": ("model", "prior"),
    "prior_components": ("model", "prior_components"),
    "flow": ("model", "flow"),
    "flow_steps": ("model", "flow_steps"),
    "condition": ("model", "condition"),
    "logvar_range": ("model", "logvar_range"),
    "dropout": ("model", "dropout"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "weight_decay": ("train", "weight_decay"),
    "adam_betas": ("train", "adam_betas"),
    "adam_eps": ("train", "adam_eps"),
    "beta": ("train", "beta"),
    "warmup": ("train", "warmup_epochs"),
    "objective": ("train", "objective"),
    "samples": ("train", "n_samples"),
    "iw_groups": ("train", "iw_groups"),
    "iw_elbo_mix": ("train", "iw_elbo_mix"),
    "piwae": ("train", "piwae"),
    "alpha": ("train", "alpha"),
    "stl": ("train", "stl"),
    "noise": ("train", "noise"),
    "noise_level": ("train", "noise_level"),
    "grad_clip": ("train", "grad_clip"),
    "normalize_grads": ("train", "normalize_grads"),
    "ema": ("train", "ema"),
    "patience": ("train", "patience"),
    "lr_patience": ("train", "lr_patience"),
    "lr_factor": ("train", "lr_factor"),
    "min_lr": ("train", "min_lr"),
    "seed": ("train", "seed"),
    "threads": ("train", "threads"),
    "nonfinite": ("train", "nonfinite"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "init_decoder_bias": ("train", "init_decoder_bias"),
    "compile": ("train", "compile"),
    "precision": ("train", "precision"),
}

CONV_DEFAULT_CHANNELS = (32, 64)
_DEFAULTS = {"data": DataConfig(), "model": ModelConfig(), "train": TrainConfig()}


def default(flag: str) -> str:
    """'default X' for the config field behind ``flag`` (the dataclasses hold the defaults, once)."""
    section, name = _FIELDS[flag]
    value = getattr(_DEFAULTS[section], name)
    return "default " + (" ".join(map(str, value)) if isinstance(value, tuple) else str(value))


def choices_help(flag: str, registry) -> str:
    return f"{', '.join(registry.names())} ({default(flag)})"


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a VAE or autoencoder",
        description="Train a VAE (or a plain/denoising autoencoder) and write a run directory with config, weights, metrics and figures.",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        help=f"a dataset name ({', '.join(dataset_names())}; digits is embedded) or a path "
        f"(.npy/.npz/.csv/.amat/image folder) ({default('dataset')})",
    )
    g.add_argument("--data-dir", help="folder with downloaded datasets (default: $VAEKIT_DATA_DIR or ~/.cache/vaekit)")
    g.add_argument("--download", action="store_true", default=None, help="download a missing MNIST-family dataset (checksums verified)")
    g.add_argument("--valid-fraction", type=float, help=f"share of training data held out for validation ({default('valid_fraction')})")
    g.add_argument("--split-seed", type=int, help=f"seed of the train/validation split ({default('split_seed')})")
    g.add_argument("--binarize", action="store_true", default=None, help="dynamic binarization: a fresh Bernoulli draw of each batch")
    g.add_argument("--image-size", type=positive_int, nargs=2, metavar=("H", "W"), help="resize image folders to H x W")
    g.add_argument(
        "--memmap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read a .npy file or a folder of .npy shards memory-mapped, batch by batch, in a shuffled order of "
        "contiguous blocks (default: automatic: shard folders, and .npy files too big for memory)",
    )
    g.add_argument(
        "--context-columns",
        nargs="+",
        metavar="NAME",
        help="a CSV table's columns that condition the model instead of being modelled (implies --condition columns)",
    )
    g.add_argument(
        "--on-codes",
        metavar="RUN",
        help="train on the posterior means of a trained VAE run (M1 of M1+M2, Kingma et al. 2014): that run's data, "
        "each example encoded by it; the run is recorded in this one, and every command reads data through it",
    )
    g.add_argument(
        "--labelled",
        type=int,
        metavar="N",
        help="keep the labels of N training examples (class-balanced, chosen by --split-seed) and hide the rest, "
        "for semi-supervised learning (--model m2); validation and test keep theirs (default: keep every label; "
        "-1 in the data marks an unlabelled example)",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=MODEL_KINDS.names(),
        metavar="KIND",
        help="vae (a Gaussian posterior), ae (a point mass: a plain autoencoder) or m2 (semi-supervised: a classifier "
        f"q(y|x) beside q(z|x, y) and p(x|y, z), for partly labelled data): {choices_help('model', MODEL_KINDS)}",
    )
    g.add_argument(
        "--arch", choices=ENCODERS.names(), metavar="ARCH", help=f"encoder and decoder network: {choices_help('arch', ENCODERS)}"
    )
    g.add_argument(
        "--latent-dim",
        type=int,
        nargs="+",
        metavar="L",
        help=f"size of z ({default('latent_dim')}); several sizes make a hierarchical model, z_1 (nearest the data) first",
    )
    g.add_argument(
        "--hierarchy",
        choices=HIERARCHIES.names(),
        metavar="NAME",
        help="how a hierarchical model's layers connect: skip (Tomczak & Welling's HVAE), branched (the same with their code's"
        f" networks: a layer per input), or chain (IWAE's) ({default('hierarchy')})",
    )
    g.add_argument(
        "--latent-hidden",
        type=int,
        nargs="+",
        metavar="H",
        help="hidden sizes of the networks between a hierarchical model's layers (default: two layers as wide as the encoder's output)",
    )
    g.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        help=f"MLP hidden sizes or conv channels per stage ({default('hidden')}; conv {' '.join(map(str, CONV_DEFAULT_CHANNELS))})",
    )
    g.add_argument("--activation", choices=ACTIVATIONS.names(), metavar="NAME", help=choices_help("activation", ACTIVATIONS))
    g.add_argument("--conv-dense", type=int, help=f"dense layer width between conv stack and latent, 0: none ({default('conv_dense')})")
    g.add_argument("--likelihood", choices=LIKELIHOODS.names(), metavar="NAME", help=f"p(x|z): {choices_help('likelihood', LIKELIHOODS)}")
    g.add_argument("--sigma", type=float, help=f"fixed standard deviation of the gaussian likelihood ({default('sigma')})")
    g.add_argument(
        "--logvar-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help=f"the range every Gaussian layer clamps its log-variance to; the VampPrior paper's: -6 2 ({default('logvar_range')})",
    )
    g.add_argument(
        "--dropout",
        type=float,
        nargs="+",
        metavar="P",
        help="zero each hidden unit of the dense encoder and decoder (mlp, gated) with probability P in training; "
        f"two values: the encoder's, then the decoder's ({default('dropout')})",
    )
    g.add_argument("--prior", choices=PRIORS.names(), metavar="NAME", help=f"p(z): {choices_help('prior', PRIORS)}")
    g.add_argument(
        "--prior-components", type=int, help=f"mixture prior components or vampprior pseudo-inputs ({default('prior_components')})"
    )
    g.add_argument(
        "--flow",
        choices=["none", *FLOWS.names()],
        metavar="NAME",
        help=f"flow steps on top of the Gaussian posterior: none, {', '.join(FLOWS.names())} ({default('flow')})",
    )
    g.add_argument("--flow-steps", type=int, help=f"number of flow steps ({default('flow_steps')})")
    g.add_argument(
        "--condition",
        choices=["none", *CONDITIONS.names()],
        metavar="NAME",
        help="a conditional model: label feeds the class label to the encoder and the decoder (with --prior conditional "
        "also p(z|y)), the dataset needs labels; columns feeds numbers per example (a table's --context-columns, "
        "an .npz's context array) "
        f"({default('condition')})",
    )
    g = p.add_argument_group("objective and optimisation")
    g.add_argument("--epochs", type=int, help=f"training epochs ({default('epochs')})")
    g.add_argument(
        "--batch-size", type=int, help=f"examples per step and process ({default('batch_size')}); with N processes a step takes N x this"
    )
    g.add_argument("--lr", type=float, help=f"Adam learning rate ({default('lr')})")
    g.add_argument("--weight-decay", type=float, help=f"Adam weight decay ({default('weight_decay')})")
    g.add_argument("--adam-betas", type=float, nargs=2, metavar=("B1", "B2"), help=f"Adam's moment decays β1 β2 ({default('adam_betas')})")
    g.add_argument(
        "--adam-eps",
        type=float,
        metavar="EPS",
        help=f"Adam's ε, in units of the per-example mean loss's gradient ({default('adam_eps')})",
    )
    g.add_argument("--beta", type=float, help=f"KL weight β ({default('beta')})")
    g.add_argument("--warmup", type=int, help=f"KL warm-up: β rises linearly from 0 over this many epochs ({default('warmup')})")
    g.add_argument(
        "--objective",
        choices=OBJECTIVES.names(),
        metavar="NAME",
        help=f"what training minimises: {', '.join(OBJECTIVES.names())} ({default('objective')}; --iw-samples K chooses iw)",
    )
    g.add_argument("--samples", type=int, help=f"latent samples per example ({default('samples')})")
    g.add_argument("--iw-samples", type=int, metavar="K", help="train on the importance-weighted bound with K samples (IWAE)")
    g.add_argument(
        "--iw-groups",
        type=int,
        metavar="M",
        help=f"with --iw-samples: average the IW bounds of M groups of the samples (MIWAE; {default('iw_groups')})",
    )
    g.add_argument(
        "--iw-elbo-mix",
        type=float,
        metavar="C",
        help=f"with --iw-samples: train on C x ELBO + (1 - C) x IW bound (CIWAE; {default('iw_elbo_mix')})",
    )
    g.add_argument(
        "--piwae",
        action="store_true",
        default=None,
        help="with --iw-samples and --iw-groups M: the decoder trains on the IW bound, the encoder on MIWAE (PIWAE)",
    )
    g.add_argument(
        "--alpha",
        type=float,
        metavar="A",
        help="with --model m2: the weight of a labelled example's classification loss -log q(y|x) against one example's "
        "bound (default: the paper's 0.1 x training examples / labelled examples)",
    )
    g.add_argument(
        "--stl",
        action="store_true",
        default=None,
        help="the path-derivative ('sticking the landing') gradient: log q(z|x) in the KL with the posterior's parameters stopped",
    )
    g.add_argument(
        "--noise",
        choices=CORRUPTIONS.names(),
        metavar="KIND",
        help=f"denoising: corrupt inputs, reconstruct clean targets: {choices_help('noise', CORRUPTIONS)}",
    )
    g.add_argument("--noise-level", type=float, help="noise std (gaussian) or probability (mask, salt-pepper)")
    g.add_argument("--grad-clip", type=float, help=f"clip the gradient norm, 0: off ({default('grad_clip')})")
    g.add_argument(
        "--normalize-grads",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="divide each parameter tensor's gradient by its norm before the Adam step (the VampPrior code's AdamNormGrad; default off)",
    )
    g.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="validate, checkpoint and keep an exponential moving average of the weights with this decay, e.g. 0.999"
        f" (Polyak averaging; {default('ema')}: off)",
    )
    g.add_argument(
        "--patience", type=int, help=f"early stopping after this many epochs without improvement, 0: off ({default('patience')})"
    )
    g.add_argument(
        "--lr-patience",
        type=int,
        metavar="N",
        help=f"multiply the learning rate by --lr-factor after N epochs with no better validation loss, 0: off ({default('lr_patience')})",
    )
    g.add_argument("--lr-factor", type=float, metavar="F", help=f"the learning-rate cut of --lr-patience ({default('lr_factor')})")
    g.add_argument("--min-lr", type=float, metavar="LR", help=f"the learning rate --lr-patience stops at ({default('min_lr')})")
    g.add_argument("--seed", type=int, help=f"random seed ({default('seed')})")
    g.add_argument(
        "--threads", type=int, help="torch threads (default 1; 2 for a conv network on an idle machine: measured in bench/README.md)"
    )
    g.add_argument("--nonfinite", choices=NONFINITE_POLICIES, help=f"on a NaN/Inf loss: stop or skip the step ({default('nonfinite')})")
    g.add_argument(
        "--init-decoder-bias",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the decoder's output bias at the training data's mean (default on)",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        help=f"bf16: matrix products in bfloat16 (autocast), the rest float32; for GPUs and CPUs with bf16 instructions "
        f"({default('precision')})",
    )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the training loss with torch.compile: faster steps after a compile of ~10 s, for long runs (default off)",
    )
    g.add_argument("--checkpoint-every", type=int, help=f"also checkpoint every N steps, 0: each epoch ({default('checkpoint_every')})")
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="JSON", help="start from this config file (flags override it)")
    g.add_argument(
        "--preset",
        metavar="NAME",
        help="start from a shipped preset, the literature's settings for a model (flags override it; list: vaekit presets)",
    )
    g.add_argument("--out", metavar="DIR", help="run directory (default: runs/DATASET-MODEL-TIME)")
    g.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in RUN from its last checkpoint, with its own settings (--epochs, --patience, the --lr-patience "
        "decay and --threads may change)",
    )
    g.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("processes")
    g.add_argument(
        "--nproc",
        type=positive_int,
        metavar="N",
        help="train in N processes on this machine (DistributedDataParallel; gloo on CPU, NCCL on GPU) by starting "
        "torchrun's launcher; on several machines run torchrun yourself (README)",
    )
    p.set_defaults(handler=run, train_parser=p)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.config and args.preset:
        raise ConfigError("give --config or --preset, not both")
    if args.preset:
        config = presets.load(args.preset).config()
    else:
        config = RunConfig.from_json_file(args.config) if args.config else RunConfig()
    for flag, (section, name) in _FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(getattr(config, section), name, tuple(value) if isinstance(value, list) else value)
    if isinstance(config.model.latent_dim, tuple):  # --latent-dim L1 L2 ...: the layers of a hierarchical model
        sizes = config.model.latent_dim
        config.model.latent_dim, config.model.latent_layers = sum(sizes), sizes if len(sizes) > 1 else ()
    if len(config.model.dropout) == 1:  # --dropout P: the encoder's and the decoder's
        config.model.dropout *= 2
    if config.data.context_columns and config.model.condition == "none":
        config.model.condition = "columns"
    if args.iw_samples is not None:
        config.train.n_samples, config.train.objective = args.iw_samples, ImportanceWeighted.name
    if (
        config.model.arch in ENCODERS
        and ENCODERS[config.model.arch].needs_images
        and args.hidden is None
        and not (args.config or args.preset)
    ):
        config.model.hidden = CONV_DEFAULT_CHANNELS
    validate(config)  # a bad value is named first, then a flag that would change nothing
    check_flags_take_effect(args, config)
    return config


def check_flags_take_effect(args: argparse.Namespace, config: RunConfig) -> None:
    """A one-line error for a flag the resolved ``config`` would ignore (``--noise-level`` without
    ``--noise``, ...): a user who gives one expects it to change the run."""
    check_parts(config.model)  # an unknown part, or parts that do not combine, are named first
    for flag, key in _FIELDS.items():  # a flag given where it would change nothing is an error, not a setting ignored
        if key in TAKES_EFFECT and getattr(args, flag) is not None and not takes_effect(config, *key):
            raise ConfigError(f"--{flag.replace('_', '-')} has no effect without {TAKES_EFFECT[key][1]}")


def resume_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--resume`` is asked to change (``RESUME_SETTINGS``: --epochs, --patience, --lr-patience,
    --lr-factor, --min-lr, --threads) as {field: value}; any other setting given with it is a one-line
    error, since the run keeps its own."""
    allowed = {flag for flag, (_, name) in _FIELDS.items() if name in RESUME_SETTINGS}
    given = [flag for flag in (*_FIELDS, "config", "preset", "out", "iw_samples") if getattr(args, flag, None) is not None]
    fixed = [flag for flag in given if flag not in allowed]
    if fixed:
        flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in sorted(allowed))
        raise ConfigError(f"--resume continues a run with its own settings: it takes {flags}, not --{fixed[0].replace('_', '-')}")
    return {_FIELDS[flag][1]: getattr(args, flag) for flag in given}


def run(args: argparse.Namespace) -> int:

    if args.nproc and args.nproc > 1 and not distributed.env_world().distributed:
        return distributed.launch(forwarded_argv(args), args.nproc)
    device = resolve_device(args.device)
    progress = not args.quiet
    world = distributed.init(device)  # under torchrun: join its process group
    try:
        if args.resume:
            result = resume(args.resume, device=device, progress=progress, **resume_settings(args))
        else:
            config = config_from_args(args)
            name = f"{Path(config.data.source).stem}-{config.model.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
            out = distributed.broadcast_object(str(args.out or Path("runs") / name))  # rank 0's clock names the run
            result = train(config, out, device=device, progress=progress)
    except VaekitError as exc:
        if world.is_main:
            raise
        return 130 if isinstance(exc, TrainingInterrupted) else 2  # every process fails alike; rank 0 says why
    finally:
        distributed.shutdown()
    if not world.is_main:
        return 0
    rows = result.metrics()
    if rows:
        last = rows[-1]
        print(
            f"trained {int(last['epoch'])} epochs: validation neg ELBO {last['valid_neg_elbo']:.3f} nats "
            f"(reconstruction {last['valid_reconstruction']:.3f}, KL {last['valid_kl']:.3f})"
            + (f", validation error {100 * last['valid_error']:.2f}%" if "valid_error" in last else "")
        )
    print(f"run saved in {result.path}")
    return 0


def forwarded_argv(args: argparse.Namespace) -> list[str]:
    """The command line of ``args`` again, without ``--nproc``: what each launched process runs."""
    argv = (["--verbose"] if args.verbose else []) + ["train"]
    for action in args.train_parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "nproc") or value is None or value == action.default:
            continue
        flag = next(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + flag[2:])
        elif action.nargs == 0:  # store_true
            argv.append(flag)
        else:
            argv += [flag, *map(str, value if isinstance(value, list) else [value])]
    return argv
