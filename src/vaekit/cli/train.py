"""``vaekit train``: train a model and write a run directory."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import vaekit.distributed as distributed
import vaekit.presets as presets
from vaekit.cli.common import positive_int, resolve_device
from vaekit.cli.settings_flags import SettingFlag, add_setting_arguments, apply_setting_flags, setting_flags
from vaekit.config import CONV_DEFAULT_CHANNELS, RunConfig
from vaekit.errors import ConfigError, VaekitError
from vaekit.models import ENCODERS, check_parts
from vaekit.models.condition import ColumnsCondition
from vaekit.objectives import ImportanceWeighted
from vaekit.settings import TAKES_EFFECT, check, takes_effect
from vaekit.training import RESUME_SETTINGS, TrainingInterrupted, resume, train


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a VAE or autoencoder",
        description="Train a VAE (or a plain/denoising autoencoder) and write a run directory with config, weights, metrics and figures.",
    )
    add_setting_arguments(p, after={"n_samples": _add_iw_samples})  # the settings' flags: vaekit.config's fields describe them
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


def _add_iw_samples(group: argparse._ArgumentGroup) -> None:
    """``--iw-samples K``: two settings at once (``objective`` iw, ``n_samples`` K), so no field's flag."""
    group.add_argument("--iw-samples", type=int, metavar="K", help="train on the importance-weighted bound with K samples (IWAE)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.config and args.preset:
        raise ConfigError("give --config or --preset, not both")
    if args.preset:
        config = presets.load(args.preset).config()
    else:
        config = RunConfig.from_json_file(args.config) if args.config else RunConfig()
    apply_setting_flags(args, config)  # flags whose value is None leave the config (or its default) alone
    _apply_shorthands(args, config)
    check(config)  # a bad value is named first, then a flag that would change nothing
    check_flags_take_effect(args, config)
    return config


def _apply_shorthands(args: argparse.Namespace, config: RunConfig) -> None:
    """What flags mean beyond the one field each sets: several --latent-dim sizes, one --dropout value,
    --context-columns without --condition, --iw-samples, and a convolutional network's own default --hidden."""
    m = config.model
    if isinstance(m.latent_dim, tuple):  # --latent-dim L1 L2 ...: the layers of a hierarchical model
        sizes = m.latent_dim
        m.latent_dim, m.latent_layers = sum(sizes), sizes if len(sizes) > 1 else ()
    if len(m.dropout) == 1:  # --dropout P: the encoder's and the decoder's
        m.dropout *= 2
    if config.data.context_columns and m.condition == "none":
        m.condition = ColumnsCondition.name
    if args.iw_samples is not None:
        config.train.n_samples, config.train.objective = args.iw_samples, ImportanceWeighted.name
    if m.arch in ENCODERS and ENCODERS[m.arch].needs_images and args.hidden is None and not (args.config or args.preset):
        m.hidden = CONV_DEFAULT_CHANNELS


def check_flags_take_effect(args: argparse.Namespace, config: RunConfig) -> None:
    """A one-line error for a flag the resolved ``config`` would ignore (``--noise-level`` without
    ``--noise``, ...): a user who gives one expects it to change the run."""
    check_parts(config.model)  # an unknown part, or parts that do not combine, are named first
    for flag in setting_flags():  # a flag given where it would change nothing is an error, not a setting ignored
        if flag.key in TAKES_EFFECT and getattr(args, flag.dest) is not None and not takes_effect(config, *flag.key):
            raise ConfigError(f"{flag.option} has no effect without {TAKES_EFFECT[flag.key][1]}")


def resume_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--resume`` is asked to change (``RESUME_SETTINGS``: --epochs, --patience, --lr-patience,
    --lr-factor, --min-lr, --threads) as {field: value}; any other setting given with it is a one-line
    error, since the run keeps its own."""
    flags: dict[str, SettingFlag] = {flag.dest: flag for flag in setting_flags()}
    allowed = {dest for dest, flag in flags.items() if flag.name in RESUME_SETTINGS}
    given = [dest for dest in (*flags, "config", "preset", "out", "iw_samples") if getattr(args, dest, None) is not None]
    fixed = [dest for dest in given if dest not in allowed]
    if fixed:
        options = ", ".join(flags[dest].option for dest in sorted(allowed))
        raise ConfigError(f"--resume continues a run with its own settings: it takes {options}, not --{fixed[0].replace('_', '-')}")
    return {flags[dest].name: getattr(args, dest) for dest in given}


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
