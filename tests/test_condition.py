"""The conditional VAE: the context y (a class label) enters the encoder, the decoder and the
conditional prior; labels travel with the batches (in memory, memory-mapped, over DDP processes)
and reach the one objective; a CVAE trained on digits generates the class asked for; every new
flag end to end; wrong combinations are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch.distributions import kl_divergence

import vaekit
from vaekit.cli import main
from vaekit.config import ModelConfig, RunConfig
from vaekit.data import Dataset, SourceSettings, load_data
from vaekit.data.batches import TrainingBatches
from vaekit.data.streaming import side_path
from vaekit.errors import ConfigError, DataError
from vaekit.evaluation import elbo_terms, iw_log_likelihood
from vaekit.generation import sample
from vaekit.models import build_model
from vaekit.objectives import ELBO
from vaekit.report import RunViews

from helpers import SMALL_RUN_FLAGS

CVAE_FLAGS = [*SMALL_RUN_FLAGS, "--condition", "label", "--prior", "conditional", "--threads", "1"]


def one_line_error(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("vaekit: error:") and "Traceback" not in err[0]
    for w in words:
        assert w.lower() in err[0].lower(), err[0]
    return err[0]


@pytest.fixture(scope="module")
def cvae(tmp_path_factory):
    """A small CVAE on digits (label one-hot into encoder and decoder, p(z|y)), trained with the CLI."""
    out = tmp_path_factory.mktemp("cvae") / "run"
    assert main(["train", *CVAE_FLAGS, "--out", str(out)]) == 0
    return vaekit.load(out)


# ----- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "gated", "conv", "resnet"])
def test_the_context_changes_encoder_and_decoder_of_every_network(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, hidden=(8, 8), latent_dim=3, condition="label", context_dim=10))
    x, z = torch.rand(4, 1, 8, 8), torch.randn(4, 3)
    a, b = model.decode(z, torch.zeros(4, dtype=torch.long)).mean, model.decode(z, torch.ones(4, dtype=torch.long)).mean
    assert a.shape == (4, 1, 8, 8) and (a - b).abs().max() > 1e-4
    qa, qb = model.encode(x, 0), model.encode(x, 7)  # one label for all
    assert qa.batch_shape == (4,) and (qa.mean - qb.mean).abs().max() > 1e-5
    one_hot = torch.nn.functional.one_hot(torch.full((4,), 7), 10).float()  # a context vector means the same as its label
    torch.testing.assert_close(model.decode(z, one_hot).mean, model.decode(z, 7).mean)
    with pytest.raises(ConfigError, match="conditional"):
        model.decode(z)
    plain = build_model(ModelConfig(arch=arch, hidden=(8, 8), latent_dim=3))
    torch.testing.assert_close(plain.decode(z, 3).mean, plain.decode(z).mean)  # an unconditional model ignores a context


@pytest.mark.parametrize(
    "kind, prior, flow",
    [
        ("vae", "normal", "none"),
        ("vae", "mixture", "none"),
        ("vae", "vampprior", "none"),
        ("vae", "conditional", "iaf"),
        ("ae", "normal", "none"),
    ],
)
def test_every_part_trains_with_a_condition(kind, prior, flow):
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, prior=prior, flow=flow, hidden=(16,), latent_dim=2, condition="label", context_dim=3, prior_components=6)
    model = build_model(cfg)
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    terms = vaekit.elbo(model, x, context=y, n_samples=3, iw=True)
    assert terms.loss.shape == (5,) and torch.isfinite(terms.loss).all()
    vaekit.elbo(model, x, context=y).loss.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith(("encoder", "decoder")))
    if prior == "vampprior":  # the pseudo-inputs are encoded with classes 0, 1, 2, 0, ...
        assert torch.equal(model.condition.contexts(6), torch.tensor([0, 1, 2, 0, 1, 2]))


def test_the_conditional_prior_is_a_gaussian_per_class_with_a_closed_form_kl():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3, hidden=(8,), prior="conditional", condition="label", context_dim=4))
    with torch.no_grad():
        model.prior_module.params.weight.normal_()
    p = model.prior(torch.tensor([0, 1, 3]))
    assert p.batch_shape == (3,) and p.event_shape == (3,)
    assert model.prior(2).batch_shape == ()  # one class: a distribution like an unconditional prior
    torch.testing.assert_close(p.mean[2], model.prior(3).mean)
    assert (p.mean[0] - p.mean[1]).abs().max() > 0.1
    q = model.encode(torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 3]))
    z = q.sample((20000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(kl_divergence(q, p), mc, rtol=0.05, atol=0.05)


def test_a_config_saved_before_conditioning_loads_unconditional():
    raw = RunConfig().to_dict()
    for key in ("condition", "context_dim"):
        del raw["model"][key]
    cfg = RunConfig.from_dict(raw)
    assert cfg.model.condition == "none" and not build_model(cfg.model).conditional


# ----- labels travel with the batches --------------------------------------------------------------


def labelled_rows(n=300, d=6):
    """Rows whose first value is their label, so a batch shows whether its labels travelled with it."""
    y = np.arange(n) % 5
    x = np.random.default_rng(0).random((n, d)).astype(np.float32)
    x[:, 0] = y / 10
    return x, y


def check_labels(batches: TrainingBatches, epochs=2):
    seen = 0
    for epoch in range(epochs):
        for _, batch in batches.epoch(epoch):
            assert batch.context is not None and len(batch.context) == len(batch.target)
            torch.testing.assert_close(batch.target[:, 0], batch.context.float() / 10)
            seen += len(batch.context)
    return seen


def test_labels_travel_with_batches_in_memory_memory_mapped_and_in_each_process_share(tmp_path):
    x, y = labelled_rows()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    common = dict(global_batch=32, seed=3, device=torch.device("cpu"))
    assert check_labels(TrainingBatches(tx, context=ty, **common)) == 2 * len(x)
    shares = [check_labels(TrainingBatches(tx, context=ty, rank=r, world=2, **common)) for r in (0, 1)]
    assert sum(shares) == 2 * len(x)  # the two processes' shares cover every example
    np.save(tmp_path / "rows.npy", x)
    np.save(side_path(tmp_path / "rows.npy"), y)
    splits = load_data(str(tmp_path / "rows.npy"), settings=SourceSettings(memmap=True))
    assert splits.streaming and splits.info["num_classes"] == 5
    for part in (splits.train, splits.valid):  # the validation blocks keep their labels too
        torch.testing.assert_close(part.x[torch.arange(len(part))][:, 0], part.y.float() / 10)
    assert check_labels(TrainingBatches(splits.train.x, context=splits.train.y, **common), epochs=1) == len(splits.train)


def test_shard_folders_carry_labels_beside_every_shard_or_none(tmp_path):
    x, y = labelled_rows()
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(x)), 3)):
        np.save(folder / f"part-{i}.npy", x[part])
        np.save(folder / f"part-{i}.labels.npy", y[part])
    splits = load_data(str(folder))
    assert len(splits.train) + len(splits.valid) == len(x)  # the labels files are not shards
    torch.testing.assert_close(splits.train.x[torch.arange(len(splits.train))][:, 0], splits.train.y.float() / 10)
    (folder / "part-1.labels.npy").unlink()
    with pytest.raises(DataError, match="part-1.labels.npy: missing"):
        load_data(str(folder))


@pytest.mark.parametrize("condition", ["label", "columns"])
def test_two_processes_train_a_conditional_model_like_one(tmp_path, condition):
    """DDP with the labels (or context vectors): two processes of 24 equal one of 48 (a deterministic AE, as in test_distributed)."""
    x, y = labelled_rows(200, 12)
    np.savez(tmp_path / "table.npz", x=(x > 0.5).astype(np.float32), y=y, context=np.stack([y, x.sum(1)], 1))
    flags = ["train", "--dataset", tmp_path / "table.npz", "--model", "ae", "--latent-dim", "2", "--hidden", "8"]
    flags += ["--condition", condition, "--epochs", "2", "--threads", "1", "--quiet", "--lr", "0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for out, extra in (("one", ["--batch-size", "48"]), ("two", ["--batch-size", "24", "--nproc", "2"])):
        cmd = [sys.executable, "-m", "vaekit", *map(str, flags), *extra, "--out", str(tmp_path / out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = vaekit.load(tmp_path / "one", "last"), vaekit.load(tmp_path / "two", "last")
    assert two.config.model.context_dim == {"label": 5, "columns": 2}[condition]
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[k], v, rtol=1e-4, atol=1e-5, msg=k)


# ----- the objective and the trained model -------------------------------------------------------------


def test_elbo_and_iw_nll_are_of_x_given_its_label(cvae):
    test = cvae.load_data().test
    x, y = test.x[:100], test.y[:100]
    right = iw_log_likelihood(cvae.model, Dataset(x, y), k=64)
    wrong = iw_log_likelihood(cvae.model, Dataset(x, (y + 1) % 10), k=64)
    assert right.mean() > wrong.mean() + 1.0  # the labels matter: log p(x|y) of the true class is higher
    terms = elbo_terms(cvae.model, Dataset(x, y), batch_size=30)  # batched rows keep their own labels
    with torch.random.fork_rng():
        torch.manual_seed(0)
        whole = vaekit.elbo(cvae.model, x, context=y)
    torch.testing.assert_close(terms.kl, whole.kl)  # closed-form KL: independent of the draws and the batching
    assert (
        right.mean() > -elbo_terms(cvae.model, Dataset(x, y), objective=ELBO(n_samples=64)).neg_elbo.mean()
    )  # the IW bound lies above the ELBO
    with pytest.raises(ConfigError, match="no labels, but the model is conditioned"):
        elbo_terms(cvae.model, Dataset(x))


def test_a_cvae_trained_on_digits_generates_the_class_asked_for(tmp_path):
    """Samples of class c lie nearest the mean image of class c (a classifier on the real data that can fail)."""
    cfg = RunConfig()
    cfg.model.condition, cfg.model.prior, cfg.model.latent_dim, cfg.model.hidden = "label", "conditional", 2, (64,)
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.threads = 30, 64, 3e-3, 1
    run = vaekit.train(cfg, None)
    train = run.load_data().train
    means = torch.stack([train.x[train.y == c].flatten(1).mean(0) for c in range(10)])  # (10, 64)
    real = torch.cdist(run.load_data().test.x.flatten(1), means).argmin(1)
    baseline = (real == run.load_data().test.y).float().mean()  # how well the classifier does on real test digits
    images = torch.cat([sample(run.model, 20, context=c, seed=c) for c in range(10)])  # (200, 1, 8, 8)
    asked = torch.arange(10).repeat_interleave(20)
    accuracy = (torch.cdist(images.flatten(1), means).argmin(1) == asked).float().mean()
    assert baseline > 0.8 and accuracy > 0.9, (baseline, accuracy)
    unconditional = (torch.cdist(sample(run.model, 200, context=0, seed=1).flatten(1), means).argmin(1) == 0).float().mean()
    assert unconditional > 0.9  # one class asked 200 times: 200 zeros


# ----- the CLI ----------------------------------------------------------------------------------------


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")).astype(float)


def test_every_command_takes_the_class(cvae, tmp_path, capsys):
    run = str(cvae.path)
    for args in (
        ["sample", run, "--class", "3", "-n", "16"],
        ["sample", run, "--compare", "-n", "9"],
        ["manifold", run, "--class", "1", "-n", "5"],
        ["manifold", run, "-n", "5"],
        ["traverse", run, "--class", "2", "--steps", "5"],
        ["traverse", run, "--at", "mean", "--steps", "5"],
        ["interpolate", run, "--between", "0", "1", "--class", "5", "--steps", "4"],
        ["interpolate", run, "--between", "0", "1", "--steps", "4"],
        ["reconstruct", run, "-n", "8"],
        ["denoise", run, "--noise", "mask", "--noise-level", "0.3", "-n", "4"],
        ["embed", run],
        ["anomaly", run],
        ["evaluate", run, "--iw-samples", "8", "--quiet", "--json", str(tmp_path / "eval.json")],
    ):
        out = tmp_path / f"{args[0]}-{len(list(tmp_path.iterdir()))}.png"
        extra = ["-o", str(out)] if args[0] not in ("evaluate", "anomaly", "embed") else []
        assert main([*args, *extra]) == 0, args
        if extra:
            assert out.exists() and png(out).std() > 10, args  # a picture with content, not a blank page
    capsys.readouterr()
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["iw"]["nll"] < result["neg_elbo"] + 0.5 and result["code_length"]["kind"] == "none"
    assert main(["report", run, "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Samples by class" in page and "conditioned on the class label" in page


def test_samples_of_a_conditional_model_show_a_row_per_class(cvae, tmp_path):
    view = RunViews(cvae, seed=0).samples(40)
    images = view.result
    assert images.shape == (10, 4, 1, 8, 8)  # 40 samples: 4 per class, a row each
    assert view.picture.ndim == 3 and view.picture.shape[0] > 10 * 8
    per_row = images.flatten(1).mean(1)  # (10,) the rows are not blank and not all alike
    assert (per_row > 0.05).all() and (images[0] - images[1]).abs().max() > 0.1
    assert main(["sample", str(cvae.path), "-n", "20", "-o", str(tmp_path / "s.png")]) == 0
    assert png(tmp_path / "s.png").std() > 10
    fixed = RunViews(cvae, seed=0, context=4).samples(12)
    assert fixed.result.shape == (12, 1, 8, 8) and "class 4" in fixed.caption


def test_wrong_combinations_are_one_line_errors(cvae, tmp_path, capsys):
    np.save(tmp_path / "plain.npy", np.random.default_rng(0).random((100, 5)).astype(np.float32))
    code = main(["train", "--dataset", str(tmp_path / "plain.npy"), "--condition", "label", "--epochs", "1", "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "--condition label needs class labels")
    one_line_error(capsys, main(["train", "--prior", "conditional", "--epochs", "1", "--out", str(tmp_path / "r2")]), "conditional model")
    one_line_error(capsys, main(["sample", str(cvae.path), "--class", "10"]), "0..9")
    with pytest.raises(SystemExit):
        main(["train", "--condition", "colour"])
    capsys.readouterr()
    plain = tmp_path / "plain-run"
    assert main(["train", *SMALL_RUN_FLAGS, "--epochs", "1", "--out", str(plain)]) == 0
    capsys.readouterr()
    one_line_error(capsys, main(["manifold", str(plain), "--class", "1"]), "needs a conditional model")
    one_line_error(capsys, main(["compress", str(cvae.path), "digits", "--lossy", "-o", str(tmp_path / "x.vkz")]), "conditional")
    one_line_error(capsys, main(["interpolate", str(cvae.path), "--between", str(_digit_png(tmp_path)), "1"]), "--class")


def _digit_png(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(path)
    return path


def test_explore_serves_a_conditional_model_by_class(cvae):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from vaekit.explore.app import create_app
    from vaekit.explore.explorer import Explorer

    explorer = Explorer(cvae, cvae.load_data(), context=3)
    client = TestClient(create_app(explorer), base_url="http://127.0.0.1:8765")
    info = client.get("/api/info").json()["model"]
    assert info["conditional"] and info["classes"] == 10 and info["default_class"] == 3
    z = [[0.0] * cvae.model.latent_dim]
    a, b = (client.post("/api/decode", json={"z": z, "context": c}).json() for c in (0, 7))
    assert a != b
    assert client.post("/api/decode", json={"z": z}).json() == client.post("/api/decode", json={"z": z, "context": 3}).json()
    bad = client.post("/api/sample", json={"n": 4, "context": 10})
    assert bad.status_code == 400 and "context" in bad.json()["error"]
    assert client.post("/api/sample", json={"n": 4, "context": 2}).status_code == 200
    assert client.get("/api/example/0").json()["label"] == int(cvae.load_data().test.y[0])
    with pytest.raises(ConfigError, match="0..9"):
        Explorer(cvae, cvae.load_data(), context=12)
