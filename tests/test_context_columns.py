"""Conditioning on context columns (``--condition columns``): a table's numeric columns, or an array
file's context arrays, given to the encoder, the decoder and the prior instead of being modelled."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_condition import _digit_png, one_line_error, png

import vaekit
from vaekit.cli import main
from vaekit.data import SourceSettings, load_data
from vaekit.data.batches import TrainingBatches
from vaekit.data.streaming import CONTEXT_SUFFIX, side_path
from vaekit.data.tables import context_vector, describe_context
from vaekit.errors import ConfigError, DataError
from vaekit.models import build_model
from vaekit.models.condition import ColumnsCondition
from vaekit.report import RunViews

from helpers import SMALL_RUN_FLAGS


def write_table(path, n=600, seed=0):
    """Features that follow two context columns (age, income) closely, plus noise and a label column."""
    rng = np.random.default_rng(seed)
    age, income = rng.uniform(20, 80, n), rng.normal(50, 10, n)
    f1 = np.sin(age / 10) + 0.05 * rng.normal(size=n)
    f2 = age / 40 + income / 50 + 0.05 * rng.normal(size=n)
    f3 = rng.normal(size=n)
    label = (age > 50).astype(int)
    rows = ["f1,f2,f3,age,income,label"] + [",".join(map(str, r)) for r in zip(f1, f2, f3, age, income, label)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_table(tmp_path_factory.mktemp("ctx") / "people.csv")


@pytest.fixture(scope="module")
def ink_npz(tmp_path_factory):
    """The digits with a context of two numbers per image: its ink (mean pixel) and its class / 9."""
    d = load_data("digits")
    x = torch.cat([d.train.x, d.valid.x]).numpy()
    y = torch.cat([d.train.y, d.valid.y]).numpy()
    ink = x.reshape(len(x), -1).mean(1)
    path = tmp_path_factory.mktemp("ink") / "ink.npz"
    np.savez(path, x=x, y=y, context=np.stack([ink, y / 9.0], 1))
    return path


@pytest.fixture(scope="module")
def ink_run(ink_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("inkrun") / "run"
    flags = [f for f in SMALL_RUN_FLAGS if f != "digits"]
    flags[flags.index("--dataset") + 1 : flags.index("--dataset") + 1] = [str(ink_npz)]
    assert main(["train", *flags, "--epochs", "8", "--condition", "columns", "--threads", "1", "--out", str(out)]) == 0
    return vaekit.load(out)


# ----- the data -----------------------------------------------------------------------------------


def test_a_tables_context_columns_leave_the_features_and_are_standardised_on_the_training_split(table):
    data = load_data(str(table), preprocessing={"context_columns": ["age", "income"]})
    record = data.info["preprocessing"]
    assert record["columns"] == ["f1", "f2", "f3"] and record["context_columns"] == ["age", "income"]
    assert data.train.x.shape[1] == 3 and data.train.context.shape == (len(data.train), 2) and data.info["context_dim"] == 2
    torch.testing.assert_close(data.train.context.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.train.context.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    assert data.valid.y is not None and data.valid.context.shape == (len(data.valid), 2)
    again = load_data(str(table), preprocessing=record)  # saved preprocessing repeats it exactly
    assert torch.equal(again.valid.context, data.valid.context) and again.info["preprocessing"] == record
    plain = load_data(str(table))
    assert plain.train.context is None and plain.info["context_dim"] is None and plain.train.x.shape[1] == 5


def test_bad_context_columns_are_one_line_data_errors(table, tmp_path):
    with pytest.raises(DataError, match="context column.*agex.*not in the header"):
        load_data(str(table), preprocessing={"context_columns": ["agex"]})
    with pytest.raises(DataError, match="both the label column and a context column"):
        load_data(str(table), preprocessing={"context_columns": ["label"], "label_column": "label"})
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,age\n1,2,3\n4,5,\n")
    with pytest.raises(DataError, match="'age', line 3: missing value"):
        load_data(str(bad), preprocessing={"context_columns": ["age"]})


def test_an_array_file_carries_context_arrays_for_every_split_or_none(tmp_path):
    rng = np.random.default_rng(0)
    x, c = rng.random((50, 4)).astype(np.float32), rng.normal(size=(50, 3))
    np.savez(tmp_path / "xc.npz", x=x, context=c)
    data = load_data(str(tmp_path / "xc.npz"), settings=SourceSettings(valid_fraction=0.2))
    assert data.train.context.shape == (40, 3) and data.info["preprocessing"]["context_columns"] == [
        "context[0]",
        "context[1]",
        "context[2]",
    ]
    np.savez(tmp_path / "splits.npz", train=x[:40], valid=x[40:], train_context=c[:40, 0], valid_context=c[40:, 0])
    data = load_data(str(tmp_path / "splits.npz"))
    assert data.train.context.shape == (40, 1) and data.valid.context.shape == (10, 1)
    np.savez(tmp_path / "half.npz", train=x[:40], valid=x[40:], train_context=c[:40])
    with pytest.raises(DataError, match="every split a context array, or none"):
        load_data(str(tmp_path / "half.npz"))
    np.savez(tmp_path / "short.npz", x=x, context=c[:10])
    with pytest.raises(DataError, match=r"context of shape \(50, K\)"):
        load_data(str(tmp_path / "short.npz"))
    with pytest.raises(DataError, match="--context-columns names a CSV table's columns"):
        load_data(str(tmp_path / "xc.npz"), preprocessing={"context_columns": ["a"]})


def test_memory_mapped_shards_carry_context_files_and_a_model_trains_on_them(tmp_path, capsys):
    """DATA.context.npy beside DATA.npy: the context rows follow their examples into the validation
    blocks and the batches, standardised with the training split's statistics."""
    rng = np.random.default_rng(0)
    x = rng.random((400, 6)).astype(np.float32)
    raw = np.stack([x[:, 0] * 10 + 3, x[:, 1] * 5], 1)  # each row's context is a function of its own values
    np.save(tmp_path / "rows.npy", x)
    np.save(side_path(tmp_path / "rows.npy", CONTEXT_SUFFIX), raw)
    data = load_data(str(tmp_path / "rows.npy"), settings=SourceSettings(memmap=True))
    stats = data.info["preprocessing"]["context_standardize"]
    assert data.streaming and data.info["context_dim"] == 2 and data.train.context.shape == (len(data.train), 2)

    def expected(rows):  # (B, 6) -> their standardised context (B, 2)
        r = torch.stack([rows[:, 0] * 10 + 3, rows[:, 1] * 5], 1).double()
        return ((r - torch.tensor(stats["mean"], dtype=torch.float64)) / torch.tensor(stats["std"], dtype=torch.float64)).float()

    for part in (data.train, data.valid):
        torch.testing.assert_close(part.context, expected(part.x[torch.arange(len(part))]), atol=1e-4, rtol=0)
    torch.testing.assert_close(data.train.context.mean(0), torch.zeros(2), atol=1e-4, rtol=0)
    batches = TrainingBatches(data.train.x, context=data.train.context, global_batch=32, seed=1, device=torch.device("cpu"))
    for _, batch in batches.epoch(0):
        torch.testing.assert_close(batch.context, expected(batch.target), atol=1e-4, rtol=0)
    out = tmp_path / "run"
    args = ["train", "--dataset", str(tmp_path / "rows.npy"), "--memmap", "--condition", "columns", "--likelihood", "gaussian"]
    assert main([*args, "--epochs", "2", "--latent-dim", "2", "--hidden", "16", "--quiet", "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--split", "valid", "--quiet"]) == 0
    run = vaekit.load(out)
    assert run.config.model.context_dim == 2 and run.load_data().streaming
    (tmp_path / "rows.context.npy").unlink()
    with pytest.raises(ConfigError, match="no context columns"):
        RunViews(run, split="valid").examples(run.load_data().valid)
    np.save(side_path(tmp_path / "rows.npy", CONTEXT_SUFFIX), raw[:10])
    with pytest.raises(DataError, match=r"context of shape \(400, K\)"):
        load_data(str(tmp_path / "rows.npy"), settings=SourceSettings(memmap=True))
    capsys.readouterr()


def test_a_shard_folder_reads_its_side_files_as_side_files_not_shards(tmp_path):
    """A folder of shards, each with NAME.labels.npy and NAME.context.npy beside it: two shards of
    examples, their labels and their context, not six shards."""
    rng = np.random.default_rng(0)
    shards = [rng.random((150, 6)).astype(np.float32) for _ in range(2)]
    for i, x in enumerate(shards):
        np.save(tmp_path / f"part{i}.npy", x)
        np.save(side_path(tmp_path / f"part{i}.npy"), (x[:, 0] > 0.5).astype(np.int64))
        np.save(side_path(tmp_path / f"part{i}.npy", CONTEXT_SUFFIX), x[:, :2] * 10)
    data = load_data(str(tmp_path), settings=SourceSettings(memmap=True))
    assert data.shape == (6,) and len(data.train) + len(data.valid) == 300
    assert data.info["context_dim"] == 2 and data.train.y is not None
    stats = data.info["preprocessing"]["context_standardize"]
    mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    for part in (data.train, data.valid):
        rows = part.x[torch.arange(len(part))]
        assert torch.equal(part.y, (rows[:, 0] > 0.5).long())
        torch.testing.assert_close(part.context, (rows[:, :2] * 10 - mean) / std, atol=1e-4, rtol=0)


def test_context_values_are_read_in_the_columns_own_units():
    record = {"context_columns": ["age", "income"], "context_standardize": {"mean": [50.0, 40.0], "std": [10.0, 5.0]}}
    torch.testing.assert_close(context_vector(record, ["60", "30"]), torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(context_vector(record, ["income=45"]), torch.tensor([0.0, 1.0]))  # age at its mean
    assert describe_context(record, torch.tensor([1.0, -2.0])) == "age 60, income 30"
    for values, message in (
        (["60"], "needs 2 values"),
        (["height=3"], "no context column 'height'"),
        (["age=nan"], "finite number"),
        (["age=60", "30"], "not both"),
    ):
        with pytest.raises(DataError, match=message):
            context_vector(record, values)
    with pytest.raises(DataError, match="trained with --context-columns"):
        context_vector({}, ["1"])


# ----- the model ----------------------------------------------------------------------------------


def test_a_columns_condition_takes_vectors_and_refuses_labels():
    cfg = vaekit.ModelConfig(input_shape=(5,), latent_dim=2, hidden=(16,), likelihood="gaussian", condition="columns", context_dim=2)
    model = build_model(cfg)
    assert isinstance(model.condition, ColumnsCondition) and model.condition.classes == 0
    x, c = torch.randn(7, 5), torch.randn(7, 2)
    terms = vaekit.elbo(model, x, context=c)
    assert terms.loss.shape == (7,) and torch.isfinite(terms.loss).all()
    assert not torch.equal(model.decode(torch.zeros(1, 2), c[:1]).mean, model.decode(torch.zeros(1, 2), c[1:2]).mean)
    torch.testing.assert_close(model.condition.default(), torch.zeros(2))
    with pytest.raises(ConfigError, match="2 numbers"):
        model.condition(torch.tensor([1, 0]))
    with pytest.raises(ConfigError, match="context columns"):
        build_model(vaekit.ModelConfig(input_shape=(5,), condition="columns"))


def test_a_model_given_the_columns_explains_the_table_far_better_than_one_without(table, tmp_path, capsys):
    """f1 and f2 are functions of age and income up to noise 0.05: given them, the model need not encode them."""
    features_only = tmp_path / "features.csv"  # the same table without the context columns
    features_only.write_text(
        "\n".join(",".join(line.split(",")[:3] + line.split(",")[5:]) for line in table.read_text().splitlines()) + "\n"
    )
    common = ["--likelihood", "gaussian-learned", "--latent-dim", "2", "--epochs", "40"]
    common += ["--batch-size", "64", "--lr", "3e-3", "--quiet", "--threads", "1"]
    assert main(["train", "--dataset", str(table), *common, "--context-columns", "age", "income", "--out", str(tmp_path / "cond")]) == 0
    assert main(["train", "--dataset", str(features_only), *common, "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    cond, plain = vaekit.load(tmp_path / "cond"), vaekit.load(tmp_path / "plain")
    assert cond.config.model.condition == "columns" and cond.config.model.context_dim == 2
    assert cond.data_info["preprocessing"]["columns"] == plain.data_info["preprocessing"]["columns"] == ["f1", "f2", "f3"]
    best = {name: min(r["valid_neg_elbo"] for r in run.metrics()) for name, run in (("cond", cond), ("plain", plain))}
    assert best["cond"] < best["plain"] - 0.5, best
    for args in (
        ["evaluate", str(tmp_path / "cond"), "--split", "valid", "--iw-samples", "8", "--quiet", "--json", str(tmp_path / "e.json")],
        ["anomaly", str(tmp_path / "cond"), "--split", "valid"],
        ["embed", str(tmp_path / "cond"), "--split", "valid", "-o", str(tmp_path / "embed.png")],
        ["report", str(tmp_path / "cond"), "--split", "valid", "-o", str(tmp_path / "report.html")],
    ):
        assert main(args) == 0, args
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["iw"]["nll"] < result["neg_elbo"] + 0.5
    assert "conditioned on age, income" in (tmp_path / "report.html").read_text()


def test_every_view_takes_the_context(ink_run, tmp_path, capsys):
    run = str(ink_run.path)
    for args in (
        ["sample", run, "-n", "16"],
        ["sample", run, "-n", "16", "--context", "0.2", "0"],
        ["sample", run, "--compare", "-n", "9", "--context", "context[0]=0.4"],
        ["manifold", run, "-n", "5", "--context", "0.3", "0.5"],
        ["traverse", run, "--steps", "5", "--split", "valid"],
        ["traverse", run, "--at", "mean", "--steps", "5", "--context", "0.3", "1"],
        ["interpolate", run, "--between", "0", "1", "--steps", "4", "--split", "valid"],
        ["interpolate", run, "--between", "0", "1", "--steps", "4", "--split", "valid", "--context", "0.3", "0"],
        ["reconstruct", run, "-n", "8", "--split", "valid"],
    ):
        out = tmp_path / f"{args[0]}-{len(list(tmp_path.iterdir()))}.png"
        assert main([*args, "-o", str(out)]) == 0, args
        assert png(out).std() > 10, args
    capsys.readouterr()
    assert main(["report", run, "--split", "valid", "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Samples across the context" in page and "conditioned on context[0], context[1]" in page


def test_the_context_changes_what_is_decoded_as_it_was_trained(ink_run):
    """Context 0 is the images' ink: decoded at more ink, the same z gives images with more ink."""
    view = RunViews(ink_run, split="valid", seed=0).context_samples(rows=4, values=5)
    ink = view.result["context[0]"]  # (4 draws, 5 values from the 5th to the 95th percentile, 1, 8, 8)
    assert ink.shape == (4, 5, 1, 8, 8) and view.picture.ndim == 3 and view.picture.std() > 10
    per_value = ink.flatten(2).mean(2)  # (4, 5) mean pixel of each decode
    assert (per_value[:, -1] > per_value[:, 0] + 0.02).all(), per_value
    stats = ink_run.data_info["preprocessing"]
    thin, thick = (RunViews(ink_run, seed=0, context=context_vector(stats, [v, "0.5"])) for v in ("0.2", "0.4"))
    a, b = thin.samples(16).result, thick.samples(16).result
    assert b.mean() > a.mean() + 0.03 and "context[0] 0.2" in thin.samples(4).caption


def test_wrong_context_arguments_are_one_line_errors(ink_run, table, tmp_path, capsys):
    run = str(ink_run.path)
    one_line_error(capsys, main(["sample", run, "--class", "1"]), "give --context, not --class")
    one_line_error(capsys, main(["sample", run, "--context", "1"]), "needs 2 values")
    one_line_error(capsys, main(["sample", run, "--context", "1", "2", "--class", "1"]), "not both")
    one_line_error(capsys, main(["interpolate", run, "--between", str(_digit_png(tmp_path)), "1", "--split", "valid"]), "--context")
    base = ["train", "--dataset", str(table), "--likelihood", "gaussian", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]
    one_line_error(capsys, main([*base, "--context-columns", "age", "--condition", "label"]), "--condition columns")
    one_line_error(capsys, main([*base, "--condition", "columns"]), "--context-columns")
    one_line_error(capsys, main([*base, "--context-columns", "agex"]), "agex")


def test_explore_serves_a_model_conditioned_on_columns_with_a_slider_per_column(ink_run, tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from vaekit.explore.app import create_app
    from vaekit.explore.explorer import Explorer

    data = ink_run.load_data()
    explorer = Explorer(ink_run, data, context=context_vector(ink_run.data_info["preprocessing"], ["0.2", "0.5"]))
    client = TestClient(create_app(explorer), base_url="http://127.0.0.1:8765")
    model = client.get("/api/info").json()["model"]
    assert not model["conditional"]  # no class selector, but a slider per column, starting at --context
    columns = model["context_columns"]
    assert [c["name"] for c in columns] == ["context[0]", "context[1]"]
    assert columns[0]["value"] == pytest.approx(0.2, abs=1e-5) and columns[1]["value"] == pytest.approx(0.5, abs=1e-5)
    assert all(c["low"] < c["high"] for c in columns) and 0.15 < columns[0]["low"] < columns[0]["high"] < 0.45
    z = [[0.0] * ink_run.model.latent_dim]

    def ink(context) -> float:
        out = client.post("/api/decode", json={"z": z} | ({} if context is None else {"context": context}))
        assert out.status_code == 200, out.text
        return float(np.frombuffer(base64.b64decode(out.json()["pixels"]), dtype=np.uint8).mean() / 255)

    assert ink(None) == ink([0.2, 0.5])  # absent: the context the explorer started with
    assert ink([0.4, 0.5]) > ink([0.2, 0.5]) + 0.02  # more ink asked for, more ink decoded
    for bad in (1, [0.3], [0.3, "a"], [0.3, True], "0.3,x", [0.3, 1e39]):
        reply = client.post("/api/decode", json={"z": z, "context": bad})
        assert reply.status_code == 400 and "context" in reply.json()["error"], bad
    path = tmp_path / "digit.png"
    Image.fromarray((data.valid.x[0, 0].numpy() * 255).astype(np.uint8)).save(path)
    encoded = client.post("/api/encode?context=0.3,0.5", content=path.read_bytes(), headers={"Content-Type": "image/png"})
    assert encoded.status_code == 200 and len(encoded.json()["z"]) == ink_run.model.latent_dim
    assert client.get("/api/example/0").status_code == 200
    assert client.post("/api/sample", json={"n": 4, "context": [0.3, 0.1]}).status_code == 200
    assert client.post("/api/interpolate", json={"a": z[0], "b": z[0], "steps": 3, "context": [0.3, 0.1]}).status_code == 200
    with pytest.raises(ConfigError, match="conditioned on context columns: give --context, not --class"):
        Explorer(ink_run, data, context=3)
