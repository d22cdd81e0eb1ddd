"""8-bit likelihoods coded as two symbols of 16 (format version 2): the group tables against the
per-value 256-entry tables of version 1, their independence of the batch, and version-1 files
(written before the change, in tests/fixtures/vkz) still decoding bit for bit."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_compress import data_for, tiny_model

from vaekit.compression import FormatError, compress, decompress
from vaekit.compression import format as vkz
from vaekit.compression.codec import one_thread
from vaekit.compression.likelihoods import GROUP, build_coder
from vaekit.models.distributions import LOG_PARAM_MAX, LOG_PARAM_MIN

FIXTURES = Path(__file__).parent / "fixtures" / "vkz"
EIGHT_BIT = ["beta-binomial", "discretized-logistic"]


def random_params(likelihood: str, n: int = 3000, seed: int = 0) -> np.ndarray:
    """Decoder outputs (n, 2, 1, 1): log α and log β (or the location and log-scale) over their whole range, the
    clamps included, on the exact copy's float64 values."""
    rng = np.random.default_rng(seed)
    second = rng.uniform(LOG_PARAM_MIN - 0.5, LOG_PARAM_MAX + 0.5, n)
    first = rng.uniform(-0.5, 1.5, n) if likelihood == "discretized-logistic" else rng.uniform(LOG_PARAM_MIN - 0.5, LOG_PARAM_MAX + 0.5, n)
    return np.stack([first, second], 1).reshape(n, 2, 1, 1)


def version_1_probabilities(likelihood: str, params: np.ndarray) -> np.ndarray:
    """The per-value 256-entry tables of format version 1, normalised: (n, 256)."""
    _, (p,) = build_coder(likelihood, 1).model(params)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("likelihood", EIGHT_BIT)
def test_group_tables_are_the_per_value_tables(likelihood):
    """Group masses are the sums of version 1's level masses, and each group's 16 masses are its levels',
    up to the fixed-point log-probabilities (1/256 nats) and the 40-nat floor of the beta-binomial."""
    params = random_params(likelihood)
    p = version_1_probabilities(likelihood, params)  # (n, 256)
    coarse, fine = build_coder(likelihood).groups(params)
    coarse = coarse / coarse.sum(1, keepdims=True)
    grouped = p.reshape(len(p), -1, GROUP)
    tol = 1e-6 if likelihood == "discretized-logistic" else 1e-2  # float32 masses; two roundings to 1/256 nats, ±0.4 % each way
    assert np.allclose(coarse, grouped.sum(2), rtol=tol, atol=1e-12)
    for g in range(256 // GROUP):
        inside = fine(np.full(len(p), g))
        assert (inside.sum(1) >= np.finfo(inside.dtype).tiny).all()  # every row normalisable, the far tails' too
        mass = grouped[:, g]  # (n, 16)
        seen = mass.sum(1) > 1e-10  # groups the coder can tell apart from nothing
        want = mass[seen] / mass[seen].sum(1, keepdims=True)
        got = inside[seen] / inside[seen].sum(1, keepdims=True)
        assert np.allclose(got, want, rtol=tol, atol=1e-7), g


@pytest.mark.parametrize("likelihood", EIGHT_BIT)
def test_group_tables_do_not_depend_on_the_batch(likelihood):
    """A value's tables are the same bits whichever values share its batch (the decoder's batches are the encoder's,
    but the tables must not depend on the order or the company of the values)."""
    params = random_params(likelihood, n=2000, seed=1)
    params[1000:1500] = params[:500]  # repeated (α, β): shared rows of the beta-binomial's table
    coder = build_coder(likelihood)
    g = np.random.default_rng(2).integers(0, 256 // GROUP, len(params))
    coarse, fine = coder.groups(params)
    part = slice(700, 1300)
    coarse_part, fine_part = coder.groups(params[part][::-1].copy())
    assert np.array_equal(coarse[part], coarse_part[::-1])
    assert np.array_equal(fine(g)[part], fine_part(g[part][::-1].copy())[::-1])


@pytest.mark.parametrize("likelihood", EIGHT_BIT)
def test_new_files_are_version_2_and_round_trip_in_any_batch(likelihood):
    model, x = tiny_model(likelihood), data_for(likelihood, n=40, dtype=torch.uint8)
    for batch in (1, 7, None):
        data = compress(model, x, batch_size=batch)
        assert vkz.read(data)[0].version == 2
        assert torch.equal(decompress(model, data), x), batch


def test_binary_and_lossy_files_stay_version_1():
    from vaekit.compression.lossy import compress_lossy

    model, x = tiny_model("bernoulli"), data_for("bernoulli", n=10)
    assert vkz.read(compress(model, x))[0].version == 1
    assert vkz.read(compress_lossy(tiny_model("beta-binomial"), data_for("beta-binomial", n=4)))[0].version == 1


@pytest.mark.parametrize("likelihood", EIGHT_BIT)
def test_a_version_1_file_still_decodes(likelihood):
    """Files written before the two-symbol coding (one symbol of 256 a value) decode bit for bit."""
    name = likelihood.replace("-", "_")
    model = tiny_model(likelihood)
    model.load_state_dict(load_file(FIXTURES / f"{name}-v1.safetensors"))
    data = (FIXTURES / f"{name}-v1.vkz").read_bytes()
    assert vkz.read(data)[0].version == 1
    assert torch.equal(decompress(model, data), torch.from_numpy(np.load(FIXTURES / f"{name}-v1.npy")))


def test_a_newer_version_is_one_line_naming_it():
    import struct
    import zlib

    data = bytearray(compress(tiny_model("beta-binomial"), data_for("beta-binomial", n=3)))
    data[8:10] = struct.pack("<H", 3)
    data = bytes(data[:-4]) + struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    with pytest.raises(FormatError, match="format version 3; this vaekit reads versions 1 to 2"):
        decompress(tiny_model("beta-binomial"), data)


def test_coding_runs_on_one_thread_and_restores_the_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
