"""Downloading MNIST, Fashion-MNIST and MOSES from their public mirrors, checked against the official MD5 sums.

A file is streamed into a temporary file next to its destination and renamed into place only
after its checksum matched, so an interrupted or tampered download never leaves a file that
looks complete. Without network access every failure is a one-line ``DataError`` that says
which files to place in which directory instead.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from vaekit.errors import DataError

log = logging.getLogger(__name__)

# dataset -> {file name: official md5}
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "moses": {  # the files inside the molsets 0.3.1 package (moses/dataset/data/)
        "train.csv.gz": "712ffb13b3c0e4c24ab3faab75f5eb9e",
        "test.csv.gz": "67c1f90c86ff795e47485b2d615dc1c8",
        "test_scaffolds.csv.gz": "463b155c93d85d6806c6d448dcd476b7",
    },
}

# dataset -> base URLs tried in order (a file's URL is base + file name)
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "moses": [  # the package's gzipped files in the MOSES repository (Git LFS, then the plain raw path)
        "https://media.githubusercontent.com/media/molecularsets/moses/master/moses/dataset/data/",
        "https://raw.githubusercontent.com/molecularsets/moses/master/moses/dataset/data/",
    ],
}

TIMEOUT_S = 30.0
_CHUNK = 1 << 20

Opener = Callable[..., object]  # urllib.request.urlopen's signature: (url, timeout=...) -> response


class DownloadFailed(DataError):
    """No mirror could be reached (offline, DNS failure, HTTP error): the caller adds what to place where."""


def md5sum(path: str | Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(
    urls: Sequence[str],
    dest: str | Path,
    md5: str,
    *,
    timeout: float = TIMEOUT_S,
    opener: Opener | None = None,
) -> Path:
    """Download the first of ``urls`` that answers with the right checksum into ``dest``.

    Args:
        urls: candidate URLs for the same file, tried in order (``file://`` works too).
        dest: final path; written through a temporary file in the same folder and renamed.
        md5: the expected hex MD5 sum; a file that does not match is deleted, never kept.
        timeout: seconds to wait for each connection.
        opener: ``urllib.request.urlopen`` unless given (tests pass a fake).

    Raises ``DataError`` on a checksum mismatch (when no mirror served the right file), and
    ``DownloadFailed`` (a ``DataError``) when no mirror could be reached at all.
    """
    dest = Path(dest)
    opener = opener or urllib.request.urlopen
    dest.parent.mkdir(parents=True, exist_ok=True)
    mismatches: list[str] = []
    failures: list[str] = []
    for url in urls:
        log.info("downloading %s", url)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.md5()
            with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            got = digest.hexdigest()
            if got != md5:
                mismatches.append(f"{url} has md5 {got}")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # ValueError: bad URL
            failures.append(str(getattr(e, "reason", None) or e))
        finally:
            tmp.unlink(missing_ok=True)
    if mismatches:
        raise DataError(f"checksum mismatch for {dest.name}: expected md5 {md5} but {'; '.join(mismatches)}; refusing to use it")
    if not failures:
        raise DownloadFailed(f"cannot download {dest.name}: no mirror given")
    raise DownloadFailed(f"cannot download {dest.name} from {len(failures)} mirror(s) (offline?): {failures[-1]}")


def download_dataset(
    name: str,
    directory: str | Path,
    *,
    files: Sequence[str] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = TIMEOUT_S,
    opener: Opener | None = None,
) -> list[Path]:
    """Download the checksummed files of dataset ``name`` ("mnist", "fashion-mnist" or "moses") into ``directory``.

    Args:
        name: a key of ``CHECKSUMS``.
        directory: where the files go (created if needed).
        files: which file names to fetch; default all of the dataset's files.
        mirrors: base URLs to try in order; default ``MIRRORS[name]``.
        timeout: seconds to wait for each connection.
        opener: see ``fetch_file``.

    Files already present with the right checksum are kept. Raises ``DataError`` on a
    checksum mismatch, or when offline, with a message saying what to place where.
    """
    if name not in CHECKSUMS:
        raise DataError(f"no download known for {name!r}; downloadable: {', '.join(sorted(CHECKSUMS))}")
    directory = Path(directory)
    wanted = list(files) if files is not None else list(CHECKSUMS[name])
    bases = list(mirrors) if mirrors is not None else MIRRORS[name]
    paths = []
    for file_name in wanted:
        md5 = CHECKSUMS[name][file_name]
        dest = directory / file_name
        if dest.is_file() and md5sum(dest) == md5:
            paths.append(dest)
            continue
        try:
            paths.append(fetch_file([base + file_name for base in bases], dest, md5, timeout=timeout, opener=opener))
        except DownloadFailed as e:
            raise DownloadFailed(f"{e}; place {', '.join(wanted)} in {directory} by hand") from None
    return paths
