"""Request validation: every value a client sends is checked here before it reaches the model.

Each function takes what arrived (parsed JSON, raw bytes, a query string) and returns a tensor
or a number, or raises ``BadRequest`` with a short message and the HTTP status to answer with.
Nothing here reads a file or a path the client names.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import torch

MAX_JSON_BYTES = 1 << 20  # 1 MiB: a batch of codes, an interpolation request, a table row
MAX_UPLOAD_BYTES = 4 << 20  # 4 MiB: an uploaded image file
MAX_UPLOAD_PIXELS = 4096 * 4096  # checked from the header, before any pixel is decoded
MAX_BATCH = 256  # codes per decode request
MAX_STEPS = 32  # points on an interpolation path
MAX_NEIGHBOURS = 32
MAX_SAMPLES = 64
MAX_ABS_CODE = 1e4  # a code coordinate beyond this is a mistake, not a point to decode


class BadRequest(Exception):
    """A request the explorer refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _no_constant(name: str):
    raise BadRequest(f"non-finite number {name} in the request")


def parse_json(body: bytes) -> dict:
    """A JSON object from a request body; NaN and Infinity literals are refused."""
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except BadRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BadRequest("the request body must be a JSON object")
    return obj


def numbers(value, what: str, length: int) -> torch.Tensor:
    """A list of ``length`` finite numbers -> (length,) float32."""
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise BadRequest(f"{what} must be a list of {length} numbers, got {got}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise BadRequest(f"{what} must hold numbers only")
    if not all(math.isfinite(v) for v in value):
        raise BadRequest(f"{what} holds a non-finite number")
    t = torch.tensor(value, dtype=torch.float64)
    if not bool(torch.isfinite(t.float()).all()):
        raise BadRequest(f"{what} holds a number too large for float32")
    return t.float()


def code(value, latent_dim: int, what: str = "z") -> torch.Tensor:
    """One latent code: a list of ``latent_dim`` finite numbers of moderate size -> (L,)."""
    z = numbers(value, what, latent_dim)
    if bool((z.abs() > MAX_ABS_CODE).any()):
        raise BadRequest(f"{what} has a value beyond ±{MAX_ABS_CODE:g}")
    return z


def codes(value, latent_dim: int, what: str = "z") -> torch.Tensor:
    """A batch of codes: a list of 1 to ``MAX_BATCH`` codes -> (B, L)."""
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{what} must be a non-empty list of codes (lists of {latent_dim} numbers)")
    if len(value) > MAX_BATCH:
        raise BadRequest(f"at most {MAX_BATCH} codes per request, got {len(value)}", 413)
    return torch.stack([code(v, latent_dim, f"{what}[{i}]") for i, v in enumerate(value)])


def integer(value, what: str, low: int, high: int) -> int:
    """A whole number in [low, high]; JSON numbers and query-string text alike."""
    if isinstance(value, str):
        try:
            value = int(value, 10)
        except ValueError:
            raise BadRequest(f"{what} must be a whole number, got {value[:40]!r}") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{what} must be a whole number")
    if not low <= value <= high:
        raise BadRequest(f"{what} must be between {low} and {high}, got {value}", 404 if what == "index" else 400)
    return value


def flag(value, what: str) -> bool:
    """A JSON true or false."""
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false")
    return value


def real(value, what: str, low: float, high: float) -> float:
    """A finite number in [low, high]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise BadRequest(f"{what} must be a finite number")
    if not low <= value <= high:
        raise BadRequest(f"{what} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def no_context(obj: dict) -> None:
    """An unconditional model takes no context (class label); a request naming one is refused."""
    if obj.get("context") is not None:
        raise BadRequest("this model takes no context (it is not a conditional model)")


def context(value, classes: int, default):
    """The class a request asks a conditional model (``classes`` > 0) for: an integer in [0, classes),
    or ``default`` when absent; for an unconditional model (``classes`` = 0) only an absent one."""
    if classes == 0:
        no_context({"context": value})
        return None
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    return integer(value, "context", 0, classes - 1)


def column_context(value, mean: torch.Tensor, std: torch.Tensor, default: torch.Tensor) -> torch.Tensor:
    """The context a request asks a model conditioned on K context columns for: K numbers in the
    columns' own units (a list; in a query string, comma-separated), standardised with the training
    statistics ``mean``, ``std`` (K,) -> (K,); ``default`` when absent."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.split(",")]
        except ValueError:
            raise BadRequest(f"context must be {len(mean)} comma-separated numbers, got {value[:40]!r}") from None
    return (numbers(value, "context", len(mean)) - mean) / std


def image(body: bytes, shape: tuple[int, ...], *, invert: bool = False) -> torch.Tensor:
    """An uploaded PNG/JPEG/GIF/BMP/WebP file as one input (1, C, H, W) in [0, 1], resized to the
    model's size (H, W) and converted to its channel count C (1: greyscale, 3: colour; an alpha
    channel is composed onto black). The pixel count is checked from the header before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not body:
        raise BadRequest("the upload is empty")
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise BadRequest(f"this model takes data of shape {tuple(shape)}, not images", 415)
    try:
        with Image.open(io.BytesIO(body), formats=["PNG", "JPEG", "GIF", "BMP", "WEBP"]) as img:
            w, h = img.size
            if w * h > MAX_UPLOAD_PIXELS or w < 1 or h < 1:
                raise BadRequest(f"the image is {w}x{h} pixels; at most {MAX_UPLOAD_PIXELS:,} are accepted", 413)
            img.draft("RGB" if shape[0] == 3 else "L", (max(shape[2], 1), max(shape[1], 1)))  # JPEG: decode small
            img.load()
            if img.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
            img = img.convert("RGB" if shape[0] == 3 else "L").resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    except BadRequest:
        raise
    except Image.DecompressionBombError:
        raise BadRequest("the image is too large to decode safely", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise BadRequest("the upload is not a readable image (PNG, JPEG, GIF, BMP or WebP)", 415) from None
    x = torch.from_numpy(array)
    x = x.unsqueeze(0) if shape[0] == 1 else x.permute(2, 0, 1)
    if invert:
        x = 1 - x
    return x.unsqueeze(0).contiguous()  # (1, C, H, W)


def row(value, shape: tuple[int, ...]) -> torch.Tensor:
    """A table row (or a flat array input) in the model's input scale -> (1, D)."""
    if len(shape) != 1:
        raise BadRequest(f"this model takes images of shape {tuple(shape)}: upload an image file instead")
    return numbers(value, "x", shape[0]).unsqueeze(0)
