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

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vaekit.registry import Registry


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
    them to a SMILES of the same molecule. A SMILES the encoder refuses is a ``TokenizeError``."""

    chemical = True

    def tokens(self, text: str) -> list[str]:
        import selfies

        try:
            return list(selfies.split_selfies(selfies.encoder(text, strict=True)))
        except selfies.EncoderError as e:
            detail = " ".join(str(e).split())[:200]
            raise TokenizeError(f"SELFIES cannot encode {text[:80]!r} ({detail})") from None

    def join(self, tokens: list[str]) -> str:
        import selfies

        return selfies.decoder("".join(tokens))


def get_tokenizer(name: str) -> Tokenizer:
    """The tokenizer registered as ``name``; a ``ConfigError`` listing the names otherwise."""
    return TOKENIZERS[name]()
