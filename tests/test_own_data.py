"""Your own data through a trained model: a run trained on a named dataset reads the same examples from
an .npy file, a PNG folder or (N, 784) rows; a file given with --data is used whole; a table run's
evaluate and anomaly need no flags; decompress gives back the user's array in its dtype and shape."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.cli import main
from vaekit.compression import FormatError, compress
from vaekit.compression import format as vkz
from vaekit.compression.original import describe, is_valid
from vaekit.data.base import Dataset
from vaekit.data.idx import read_idx
from vaekit.data.preprocess import fit_to_shape
from vaekit.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
N = 60  # examples of each small file
TRAIN = ["--epochs", "1", "--latent-dim", "2", "--hidden", "32", "--batch-size", "500", "--threads", "1", "--quiet"]

pytestmark = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="needs the shared MNIST files")


def one_line_error(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("vaekit: error:"), err
    for word in words:
        assert word in err[0], err[0]
    return err[0]


def evaluate(run, *args) -> dict:
    out = Path(run) / "own-eval.json"
    assert main(["evaluate", str(run), *map(str, args), "--no-pca", "--quiet", "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "mnist"
    assert main(["train", "--dataset", "mnist", "--data-dir", str(SHARED), *TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def binarized_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "binarized"
    assert main(["train", "--dataset", "binarized-mnist", "--data-dir", str(SHARED), *TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def mnist_images():
    """The first N MNIST test images, uint8 (N, 28, 28): the mnist run's first N test examples."""
    return read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")[:N]


@pytest.fixture(scope="module")
def binarized_rows():
    """N binarized MNIST test images in the dataset's own layout, uint8 (N, 784) of 0/1."""
    with np.load(SHARED / "binarized_mnist.npz") as f:
        return f["test"][:: 10000 // N][:N]


def png_folder(path: Path, images: np.ndarray) -> Path:
    path.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(path / f"{i:03d}.png")
    return path


def test_a_named_dataset_model_reads_the_same_images_from_npy_and_png(mnist_run, mnist_images, tmp_path, capsys):
    np.save(tmp_path / "mine.npy", mnist_images)
    folder = png_folder(tmp_path / "mine", mnist_images[:20])
    run = vaekit.load(mnist_run)
    test = run.load_data().test.x  # the named dataset's own preprocessing: (N, 1, 28, 28) in [0, 1]
    assert torch.equal(run.load_examples(str(tmp_path / "mine.npy")).x, test[:N])
    assert torch.equal(run.load_examples(str(folder)).x, test[:20])
    assert run.load_data(str(tmp_path / "mine.npy")).shape == (1, 28, 28)  # --split train/valid/test read it too
    on_npy, on_png = evaluate(mnist_run, "--data", tmp_path / "mine.npy"), evaluate(mnist_run, "--data", folder)
    assert on_npy["examples"] == N and on_png["examples"] == 20
    assert main(["anomaly", str(mnist_run), "--data", str(tmp_path / "mine.npy"), "--contamination", "0.1", "--quiet"]) == 0
    assert main(["compress", str(mnist_run), str(folder), "--lossy", "-o", str(tmp_path / "f.vkz"), "--quiet"]) == 0
    capsys.readouterr()
    other = png_folder(tmp_path / "small", np.zeros((3, 12, 12), dtype=np.uint8))  # what cannot be made to fit: one line
    one_line_error(capsys, main(["evaluate", str(mnist_run), "--data", str(other), "--quiet"]), "(1, 12, 12)", "(1, 28, 28)")


def test_a_file_given_with_data_is_used_whole(mnist_run, mnist_images, tmp_path, capsys):
    np.save(tmp_path / "mine.npy", mnist_images)
    result = evaluate(mnist_run, "--data", tmp_path / "mine.npy")
    assert result["split"] == "all" and result["examples"] == N
    assert main(["compress", str(mnist_run), str(tmp_path / "mine.npy"), "--lossy", "-o", str(tmp_path / "m.vkz"), "--quiet"]) == 0
    assert vkz.read((tmp_path / "m.vkz").read_bytes())[0].count == N  # every example, not a random 10 % of them
    capsys.readouterr()
    for command in (["evaluate", str(mnist_run), "--data"], ["compress", str(mnist_run), "-o", str(tmp_path / "t.vkz")]):
        code = main([*command, str(tmp_path / "mine.npy"), "--split", "test", "--quiet"])
        one_line_error(capsys, code, "has no test split", "--split all")


def test_rows_of_an_image_read_as_the_models_images(binarized_run, binarized_rows, tmp_path, capsys):
    np.save(tmp_path / "rows.npy", binarized_rows)  # the .amat layout: (N, 784)
    run = vaekit.load(binarized_run)
    assert run.model.input_shape == (1, 28, 28)
    images = torch.from_numpy(binarized_rows.reshape(N, 1, 28, 28)).float()
    assert torch.equal(run.load_examples(str(tmp_path / "rows.npy")).x, images)
    assert evaluate(binarized_run, "--data", tmp_path / "rows.npy")["examples"] == N
    assert evaluate(binarized_run, "--data", tmp_path / "rows.npy", "--split", "valid")["split"] == "valid"  # load_data's path
    np.save(tmp_path / "short.npy", binarized_rows[:, :700])
    code = main(["evaluate", str(binarized_run), "--data", str(tmp_path / "short.npy"), "--quiet"])
    one_line_error(capsys, code, "rows of 700 values", "1x28x28")
    with pytest.raises(DataError, match="channels first or last"):  # (N, 48) for a 3-channel model: no way to tell the order
        fit_to_shape({"all": Dataset(torch.zeros(5, 48))}, (3, 4, 4), "rows.npy")


def test_a_table_run_evaluates_and_scores_without_flags(tmp_path, capsys):
    rows = np.random.default_rng(0).normal(size=(300, 4))
    table = tmp_path / "t.csv"
    table.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in rows) + "\n")
    out = tmp_path / "tab"
    common = ["--likelihood", "gaussian", "--epochs", "2", "--hidden", "16", "--batch-size", "64", "--threads", "1", "--quiet"]
    assert main(["train", "--dataset", str(table), *common, "--out", str(out)]) == 0
    result = evaluate(out)
    assert result["split"] == "valid" and result["examples"] == 30
    assert main(["anomaly", str(out), "--quiet"]) == 0
    assert "no test split: using its validation split" in capsys.readouterr().out
    assert json.loads((out / "anomaly-valid-neg-elbo.json").read_text())["examples"] == 30
    one_line_error(capsys, main(["evaluate", str(out), "--split", "test", "--quiet"]), "--split valid")
    np.save(tmp_path / "t.npy", rows[:50])  # the same rows as an array: the table's standardisation applies
    run = vaekit.load(out)
    torch.testing.assert_close(run.load_examples(str(tmp_path / "t.npy")).x, run.load_examples(str(table)).x[:50], atol=1e-5, rtol=0)


def test_decompress_gives_back_the_users_array(binarized_run, mnist_run, binarized_rows, mnist_images, tmp_path):
    np.save(tmp_path / "rows.npy", binarized_rows)
    assert main(["compress", str(binarized_run), str(tmp_path / "rows.npy"), "-o", str(tmp_path / "r.vkz"), "--quiet"]) == 0
    assert main(["decompress", str(binarized_run), str(tmp_path / "r.vkz"), "-o", str(tmp_path / "back.npy"), "--quiet"]) == 0
    back = np.load(tmp_path / "back.npy")
    assert back.dtype == np.uint8 and back.shape == (N, 784) and np.array_equal(back, binarized_rows)  # lossless, as given
    np.save(tmp_path / "images.npy", mnist_images)  # uint8 (N, 28, 28); lossy: the decoder's means, in the same form
    assert main(["compress", str(mnist_run), str(tmp_path / "images.npy"), "--lossy", "-o", str(tmp_path / "i.vkz"), "--quiet"]) == 0
    assert main(["decompress", str(mnist_run), str(tmp_path / "i.vkz"), "-o", str(tmp_path / "i.npy"), "--quiet"]) == 0
    assert (lossy := np.load(tmp_path / "i.npy")).dtype == np.uint8 and lossy.shape == (N, 28, 28)
    assert main(["decompress", str(binarized_run), str(tmp_path / "r.vkz"), "-o", str(tmp_path / "png"), "--quiet"]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == N  # images still go to a folder as images

    run = vaekit.load(binarized_run)  # a file without the array's form (an older one): the model's input form, as before
    (tmp_path / "old.vkz").write_bytes(compress(run.model, torch.from_numpy(binarized_rows.reshape(N, 1, 28, 28)).float()))
    assert main(["decompress", str(binarized_run), str(tmp_path / "old.vkz"), "-o", str(tmp_path / "old.npy"), "--quiet"]) == 0
    assert (old := np.load(tmp_path / "old.npy")).dtype == np.float32 and old.shape == (N, 1, 28, 28)


def test_the_arrays_form_is_kept_only_where_it_comes_back_exactly():
    doubles = np.array([[0.1, 0.2, 0.3, 0.4]])  # float64 rows, read as float32: going back would not give them exactly
    assert describe(doubles, torch.from_numpy(doubles.reshape(1, 1, 2, 2)).float()) is None
    assert describe(np.zeros((1, 3, 2, 2), np.uint8), torch.zeros(1, 1, 2, 2)) is None  # RGB made gray: not to be undone
    pixels = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    record = describe(pixels, torch.from_numpy(pixels[:, None]).float() / 255)
    assert record == {"dtype": "uint8", "shape": [2, 2], "scale": 255.0, "channels_last": False}
    assert describe(pixels[:, None].astype(np.float32) / 255, torch.from_numpy(pixels[:, None]).float() / 255) is None  # the model's form
    rgb = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)  # (N, H, W, C): read as (N, C, H, W)
    assert describe(rgb, torch.from_numpy(rgb).permute(0, 3, 1, 2).float())["channels_last"] is True
    assert is_valid(record, [1, 2, 2]) and not is_valid(record, [1, 3, 3]) and not is_valid({**record, "dtype": "object"}, [1, 2, 2])


def test_a_damaged_original_field_is_one_error(binarized_run, binarized_rows, tmp_path):
    run = vaekit.load(binarized_run)
    x = torch.from_numpy(binarized_rows[:4].reshape(4, 1, 28, 28)).float()
    header, words = vkz.read(compress(run.model, x, original={"dtype": "uint8", "shape": [784], "scale": 1.0, "channels_last": False}))
    assert header.original["shape"] == [784]
    header.original["shape"] = [785]
    with pytest.raises(FormatError, match="header field original"):
        vkz.read(vkz.write(header, words))
