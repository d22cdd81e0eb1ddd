"""dSprites: the factor grid and its row formula, the rasterised sprites (checked by content and by
checksum), the caches (atomic writes, corrupt files refused), the original file (checked, never
unpickled), the variants, ``Dataset.factors`` and the ``FactorSpace`` interface. Nothing here builds
the 3 GB set: rows are rendered alone, and the caches tested hold the first rows of the grid."""

import hashlib
import os

import numpy as np
import pytest
import torch

from vaekit.data import Dataset, FactorSpace, SourceSettings, load_data
from vaekit.data import dsprites as ds
from vaekit.data.factors import Factor, grid_classes, grid_strides
from vaekit.errors import DataError

# sha256 of the 720 sprites (3, 6, 40, 32, 32) and of the images of rows 0, 2039, 4078, ... (362 rows)
SPRITES_SHA256 = "e29fda3708d493234fb5d05436ae55f35c5b9082ac546afebf7bf8022ece66f1"
SAMPLED_ROWS_SHA256 = "2912a6bc5467b550d144202e09ce56c6a1831a98ef56e51c73c0260cdc9375ce"
SMALL = 2048  # the first rows of the grid: shape 0, scale 0, orientations 0 and 1


def image(shape=0, scale=5, orientation=0, x=10, y=10) -> np.ndarray:
    return ds.render(np.array([[0, shape, scale, orientation, x, y]]))[0]


def centre(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return rows.mean(), cols.mean()


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """A generated-style cache of the grid's first SMALL rows, written by ``write_npy``."""
    path = tmp_path_factory.mktemp("dsprites") / ds.GENERATED_CACHE
    images = ds.render(grid_classes(np.arange(SMALL), ds.SIZES))
    ds.write_npy(path, (SMALL, 64, 64), [images[:1000], images[1000:]])
    return path, images


# ----- the grid -------------------------------------------------------------------------------
def test_factor_sizes_and_the_row_formula():
    assert ds.SIZES == (1, 3, 6, 40, 32, 32) and ds.COUNT == 737280
    assert grid_strides(ds.SIZES).tolist() == [737280, 245760, 40960, 1024, 32, 1]
    rows = np.array([0, 1, 32, 1024, 40960, 245760, ds.COUNT - 1])
    classes = grid_classes(rows, ds.SIZES)
    assert classes[1].tolist() == [0, 0, 0, 0, 0, 1] and classes[2].tolist() == [0, 0, 0, 0, 1, 0]
    assert classes[-1].tolist() == [s - 1 for s in ds.SIZES]
    assert (classes @ grid_strides(ds.SIZES) == rows).all()
    values = {f.name: f.values for f in ds.FACTORS}
    assert values["scale"][0] == 0.5 and values["scale"][-1] == 1.0 and len(values["position_x"]) == 32
    assert values["orientation"][0] == 0.0 and values["orientation"][-1] == pytest.approx(2 * np.pi)
    assert ds.FACTORS[1].classes == ("square", "ellipse", "heart")


# ----- the images -----------------------------------------------------------------------------
def test_images_have_the_factors_they_are_made_from():
    for shape in range(3):
        counts = [int(image(shape, scale).sum()) for scale in range(6)]
        assert counts == sorted(counts) and counts[0] < counts[-1]  # grows with scale
        base = image(shape, 5, 7, x=4, y=9)
        for dx, dy in ((3, 0), (0, 5), (20, 11)):
            moved = image(shape, 5, 7, x=4 + dx, y=9 + dy)
            assert moved.sum() == base.sum()
            assert np.subtract(centre(moved), centre(base)) == pytest.approx((dy, dx))  # rows follow y, columns x
    square, ellipse, heart = (image(shape) for shape in range(3))
    assert not (square == ellipse).all() and not (ellipse == heart).all() and not (square == heart).all()
    assert square.sum() == 400  # a 20 x 20 square at scale 1, orientation 0
    rows, cols = np.nonzero(ellipse)
    assert np.ptp(cols) > 1.8 * np.ptp(rows)  # semi-axes 1 and 0.5, lying along x at orientation 0
    filled = heart.any(axis=1).nonzero()[0]
    runs = [int((np.diff(heart[r].astype(int)) == 1).sum()) for r in (filled[1], filled[-1])]
    assert runs == [2, 1]  # an upright heart: two lobes on top, the point below
    assert not (image(2, 5, 10) == heart).all()  # a quarter turn changes the heart


def test_the_last_orientation_is_the_first():
    table = ds.sprites()  # (3, 6, 40, 32, 32)
    assert (table[:, :, 0] == table[:, :, 39]).all()
    assert not (table[:, :, 0] == table[:, :, 1]).all()


def test_every_sprite_stays_inside_its_patch_and_the_canvas():
    table = ds.sprites()
    border = table[..., 0, :].sum() + table[..., -1, :].sum() + table[..., :, 0].sum() + table[..., :, -1].sum()
    assert border == 0 and table.sum(axis=(3, 4)).min() > 0
    corner = ds.render(np.array([[0, 0, 5, 5, 31, 31]]))[0]  # the farthest position: nothing is cut
    assert corner.sum() == table[0, 5, 5].sum()


def test_the_images_are_the_same_bytes_everywhere():
    assert hashlib.sha256(ds.sprites().tobytes()).hexdigest() == SPRITES_SHA256
    rows = np.arange(0, ds.COUNT, 2039)
    assert hashlib.sha256(ds.render(grid_classes(rows, ds.SIZES)).tobytes()).hexdigest() == SAMPLED_ROWS_SHA256
    assert len(ds.GENERATED_SHA256) == 64  # the whole set's, checked when its cache is built


def test_the_full_generator_places_sprites_as_render_does():
    blocks = ds.generate()
    for block_number in range(2):
        block = next(blocks)  # (1024, 64, 64)
        rows = np.arange(block_number * 1024, (block_number + 1) * 1024)
        assert (block == ds.render(grid_classes(rows, ds.SIZES))).all()


# ----- caches ---------------------------------------------------------------------------------
def test_a_cache_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "cache.npy"
    blocks = [np.ones((4, 64, 64), np.uint8)] * 3

    def interrupted():
        yield from blocks[:2]
        raise KeyboardInterrupt  # a crash mid-write

    with pytest.raises(KeyboardInterrupt):
        ds.write_npy(path, (12, 64, 64), interrupted())
    assert list(tmp_path.iterdir()) == []  # no final file, no partial file
    with pytest.raises(DataError) as e:
        ds.write_npy(path, (12, 64, 64), blocks, sha256="0" * 64)
    assert "sha256" in one_line(e) and list(tmp_path.iterdir()) == []
    stale = tmp_path / "cache.npy.999999999.partial"  # left by a process that no longer runs
    stale.write_bytes(b"half")
    digest = ds.write_npy(path, (12, 64, 64), blocks)
    assert digest == hashlib.sha256(np.ones((12, 64, 64), np.uint8).tobytes()).hexdigest()
    assert list(tmp_path.iterdir()) == [path] and (np.load(path) == 1).all()


def test_a_cache_is_read_memory_mapped_as_binary_float32(small_cache):
    path, images = small_cache
    x = ds.open_images(path, "generated", count=SMALL)
    assert x.shape == (SMALL, 1, 64, 64)
    batch = x[torch.tensor([5, 1500, 7])]
    assert batch.dtype == torch.float32 and set(batch.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(batch[:, 0], torch.from_numpy(images[[5, 1500, 7]]).float())


def test_corrupt_caches_are_refused_in_one_line(tmp_path, small_cache):
    path, images = small_cache
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(DataError, match="truncated.*delete"):
        ds.open_images(truncated, "generated", count=SMALL)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, 1 - images)
    with pytest.raises(DataError) as e:
        ds.open_images(wrong, "generated", count=SMALL)
    assert "does not hold the generated" in one_line(e) and "regenerate" in str(e.value)
    with pytest.raises(DataError, match="not \\(737280, 64, 64\\)"):
        ds.open_images(path, "generated")


# ----- the original file ----------------------------------------------------------------------
SMALL_SIZES = (1, 3, 2, 2, 2, 2)


def fake_original(path, sizes=SMALL_SIZES, **override):
    """A small .npz with the original file's keys, a pickled ``metadata`` among them."""
    n = int(np.prod(sizes))
    classes = grid_classes(np.arange(n), sizes)
    arrays = {
        "imgs": ds.render(np.minimum(classes, [0, 2, 5, 39, 31, 31])),
        "latents_classes": classes,
        "latents_values": classes.astype(np.float64),
        "metadata": np.array({"description": "pickled"}, dtype=object),
        **override,
    }
    np.savez_compressed(path, **arrays)
    return path, arrays


def test_the_original_file_is_read_without_unpickling(tmp_path):
    npz, arrays = fake_original(tmp_path / ds.ORIGINAL_FILE)
    out = tmp_path / "copied.npy"
    ds.read_original(npz, out, md5=None, sizes=SMALL_SIZES)  # the metadata pickle is never read
    assert (np.load(out) == arrays["imgs"]).all()
    x = ds.open_images(out, "original", count=48)
    assert torch.equal(x[torch.arange(48)][:, 0], torch.from_numpy(arrays["imgs"]).float())


@pytest.mark.parametrize("key", ["imgs", "latents_classes"])
def test_pickled_arrays_are_refused(tmp_path, key):
    objects = np.empty(48, dtype=object)
    npz, _ = fake_original(tmp_path / "pickled.npz", **{key: objects})
    with pytest.raises(DataError) as e:
        ds.read_original(npz, tmp_path / "out.npy", md5=None, sizes=SMALL_SIZES)
    assert "Python objects" in one_line(e) and not (tmp_path / "out.npy").exists()


def test_a_wrong_original_file_is_refused(tmp_path):
    npz, _ = fake_original(tmp_path / ds.ORIGINAL_FILE)
    with pytest.raises(DataError) as e:
        ds.read_original(npz, tmp_path / "out.npy")
    assert ds.ORIGINAL_MD5 in one_line(e)
    with pytest.raises(DataError, match="latents_classes is int64 \\(48, 6\\), expected integers \\(737280, 6\\)"):
        ds.read_original(npz, tmp_path / "out.npy", md5=None)
    shuffled, _ = fake_original(tmp_path / "shuffled.npz", latents_classes=grid_classes(np.arange(48), SMALL_SIZES)[::-1].copy())
    with pytest.raises(DataError, match="published row order"):
        ds.read_original(shuffled, tmp_path / "out.npy", md5=None, sizes=SMALL_SIZES)
    with pytest.raises(DataError) as e:  # found by the loader in --data-dir: checked before anything is written
        load_data("dsprites", settings=SourceSettings(data_dir=str(tmp_path)))
    assert "MD5" in one_line(e) and not (tmp_path / "dsprites").exists()


# ----- splits, factors and variants -----------------------------------------------------------
def test_splits_carry_their_factors_and_the_record(small_cache):
    path, images = small_cache
    x = ds.open_images(path, "generated", count=SMALL)
    splits = ds.make_splits(ds.VARIANTS["dsprites"], x, path, "generated", valid_fraction=0.25, seed=3)
    assert splits.test is None and splits.streaming and splits.value_range == "binary"
    assert len(splits.train) + len(splits.valid) == SMALL and len(splits.valid) >= 512
    for data in (splits.train, splits.valid):
        assert data.factors.dtype == torch.int64 and data.factors.shape == (len(data), 6)
        picked = data.factors[:50].numpy() @ grid_strides(ds.SIZES)  # the rows of these examples, by the formula
        assert torch.equal(data.x[:50][:, 0], torch.from_numpy(images[picked]).float())
    assert [f["name"] for f in splits.info["factors"]] == [f.name for f in ds.FACTORS]
    assert splits.info["factors"][1]["classes"] == ["square", "ellipse", "heart"]
    assert splits.info["preprocessing"]["format"] == "dsprites" and splits.info["shape"] == [1, 64, 64]
    assert splits.info["sizes"]["test"] is None and splits.info["origin"] == "generated"


def test_the_variants_are_made_as_batches_are_read(small_cache):
    path, images = small_cache
    plain = torch.from_numpy(images[[3, 900, 1777]]).float()[:, None]  # (3, 1, 64, 64)
    colored = ds.open_images(path, "generated", ds.Colored(), count=SMALL)
    noisy = ds.open_images(path, "generated", ds.Noisy(), count=SMALL)
    for x in (colored, noisy):
        assert x.shape == (SMALL, 3, 64, 64)
        batch = x[torch.tensor([3, 900, 1777])]
        assert torch.equal(batch[1:2], x[900:901])  # a function of the row alone, whatever the batch
    c = colored[torch.tensor([3, 900, 1777])]
    assert (c[plain.expand_as(c) == 0] == 0).all()
    colours = c.amax(dim=(2, 3))  # (3, 3): each example's colour
    assert (colours >= 0.5).all() and (colours <= 1).all() and not torch.equal(colours[0], colours[1])
    assert torch.equal(c, plain * colours[:, :, None, None])
    n = noisy[torch.tensor([3, 900, 1777])]
    assert (n[plain.expand_as(n) == 1] == 1).all()
    background = n[plain.expand_as(n) == 0]
    assert background.min() >= 0 and background.max() < 1 and 0.45 < background.mean() < 0.55
    assert torch.equal(n[1, 0, 0, :4], torch.from_numpy(ds.row_uniform(ds.NOISE_SALT, np.array([900]), 4))[0])  # a background corner


def test_dataset_factors_travel_with_the_examples():
    x = torch.arange(10.0)[:, None].repeat(1, 3)  # (10, 3)
    factors = torch.stack([torch.arange(10), torch.arange(10) % 3], dim=1)  # (10, 2)
    data = Dataset(x, factors=factors)
    sub = data.subset(torch.tensor([7, 2]))
    assert sub.factors.tolist() == [[7, 1], [2, 2]]
    assert data.rows(4, 6).factors.tolist() == [[4, 1], [5, 2]]
    assert data.to("cpu").factors is not None and torch.equal(data.to("cpu").factors, factors)
    with pytest.raises(DataError, match="factors of shape"):
        Dataset(x, factors=factors[:5])
    with pytest.raises(DataError, match="integer classes"):
        Dataset(x, factors=factors.float())


# ----- the factor space -----------------------------------------------------------------------
def test_a_factor_space_over_a_small_grid():
    x = torch.rand(24, 1, 4, 4)
    space = FactorSpace.grid(("a", "b", "c"), (2, 3, 4), x)
    assert space.names == ("a", "b", "c") and space.sizes == (2, 3, 4)
    factors = space.sample(200, np.random.default_rng(0))
    assert factors.dtype == np.int64 and factors.shape == (200, 3)
    assert (factors.min(axis=0) == 0).all() and (factors.max(axis=0) == np.array([1, 2, 3])).all()
    rows = space.indices(factors)
    assert rows.shape == (200,) and (space.classes_of(rows) == factors).all()
    assert torch.equal(space.images(factors), x[torch.from_numpy(rows)])  # in the order asked, duplicates too
    assert space.indices(np.array([[1, 2, 3], [0, 1, 0]])).tolist() == [23, 4]
    with pytest.raises(DataError, match="out of range"):
        space.indices(np.array([[2, 0, 0]]))
    with pytest.raises(DataError, match="has 24 examples, not 5"):
        FactorSpace.grid(("a", "b", "c"), (2, 3, 4), x[:5])
    assert Factor.from_record(Factor("shape", (1.0, 2.0), ("a", "b")).record()) == Factor("shape", (1.0, 2.0), ("a", "b"))


def test_the_factor_space_of_a_memory_mapped_grid(small_cache):
    path, images = small_cache
    x = ds.open_images(path, "generated", count=SMALL)
    space = FactorSpace([Factor("orientation", (0.0, 1.0)), *ds.FACTORS[4:]], x)  # the first two orientations
    factors = space.sample(64, np.random.default_rng(1))
    assert torch.equal(space.images(factors), x[torch.from_numpy(space.indices(factors))])
    with pytest.raises(DataError, match="not made from known factors"):
        ds.factor_space({"source": "mnist", "files": ["x"]})


def test_the_cache_root_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ds.cache_root() == tmp_path / "vaekit"
    assert ds.cache_root(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ds.cache_root() == ds.cache_root(os.path.expanduser("~/.cache/vaekit"))
