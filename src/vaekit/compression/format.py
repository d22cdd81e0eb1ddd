"""The ``.vkz`` file: a fixed preamble, a JSON header, the coded stream and a CRC-32.

    offset 0   8 bytes  magic b"\\x89VKZ\\r\\n\\x1a\\n" (a binary file; text-mode damage shows)
           8   2 bytes  format version, little-endian: 1, or 2 for a lossless file of an 8-bit likelihood
                        (each level coded as two symbols of 16; ``likelihoods``); a file says the oldest
                        version its stream needs, so files that did not change read in older vaekits
          10   4 bytes  header length H, little-endian (at most 1 MiB)
          14   H bytes  header: UTF-8 JSON object (``Header``'s fields)
      14 + H   4 W      the ANS stack, W = header["words"] 32-bit little-endian words
    end - 4    4 bytes  CRC-32 of everything before it

The reader checks, in order: the magic, the version, the lengths (a short file is "truncated"),
the CRC (a changed byte is "corrupted"), and each header field's type and range, so a bad file is
one ``FormatError`` line before any decoding starts; after decoding, the data's SHA-256 is checked.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from vaekit.compression import original as original_form
from vaekit.compression.errors import FormatError
from vaekit.compression.exact import ACTIVATION_BITS, WEIGHT_BITS, weights_sha256

MAGIC = b"\x89VKZ\r\n\x1a\n"
VERSION = 2  # the newest format version: this vaekit reads versions 1 to VERSION
MAX_HEADER = 2**20
MAX_VALUES = 2**31  # the most values one file may describe
_PREAMBLE = struct.Struct("<8sHI")


@dataclass
class Header:
    """Everything the decoder needs besides the model (whose weights' SHA-256 it names)."""

    mode: str  # "lossless" (bits-back) or "lossy" (quantised posterior means)
    weights_sha256: str
    likelihood: str
    shape: list[int]  # one example's shape
    dtype: str  # the original data's dtype: float32, float64 or uint8
    count: int  # number of examples
    latent_dim: int
    latent_bits: int  # bits per latent dimension (buckets under the prior)
    weight_bits: int
    activation_bits: int
    words: int  # 32-bit words of coded stream
    data_sha256: str  # of the original array's bytes (C order), checked after decoding
    batches: list[int] = field(default_factory=list)  # examples per bits-back batch, in coding order
    initial_bits: int = 0
    active: list[int] = field(default_factory=list)  # lossy: the latent dimensions stored
    classes: int = 0  # a label-conditional model's classes: the examples' labels are in the stream, uniform over them
    coder: str = "constriction.stream.stack.AnsCoder (32-bit words, 24-bit probabilities)"
    original: dict | None = None  # the user's array's form (``compression.original``), given back on decoding; None: the model's
    version: int = 1  # the preamble's format version (not in the JSON): the coding the stream uses


def write(header: Header, words: np.ndarray) -> bytes:
    fields_ = asdict(header)
    if not fields_["classes"]:  # written only for a conditional model, so files of other models read as before
        del fields_["classes"]
    if fields_["original"] is None:  # written only for data read from another form, so other files read as before
        del fields_["original"]
    version = fields_.pop("version")
    body = json.dumps(fields_, separators=(",", ":")).encode()
    out = _PREAMBLE.pack(MAGIC, version, len(body)) + body + words.astype("<u4").tobytes()
    return out + struct.pack("<I", zlib.crc32(out))


def read(data: bytes, where: str = "the data") -> tuple[Header, np.ndarray]:
    """Parse and check a file's bytes -> (header, stream words). ``FormatError`` for anything wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"{where}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREAMBLE.size or not data.startswith(MAGIC):
        if MAGIC.startswith(data[: len(MAGIC)]) and len(data) < _PREAMBLE.size + 4:
            raise FormatError(f"{where} is truncated (only {len(data)} bytes)")
        raise FormatError(f"{where} is not a vaekit compressed file (bad magic)")
    _, version, size = _PREAMBLE.unpack_from(data)
    if not 1 <= version <= VERSION:
        raise FormatError(f"{where} has format version {version}; this vaekit reads versions 1 to {VERSION}")
    if size > MAX_HEADER:
        raise FormatError(f"{where} is corrupted (header length {size})")
    if len(data) < _PREAMBLE.size + size + 4:
        raise FormatError(f"{where} is truncated ({len(data)} bytes)")
    if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        start = _PREAMBLE.size + size
        try:  # a file cut short is more likely than one with a changed byte: say which, if the header tells
            words = json.loads(data[_PREAMBLE.size : start])["words"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            words = None
        if isinstance(words, int) and len(data) < start + 4 * words + 4:
            raise FormatError(f"{where} is truncated ({len(data)} of {start + 4 * words + 4} bytes)")
        raise FormatError(f"{where} is corrupted (CRC-32 mismatch)")
    try:
        raw = json.loads(data[_PREAMBLE.size : _PREAMBLE.size + size].decode())
    except (ValueError, UnicodeDecodeError):
        raise FormatError(f"{where} is corrupted (unreadable header)") from None
    header = _with_original(_header(raw, where), where)
    header.version = version
    start, end = _PREAMBLE.size + size, len(data) - 4
    if end - start != 4 * header.words:
        raise FormatError(f"{where} is corrupted: the header announces {header.words} words, the file holds {(end - start) / 4:g}")
    return header, np.frombuffer(data, dtype="<u4", count=header.words, offset=start).astype(np.uint32)


def _header(raw, where: str) -> Header:
    names = {f.name for f in fields(Header)} - {"version"}  # the version is the preamble's
    if not isinstance(raw, dict) or not set(raw) <= names:
        raise FormatError(f"{where} is corrupted (unexpected header fields)")
    try:
        h = Header(**raw)
    except TypeError:
        raise FormatError(f"{where} is corrupted (missing header fields)") from None
    for check in (_bad_text_field, _bad_size_field, _bad_layout_field):  # in this order: each relies on those before it
        name = check(h)
        if name is not None:
            raise FormatError(f"{where} is corrupted (header field {name} = {getattr(h, name)!r})")
    return h


_RANGES = {  # the whole-number header fields' inclusive ranges
    "count": (1, MAX_VALUES),
    "latent_dim": (1, 4096),
    "latent_bits": (1, 24),
    "weight_bits": (0, 32),
    "activation_bits": (0, 32),
    "words": (0, MAX_VALUES),
    "initial_bits": (0, MAX_VALUES),
    "classes": (0, 2**24),
}


def _whole(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_sha256(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _bad_text_field(h: Header) -> str | None:
    """The first of the digests and the text fields that is wrong, or None."""
    for name in ("weights_sha256", "data_sha256"):
        if not _is_sha256(getattr(h, name)):
            return name
    for name in ("mode", "likelihood", "dtype", "coder"):
        if not isinstance(getattr(h, name), str):
            return name
    if h.mode not in ("lossless", "lossy"):
        return "mode"
    if h.dtype not in ("float32", "float64", "uint8"):
        return "dtype"
    return None


def _bad_size_field(h: Header) -> str | None:
    """The first of the shape and the whole-number fields that is wrong, or None."""
    if not (isinstance(h.shape, list) and 1 <= len(h.shape) <= 4 and all(_whole(s, 1, MAX_VALUES) for s in h.shape)):
        return "shape"
    for name, (lo, hi) in _RANGES.items():
        if not _whole(getattr(h, name), lo, hi):
            return name
    if h.count * math.prod(h.shape) > MAX_VALUES:
        return "count"
    return None


def _bad_layout_field(h: Header) -> str | None:
    """The batches (lossless) or the stored latent dimensions (lossy), if wrong for the count and latent size; else None."""
    if h.mode == "lossless" and not (
        isinstance(h.batches, list)
        and len(h.batches) <= h.count
        and all(_whole(b, 1, h.count) for b in h.batches)
        and sum(h.batches) == h.count
    ):
        return "batches"
    if not (isinstance(h.active, list) and all(_whole(a, 0, h.latent_dim - 1) for a in h.active) and h.active == sorted(set(h.active))):
        return "active"
    if h.mode == "lossy" and len(h.active) * h.count > MAX_VALUES:
        return "active"
    return None


def _with_original(h: Header, where: str) -> Header:
    """``h``, once its ``original`` (the user's array's form, absent from older files) is checked."""
    if h.original is not None and not original_form.is_valid(h.original, h.shape):
        raise FormatError(f"{where} is corrupted (header field original = {h.original!r})")
    return h


# ----- what a file names: the model it was written with and the data it holds ------------------
def data_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(x.detach().cpu().numpy()).tobytes()).hexdigest()


def write_file(mode: str, model, x: torch.Tensor, shape, dtype: str, latent_bits: int, words: np.ndarray, **extra) -> bytes:
    """The .vkz bytes of a coded stream: the header names the model (its weights' SHA-256), the data
    (shape, dtype, count, SHA-256) and the coding's precisions; ``extra``: the mode's own fields."""
    header = Header(
        mode=mode,
        weights_sha256=weights_sha256(model),
        likelihood=model.config.likelihood,
        shape=list(shape),
        dtype=dtype,
        count=len(x),
        latent_dim=model.latent_dim,
        latent_bits=latent_bits,
        weight_bits=WEIGHT_BITS,
        activation_bits=ACTIVATION_BITS,
        words=len(words),
        data_sha256=data_sha256(x),
        **extra,
    )
    return write(header, words)


def check_header(model, header: Header, where: str) -> None:
    """A file must have been written with this model's weights, shape and coding settings."""
    sha = weights_sha256(model)
    if header.weights_sha256 != sha:
        raise FormatError(
            f"{where} was written with another model (weights SHA-256 {header.weights_sha256[:12]}..., this model's {sha[:12]}...)"
        )
    if (
        tuple(header.shape) != tuple(model.input_shape)
        or header.latent_dim != model.latent_dim
        or header.likelihood != model.config.likelihood
    ):
        raise FormatError(f"{where} does not match the model (shape, latent size or likelihood)")
    classes = model.latent.label_classes
    if header.mode == "lossless" and header.classes != classes:
        raise FormatError(f"{where} does not match the model (it carries labels of {header.classes} classes, the model takes {classes})")
    if (header.weight_bits, header.activation_bits) != (WEIGHT_BITS, ACTIVATION_BITS):
        raise FormatError(
            f"{where} uses {header.weight_bits}/{header.activation_bits}-bit arithmetic grids; "
            f"this vaekit uses {WEIGHT_BITS}/{ACTIVATION_BITS}"
        )
