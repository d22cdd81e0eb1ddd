"""The ``vaekit`` command line. Each module in this package adds its sub-commands with ``register``
(each sub-parser names its function with ``set_defaults(handler=fn)``);
``main`` turns every ``VaekitError`` (and an ``OSError`` from the environment, such as a full
disk) into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys

from vaekit.errors import VaekitError
from vaekit.version import __version__

EXIT_USAGE = 2


def _command_modules():
    from vaekit.cli import anomaly, compress, evaluate, explore, figures, latent, presets, train

    return [train, evaluate, figures, latent, anomaly, explore, compress, presets]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too by default)
        self.exit(EXIT_USAGE, f"vaekit: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vaekit", description="Variational autoencoders: train, evaluate and look into latent spaces.")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its one-time font-cache note is not ours to show
    from vaekit.training import TrainingInterrupted

    try:
        return args.handler(args) or 0
    except TrainingInterrupted as exc:
        print(f"vaekit: {exc}", file=sys.stderr)
        return 130
    except VaekitError as exc:
        print(f"vaekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the environment: disk full, no permission, read-only file system
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vaekit: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
