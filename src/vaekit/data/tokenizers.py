"""Tokenizers: a string in, its tokens out, and back (``TOKENIZERS``, by name).

``char``: one token per character. ``smiles``: the field's usual regular expression (Schwaller et al.
2019): a bracket atom (``[nH+]``, ``[C@@H]``) is one token, the two-letter atoms ``Cl`` and ``Br`` are one
token each, a two-digit ring-bond label (``%12``) is one token, every other character is a token of its
own. ``selfies``: the SMILES string's SELFIES (Krenn et al. 2020, the ``selfies`` library), one token per
SELFIES symbol.

Each tokenizer gives ``tokens(text) -> list[str]`` and ``join(tokens) -> str``; ``join(tokens(s))`` is
``s`` again for ``char`` and ``smiles`` (their tokens cover every character), and a SMILES of the same
molecule for ``selfies`` (the SELFIES decoder writes its own SMILES). ``split(lines)`` tokenizes many
strings at once into ``TokenCodes`` (an integer per token): for ``char`` and ``smiles`` with one regular
expression substitution over all of them and numpy, no Python call per token.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaekit.registry import Registry

log = logging.getLogger(__name__)


class TokenizeError(ValueError):
    """A string the tokenizer cannot turn into tokens; ``index`` is its position in the list given to ``split``."""

    def __init__(self, message: str, index: int = 0):
        super().__init__(message)
        self.index = index


@dataclass
class TokenCodes:
    """The tokens of N strings as one integer per token, all strings' tokens in one array.

    codes: (total,) uint32, each token's code; counts: (N,) int64, each string's number of tokens;
    names: the token string of each code that is not the character ``chr(code)`` (a token of several
    characters gets a code of its own, from Unicode's private use plane 15).
    """

    codes: np.ndarray
    counts: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def token(self, code: int) -> str:
        return self.names.get(code, chr(code))


_PRIVATE = 0xF0000  # the first code given to a token of several characters
_PRIVATE_CHARS = re.compile("[\U000f0000-\U0010ffff]")


class Tokenizer(ABC):
    """Strings to tokens and back (an interface: the leaves below are final)."""

    name: str
    chemical = False  # its strings are SMILES, which a reader checks with RDKit

    @abstractmethod
    def tokens(self, text: str) -> list[str]:
        """The tokens of one string; ``TokenizeError`` where it has none."""

    @abstractmethod
    def join(self, tokens: list[str]) -> str:
        """The string of ``tokens`` (``tokens``'s inverse)."""

    def split(self, lines: list[str]) -> TokenCodes:
        """The tokens of many strings as ``TokenCodes``. A string that cannot be tokenized raises
        ``TokenizeError`` with its ``index``."""
        parts = []
        for i, line in enumerate(lines):
            try:
                parts.append(self.tokens(line))
            except TokenizeError as e:
                raise TokenizeError(str(e), i) from None
        return codes_of(parts)


def codes_of(sequences: Sequence[Sequence[str]]) -> TokenCodes:
    """``TokenCodes`` of token lists: every distinct token gets a code of its own (one at a time, in Python)."""
    by_token: dict[str, int] = {}
    flat = [by_token.setdefault(t, _PRIVATE + len(by_token)) for s in sequences for t in s]
    counts = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    return TokenCodes(np.array(flat, dtype=np.uint32), counts, {c: t for t, c in by_token.items()})


class RegexTokenizer(Tokenizer):
    """Tokens are the single characters, except the matches of ``multi`` (tokens of several characters)."""

    multi: re.Pattern | None = None

    def tokens(self, text: str) -> list[str]:
        return self._all.findall(text)

    def join(self, tokens: list[str]) -> str:
        return "".join(tokens)

    @property
    def _all(self) -> re.Pattern:
        return re.compile((self.multi.pattern + "|" if self.multi else "") + ".", re.DOTALL)

    def split(self, lines: list[str]) -> TokenCodes:
        # vectorised: each multi-character token becomes one private-use character (one re.sub over all
        # lines), then every character is a token, read as UTF-32 code points by numpy at once
        text = "\n".join(lines) + "\n"
        if any("\n" in line for line in lines) or _PRIVATE_CHARS.search(text):
            return super().split(lines)
        names: dict[str, str] = {}
        if self.multi is not None:
            text = self.multi.sub(lambda m: names.setdefault(m.group(), chr(_PRIVATE + len(names))), text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (total + N,)
        newline = codes == 10
        ends = np.flatnonzero(newline)  # (N,)
        counts = np.diff(ends, prepend=-1) - 1
        return TokenCodes(codes[~newline], counts.astype(np.int64), {ord(c): t for t, c in names.items()})


TOKENIZERS: Registry[type[Tokenizer]] = Registry("tokenizer")


@TOKENIZERS.register("char")
class CharTokenizer(RegexTokenizer):
    """One token per character."""


@TOKENIZERS.register("smiles")
class SmilesTokenizer(RegexTokenizer):
    """SMILES tokens: bracket atoms, ``Cl``, ``Br``, ``%NN`` ring bonds as one token each; any other character alone."""

    chemical = True
    multi = re.compile(r"\[[^\[\]\n]*\]|Br|Cl|%\d\d")


@TOKENIZERS.register("selfies")
class SelfiesTokenizer(Tokenizer):
    """The SELFIES symbols of a SMILES string (``selfies.encoder`` then ``split_selfies``); ``join`` decodes
    them to a SMILES of the same molecule. A SMILES the encoder refuses is a ``TokenizeError``.

    ``split`` encodes many strings at once (``selfies_codes``: a process per core, the result cached).
    """

    chemical = True

    def tokens(self, text: str) -> list[str]:
        import selfies

        return list(selfies.split_selfies(_selfies(text)))

    def join(self, tokens: list[str]) -> str:
        import selfies

        return selfies.decoder("".join(tokens))

    def split(self, lines: list[str]) -> TokenCodes:
        return selfies_codes(lines)


class _SelfiesSymbols(RegexTokenizer):
    """A SELFIES string's symbols: each bracketed one, and any other character alone (``split_selfies``'s cut)."""

    multi = re.compile(r"\[[^\[\]\n]*\]")


def _selfies(text: str) -> str:
    """The SELFIES of one SMILES string; ``TokenizeError`` where the encoder refuses it."""
    import selfies

    try:
        return selfies.encoder(text, strict=True)
    except selfies.EncoderError as e:
        detail = " ".join(str(e).split())[:200]
        raise TokenizeError(f"SELFIES cannot encode {text[:80]!r} ({detail})") from None


def _selfies_chunk(lines: list[str]) -> tuple[list[str], tuple[int, str] | None]:
    """The SELFIES of ``lines`` up to the first refused one, and that one's (index in ``lines``, message) or None."""
    out: list[str] = []
    for i, line in enumerate(lines):
        try:
            out.append(_selfies(line))
        except TokenizeError as e:
            return out, (i, str(e))
    return out, None


SELFIES_POOL_MIN = 20_000  # strings: fewer are encoded in this process and not cached (a pool's start-up costs more)
SELFIES_CHUNK = 5_000  # strings a worker encodes per task


def selfies_strings(lines: list[str], processes: int = 1) -> list[str]:
    """The SELFIES string of each SMILES in ``lines``, by ``processes`` worker processes (1: in this one).
    The first string the encoder refuses raises ``TokenizeError`` with its index in ``lines``."""
    starts = range(0, len(lines), SELFIES_CHUNK)
    chunks = [lines[s : s + SELFIES_CHUNK] for s in starts]
    # the platform's default start method: the workers run the selfies library alone, nothing of torch's
    with ProcessPoolExecutor(processes) if processes > 1 else contextlib.nullcontext() as pool:
        out: list[str] = []
        for start, (part, refused) in zip(starts, pool.map(_selfies_chunk, chunks) if pool else map(_selfies_chunk, chunks)):
            if refused is not None:
                if pool:
                    pool.shutdown(cancel_futures=True)
                raise TokenizeError(refused[1], start + refused[0])
            out += part
    return out


def selfies_codes(lines: list[str]) -> TokenCodes:
    """The SELFIES symbols of the SMILES ``lines`` as ``TokenCodes``. The encoder is Python, one string at
    a time (MOSES's 1.58M training molecules: about 10 minutes on one core), so many strings (at least
    ``SELFIES_POOL_MIN``) are encoded by a process per core and their codes kept in
    ``cache_root()/selfies``, named by the digest of the strings and the ``selfies`` version: the next
    read of the same strings (a resume, another run) loads them."""
    if len(lines) < SELFIES_POOL_MIN:
        return _SelfiesSymbols().split(selfies_strings(lines))
    import selfies

    from vaekit.data.mnist import cache_root

    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]
    path = cache_root() / "selfies" / f"{digest}-selfies-{selfies.__version__}.npz"
    cached = _read_codes(path, len(lines))
    if cached is not None:
        return cached
    processes = os.cpu_count() or 1
    log.info("encoding %d SMILES as SELFIES in %d processes (kept in %s for the next time)", len(lines), processes, path)
    codes = _SelfiesSymbols().split(selfies_strings(lines, processes))
    _keep_codes(path, codes)
    return codes


def _read_codes(path: Path, count: int) -> TokenCodes | None:
    """The ``TokenCodes`` kept in ``path`` by ``_keep_codes``, or None where it is missing, unreadable or
    not of ``count`` strings (read as arrays only: never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as kept:
            symbols, ids, counts = kept["symbols"], kept["ids"], kept["counts"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if len(counts) != count or counts.sum() != len(ids) or (len(ids) and ids.max() >= len(symbols)):
        return None
    names = {_PRIVATE + i: str(s) for i, s in enumerate(symbols)}
    return TokenCodes(ids.astype(np.uint32) + _PRIVATE, counts.astype(np.int64), names)


def _keep_codes(path: Path, codes: TokenCodes) -> None:
    """Keep ``codes`` in ``path`` (the distinct symbols, each token's index among them, the counts),
    written whole or not at all (``atomic_write_bytes``); a cache that cannot be written is only logged."""
    from vaekit.checkpoint import atomic_write_bytes

    distinct, ids = np.unique(codes.codes, return_inverse=True)
    symbols = np.array([codes.token(int(c)) for c in distinct], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, symbols=symbols, ids=ids.astype(np.uint16 if len(distinct) <= 1 << 16 else np.uint32), counts=codes.counts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:
        log.warning("could not keep the SELFIES encodings in %s: %s", path, e.strerror or e)


def get_tokenizer(name: str) -> Tokenizer:
    """The tokenizer registered as ``name``; a ``ConfigError`` listing the names otherwise."""
    return TOKENIZERS[name]()
