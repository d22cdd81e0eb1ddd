"""dSprites (Matthey et al. 2017): 737,280 binary 64x64 sprites made from six known factors of variation.

Factors (``FACTORS``), slowest first, as the published file orders its rows: colour (1 value), shape
(3: square, ellipse, heart), scale (6 values, 0.5 to 1), orientation (40 values over [0, 2pi], both
ends included: the first and last are the same angle), position x and position y (32 values each
over [0, 1]). Row i holds the classes that are its mixed-radix digits with sizes (1, 3, 6, 40, 32, 32)
(``factors.grid_classes``), i.e. row = classes . (737280, 245760, 40960, 1024, 32, 1).

Where the examples come from (``load_dsprites``), looked for in the data root's ``dsprites``
folder, then the root (``data_dir``, else ``$VAEKIT_DATA_DIR``, else ``$XDG_CACHE_HOME/vaekit``,
else ``~/.cache/vaekit``):

- the original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``, when there: checked against its
  MD5 (``ORIGINAL_MD5``, the sum that dataset loaders for this file publish; DeepMind's repository
  states none) and its arrays' shapes, read without unpickling anything (its ``metadata`` member is
  a pickle and is never read), its images copied once into ``dsprites-original.npy``;
- else generated here (``generate``), once, into ``dsprites-generated-v1.npy`` (3 GB), checked
  against ``GENERATED_SHA256``: the same bytes on every machine.

Both caches are written atomically (a temporary file, renamed when complete and checked) and read
memory-mapped (``streaming.map_npy``) as float32 0/1 batch by batch, never whole.

Generation: each of the 3 x 6 x 40 = 720 (shape, scale, orientation) sprites is rasterised once
(``sprite``) into a ``PATCH`` x ``PATCH`` patch (8 x 8 samples a pixel, on when at least half the samples are
inside the analytic shape), then placed at the 32 x 32 positions by integer shifts: position class
(x, y) puts the patch's top-left corner at column x, row y, so the sprite's centre moves one pixel a
class, over columns and rows 16..47 of the canvas. At scale 1 a sprite lies within ``RADIUS`` pixels of
its centre, so every sprite at every position stays inside the canvas. Only elementwise float64
arithmetic (+, -, *, /, comparisons) on a fixed grid of exactly representable sample points decides
a pixel, with the rotation coefficients rounded to multiples of 2**-30, so a libm that differs in the
last bit of a cosine changes nothing.

Splits: no test split. A disentanglement study trains on every image and evaluates on factor
combinations drawn from the whole grid (``factor_space``); a validation split (``valid_fraction``,
default 10%) is held out by seeded random blocks of 8 consecutive rows (``streaming.split_blocks``)
to watch training, as for any memory-mapped source.

Variants (disentanglement_lib's), changed as each batch is read, so they need no cache of their own:
``color-dsprites`` colours each sprite by an RGB colour uniform in [0.5, 1]^3, ``noisy-dsprites``
replaces the black background by uniform noise in [0, 1) per pixel and channel (the sprite stays
white); both 3-channel, drawn per example as a function of its row alone (``row_uniform``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.arrays import NpzArchive, read_npy_header
from vaekit.data.base import BINARY, UNIT, Dataset, DataSplits, SourceSettings, describe, register_dataset
from vaekit.data.factors import Factor, FactorSpace, grid_classes
from vaekit.data.files import open_file, parsing
from vaekit.data.mnist import cache_root
from vaekit.data.preprocess import check_options, image_size_option
from vaekit.data.streaming import MappedArray, RowTransform, map_npy, split_blocks
from vaekit.errors import DataError

log = logging.getLogger(__name__)

SHAPES = ("square", "ellipse", "heart")
FACTORS = (
    Factor("color", (1.0,), ("white",)),
    Factor("shape", (1.0, 2.0, 3.0), SHAPES),
    Factor("scale", tuple(np.linspace(0.5, 1.0, 6).tolist())),
    Factor("orientation", tuple(np.linspace(0.0, 2 * math.pi, 40).tolist())),
    Factor("position_x", tuple(np.linspace(0.0, 1.0, 32).tolist())),
    Factor("position_y", tuple(np.linspace(0.0, 1.0, 32).tolist())),
)
SIZES = tuple(f.size for f in FACTORS)  # (1, 3, 6, 40, 32, 32)
COUNT = math.prod(SIZES)  # 737280 images
IMAGE = 64  # canvas side, pixels
PATCH = 32  # side of one sprite's patch; position class p puts it at offset p, so 32 + 31 <= 64
SUPERSAMPLE = 8  # samples per pixel along each axis
RADIUS = 14.0  # pixels from the patch centre (16, 16) that a scale-1 sprite reaches at most
HEART_SCALE, HEART_SHIFT = 1.35, 0.1  # the heart curve's unit coordinates: its farthest point from (0, 0.1) is 1.3496 away
STEPS = {"input_dtype": "uint8", "divide_by": 1.0, "layout": None}  # 0/1 bytes read as float32 0./1. (to_tensor)

ORIGINAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
ORIGINAL_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"  # the published file's MD5, as dataset loaders check it
ORIGINAL_CACHE = "dsprites-original.npy"  # its images, copied once for memory mapping
GENERATED_CACHE = "dsprites-generated-v1.npy"  # a new generator writes a new version
# sha256 of the generated images' bytes (the .npy's data, in row order, without its header)
GENERATED_SHA256 = "8069209e101eb02a0c8620926b01f501d464f130f89bf7020aa62c76ff6c6eb4"
CHECKED_ROWS = 32  # rows of a generated cache compared to freshly rasterised ones each time it is opened
COPY_ROWS = 4096  # rows copied per read when extracting the original file's images (16 MB)


# ----- rasterising ----------------------------------------------------------------------------
def _rotation(orientation: int) -> tuple[float, float]:
    """cos and sin of orientation class ``orientation``'s angle, rounded to multiples of 2**-30:
    then every product with a sample coordinate (a multiple of 1/16 below 16) is exact."""
    theta = 2 * math.pi * orientation / (SIZES[3] - 1)
    return round(math.cos(theta) * 2**30) / 2**30, round(math.sin(theta) * 2**30) / 2**30


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) (u right, v up, in units of the sprite's radius) are inside shape class ``shape``."""
    if shape == 0:  # square, corners on the unit circle
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7071067811865476
    if shape == 1:  # ellipse, semi-axes 1 (along u) and 0.5
        return u * u + 4.0 * (v * v) <= 1.0
    x, y = u * HEART_SCALE, v * HEART_SCALE + HEART_SHIFT  # heart: (x^2 + y^2 - 1)^3 <= x^2 y^3
    a = x * x + y * y - 1.0
    return a * a * a <= (x * x) * (y * y * y)


@functools.cache
def sprite(shape: int, scale: int, orientation: int) -> np.ndarray:
    """The sprite (PATCH, PATCH) uint8 0/1 of (shape, scale, orientation) classes: a pixel is on when at
    least half of its SUPERSAMPLE x SUPERSAMPLE samples are inside the shape (read-only)."""
    side = PATCH * SUPERSAMPLE
    offsets = (np.arange(side) + 0.5) / SUPERSAMPLE - PATCH / 2  # (side,) sample coordinates from the centre, exact
    dx, dy = offsets[None, :], offsets[:, None]  # (1, side) columns, (side, 1) rows (downwards)
    c, s = _rotation(orientation)
    r = RADIUS * (5 + scale) / 10  # the scale class's radius in pixels (scale 0.5 ... 1)
    u = (c * dx - s * dy) / r  # (side, side): the sample points turned back by the angle, v pointing up
    v = (-s * dx - c * dy) / r
    hits = _inside(shape, u, v).reshape(PATCH, SUPERSAMPLE, PATCH, SUPERSAMPLE).sum(axis=(1, 3))  # (PATCH, PATCH)
    out = (2 * hits >= SUPERSAMPLE * SUPERSAMPLE).astype(np.uint8)
    out.flags.writeable = False
    return out


def sprites() -> np.ndarray:
    """All 720 sprites (3, 6, 40, PATCH, PATCH) uint8 0/1 by (shape, scale, orientation) class."""
    shapes, scales, orientations = SIZES[1:4]
    table = [sprite(a, b, c) for a in range(shapes) for b in range(scales) for c in range(orientations)]
    return np.stack(table).reshape(shapes, scales, orientations, PATCH, PATCH)


def render(classes: np.ndarray) -> np.ndarray:
    """The images (n, 64, 64) uint8 0/1 of factor classes (n, 6): any rows of the dataset, made alone."""
    classes = np.asarray(classes, dtype=np.int64)
    out = np.zeros((len(classes), IMAGE, IMAGE), dtype=np.uint8)
    for i, (_, shape, scale, orientation, x, y) in enumerate(classes.tolist()):
        out[i, y : y + PATCH, x : x + PATCH] = sprite(shape, scale, orientation)
    return out


def generate() -> Iterator[np.ndarray]:
    """Every image, in row order, as 720 blocks (1024, 64, 64) uint8 (one buffer, overwritten: copy
    or write each before taking the next), one per (shape, scale, orientation) sprite at its 32 x 32
    positions, made by one strided copy each."""
    block = np.zeros((SIZES[4], SIZES[5], IMAGE, IMAGE), dtype=np.uint8)  # (x, y, H, W)
    sx, sy, sr, sc = block.strides
    # window[x, y, r, c] is block[x, y, y + r, x + c]: the patch of position (x, y)
    window = np.lib.stride_tricks.as_strided(block, (SIZES[4], SIZES[5], PATCH, PATCH), (sx + sc, sy + sr, sr, sc), writeable=True)
    for sprite in sprites().reshape(-1, PATCH, PATCH):
        window[...] = sprite
        yield block.reshape(-1, IMAGE, IMAGE)


# ----- caches ---------------------------------------------------------------------------------
def write_npy(path: Path, shape: tuple[int, ...], blocks: Iterable[np.ndarray], *, sha256: str | None = None) -> str:
    """Write uint8 ``blocks`` (rows of ``shape``, in order) as the ``.npy`` file ``path``, atomically:
    into ``path.<pid>.partial`` first, renamed to ``path`` only once complete (and, with ``sha256``,
    when the data's digest is that), so ``path`` never exists half-written; the partial file is removed
    on any failure. Returns the data's sha256 (hex). A one-line ``DataError`` when writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    digest, rows = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_2_0(f, header)
            for block in blocks:
                data = np.ascontiguousarray(block, dtype=np.uint8)
                digest.update(data)
                f.write(data)
                rows += len(data)
            if rows != shape[0]:
                raise DataError(f"{path}: wrote {rows} rows, expected {shape[0]}")
            if sha256 is not None and digest.hexdigest() != sha256:
                raise DataError(
                    f"{path}: the generated images' sha256 is {digest.hexdigest()}, not the reference {sha256}; "
                    "this machine's arithmetic differs: please report it"
                )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def _remove_stale_partials(path: Path) -> None:
    """Remove ``path``'s partial files left by processes that no longer run (a crash mid-write)."""
    for partial in path.parent.glob(f"{path.name}.*.partial"):
        pid = partial.name[len(path.name) + 1 : -len(".partial")]
        if pid.isdigit() and not _running(int(pid)):
            partial.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else (or no way to tell): leave its file alone
        return True
    return True


def find_original(root: Path) -> Path | None:
    """The original .npz in ``root/dsprites`` or ``root``, or None."""
    return next((d / ORIGINAL_FILE for d in (root / "dsprites", root) if (d / ORIGINAL_FILE).is_file()), None)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open_file(path) as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_original(npz: Path, out: Path, *, md5: str | None = ORIGINAL_MD5, sizes: tuple[int, ...] = SIZES) -> None:
    """Check the original file ``npz`` and copy its images to the ``.npy`` file ``out`` (``write_npy``).

    Checked: its MD5 (unless ``md5`` is None); arrays ``imgs`` (N, 64, 64) uint8 of 0/1,
    ``latents_classes`` (N, 6) integers equal to the mixed-radix digits of each row (so row order is
    the published one) and ``latents_values`` (N, 6) numbers, N = prod(``sizes``). Nothing is
    unpickled: an array of Python objects is refused, the ``metadata`` pickle is never read.
    Every failure is a one-line ``DataError``."""
    if md5 is not None and (found := file_md5(npz)) != md5:
        raise DataError(f"{npz}: MD5 {found} is not the published file's {md5}; remove it or fetch the original again")
    n = math.prod(sizes)
    archive = NpzArchive(npz)
    try:
        missing = [k for k in ("imgs", "latents_classes", "latents_values") if k not in archive]
        if missing:
            raise DataError(f"{npz}: missing array(s) {', '.join(missing)}; not a dSprites file")
        classes = archive["latents_classes"]  # parsed by the safe .npy reader: objects (pickles) are refused
        if classes.shape != (n, len(sizes)) or classes.dtype.kind not in "iu":
            raise DataError(f"{npz}: latents_classes is {classes.dtype} {classes.shape}, expected integers ({n}, {len(sizes)})")
        if not np.array_equal(classes, grid_classes(np.arange(n), sizes)):
            raise DataError(f"{npz}: latents_classes are not in the published row order (position y fastest)")
        values = archive["latents_values"]
        if values.shape != (n, len(sizes)):
            raise DataError(f"{npz}: latents_values has shape {values.shape}, expected ({n}, {len(sizes)})")
        write_npy(out, (n, IMAGE, IMAGE), _original_images(archive, npz, n))
    finally:
        archive.close()


def _original_images(archive: NpzArchive, npz: Path, n: int) -> Iterator[np.ndarray]:
    """The ``imgs`` member's rows, ``COPY_ROWS`` at a time, checked as they stream out of the archive
    (opened again: ``archive`` reads a member whole, and this one is 3 GB)."""
    where = f"{npz}['imgs']"
    with open_file(npz) as f, parsing(f"{where}: corrupt archive member"), zipfile.ZipFile(f) as zf, zf.open("imgs.npy") as member:
        header = read_npy_header(member, zf.getinfo("imgs.npy").file_size, where, max_values=None)  # objects refused here
        if header.shape != (n, IMAGE, IMAGE) or header.dtype != np.uint8 or header.fortran_order:
            raise DataError(f"{where}: images are {header.dtype} {header.shape}, expected C-ordered uint8 ({n}, {IMAGE}, {IMAGE})")
        row = IMAGE * IMAGE
        for start in range(0, n, COPY_ROWS):
            k = min(COPY_ROWS, n - start)
            data = member.read(k * row)
            if len(data) != k * row:
                raise DataError(f"{where}: truncated after {start} images")
            block = np.frombuffer(data, dtype=np.uint8).reshape(k, IMAGE, IMAGE)
            if block.max() > 1:
                raise DataError(f"{where}: values other than 0 and 1 (from image {start})")
            yield block


def open_images(path: Path, origin: str, transform: RowTransform | None = None, *, count: int = COUNT) -> MappedArray:
    """The cache ``path`` memory-mapped (``origin`` "generated" or "original"), converted to float32 0/1
    and then by ``transform``. A cache that cannot be read, does not hold ``count`` images (N, 64, 64)
    or (generated) whose sampled rows differ from freshly rasterised ones is a one-line ``DataError``
    saying to delete it."""
    fix = f"delete {path} and load the dataset again to {'regenerate' if origin == 'generated' else 'copy'} it"
    try:
        plain = map_npy(path, STEPS)
    except DataError as e:
        raise DataError(f"{e}; {fix}") from None
    if tuple(plain.shape) != (count, 1, IMAGE, IMAGE):
        raise DataError(f"{path}: holds examples {tuple(plain.shape)}, not ({count}, {IMAGE}, {IMAGE}) images; {fix}")
    if origin == "generated":
        rows = np.linspace(0, count - 1, min(CHECKED_ROWS, count)).astype(np.int64)
        if not torch.equal(plain[torch.from_numpy(rows)][:, 0], torch.from_numpy(render(grid_classes(rows, SIZES))).float()):
            raise DataError(f"{path}: does not hold the generated dSprites images (corrupt?); {fix}")
    return plain if transform is None else map_npy(path, STEPS, transform)


def cache_file(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The images' cache and where they come from ("original" or "generated"), made first if missing."""
    root = cache_root(data_dir)
    home = root / "dsprites"
    original = find_original(root)
    if original is not None:
        path = home / ORIGINAL_CACHE
        if not path.is_file():
            log.info("copying the dSprites images of %s to %s (once)", original, path)
            read_original(original, path)
        elif file_md5(original) != ORIGINAL_MD5:
            raise DataError(f"{original}: MD5 is not the published file's {ORIGINAL_MD5}; remove it or fetch the original again")
        return path, "original"
    path = home / GENERATED_CACHE
    if not path.is_file():
        log.info("generating the dSprites images into %s (once, 3 GB)", path)
        write_npy(path, (COUNT, IMAGE, IMAGE), generate(), sha256=GENERATED_SHA256)
    return path, "generated"


# ----- variants: changes made as a batch is read ------------------------------------------------
COLOR_SALT, NOISE_SALT = 1, 2


def row_uniform(salt: int, rows: np.ndarray, count: int) -> np.ndarray:
    """(k, count) float32 uniform in [0, 1): row i's values are numpy's PCG64 stream seeded with
    (salt, rows[i]) alone, so the same on every machine and whatever the batch (~20 ms for 256 rows of 12288)."""
    out = np.empty((len(rows), count), dtype=np.float32)
    for i, row in enumerate(np.asarray(rows).tolist()):
        np.random.Generator(np.random.PCG64([salt, row])).random(out=out[i], dtype=np.float32)
    return out


@dataclass(frozen=True)
class Colored:
    """color-dsprites: the sprite (k, 1, H, W) 0/1 painted with its row's RGB colour, uniform in [0.5, 1]^3."""

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        colour = torch.from_numpy(0.5 + 0.5 * row_uniform(COLOR_SALT, rows, 3))  # (k, 3)
        return x * colour[:, :, None, None]  # (k, 3, H, W)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (3, *shape[1:])


@dataclass(frozen=True)
class Noisy:
    """noisy-dsprites: the background of the sprite (k, 1, H, W) replaced by its row's uniform noise
    in [0, 1) per pixel and channel; the sprite stays 1 (disentanglement_lib's min(x + noise, 1))."""

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        k, _, h, w = x.shape
        noise = torch.from_numpy(row_uniform(NOISE_SALT, rows, 3 * h * w)).reshape(k, 3, h, w)
        return torch.clamp_(x + noise, max=1.0)  # (k, 3, H, W)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (3, *shape[1:])


@dataclass(frozen=True)
class Variant:
    """A registered dataset over the dSprites images: its change on reading (None: the images as they
    are), its channels and its value range."""

    name: str
    transform: RowTransform | None
    channels: int
    value_range: str


VARIANTS = {
    "dsprites": Variant("dsprites", None, 1, BINARY),
    "color-dsprites": Variant("color-dsprites", Colored(), 3, UNIT),
    "noisy-dsprites": Variant("noisy-dsprites", Noisy(), 3, UNIT),
}


# ----- loading --------------------------------------------------------------------------------
@register_dataset("dsprites", format="dsprites")
def load_dsprites(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """dSprites, (1, 64, 64) in {0, 1}, with its factor classes (``Dataset.factors``); see the module docstring."""
    return _load(VARIANTS["dsprites"], settings, options)


@register_dataset("color-dsprites", format="color-dsprites")
def load_color_dsprites(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """dSprites with each sprite in a random colour per example, (3, 64, 64) in [0, 1]."""
    return _load(VARIANTS["color-dsprites"], settings, options)


@register_dataset("noisy-dsprites", format="noisy-dsprites")
def load_noisy_dsprites(settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """dSprites on a background of uniform noise per example, (3, 64, 64) in [0, 1]."""
    return _load(VARIANTS["noisy-dsprites"], settings, options)


def _load(variant: Variant, settings: SourceSettings, options: dict[str, Any]) -> DataSplits:
    """The variant's train and valid splits, memory-mapped. ``download`` is not used: the images are
    generated here when the original file is not in the data root."""
    check_options(options, variant.name, ("memmap", *STEPS))
    size = image_size_option(options.get("image_size"))
    if size not in (None, (IMAGE, IMAGE)) or options.get("channels") not in (None, variant.channels):
        shape = f"{variant.channels}x{IMAGE}x{IMAGE}"
        raise DataError(f"{variant.name}: its {shape} images are read memory-mapped and cannot be resized or recoloured")
    if options.get("standardize") not in (None, False):
        raise DataError(f"{variant.name}: standardize applies to flat (N, D) data, not images")
    path, origin = cache_file(settings.data_dir)
    x = open_images(path, origin, variant.transform)
    return make_splits(variant, x, path, origin, valid_fraction=settings.valid_fraction, seed=settings.seed)


def make_splits(variant: Variant, x: MappedArray, path: Path, origin: str, *, valid_fraction: float, seed: int) -> DataSplits:
    """Train and valid splits of the grid's examples ``x`` (its first rows, for a small test file):
    seeded random blocks (``split_blocks``), each example with its factor classes, and the record."""
    factors = torch.from_numpy(grid_classes(np.arange(len(x)), SIZES))  # (N, 6)
    train_x, valid_x = split_blocks(x, valid_fraction, seed)
    splits = {name: Dataset(v, factors=v.labels_of(factors)) for name, v in (("train", train_x), ("valid", valid_x))}
    info = {"files": [str(path)], "valid_fraction": valid_fraction, "origin": origin, "factors": [f.record() for f in FACTORS]}
    record = {"format": variant.name, "memmap": True, **STEPS, "image_size": [IMAGE, IMAGE], "channels": variant.channels}
    info = describe(variant.name, seed, splits, loader_info=info, value_range=variant.value_range, binarize=False, preprocessing=record)
    return DataSplits(splits["train"], splits["valid"], None, info)


def factor_space(data: DataSplits | dict[str, Any]) -> FactorSpace:
    """The ``FactorSpace`` of loaded dsprites splits (or of their ``info`` record, as a run saves it):
    every image of the grid, memory-mapped, with the variant's change on reading."""
    info = data.info if isinstance(data, DataSplits) else data
    variant = VARIANTS.get(str(info.get("source")))
    if variant is None or not info.get("files"):
        raise DataError(f"{info.get('source')} is not made from known factors of variation; factor spaces exist for {', '.join(VARIANTS)}")
    return FactorSpace(FACTORS, open_images(Path(info["files"][0]), str(info.get("origin", "generated")), variant.transform))
