"""The latent-space commands end to end: interpolate, traverse, manifold, embed, sample, denoise, curves, report.

Each writes into RUN/figures/ by default and to ``-o PATH`` when given; pictures are checked for
their grid and content, and bad input for a one-line error with exit code 2.
"""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from PIL import Image
from test_latent import tiny_run

from vaekit import latent
from vaekit.cli import main
from vaekit.data import Dataset


@pytest.fixture(scope="module")
def vae2(tmp_path_factory):
    return tiny_run(tmp_path_factory, "vae2")


@pytest.fixture(scope="module")
def digits(vae2):
    return vae2.load_data()


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def cell(pic: np.ndarray, grid_shape: tuple[int, int], r: int, c: int, size: int, pad: int) -> np.ndarray:
    """Cell (r, c) of the image grid in the bottom-right corner of a labelled picture."""
    rows, cols = grid_shape
    top = pic.shape[0] - (rows * (size + pad) + pad)
    left = pic.shape[1] - (cols * (size + pad) + pad)
    y, x = top + pad + r * (size + pad), left + pad + c * (size + pad)
    return pic[y : y + size, x : x + size]


def enlarged(img: torch.Tensor, size: int) -> np.ndarray:
    """A (1, h, w) image as the grid draws it: nearest-neighbour enlarged, 0-255, RGB."""
    s = size // img.shape[-1]
    a = (img[0].repeat_interleave(s, 0).repeat_interleave(s, 1).clamp(0, 1).numpy() * 255).round().astype(int)
    return np.repeat(a[..., None], 3, axis=2)


def one_line_error(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("vaekit:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    return lines[0]


def test_interpolate_writes_a_strip_with_the_originals_at_the_ends(vae2, digits, capsys):
    assert main(["interpolate", str(vae2.path), "--between", "0", "3", "--steps", "5", "--method", "linear"]) == 0
    path = vae2.path / "figures" / "interpolation.png"
    assert str(path) in capsys.readouterr().out
    pic = png(path)
    assert pic.shape[1] >= 7 * 58 + 2 and pic.shape[0] >= 58 + 2
    x = digits.test.x
    assert np.array_equal(cell(pic, (1, 7), 0, 0, 56, 2), enlarged(x[0], 56))
    assert np.array_equal(cell(pic, (1, 7), 0, 6, 56, 2), enlarged(x[3], 56))
    # t = 0 and t = 1 are the reconstructions of the two originals
    from vaekit.generation import reconstruct

    rec = reconstruct(vae2.model, Dataset(x[[0, 3]]))
    assert np.abs(cell(pic, (1, 7), 0, 1, 56, 2) - enlarged(rec[0], 56)).max() <= 1
    assert np.abs(cell(pic, (1, 7), 0, 5, 56, 2) - enlarged(rec[1], 56)).max() <= 1
    middle = [cell(pic, (1, 7), 0, c, 56, 2) for c in range(1, 6)]
    assert all(np.abs(a - b).mean() > 0 for a, b in zip(middle, middle[1:]))


def test_interpolate_accepts_image_files_of_the_right_shape(vae2, digits, tmp_path, capsys):
    x0 = digits.test.x[0]
    Image.fromarray((x0[0].numpy() * 255).round().astype(np.uint8), mode="L").save(tmp_path / "a.png")
    out = tmp_path / "out" / "strip.png"
    assert main(["interpolate", str(vae2.path), "--between", str(tmp_path / "a.png"), "3", "-o", str(out)]) == 0
    by_file = png(out)
    assert main(["interpolate", str(vae2.path), "--between", "0", "3", "-o", str(tmp_path / "by_index.png")]) == 0
    by_index = png(tmp_path / "by_index.png")
    assert by_file.shape == by_index.shape and by_file.shape[0] > 2 * 58  # two rows: linear and slerp
    # the file holds the same digit up to 8-bit rounding; the strip is the same up to that rounding
    assert np.abs(by_file - by_index)[-(2 * 58 + 2) :].mean() < 1.0

    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(tmp_path / "big.png")
    code = main(["interpolate", str(vae2.path), "--between", str(tmp_path / "big.png"), "1"])
    one_line_error(capsys, code, "10x10", "(1, 8, 8)")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8), mode="RGB").save(tmp_path / "rgb.png")
    one_line_error(capsys, main(["interpolate", str(vae2.path), "--between", "0", str(tmp_path / "rgb.png")]), "colour")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    one_line_error(capsys, main(["interpolate", str(vae2.path), "--between", "0", str(tmp_path / "junk.png")]), "cannot read")
    one_line_error(capsys, main(["interpolate", str(vae2.path), "--between", "0", str(tmp_path / "missing.png")]), "neither")
    one_line_error(capsys, main(["interpolate", str(vae2.path), "--between", "0", "99999"]), "out of range")


def test_traverse_draws_one_row_per_dimension(tmp_path_factory, capsys):
    run = tiny_run(tmp_path_factory, "vae4")
    out = run.path / "t.png"
    assert main(["traverse", str(run.path), "-k", "2", "--steps", "5", "--span", "sigma", "-o", str(out)]) == 0
    assert "z" in capsys.readouterr().out
    pic = png(out)
    data = run.load_data()
    top = latent.rank_dims(run.model, Dataset(data.test.x)).dims[:2]
    base = latent.encode(run.model, Dataset(data.test.x[:1]))[0]
    values = latent.grid_values(latent.marginals(run.model.prior()), 5, "sigma")
    expected = latent.traverse(run.model, top, base, values)
    for r in range(2):
        row = [cell(pic, (2, 5), r, c, 56, 2) for c in range(5)]
        for c in range(5):
            assert np.abs(row[c] - enlarged(expected.images[r, c], 56)).max() <= 1
        assert np.abs(row[0] - row[-1]).mean() > 5  # the row changes along the traversed dimension
    assert (pic[:, : pic.shape[1] - (5 * 58 + 2)] < 128).any()  # row labels (dimension and KL)
    one_line_error(capsys, main(["traverse", str(run.path), "--dims", "7"]), "out of range")


def test_manifold_grid_is_n_by_n_and_varies_smoothly(vae2, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["manifold", str(vae2.path), "-n", "8", "-o", str(out)]) == 0
    pic = png(out)
    size = 56  # 8 px digits enlarged 7 times, 1 px lines between them
    cells = np.array([[cell(pic, (8, 8), r, c, size, 1) for c in range(8)] for r in range(8)]).astype(float)
    assert pic.shape[0] > 8 * size and pic.shape[1] > 8 * size and cells.std() > 20
    step = np.abs(np.diff(cells, axis=1)).mean(axis=(2, 3, 4))
    far = np.abs(cells[:, -1] - cells[:, 0]).mean()
    assert step.max() < far / 2
    assert main(["manifold", str(vae2.path), "-n", "4"]) == 0
    assert (vae2.path / "figures" / "manifold.png").is_file()
    capsys.readouterr()
    one_line_error(capsys, main(["manifold", str(vae2.path), "--p-range", "0.9", "0.1"]), "p-range")
    one_line_error(capsys, main(["manifold", str(vae2.path), "--dims", "0", "0"]), "two different")


def test_embed_writes_codes_csv_and_a_scatter(vae2, digits, tmp_path, capsys):
    assert main(["embed", str(vae2.path)]) == 0
    fig = vae2.path / "figures"
    codes = np.load(fig / "embedding.npy")
    expected = latent.encode(vae2.model, Dataset(digits.test.x)).numpy()
    assert codes.shape == (len(digits.test), 2) and np.allclose(codes, expected)
    with open(fig / "embedding.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "z0", "z1"] and len(rows) == len(digits.test) + 1
    assert [int(r[0]) for r in rows[1:]] == digits.test.y.tolist()
    assert np.allclose(np.array(rows[1:], dtype=float)[:, 1:], expected, atol=1e-5)
    scatter = png(fig / "embedding.png")
    assert scatter.std() > 10
    # samples are seeded: same seed, same codes; they differ from the means
    for name, seed in [("s1", "1"), ("s1b", "1"), ("s2", "2")]:
        assert main(["embed", str(vae2.path), "--sample", "--seed", seed, "-o", str(tmp_path / f"{name}.png")]) == 0
    s1, s1b, s2 = (np.load(tmp_path / f"{n}.npy") for n in ["s1", "s1b", "s2"])
    assert np.array_equal(s1, s1b) and not np.allclose(s1, s2) and not np.allclose(s1, codes)
    assert "codes" in capsys.readouterr().out


def test_sample_compares_the_prior_with_fitted_code_densities(tmp_path_factory, capsys):
    ae = tiny_run(tmp_path_factory, "ae2")
    assert main(["sample", str(ae.path), "-n", "16"]) == 0
    assert "gaussian" in capsys.readouterr().out  # an autoencoder samples its fitted density by default
    grid = png(ae.path / "figures" / "samples.png")
    assert grid.shape == (4 * 58 + 2, 4 * 58 + 2, 3) and grid.std() > 10
    out = ae.path / "cmp.png"
    assert main(["sample", str(ae.path), "-n", "9", "--compare", "--components", "3", "-o", str(out)]) == 0
    cmp = png(out)
    assert cmp.shape[1] >= 3 * (3 * 58 + 2) and cmp.shape[0] > 3 * 58 + 2
    assert main(["sample", str(ae.path), "-n", "4", "--density", "gmm", "--temperature", "0.5", "-o", str(ae.path / "g.png")]) == 0
    one_line_error(capsys, main(["sample", str(ae.path), "--temperature", "0"]), "temperature")


def test_denoise_defaults_to_the_training_noise_and_compares_runs(tmp_path_factory, vae2, capsys):
    dae = tiny_run(tmp_path_factory, "dae")
    assert main(["denoise", str(dae.path), "-n", "4", "--compare", str(vae2.path)]) == 0
    out = capsys.readouterr().out
    psnr_in, psnr_out = (float(v) for v in re.search(r"corrupted ([\d.]+) dB, denoised ([\d.]+) dB", out).groups())
    assert psnr_out > psnr_in
    pic = png(dae.path / "figures" / "denoising.png")
    assert pic.shape[1] > 4 * 82 and pic.std() > 10  # corrupted | dae | vae2 | clean
    one_line_error(capsys, main(["denoise", str(vae2.path)]), "without input noise")
    assert main(["denoise", str(vae2.path), "--noise", "salt-pepper", "--noise-level", "0.1", "-n", "2"]) == 0
    one_line_error(capsys, main(["denoise", str(vae2.path), "--noise", "mask", "--noise-level", "1.5"]), "at most 1")


def test_curves_and_report(vae2, tmp_path, capsys):
    assert main(["curves", str(vae2.path)]) == 0
    assert png(vae2.path / "figures" / "curves.png").std() > 10
    assert main(["report", str(vae2.path), "-o", str(tmp_path / "r.html")]) == 0
    assert str(tmp_path / "r.html") in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 7  # curves, reconstructions, samples, interpolation, traversal, manifold, scatter


def test_image_commands_refuse_tabular_runs_in_one_line(tmp_path_factory, capsys):
    table = tiny_run(tmp_path_factory, "table")
    for cmd in (
        ["traverse"],
        ["manifold"],
        ["interpolate", "--between", "0", "1"],
        ["sample"],
        ["denoise", "--noise", "gaussian", "--noise-level", "0.1"],
    ):
        one_line_error(capsys, main([cmd[0], str(table.path), *cmd[1:]]), "images", "(13,)")
    assert main(["embed", str(table.path), "--split", "train"]) == 0
    assert main(["curves", str(table.path)]) == 0


def test_bad_arguments_exit_2(vae2, capsys):
    for argv in (
        ["interpolate", str(vae2.path), "--between", "0", "1", "--steps", "1"],
        ["manifold", str(vae2.path), "--p-range", "0", "1"],
        ["traverse", str(vae2.path), "--width", "-1"],
        ["embed", str(vae2.path), "--method", "umap"],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("vaekit: error: argument") and len(err.strip().splitlines()) == 1, err
    one_line_error(capsys, main(["traverse", str(vae2.path / "nope")]), "no such run")
