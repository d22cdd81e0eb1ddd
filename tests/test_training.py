"""Training: loss goes down, determinism, save/load round trip, resume, warm-up, non-finite handling."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.config import RunConfig
from vaekit.corruption import corrupt
from vaekit.data import Dataset, load_data
from vaekit.data.batches import data_order
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingError
from vaekit.evaluation import elbo_terms
from vaekit.objectives import ImportanceWeighted
from vaekit.runs import RunWriter
from vaekit.training import Trainer, beta_at, normalize_gradients, resume, train

from helpers import fit_until_crash, small_config


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def untrained_and_trained(config, out, data):
    """Validation neg ELBO of the model as initialised, and the run after training it."""
    trainer = Trainer(config, out, data=data)
    before = elbo_terms(trainer.model, Dataset(data.valid.x)).neg_elbo.mean().item()
    trainer.start_run()
    return before, trainer.fit()


def test_training_lowers_validation_loss_on_digits(tmp_path, digits):
    before, run = untrained_and_trained(small_config(epochs=8), tmp_path / "run", digits)
    rows = run.metrics()
    assert len(rows) == 8
    assert rows[-1]["valid_neg_elbo"] < before - 1.5  # the decoder starts at the data mean, so this is past that
    assert rows[-1]["valid_neg_elbo"] < rows[0]["valid_neg_elbo"]
    assert all(r["train_seconds"] > 0 for r in rows)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in [
        "epoch",
        "train_loss",
        "train_reconstruction",
        "train_kl",
        "valid_loss",
        "valid_reconstruction",
        "valid_kl",
        "train_seconds",
    ]:
        assert col in header


def test_adam_takes_the_configured_betas_and_eps_and_a_resumed_run_keeps_them(tmp_path, digits):
    config = small_config(epochs=1, adam_betas=(0.99, 0.9), adam_eps=5e-6)
    trainer = Trainer(config, tmp_path / "run", data=digits)
    group = trainer.optimizer.param_groups[0]
    assert (group["betas"], group["eps"]) == ((0.99, 0.9), 5e-6)
    trainer.start_run()
    trainer.fit()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["adam_betas"], saved["adam_eps"]) == ([0.99, 0.9], 5e-6)
    resumed = Trainer(RunConfig.from_json_file(tmp_path / "run" / "config.json"), tmp_path / "run", data=digits)
    resumed.restore()
    group = resumed.optimizer.param_groups[0]  # the saved optimizer state (JSON) holds them as a list
    assert (tuple(group["betas"]), group["eps"]) == ((0.99, 0.9), 5e-6)


def test_same_seed_same_numbers(tmp_path, digits):
    a = train(small_config(epochs=2), tmp_path / "a", data=digits)
    b = train(small_config(epochs=2), tmp_path / "b", data=digits)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k

    def strip(rows):
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert strip(a.metrics()) == strip(b.metrics())


def test_normalized_gradients_have_unit_norm_per_tensor_and_change_the_training(tmp_path, digits):
    w, b, idle = (torch.nn.Parameter(torch.randn(3, 4)) for _ in range(3))
    (w.square().sum() * 50 + b.sum()).backward()
    expected = [w.grad / w.grad.norm(), b.grad / b.grad.norm()]
    normalize_gradients([w, b, idle])  # idle: no gradient, left alone
    assert all(torch.allclose(p.grad, e) for p, e in zip((w, b), expected)) and idle.grad is None
    plain = train(small_config(epochs=2), tmp_path / "plain", data=digits)
    normed = train(small_config(epochs=2, normalize_grads=True), tmp_path / "normed", data=digits)
    assert json.loads((tmp_path / "normed" / "config.json").read_text())["train"]["normalize_grads"] is True
    a, b = plain.metrics()[-1]["valid_loss"], normed.metrics()[-1]["valid_loss"]
    assert a != b and math.isfinite(b) and b < normed.metrics()[0]["train_loss"] + 5


def test_compiled_loss_trains_like_eager_in_one_graph(tmp_path, digits):
    """--compile: the same training within float noise, one graph per batch size (full, last), no
    graph break and no recompile as β changes during warm-up."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = train(small_config(epochs=2, warmup_epochs=2), tmp_path / "eager", data=digits)
    compiled = train(small_config(epochs=2, warmup_epochs=2, compile=True), tmp_path / "compiled", data=digits)
    assert compiled.config.train.compile
    rows = list(zip(eager.metrics(), compiled.metrics()))
    assert rows[0][0]["beta"] < 1.0  # β changed from step to step
    for a, b in rows:
        assert b["valid_neg_elbo"] == pytest.approx(a["valid_neg_elbo"], rel=1e-3)
        assert b["beta"] == a["beta"]
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])  # 1347 examples: batches of 64 and the last of 3
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_compile_failure_is_a_one_line_training_error(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    from vaekit.training.setup import compiled

    def broken(*args):
        raise BackendCompilerFailed(broken, RuntimeError("no C++ compiler found\nlong details"), None)

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken)
    step = compiled(lambda x: x + 1)
    assert step(1) == 2  # the first call runs eagerly
    with pytest.raises(TrainingError, match=r"^torch.compile failed \(RuntimeError: no C\+\+ compiler found\); train without --compile$"):
        step(1)


def test_gradient_check_sees_any_non_finite_entry_and_no_overflow():
    from vaekit.training.health import all_finite, gradient_sum

    big = [torch.full((3,), 3e38), torch.full((2, 2), 3e38)]
    assert not torch.isfinite(gradient_sum(big)) and all_finite(torch.tensor(1.0), big)  # overflow only
    for bad in (float("nan"), float("inf"), -float("inf")):
        grads = [torch.ones(3), torch.tensor([[1.0, bad]])]
        assert not torch.isfinite(gradient_sum(grads)) and not all_finite(torch.tensor(1.0), grads)
    assert not all_finite(torch.tensor(float("nan")), [torch.ones(2)])


def test_save_load_round_trip_gives_identical_outputs(tmp_path, digits):
    run = train(small_config(epochs=1), tmp_path / "run", data=digits)
    again = vaekit.load(tmp_path / "run")
    x = digits.test.x[:10]
    with torch.no_grad():
        torch.testing.assert_close(again.model.encode(x).mean, run.model.encode(x).mean, rtol=0, atol=0)
        z = torch.randn(5, 4)
        torch.testing.assert_close(again.model.decode(z).mean, run.model.decode(z).mean, rtol=0, atol=0)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["input_shape"] == [1, 8, 8]
    info = json.loads((tmp_path / "run" / "data.json").read_text())
    assert info["split_seed"] == 0


@pytest.mark.parametrize("arch", ["mlp", "conv"])  # conv: channels-last kernels, contiguous in the checkpoint
def test_resume_continues_to_the_same_result_as_an_uninterrupted_run(tmp_path, digits, arch):
    def config(epochs):
        cfg = small_config(epochs=epochs)
        cfg.model.arch, cfg.model.hidden = arch, ((4, 8) if arch == "conv" else cfg.model.hidden)
        return cfg

    full = train(config(4), tmp_path / "full", data=digits)
    train(config(2), tmp_path / "part", data=digits)
    resumed = resume(tmp_path / "part", epochs=4)
    for (k, va), vb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(va, vb), k
    assert len(resumed.metrics()) == 4


def test_resume_mid_epoch_from_step_checkpoint(tmp_path, digits):
    full = train(small_config(epochs=2), tmp_path / "full", data=digits)
    cfg = small_config(epochs=2, checkpoint_every=5)
    trainer = Trainer(cfg, tmp_path / "part", data=digits)
    trainer.start_run()
    calls = fit_until_crash(trainer, 2)  # a crash right after the step-10 checkpoint
    assert calls == [5, 10] and trainer.state.epoch == 0
    resumed = resume(tmp_path / "part")
    for (k, va), vb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_warmup_is_linear_and_warns_when_longer_than_training(tmp_path, digits, caplog):
    cfg = small_config(epochs=2, warmup_epochs=4, beta=2.0)
    assert beta_at(cfg, 0, 10) == 0.0
    assert beta_at(cfg, 20, 10) == pytest.approx(1.0)
    assert beta_at(cfg, 80, 10) == 2.0
    with caplog.at_level("WARNING"):
        run = train(cfg, tmp_path / "run", data=digits)
    assert "warm-up" in caplog.text
    betas = [r["beta"] for r in run.metrics()]
    assert betas[0] < betas[1] < 2.0


def test_early_stopping_stops(tmp_path, digits):
    cfg = small_config(epochs=50, patience=2, lr=0.3)  # a too-large step makes validation worsen quickly
    run = train(cfg, tmp_path / "run", data=digits)
    rows = run.metrics()
    best = min(rows, key=lambda r: r["valid_loss"])["epoch"]
    assert len(rows) < 50 and rows[-1]["epoch"] == best + 2  # the stop came at the best epoch + patience


def _scripted_validation(monkeypatch, losses):
    """Trainer.validate reports ``losses`` (one per epoch, in order) as the validation loss."""
    script = iter(losses)
    monkeypatch.setattr(Trainer, "validate", lambda self: VALIDATE(self) | {"valid_loss": next(script)})


VALIDATE = Trainer.validate


# valid losses: better, better, 2 worse (cut), better, 2 worse (cut, at the floor), worse
PLATEAU_LOSSES = [10.0, 9.0, 9.5, 9.6, 8.0, 8.5, 8.6, 8.7]
PLATEAU_LRS = [0.01] * 4 + [0.005] * 3 + [0.003]  # the rate each epoch trained with


def test_the_learning_rate_is_cut_after_lr_patience_epochs_without_a_better_validation_loss(tmp_path, digits, monkeypatch):
    _scripted_validation(monkeypatch, PLATEAU_LOSSES)
    run = train(small_config(epochs=8, lr=0.01, lr_patience=2, lr_factor=0.5, min_lr=0.003), tmp_path / "run", data=digits)
    assert [r["lr"] for r in run.metrics()] == pytest.approx(PLATEAU_LRS)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["lr_bad_epochs"] == 1


def test_a_resumed_run_keeps_its_cut_learning_rate_and_count(tmp_path, digits, monkeypatch):
    config = lambda epochs: small_config(epochs=epochs, lr=0.01, lr_patience=2, lr_factor=0.5, min_lr=0.003)  # noqa: E731
    _scripted_validation(monkeypatch, PLATEAU_LOSSES)
    full = train(config(8), tmp_path / "full", data=digits)
    _scripted_validation(monkeypatch, PLATEAU_LOSSES)  # the script again, for a run stopped after epoch 6 ...
    train(config(6), tmp_path / "part", data=digits)
    _scripted_validation(monkeypatch, PLATEAU_LOSSES[6:])
    resumed = resume(tmp_path / "part", epochs=8)  # ... and resumed: one worse epoch more, then the second cut
    assert [r["lr"] for r in resumed.metrics()] == pytest.approx(PLATEAU_LRS)
    for (k, va), vb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_learning_rate_decay_settings_are_checked(tmp_path, capsys):
    for flags, message in (
        (["--lr-factor", "1.5"], "lr factor must be in (0, 1)"),
        (["--lr-patience", "-1"], "lr patience must be >= 0"),
        (["--lr", "1e-3", "--min-lr", "0.01"], "min lr must be in [0, lr = 0.001]"),
    ):
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("noise", ["gaussian", "mask", "salt-pepper"])
def test_denoising_autoencoder_trains_on_corrupted_inputs_and_denoises(tmp_path, digits, noise):
    cfg = small_config(epochs=12, noise=noise, noise_level=0.3)
    cfg.model.kind, cfg.model.likelihood = "ae", "gaussian"
    trainer = Trainer(cfg, None, data=digits)
    _, batch = next(trainer.batches.epoch(0))
    assert not torch.equal(batch.inputs, batch.target)  # the encoder sees corrupted inputs ...
    assert torch.equal(
        batch.target, digits.train.x[data_order(len(digits.train), cfg.train.seed, 0)[: len(batch.target)]]
    )  # ... of clean targets
    run = trainer.fit(progress=False)
    assert run.model.deterministic and run.path is None
    assert all(r["valid_kl"] == 0 for r in run.metrics())
    clean = digits.test.x
    noisy = corrupt(clean, noise, 0.3, torch.Generator().manual_seed(1))
    with torch.inference_mode():
        denoised = run.model.decode(run.model.encode(noisy).mean).mean
    assert (denoised - clean).pow(2).mean() < 0.7 * (noisy - clean).pow(2).mean()  # closer to the clean images than its input


def test_iwae_objective_trains_and_validates_on_its_own_bound(tmp_path, digits):
    cfg = small_config(epochs=6, n_samples=5, objective="iw")
    before, run = untrained_and_trained(cfg, tmp_path / "run", digits)
    rows = run.metrics()
    assert rows[-1]["valid_neg_elbo"] < before - 1
    # the validation loss (and so early stopping) is the training objective, the IW bound with K = 5:
    # recomputed from the last weights with the same draws it is the same number, and it is tighter than the ELBO
    last = vaekit.load(tmp_path / "run", which="last").model
    bound = (
        elbo_terms(last, Dataset(digits.valid.x), batch_size=1000, seed=cfg.train.seed, objective=ImportanceWeighted(5))
        .loss.double()
        .mean()
        .item()
    )
    assert rows[-1]["valid_loss"] == pytest.approx(bound, rel=1e-5)
    assert all(r["valid_loss"] < r["valid_neg_elbo"] for r in rows)


def test_training_in_memory_writes_nothing(tmp_path, digits, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train(small_config(epochs=2), None, data=digits)
    assert run.path is None and [int(r["epoch"]) for r in run.metrics()] == [1, 2]
    assert list(tmp_path.iterdir()) == []


def test_a_run_has_one_writer_at_a_time(tmp_path, digits):
    first = Trainer(small_config(epochs=1), tmp_path / "run", data=digits)
    first.start_run()  # holds the run's lock until its fit ends
    second = Trainer(small_config(epochs=1), tmp_path / "run", data=digits)
    with pytest.raises(ConfigError, match=rf"being trained by another process \(pid {os.getpid()}\)"):
        second.restore()
    first.fit(progress=False)  # releases the lock when done
    second.restore()
    assert second.fit(progress=False).metrics()[-1]["epoch"] == 1


def test_a_second_writer_on_the_command_line_gets_one_line_and_a_lock_of_a_killed_process_never_blocks(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)  # another process
    assert holder.stdout.readline().strip() == "locked"
    resume_it = ["train", "--resume", str(run), "--epochs", "1", "--quiet"]
    assert main(resume_it) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"vaekit: error: {run} is being trained by another process (pid {holder.pid}); wait for it to finish or stop it before resuming"
    ]
    holder.kill()  # SIGKILL: no clean-up of its own; the kernel releases its lock
    holder.wait()
    assert main(resume_it) == 0


HOLD_LOCK = """
import sys, time
from vaekit.config import RunConfig
from vaekit.data import load_data
from vaekit.runs import RunWriter
config = RunConfig()
config.train.epochs = 1
data = load_data("digits")
config.model.input_shape = data.shape
writer = RunWriter(sys.argv[1])
writer.create(config, data.info)
print("locked", flush=True)
time.sleep(600)
"""


def test_resuming_a_run_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory: .*killed before it created its folder is started again"):
        resume(tmp_path / "nowhere")


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, digits):
    cfg = small_config(epochs=3)
    trainer = Trainer(cfg, tmp_path / "run", data=digits)
    trainer.start_run()
    trainer.fit()  # 3 good epochs
    good = vaekit.load(tmp_path / "run", which="last").model.state_dict()
    trainer.config.train.epochs = 4  # the trainer's resolved copy of the config
    with torch.no_grad():
        trainer.model.decoder.net[-1].bias.fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite loss"):
        trainer.fit()
    kept = vaekit.load(tmp_path / "run", which="last").model.state_dict()
    for k in good:
        assert torch.equal(good[k], kept[k])


def test_nonfinite_skip_policy_counts_skipped_steps(tmp_path, digits):
    x = digits.train.x.clone()
    cfg = small_config(epochs=1, nonfinite="skip")
    trainer = Trainer(cfg, tmp_path / "run", data=digits)
    trainer.start_run()
    trainer.batches.x = x.clone()
    trainer.batches.x[0, 0, 0, 0] = float("nan")  # one poisoned example -> exactly one bad step
    run = trainer.fit()
    assert run.metrics()[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_bad_settings_are_refused(tmp_path, digits):
    cfg = small_config()
    cfg.model.latent_dim = 0
    with pytest.raises(ConfigError, match="latent dim"):
        train(cfg, tmp_path / "a", data=digits)
    with pytest.raises(ConfigError, match="beta"):
        train(small_config(beta=-1.0), tmp_path / "b", data=digits)
    with pytest.raises(ConfigError, match="batch size"):
        train(small_config(batch_size=100_000), tmp_path / "c", data=digits)


def test_bernoulli_refuses_data_outside_unit_interval(tmp_path, digits):
    from vaekit.data import DataSplits

    bad = DataSplits(Dataset(digits.train.x * 3 - 1), digits.valid, None, {**digits.info, "value_range": "real"})
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        train(small_config(), tmp_path / "a", data=bad)


def test_loading_a_non_run_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such run"):
        vaekit.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a vaekit run"):
        vaekit.load(tmp_path / "empty")


def test_bf16_training_matches_fp32_quality_and_validates_in_fp32(tmp_path, digits):
    fp32 = train(small_config(epochs=3), tmp_path / "fp32", data=digits)
    bf16 = train(small_config(epochs=3, precision="bf16"), tmp_path / "bf16", data=digits)
    assert bf16.config.train.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    a, b = fp32.metrics()[-1]["valid_neg_elbo"], bf16.metrics()[-1]["valid_neg_elbo"]
    assert b == pytest.approx(a, rel=0.01)
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
        train(small_config(precision="fp16"), tmp_path / "fp16", data=digits)


def test_a_new_autoencoder_run_refuses_a_prior_or_samples_but_an_older_one_still_loads(tmp_path, digits):
    cfg = small_config(epochs=1)
    cfg.model.kind, cfg.model.prior = "ae", "mixture"
    with pytest.raises(ConfigError, match="plain autoencoder has no prior"):
        train(cfg, None, data=digits)
    cfg.model.prior, cfg.train.n_samples, cfg.train.objective = "normal", 5, "iw"
    with pytest.raises(ConfigError, match="draws no latent samples"):
        train(cfg, None, data=digits)
    cfg.model.prior, cfg.train.n_samples, cfg.train.objective = "mixture", 1, "elbo"  # as an earlier vaekit wrote it
    old = Trainer(cfg, tmp_path / "old", data=digits)
    old.start_run()
    old.fit(progress=False)
    assert vaekit.load(tmp_path / "old").model.deterministic
    assert len(resume(tmp_path / "old", epochs=2).metrics()) == 2


def _step_weights(trainer) -> list[dict[str, torch.Tensor]]:
    """A list that collects the model's parameters after every optimizer step of ``trainer``."""
    after: list[dict[str, torch.Tensor]] = []
    trainer.optimizer.register_step_post_hook(lambda *_: after.append({k: p.detach().clone() for k, p in trainer.model.named_parameters()}))
    return after


def test_the_weight_average_is_the_moving_average_of_the_steps_and_what_the_run_validates_and_keeps(tmp_path, digits):
    plain = Trainer(small_config(epochs=2), tmp_path / "plain", data=digits)
    steps = _step_weights(plain)
    plain.start_run()
    plain.fit()
    averaged = train(small_config(epochs=2, ema=0.9), tmp_path / "ema", data=digits)
    expected = {k: v.clone() for k, v in dict(Trainer(small_config(), None, data=digits).model.named_parameters()).items()}
    for n, weights in enumerate(steps):  # by hand: avg <- d avg + (1 - d) θ, d = min(0.9, (1 + n) / (10 + n))
        d = min(0.9, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
    last = vaekit.load(tmp_path / "ema", which="last").model.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(last[k], v, rtol=1e-5, atol=1e-6)
    raw = RunWriter(tmp_path / "ema").read_checkpoint().optimizer
    for k, v in steps[-1].items():  # the steps themselves are the plain run's: the average only watches them
        assert torch.equal(raw["raw." + k], v), k
    rows, plain_rows = averaged.metrics(), plain._result().metrics()
    assert rows[0]["train_loss"] == plain_rows[0]["train_loss"] and rows[-1]["valid_loss"] != plain_rows[-1]["valid_loss"]
    cfg = small_config()
    mine = elbo_terms(vaekit.load(tmp_path / "ema", which="last").model, Dataset(digits.valid.x), batch_size=1000, seed=cfg.train.seed)
    assert rows[-1]["valid_loss"] == pytest.approx(mine.loss.mean().item(), rel=1e-6)  # validated: the average


def test_a_resumed_averaging_run_equals_the_uninterrupted_one(tmp_path, digits):
    full = train(small_config(epochs=4, ema=0.95), tmp_path / "full", data=digits)
    train(small_config(epochs=2, ema=0.95), tmp_path / "part", data=digits)
    resumed = resume(tmp_path / "part", epochs=4)
    assert [r["valid_loss"] for r in resumed.metrics()] == [r["valid_loss"] for r in full.metrics()]
    for which in ("best", "last"):
        a, b = (vaekit.load(tmp_path / run, which=which).model.state_dict() for run in ("full", "part"))
        assert all(torch.equal(a[k], b[k]) for k in a), which
    raw_a, raw_b = (RunWriter(tmp_path / run).read_checkpoint().optimizer for run in ("full", "part"))
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a if k.startswith("raw."))
    with pytest.raises(ConfigError, match="decay must be in"):
        train(small_config(ema=1.0), None, data=digits)


def test_dropout_is_on_in_every_training_step_and_off_in_validation(tmp_path, digits):
    config = small_config(epochs=2)
    config.model.dropout = (0.3, 0.3)
    trainer = Trainer(config, None, data=digits)
    modes = []
    for m in trainer.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.register_forward_hook(lambda module, args, out: modes.append((trainer.state.epoch, module.training)))
    trainer.fit(progress=False)
    steps = math.ceil(len(digits.train.x) / 64)
    for epoch in (0, 1):  # the second epoch trains with dropout after the first's validation switched it off
        seen = [training for e, training in modes if e == epoch]
        assert seen.count(True) == 2 * steps and seen.count(False) > 0  # two Dropout modules a step; validation without
    assert not trainer.model.training  # the trained model is handed back for evaluation


def test_epoch_steps_make_an_epoch_a_step_budget_drawn_from_a_fresh_order(tmp_path):
    from vaekit.data.batches import TrainingBatches

    x = torch.arange(1000.0).unsqueeze(1)  # (N, 1): each example its own row number
    batches = TrainingBatches(x, global_batch=64, seed=0, device=torch.device("cpu"), epoch_steps=3)
    assert batches.steps_per_epoch == 3 and len(batches) == 3 * 64
    first, second = ([b.inputs.flatten() for _, b in batches.epoch(e)] for e in (0, 1))
    assert len(first) == 3 and all(len(b) == 64 for b in first)
    assert len(set(torch.cat(first).tolist())) == 192  # without replacement within an epoch
    assert not torch.equal(torch.cat(first), torch.cat(second))  # each epoch its own order
    whole = TrainingBatches(x, global_batch=64, seed=0, device=torch.device("cpu"), epoch_steps=100)
    assert whole.steps_per_epoch == 16 and len(whole) == 1000  # a cap above one pass changes nothing

    run = train(small_config(epochs=2, epoch_steps=4), out=tmp_path / "run", data=load_data("digits"), progress=False)
    assert [row["step"] for row in run.metrics()] == [4, 8]
    with pytest.raises(ConfigError, match="epoch steps must be >= 0"):
        train(small_config(epoch_steps=-1), data=load_data("digits"), progress=False)
