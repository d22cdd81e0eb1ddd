"""The .vkz reader: each bad file (truncated, corrupted, another model, another format, another
version) is one ``FormatError``; fuzzed bytes never crash or hang it; the CLI end to end."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import vaekit
from vaekit.cli import main
from vaekit.compression import FormatError, compress, decompress
from vaekit.compression import format as vkz
from vaekit.compression.lossy import compress_lossy
from vaekit.config import RunConfig


def model(seed=0, likelihood="bernoulli"):
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.latent_dim, cfg.model.hidden, cfg.model.likelihood = (1, 4, 4), 2, (8,), likelihood
    torch.manual_seed(seed)
    return vaekit.build_model(cfg.model).eval()


MODEL = model()
X = (torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.4).float()
GOOD = compress(MODEL, X, batch_size=8)


def refix_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


@pytest.mark.parametrize("cut", [0, 3, 9, 20, len(GOOD) // 2, len(GOOD) - 1])
def test_truncated(cut):
    with pytest.raises(FormatError, match="truncated|not a vaekit"):
        decompress(MODEL, GOOD[:cut])


def test_corrupted_byte():
    data = bytearray(GOOD)
    data[len(data) - 10] ^= 0x40
    with pytest.raises(FormatError, match="corrupted"):
        decompress(MODEL, bytes(data))


def test_another_model():
    with pytest.raises(FormatError, match="another model"):
        decompress(model(seed=1), GOOD)


def test_another_format_and_version():
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    with pytest.raises(FormatError, match="not a vaekit"):
        decompress(MODEL, buf.getvalue())
    newer = bytearray(GOOD)
    newer[8:10] = struct.pack("<H", 9)
    with pytest.raises(FormatError, match="version 9"):
        decompress(MODEL, refix_crc(bytes(newer)))


def test_stream_with_a_valid_crc_but_wrong_content_fails_the_data_checksum():
    header, words = vkz.read(GOOD)
    words = words.copy()
    words[len(words) // 2] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        decompress(MODEL, vkz.write(header, words))


def test_header_fields_are_checked():
    header, words = vkz.read(GOOD)
    header.batches = [1] * 40  # more examples than the count
    with pytest.raises(FormatError, match="batches"):
        decompress(MODEL, vkz.write(header, words))


def test_lossy_file_round_trip_shape():
    y = decompress(MODEL, compress_lossy(MODEL, X, latent_bits=3))
    assert y.shape == X.shape and y.dtype == X.dtype


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    with pytest.raises(FormatError):
        decompress(MODEL, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=4), st.booleans())
def test_fuzz_mutated_files(flips, fix_crc):
    data = bytearray(GOOD)
    for i, v in flips:
        data[i] ^= v
    data = bytes(data)
    if fix_crc:  # get past the CRC, so the header checks and the decoder itself are exercised
        data = refix_crc(data)
    try:
        y = decompress(MODEL, data)
    except FormatError:
        return
    assert torch.equal(y, X)  # a change the format ignores (none expected) must still give the data


def test_cli_round_trip_npy_and_images(tmp_path, capsys):
    x = (np.random.default_rng(0).random((300, 1, 8, 8)) < 0.3).astype(np.float32)
    np.save(tmp_path / "bin.npy", x)
    cfg = RunConfig()
    cfg.data.source = str(tmp_path / "bin.npy")
    cfg.model.hidden, cfg.model.latent_dim = (16,), 2
    cfg.train.epochs, cfg.train.batch_size = 1, 64
    run = tmp_path / "run"
    vaekit.train(cfg, run)
    vkz_file = tmp_path / "x.vkz"
    assert main(["compress", str(run), str(tmp_path / "bin.npy"), "--split", "all", "-o", str(vkz_file), "--quiet"]) == 0
    assert main(["decompress", str(run), str(vkz_file), "-o", str(tmp_path / "out.npy"), "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), x)
    assert main(["decompress", str(run), str(vkz_file), "-o", str(tmp_path / "png"), "--quiet"]) == 0
    first = np.asarray(Image.open(tmp_path / "png" / "00000.png"))
    assert np.array_equal(first, (x[0, 0] * 255).astype(np.uint8))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid", "--no-pca", "--json", str(tmp_path / "e.json")]) == 0
    assert "code length" in capsys.readouterr().out and "bits-back" in (tmp_path / "e.json").read_text()


def test_cli_round_trip_of_a_cvae_writes_the_labels_beside(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = (rng.random((300, 1, 8, 8)) < 0.2 + 0.2 * y[:, None, None, None]).astype(np.float32)  # the class sets the ink
    np.savez(tmp_path / "bin.npz", train=x[:200], train_labels=y[:200], test=x[200:], test_labels=y[200:])
    run = tmp_path / "run"
    args = ["train", "--dataset", str(tmp_path / "bin.npz"), "--condition", "label", "--prior", "conditional"]
    assert main([*args, "--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--quiet", "--out", str(run)]) == 0
    vkz_file = tmp_path / "x.vkz"
    assert main(["compress", str(run), str(tmp_path / "bin.npz"), "--split", "test", "-o", str(vkz_file), "--quiet"]) == 0
    assert main(["decompress", str(run), str(vkz_file), "-o", str(tmp_path / "out.npy"), "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), x[200:]) and np.array_equal(np.load(tmp_path / "out.labels.npy"), y[200:])
    assert main(["decompress", str(run), str(vkz_file), "-o", str(tmp_path / "png"), "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "png" / "labels.npy"), y[200:])
    capsys.readouterr()


def test_cli_bad_files_are_one_line_errors(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = RunConfig()
    cfg.data.source = "digits"
    cfg.model.hidden, cfg.model.latent_dim, cfg.train.epochs = (16,), 2, 1
    vaekit.train(cfg, run)
    (tmp_path / "bad.vkz").write_bytes(b"hello, world")
    (tmp_path / "cut.vkz").write_bytes(GOOD[: len(GOOD) // 2])
    (tmp_path / "other.vkz").write_bytes(GOOD)
    for name, words in [("bad", "not a vaekit"), ("cut", "truncated"), ("other", "another model"), ("missing", "no such file")]:
        capsys.readouterr()
        assert main(["decompress", str(run), str(tmp_path / f"{name}.vkz"), "-o", str(tmp_path / "o.npy")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vaekit: error:") and words in err[0], err
    capsys.readouterr()
    assert main(["compress", str(run), "digits", "-o", str(tmp_path / "d.vkz")]) == 2  # digits are not binary
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other than 0 and 1" in err[0], err
