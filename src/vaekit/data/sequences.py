"""Token sequences from strings: SMILES molecules and other text, one example a line, and the MOSES dataset.

A sequence source is a text file with one example a line (``.smi``: the first whitespace-separated field
of a line, a name may follow; ``.txt``: the whole line) or a CSV column (``.csv``, with a ``SMILES``
column or the ``column`` named), plain or gzipped (``.gz``), or the named dataset ``moses`` (and
``moses-scaffolds``: the same training data, tested on MOSES's scaffold test set). Its strings are cut
into tokens by a tokenizer (``vaekit.data.tokenizers``) and numbered by a ``Vocabulary`` made from the
training file's tokens; each example is then stored as::

    <start> t_1 ... t_n <end> <pad> ... <pad>        (int64 ids, length T = max_length + 2)

with ``lengths`` = n + 2, what is stored: a decoder reads ``x[:, :-1]`` and predicts ``x[:, 1:]``.

The reading options (``load_data(preprocessing={...})``, recorded in ``info["preprocessing"]`` with
``format`` "sequences", and given back to read other data the same way):
    tokenizer: a name of ``TOKENIZERS`` (default ``smiles`` for .smi files, .csv files and MOSES, ``char`` for .txt).
    column: a CSV file's column of strings (default ``SMILES``).
    max_length: the most tokens of a string (``<start>``/``<end>`` not counted); a longer line is refused
        in one line naming it, unless ``truncate``. Recorded as given, else as the longest string's of the
        files read together (a dataset's train and test files), so data read again is padded to the same T.
    truncate: cut longer strings to ``max_length`` tokens instead (their count is logged and recorded).
    skip_invalid: for SMILES tokenizers, skip the lines RDKit cannot parse (their count is logged and
        recorded) instead of refusing the file on the first.
    max_examples: read only the first N examples of the training file (MOSES: of train.csv.gz).
    vocabulary: a saved ``Vocabulary.record()``: use it instead of making one. A vocabulary is made from
        the tokens of the files read together: a file's, or a dataset's training and test files (so that
        ``max_examples`` of MOSES's training file still numbers every token of its test set; with the whole
        file the two are the same 24 SMILES tokens). The validation split is cut from the training file.

Every problem with the input is a one-line ``DataError`` naming the file and its line, before anything
is returned: an empty line, a line beyond ``max_length``, a binary file (a NUL byte, or not UTF-8), a
SMILES that RDKit cannot parse (``smiles``/``selfies``), a SMILES the SELFIES encoder refuses, a token
outside a saved vocabulary. MOSES's files are checked against their MD5 sums instead of line by line.
"""

from __future__ import annotations

import csv
import gzip
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vaekit.data.download as dl
from vaekit.data.base import MAX_VALUES, Dataset, DataSplits, SourceSettings, register_dataset, split_parts
from vaekit.data.files import open_file, parsing
from vaekit.data.mnist import data_root, not_found
from vaekit.data.preprocess import check_options
from vaekit.data.tokenizers import TOKENIZERS, TokenCodes, TokenizeError, Tokenizer, codes_of
from vaekit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SEQUENCES = "sequences"  # the ``format`` of a sequence source's preprocessing record
OPTIONS = ("tokenizer", "column", "max_length", "truncate", "skip_invalid", "max_examples", "vocabulary")
TEXT_SUFFIXES = (".smi", ".txt", ".smi.gz", ".txt.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
DEFAULT_COLUMN = "SMILES"
PAD, START, END = "<pad>", "<start>", "<end>"  # ids 0, 1, 2

MOSES_FILES = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}


def is_text_file(path: Path) -> bool:
    """A file of one string a line (.smi, .txt, maybe gzipped)."""
    return path.name.lower().endswith(TEXT_SUFFIXES)


def is_csv_file(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


class Vocabulary:
    """Token strings <-> ids: ``PAD`` (0), ``START`` (1), ``END`` (2), then the tokens seen in the data
    it was built from, sorted (the same tokens give the same ids, whatever the data's order).

    tokens: every token, by id (the special ones first).
    tokenizer: the name of the tokenizer whose tokens these are (``decode`` joins with it).
    """

    def __init__(self, tokens: Sequence[str], tokenizer: str = "char"):
        self.tokens = list(tokens)
        self.tokenizer = tokenizer
        if self.tokens[:3] != [PAD, START, END] or len(set(self.tokens)) != len(self.tokens):
            raise DataError(f"a vocabulary starts with {PAD}, {START}, {END} and names each token once")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    pad, start, end = 0, 1, 2

    @classmethod
    def build(cls, tokens: Sequence[TokenCodes], tokenizer: str = "char") -> Vocabulary:
        """The vocabulary of the tokens seen (``TokenCodes`` of one or more files: their distinct codes are found by numpy at once)."""
        seen = {t.token(int(c)) for t in tokens for c in np.flatnonzero(np.bincount(t.codes, minlength=1))}
        special = seen & {PAD, START, END}
        if special:
            raise DataError(f"the data holds the token {sorted(special)[0]!r}, which the vocabulary keeps for itself")
        return cls([PAD, START, END, *sorted(seen)], tokenizer)

    def __len__(self) -> int:
        return len(self.tokens)

    def record(self) -> dict[str, Any]:
        """JSON-serialisable: ``from_record`` gives the same vocabulary back."""
        return {"tokenizer": self.tokenizer, "tokens": list(self.tokens)}

    @classmethod
    def from_record(cls, record: Any) -> Vocabulary:
        ok = isinstance(record, dict) and isinstance(record.get("tokens"), list) and all(isinstance(t, str) for t in record["tokens"])
        if not ok or record.get("tokenizer") not in TOKENIZERS:
            raise DataError("a saved vocabulary must be {'tokenizer': a tokenizer's name, 'tokens': [token strings]}")
        return cls(record["tokens"], record["tokenizer"])

    def encode(self, sequences: Sequence[Sequence[str]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T) int64 ids of ``sequences`` (lists of tokens) as stored, ``<start> ... <end>`` then padding,
        and their (N,) lengths (tokens + 2); T = ``width`` or the longest + 2. An unknown token is a
        one-line ``DataError`` naming it and its line (1-based: the sequence's position)."""
        return self.encode_codes(codes_of(sequences), width=width)

    def encode_codes(
        self,
        tokens: TokenCodes,
        *,
        keep: np.ndarray | None = None,
        width: int | None = None,
        lines: np.ndarray | None = None,
        where: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``encode`` for N strings' tokens as ``TokenCodes``, with numpy at once (no Python call per token).

        keep: (N,) how many of each string's tokens to store (truncation); default all.
        lines: (N,) the line number of each string, for errors (default 1..N); where: the file, for errors.
        """
        counts, codes = tokens.counts, tokens.codes
        keep = counts if keep is None else keep
        n = len(counts)
        width = int(keep.max(initial=0)) + 2 if width is None else width
        if n * width > MAX_VALUES:
            raise DataError(f"{where or 'sequences'}: {n} sequences of {width} tokens are too many values for memory")
        present = np.flatnonzero(np.bincount(codes, minlength=1))  # the distinct codes
        table = np.full(len(present) and int(present[-1]) + 1, -1, dtype=np.int64)  # code -> id
        for code in present:
            table[code] = self.index.get(tokens.token(int(code)), -1)
        ids = table[codes]  # (total,)
        unknown = np.flatnonzero(ids < 0)
        if len(unknown):
            row = int(np.searchsorted(np.cumsum(counts), unknown[0], side="right"))
            line = int(lines[row]) if lines is not None else row + 1
            token = tokens.token(int(codes[unknown[0]]))
            raise DataError(f"{where + ', ' if where else ''}line {line}: unknown token {token!r} (not in the vocabulary)")
        starts = np.cumsum(counts) - counts  # where each string's tokens begin in ``codes``
        dest = np.arange(len(codes)) + np.repeat(np.arange(n) * width + 1 - starts, counts)  # flat index in (N, T)
        if (keep < counts).any():  # truncated: store each string's first ``keep`` tokens
            stored = dest - np.repeat(np.arange(n) * width + 1, counts) < np.repeat(keep, counts)
            dest, ids = dest[stored], ids[stored]
        out = np.full((n, width), self.pad, dtype=np.int64)  # (N, T)
        out[:, 0] = self.start
        out.reshape(-1)[dest] = ids
        out[np.arange(n), keep + 1] = self.end
        return torch.from_numpy(out), torch.from_numpy(keep.astype(np.int64) + 2)

    def decode_tokens(self, ids: Any) -> list[list[str]]:
        """The tokens of each row of ids (N, T) (a tensor, an array or lists), a leading ``<start>``
        dropped, up to the first ``<end>`` or ``<pad>``."""
        rows = ids.tolist() if hasattr(ids, "tolist") else [list(r) for r in ids]
        out = []
        for row in rows:
            row = row[1:] if row and row[0] == self.start else row
            cut = next((i for i, t in enumerate(row) if t in (self.end, self.pad)), len(row))
            out.append([self.tokens[t] for t in row[:cut]])
        return out

    def decode(self, ids: Any) -> list[str]:
        """The strings of rows of ids (N, T): ``decode_tokens`` joined by the vocabulary's tokenizer."""
        tokenizer = TOKENIZERS[self.tokenizer]()
        return [tokenizer.join(tokens) for tokens in self.decode_tokens(ids)]


def vocabulary_of(info: dict[str, Any]) -> Vocabulary | None:
    """The vocabulary of a data record (``DataSplits.info``, a run's data.json); None for other data."""
    record = (info.get("preprocessing") or {}).get("vocabulary")
    return None if record is None else Vocabulary.from_record(record)


@dataclass
class Strings:
    """The strings of one file and the (1-based) line each is on."""

    values: list[str]
    lines: np.ndarray  # (N,) int64
    where: str

    def keep(self, mask: np.ndarray) -> Strings:
        return Strings([v for v, k in zip(self.values, mask) if k], self.lines[mask], self.where)

    def at(self, row: int) -> str:
        return f"{self.where}, line {int(self.lines[row])}"


def read_strings(path: Path, *, column: str | None = None, max_examples: int | None = None) -> Strings:
    """The strings of a text file (one a line; .smi: the first field) or of a CSV file's column (default
    ``SMILES``), gzipped or not. One-line ``DataError`` for a binary file and an empty line."""
    where = str(path)
    with open_file(path) as f, parsing(f"{where}: cannot read it"):
        raw = gzip.GzipFile(fileobj=f).read() if path.name.lower().endswith(".gz") else f.read()
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DataError(f"{where}, line {line}: a NUL byte: this is a binary file, not text with one example a line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{where}, line {line}: not UTF-8 text (a binary file?)") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's newline
    if "\r" in text:
        lines = [line.removesuffix("\r") for line in lines]
    first = 1
    if is_csv_file(path):
        lines, first = _csv_column(lines, column or DEFAULT_COLUMN, where), 2
    elif column is not None:
        raise DataError(f"{where}: a column is chosen in a CSV file; this file has one example a line")
    elif path.name.lower().endswith((".smi", ".smi.gz")) and any(" " in v or "\t" in v for v in lines):
        lines = [v.split(None, 1)[0] if v.strip() else "" for v in lines]  # a name may follow the SMILES
    if max_examples is not None:
        lines = lines[:max_examples]
    if not lines:
        raise DataError(f"{where}: no examples")
    strings = Strings(lines, np.arange(first, first + len(lines), dtype=np.int64), where)
    try:
        empty = lines.index("")
    except ValueError:
        return strings
    raise DataError(f"{strings.at(empty)}: an empty line (each line is one example)")


def _csv_column(lines: list[str], column: str, where: str) -> list[str]:
    """The values of ``column`` in a CSV file's lines (the first is the header)."""
    if not lines:
        raise DataError(f"{where}: an empty file (a CSV file starts with a header)")
    with parsing(f"{where}, line 1: not a CSV header"):
        header = next(csv.reader([lines[0]]))
    if column not in header:
        raise DataError(f"{where}: no column {column!r}; its columns are {', '.join(header)}")
    if len(header) == 1 and not any('"' in v for v in lines):
        return lines[1:]  # one column, nothing quoted: the lines are the values
    at = header.index(column)
    values = []
    with parsing(f"{where}: not CSV"):
        for number, row in enumerate(csv.reader(lines[1:]), start=2):
            if len(row) != len(header):
                raise DataError(f"{where}, line {number}: {len(row)} fields, but the header has {len(header)}")
            values.append(row[at])
    return values


@contextmanager
def _quiet_rdkit():
    """RDKit's own logging off (it prints a line per SMILES it cannot parse), and back on after."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def check_smiles(strings: Strings, skip_invalid: bool) -> tuple[Strings, int]:
    """The strings RDKit parses as molecules: the first that it does not is a one-line ``DataError``,
    or, with ``skip_invalid``, every such line is dropped (returned: the rest and their count)."""
    from rdkit import Chem

    with _quiet_rdkit():
        valid = np.fromiter((Chem.MolFromSmiles(s) is not None for s in strings.values), dtype=bool, count=len(strings.values))
    bad = np.flatnonzero(~valid)
    if len(bad) and not skip_invalid:
        row = int(bad[0])
        raise DataError(f"{strings.at(row)}: not a valid SMILES: {strings.values[row][:80]!r} (skip such lines with skip_invalid)")
    if len(bad):
        log.warning("%s: skipped %d line(s) that are not valid SMILES", strings.where, len(bad))
        strings = strings.keep(valid)
        if not strings.values:
            raise DataError(f"{strings.where}: no valid SMILES")
    return strings, len(bad)


@dataclass
class Tokenized:
    """A file's strings as tokens (``TokenCodes``) and how many of each string's are kept."""

    strings: Strings
    tokens: TokenCodes
    keep: np.ndarray  # (N,) each string's count, cut at max_length where truncated

    @property
    def truncated(self) -> int:
        return int((self.keep < self.tokens.counts).sum())


def tokenize(strings: Strings, tokenizer: Tokenizer, max_length: int | None, truncate: bool) -> Tokenized:
    """The tokens of ``strings``; a string longer than ``max_length`` tokens is refused in one line naming
    the first, or with ``truncate`` cut to it (counted, logged)."""
    try:
        tokens = tokenizer.split(strings.values)
    except TokenizeError as e:
        raise DataError(f"{strings.at(e.index)}: {e}") from None
    counts = keep = tokens.counts
    if max_length is not None:
        long = np.flatnonzero(counts > max_length)
        if len(long) and not truncate:
            row = int(long[0])
            raise DataError(
                f"{strings.at(row)}: {int(counts[row])} tokens, more than max_length {max_length} "
                f"({len(long)} such line(s); raise max_length, or truncate them)"
            )
        keep = np.minimum(counts, max_length)
        if len(long):
            log.warning("%s: truncated %d string(s) to %d tokens", strings.where, len(long), max_length)
    if (counts == 0).any():
        raise DataError(f"{strings.at(int(np.flatnonzero(counts == 0)[0]))}: no tokens")
    return Tokenized(strings, tokens, keep)


def sequence_options(options: dict[str, Any], default_tokenizer: str) -> dict[str, Any]:
    """The reading options, checked and completed (see the module docstring)."""
    check_options(options, SEQUENCES, OPTIONS)
    o = {k: options.get(k) for k in OPTIONS}
    o["tokenizer"] = o["tokenizer"] or (o["vocabulary"] or {}).get("tokenizer") or default_tokenizer
    if o["tokenizer"] not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer {o['tokenizer']!r}; choose one of {', '.join(TOKENIZERS.names())}")
    for key in ("max_length", "max_examples"):
        value = o[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DataError(f"{key} must be a positive integer, got {value!r}")
    o["truncate"], o["skip_invalid"] = bool(o["truncate"]), bool(o["skip_invalid"])
    if o["truncate"] and o["max_length"] is None:
        raise DataError("truncate needs max_length: the length to cut strings to")
    return o


def read_sequences(
    files: dict[str, Path], options: dict[str, Any], *, default_tokenizer: str = "smiles", validate: bool = True
) -> tuple[dict[str, Dataset], dict[str, Any], dict[str, Any]]:
    """The splits of sequence files (``files``: split name -> file, "train" first), their preprocessing
    record and what the loader records besides (how many lines were skipped or truncated).

    validate: check each SMILES with RDKit (``smiles``/``selfies`` tokenizers); False for files whose
        checksums vouch for them (MOSES).
    """
    o = sequence_options(options, default_tokenizer)
    tokenizer = TOKENIZERS[o["tokenizer"]]()
    read: dict[str, Tokenized] = {}
    skipped = {}
    for split, path in files.items():
        strings = read_strings(path, column=o["column"], max_examples=o["max_examples"] if split == "train" else None)
        if validate and tokenizer.chemical:
            strings, skipped[split] = check_smiles(strings, o["skip_invalid"])
        read[split] = tokenize(strings, tokenizer, o["max_length"], o["truncate"])
    saved = o["vocabulary"]
    vocabulary = Vocabulary.from_record(saved) if saved is not None else Vocabulary.build([t.tokens for t in read.values()], o["tokenizer"])
    if vocabulary.tokenizer != o["tokenizer"]:
        raise DataError(f"the saved vocabulary is of {vocabulary.tokenizer!r} tokens, not {o['tokenizer']!r}")
    max_length = o["max_length"] or max(int(t.keep.max()) for t in read.values())  # every split padded alike
    parts = {}
    for split, t in read.items():
        x, lengths = vocabulary.encode_codes(t.tokens, keep=t.keep, width=max_length + 2, lines=t.strings.lines, where=t.strings.where)
        parts[split] = Dataset(x, lengths=lengths)  # (N, T), (N,)
    record = {k: o[k] for k in ("tokenizer", "column", "truncate", "skip_invalid", "max_examples")}
    record.update(format=SEQUENCES, max_length=max_length, vocabulary=vocabulary.record())
    counts = {"skipped_invalid": skipped, "truncated": {split: t.truncated for split, t in read.items()}}
    return parts, record, {"sequences": counts}


def read_sequence_file(path: Path, options: dict[str, Any]) -> tuple[dict[str, Dataset], dict[str, Any], dict[str, Any]]:
    """One file of strings as the "train" split, its record and counts (``read_sequences``): the tokenizer
    defaults to ``char`` for .txt files and ``smiles`` otherwise."""
    default = "char" if path.name.lower().endswith((".txt", ".txt.gz")) else "smiles"
    return read_sequences({"train": path}, options, default_tokenizer=default)


@register_dataset("moses", format=SEQUENCES)
def load_moses(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """MOSES (Polykovskiy et al. 2020): 1,584,663 training SMILES (a validation share split off by the
    seed), and its 176,074 test SMILES as the test split. Tokenized with ``smiles`` by default."""
    return _load_moses("test", settings, options)


@register_dataset("moses-scaffolds", format=SEQUENCES)
def load_moses_scaffolds(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """MOSES with its scaffold test set (176,225 molecules whose Bemis-Murcko scaffolds are not in the
    training set) as the test split; training and validation splits as ``moses``."""
    return _load_moses("test_scaffolds", settings, options)


def _load_moses(test: str, settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    found = find_moses_files(data_root(settings.data_dir), ("train", test), settings.download)
    parts, record, counts = read_sequences({"train": found["train"], "test": found[test]}, options, validate=False)
    info = {"preprocessing": record, "files": [str(p) for p in found.values()], **counts}
    return split_parts(parts, settings.valid_fraction, settings.seed, info)


def find_moses_files(root: Path, splits: Sequence[str], download: bool) -> dict[str, Path]:
    """MOSES's files of ``splits`` in ``<root>/moses`` or ``root``, their MD5 sums checked; downloaded
    first into ``<root>/moses`` when missing and ``download``; else a one-line ``DataNotFound``."""
    names = [MOSES_FILES[s] for s in splits]
    home = root / "moses"
    for directory in (home, root):
        if all((directory / name).is_file() for name in names):
            break
    else:
        if not download:
            raise not_found(f"moses files not found: place {', '.join(names)} in {home}", downloadable=True)
        dl.download_dataset("moses", home, files=names)
        directory = home
    found = {s: directory / MOSES_FILES[s] for s in splits}
    for path in found.values():
        expected, got = dl.CHECKSUMS["moses"][path.name], dl.md5sum(path)
        if got != expected:
            raise DataError(f"checksum mismatch for {path}: expected md5 {expected} but it has {got}; refusing to use it")
    return found
