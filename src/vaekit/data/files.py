"""Opening data files and parsing their bytes, with every failure reported as ``DataError``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from vaekit.errors import DataError


def open_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading, with "no such file" / "cannot read" as ``DataError``."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


@contextmanager
def parsing(what: str) -> Iterator[None]:
    """Report any exception a third-party parser raises on malformed bytes as ``DataError(what)``.

    numpy's header parser, zipfile, gzip and PIL raise a zoo of exception types on corrupt
    input (ValueError, OSError, EOFError, SyntaxError, struct.error, zlib.error, ...); vaekit
    promises a ``DataError`` and nothing else, so this is the one place that catches broadly.
    """
    try:
        yield
    except DataError:
        raise
    except Exception as e:
        detail = " ".join(str(e).split())[:200]  # one line, short: the CLI prints it as is
        raise DataError(f"{what} ({type(e).__name__}: {detail})") from e
