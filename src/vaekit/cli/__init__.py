"""The ``vaekit`` command line. Each module in this package adds its sub-commands with ``register``
(each sub-parser names its function with ``set_defaults(handler=fn)``); ``COMMANDS`` lists them, and
``main`` imports only the chosen command's module, so that ``vaekit --help`` or ``vaekit presets`` does
not wait for torch. ``main`` turns every ``VaekitError`` (and an ``OSError`` from the environment, such
as a full disk) into one line on stderr and exit code 2, and stops quietly when the reader of its
output has gone (``vaekit presets | head -1``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Collection

from vaekit.errors import VaekitError
from vaekit.version import __version__

EXIT_USAGE = 2


# Every command, in the order ``vaekit --help`` lists them: its module in this package (whose ``register``
# adds it) and its one-line help, the same as the module's (tests/test_cli_startup.py checks both).
COMMANDS = {
    "train": ("train", "train a VAE or autoencoder"),
    "evaluate": ("evaluate", "test-set negative ELBO, IW log-likelihood, latent diagnostics, PCA baseline"),
    "sample": ("figures", "a PNG grid of decoded prior samples"),
    "pseudo-inputs": ("figures", "a PNG of a VampPrior's learned pseudo-inputs and their decodings"),
    "reconstruct": ("figures", "a PNG of originals above their reconstructions"),
    "interpolate": ("latent", "decode the path between two inputs' posterior means (PNG strip)"),
    "traverse": ("latent", "vary the most informative latent dimensions one at a time (PNG grid)"),
    "manifold": ("latent", "decoded grid over two latent dimensions (PNG)"),
    "embed": ("latent", "encode a split: codes as NPY and CSV, and a scatter plot coloured by label"),
    "denoise": ("latent", "corrupted, denoised and clean images with MSE/PSNR per row (PNG)"),
    "curves": ("latent", "training curves: negative ELBO, reconstruction, KL and β per epoch (PNG)"),
    "report": ("latent", "one self-contained HTML report of a run"),
    "classify": ("classify", "a semi-supervised run's class predictions (CSV), accuracy and confusion matrix"),
    "analogies": ("classify", "each example's style z decoded as every class (PNG grid)"),
    "disentanglement": ("disentanglement", "metrics of how a run's latent units separate known factors of variation (MIG, DCI, ...)"),
    "molecules": ("molecules", "sample molecules from a SMILES/SELFIES model and score them with the MOSES metrics"),
    "optimize": ("optimize", "search a molecule model's latent space for molecules with a high QED, logP or penalized logP"),
    "anomaly": ("anomaly", "anomaly scores per example, a threshold, a histogram, ROC AUC with labels"),
    "explore": ("explore", "interactive latent-space explorer in the browser (local web app)"),
    "compress": ("compress", "compress data with a trained VAE (lossless bits-back ANS, or --lossy latent codes)"),
    "decompress": ("compress", "decode a .vkz file written by 'vaekit compress' with the same run"),
    "presets": ("presets", "list the literature's configurations shipped with vaekit (vaekit train --preset NAME)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too by default)
        self.exit(EXIT_USAGE, f"vaekit: error: {message} (see '{self.prog} --help')\n")


def build_parser(full: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``vaekit`` parser. full: the commands whose sub-parsers are built in full, importing their
    modules (None: every command); the others are listed by name and help only, which is enough for
    ``vaekit --help`` and to refuse an unknown command."""
    parser = _Parser(prog="vaekit", description="Variational autoencoders: train, evaluate and look into latent spaces.")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = {COMMANDS[name][0] for name in (COMMANDS if full is None else full) if name in COMMANDS}
    for name, (module, summary) in COMMANDS.items():
        if name in sub.choices:
            continue  # added by its module with an earlier command
        if module in modules:
            importlib.import_module(f"vaekit.cli.{module}").register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _command(argv: list[str]) -> list[str]:
    """The command ``argv`` names (none, or one): its first word that is not an option, since vaekit's
    own options (--version, -v, -h) take no value."""
    return [arg for arg in argv if not arg.startswith("-")][:1]


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _main(sys.argv[1:] if argv is None else list(argv))
        finally:
            sys.stdout.flush()  # a reader that has gone shows here, not at the interpreter's exit
    except BrokenPipeError:  # ``vaekit presets | head -1``: stop quietly (the recipe in Python's signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the flush at exit cannot fail again
        return 1


def _computing(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """What a command runs inside: a command that computes (one that takes ``--threads``) with subnormal
    floats flushed to zero (``vaekit.threads``); a light one (``presets``) as it is, never importing torch."""
    if not hasattr(args, "threads"):
        return contextlib.nullcontext()
    from vaekit.threads import subnormals_flushed

    return subnormals_flushed()


def _main(argv: list[str]) -> int:
    args = build_parser(full=_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its one-time font-cache note is not ours to show

    try:
        with _computing(args):
            return args.handler(args) or 0
    except VaekitError as exc:
        training = sys.modules.get("vaekit.training")  # only the commands that train (and so import it) can be interrupted
        if training is not None and isinstance(exc, training.TrainingInterrupted):
            print(f"vaekit: {exc}", file=sys.stderr)
            return 130
        print(f"vaekit: error: {exc.cli or exc}", file=sys.stderr)  # the message in the command line's words
        return EXIT_USAGE
    except BrokenPipeError:
        raise  # main's to handle: not an error of the environment
    except OSError as exc:  # the environment: disk full, no permission, read-only file system
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vaekit: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
