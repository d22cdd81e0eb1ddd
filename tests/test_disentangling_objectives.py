"""The disentangling objectives of Locatello et al. 2019's study, each one registered file on the
objective seam (β-TCVAE, FactorVAE, DIP-VAE-I and -II, AnnealedVAE), and the study's network: their
estimates against hand computations, their schedules and second modules across a resume, their
terms in metrics.csv, and their settings' one-line refusals."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch.distributions import Independent, Normal

import vaekit
from vaekit.cli import build_parser
from vaekit.cli.train import config_from_args
from vaekit.config import ModelConfig
from vaekit.data import load_data
from vaekit.data.base import Batch
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.models.distributions import DiagonalNormal
from vaekit.objectives import DIPVAEI, DIPVAEII, ELBO, AnnealedVAE, BetaTCVAE, ELBOTerms, FactorVAE, objective_from_config
from vaekit.objectives.dipvae import dip_penalty
from vaekit.objectives.factorvae import DISCRIMINATOR, permuted_dims
from vaekit.objectives.regularised import per_example
from vaekit.objectives.tcvae import MSS, MWS, decomposition, log_weights
from vaekit.settings import check
from vaekit.training import Trainer, resume

from helpers import fit_until_crash, small_config

OBJECTIVES = (BetaTCVAE, FactorVAE, DIPVAEI, DIPVAEII, AnnealedVAE)
OWN_TERMS = {
    BetaTCVAE: ("mutual_info", "total_correlation", "dimwise_kl"),
    FactorVAE: ("total_correlation", "discriminator_accuracy", "discriminator_loss"),
    DIPVAEI: ("covariance_penalty",),
    DIPVAEII: ("covariance_penalty",),
    AnnealedVAE: ("capacity",),
}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def config_of(objective: type, epochs: int = 2, **train):
    """A small digits run of ``objective`` (a small discriminator, a capacity ramp within the run)."""
    settings = {"discriminator_hidden": (32, 32), "capacity_steps": 30, "capacity_gamma": 10.0} | train
    return small_config(epochs=epochs, objective=objective.name, threads=1, **settings)


def brute_force(mu, std, z, n, estimator):
    """log q(z_i), Σ_d log q(z_i,d) and log q(z_i|x_i) by loops over the batch, each weight written out."""
    b, dims = mu.shape
    density = [[[Normal(mu[j, d], std[j, d]).log_prob(z[i, d]).exp().item() for d in range(dims)] for j in range(b)] for i in range(b)]

    def weight(i, j):
        if estimator == MWS:
            return 1 / (n * b)
        if i == j:
            return 1 / n
        return (n - b + 1) / (n * (b - 1)) if j == (i + 1) % b else 1 / (b - 1)

    log_qz, log_units, log_own = [], [], []
    for i in range(b):
        log_qz.append(math.log(sum(weight(i, j) * math.prod(density[i][j]) for j in range(b))))
        log_units.append(sum(math.log(sum(weight(i, j) * density[i][j][d] for j in range(b))) for d in range(dims)))
        log_own.append(sum(math.log(v) for v in density[i][i]))
    return (torch.tensor(v, dtype=torch.float64) for v in (log_qz, log_units, log_own))


# ----- β-TCVAE ------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [MWS, MSS])
def test_tcvae_terms_match_a_hand_computation(estimator):
    torch.manual_seed(0)
    mu, logvar, n = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64) * 0.3, 20
    q = DiagonalNormal(mu, logvar)
    p = Independent(Normal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)), 1)
    z = q.sample()  # (5, 3)
    mi, tc, dimkl = decomposition(q, p, z, n, estimator)
    log_qz, log_units, log_own = brute_force(mu, q.stddev, z, n, estimator)
    torch.testing.assert_close(mi, log_own - log_qz)
    torch.testing.assert_close(tc, log_qz - log_units)
    torch.testing.assert_close(dimkl, log_units - p.log_prob(z))
    torch.testing.assert_close(mi + tc + dimkl, q.log_prob(z) - p.log_prob(z))  # the KL's one-draw estimate, whatever the estimator


def test_the_two_estimators_differ_and_mss_weights_add_up_to_one():
    like = torch.zeros(())
    assert torch.allclose(log_weights(MSS, 6, 50, like).exp().sum(1), torch.ones(6))
    assert torch.allclose(log_weights(MWS, 6, 50, like).exp().sum(1), torch.full((6,), 1 / 50))  # the paper's MWS: 1/N
    assert torch.allclose(log_weights(MSS, 1, 50, like).exp(), torch.tensor([[1 / 50]]))


def test_tcvae_at_unit_weights_is_the_elbo_and_its_terms_average_to_the_kl():
    config = small_config(objective=BetaTCVAE.name)
    config.model.input_shape = (1, 8, 8)
    model = build_model(config.model)
    x = torch.rand(16, 1, 8, 8).round()
    batch = Batch(x, x)
    torch.manual_seed(1)
    elbo = ELBO()(model, batch)
    torch.manual_seed(1)
    tcvae = BetaTCVAE(dataset_size=100)(model, batch)
    torch.testing.assert_close(tcvae.loss, elbo.loss)  # α = β = γ = 1: the ELBO exactly
    torch.testing.assert_close(tcvae.neg_elbo, elbo.neg_elbo)
    q, p = model.encode(x), model.prior()
    draws = q.sample((4000,))  # (S, B, L)
    total = torch.stack([sum(decomposition(q, p, z, 100, MSS)) for z in draws]).mean(0)
    torch.testing.assert_close(total, elbo.kl, atol=0.1, rtol=0.05)
    weighted = BetaTCVAE(dataset_size=100, beta=6.0, estimator=MSS)(model, batch)
    tc = weighted.extra["total_correlation"]
    assert torch.isfinite(weighted.loss).all() and torch.equal(weighted.neg_elbo, weighted.kl - weighted.reconstruction)
    assert tc.shape == (16,)


# ----- FactorVAE ----------------------------------------------------------------------------
def test_the_permutation_keeps_each_unit_and_breaks_their_dependence():
    torch.manual_seed(0)
    column = torch.randn(500, 1)
    z = torch.cat([column, column, -column], 1)  # three units, perfectly dependent
    shuffled = permuted_dims(z)
    assert torch.equal(shuffled.sort(0).values, z.sort(0).values)  # each column keeps its values
    corr = torch.corrcoef(shuffled.T)
    assert corr[0, 1].abs() < 0.15 and corr[0, 2].abs() < 0.15
    draws = permuted_dims(torch.stack([z, z]))  # (S, B, L): each draw shuffled on its own
    assert not torch.equal(draws[0], draws[1])


def discriminator_entries(run_dir) -> dict[str, torch.Tensor]:
    saved = vaekit.runs.RunWriter(run_dir).read_checkpoint()
    return {k: v for k, v in saved.optimizer.items() if k.startswith((f"module.{DISCRIMINATOR}.", f"optimizer.{DISCRIMINATOR}."))}


def test_factor_vae_trains_its_discriminator_and_resumes_bit_identically(tmp_path, digits):
    config = config_of(FactorVAE, checkpoint_every=5)
    whole = Trainer(config, tmp_path / "whole", data=digits)
    initial = {k: v.clone() for k, v in whole.objective.discriminator.state_dict().items()}
    whole.start_run()
    whole.fit(progress=False)
    killed = Trainer(config, tmp_path / "killed", data=digits)
    killed.start_run()
    fit_until_crash(killed, 6, progress=False)
    assert killed.state.epoch == 1 and killed.state.step_in_epoch  # killed in the second epoch
    resume(tmp_path / "killed")
    a, b = discriminator_entries(tmp_path / "whole"), discriminator_entries(tmp_path / "killed")
    assert any(k.startswith("optimizer.") for k in a) and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[f"module.{DISCRIMINATOR}.{k}"], v) for k, v in initial.items())  # it was trained
    lr = {g["lr"] for g in whole.optimizers[DISCRIMINATOR].param_groups}
    assert lr == {config.train.discriminator_lr}
    for which in ("last", "best"):
        ma, mb = (
            vaekit.load(tmp_path / "whole", which=which).model.state_dict(),
            vaekit.load(tmp_path / "killed", which=which).model.state_dict(),
        )
        assert all(torch.equal(ma[k], mb[k]) for k in ma)


# ----- DIP-VAE ------------------------------------------------------------------------------
def test_dip_penalty_is_zero_for_a_decorrelated_unit_variance_code():
    signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # (4, 2): mean 0, variance 1, uncorrelated
    means_only = DiagonalNormal(signs, torch.full((4, 2), -30.0))  # σ² ≈ 0
    assert DIPVAEI.covariance(means_only).allclose(torch.eye(2))
    assert dip_penalty(DIPVAEI.covariance(means_only), 10.0, 100.0).item() == pytest.approx(0.0, abs=1e-8)
    assert dip_penalty(DIPVAEI.covariance(DiagonalNormal(signs * 2, torch.zeros(4, 2))), 1.0, 1.0) > 0  # variance 4
    tilted = torch.stack([signs[:, 0], signs[:, 0] * 0.5 + signs[:, 1]], 1)  # correlated
    assert dip_penalty(DIPVAEI.covariance(DiagonalNormal(tilted, torch.zeros(4, 2))), 1.0, 0.0) > 0
    # II adds the posterior variances: means of variance 0.75 with σ² = 0.25 make the aggregate's identity
    aggregate = DiagonalNormal(signs * math.sqrt(0.75), torch.full((4, 2), math.log(0.25)))
    assert dip_penalty(DIPVAEII.covariance(aggregate), 10.0, 10.0).item() == pytest.approx(0.0, abs=1e-8)
    assert dip_penalty(DIPVAEI.covariance(aggregate), 10.0, 10.0).item() == pytest.approx(2 * 0.25**2 * 10)


def test_dip_defaults_follow_the_study():
    assert (DIPVAEI(lambda_od=2.0).lambda_d, DIPVAEII(lambda_od=2.0).lambda_d, DIPVAEI(2.0, 3.0).lambda_d) == (20.0, 2.0, 3.0)


def test_dip_penalty_gradient_is_the_batch_penalty():
    torch.manual_seed(0)
    mu = torch.randn(8, 3, requires_grad=True)
    q = DiagonalNormal(mu, torch.zeros(8, 3))
    objective = DIPVAEI(lambda_od=1.0)
    terms = ELBOTerms(torch.zeros(8), torch.zeros(8), torch.zeros(8))
    per = per_example(dip_penalty(objective.covariance(q), 1.0, 10.0), terms.loss)
    (grad_mean,) = torch.autograd.grad(per.sum() / 8, mu)  # the step's mean over the batch
    (grad_penalty,) = torch.autograd.grad(dip_penalty(objective.covariance(q), 1.0, 10.0), mu)
    torch.testing.assert_close(grad_mean, grad_penalty)


# ----- AnnealedVAE --------------------------------------------------------------------------
def test_capacity_rises_linearly_then_stays():
    objective = AnnealedVAE(gamma=1000.0, capacity_max=25.0, capacity_steps=100_000)
    assert [objective.capacity_at(s) for s in (0, 50_000, 100_000, 300_000)] == [0.0, 12.5, 25.0, 25.0]
    assert AnnealedVAE(capacity_max=5.0, capacity_steps=0).capacity_at(0) == 5.0
    assert objective.capacity.item() == 25.0  # outside training: C_max


def test_annealed_vae_resumes_with_the_restored_step(tmp_path, digits):
    config = config_of(AnnealedVAE, checkpoint_every=5)
    whole = vaekit.training.train(config, tmp_path / "whole", data=digits)
    killed = Trainer(config, tmp_path / "killed", data=digits)
    killed.start_run()
    fit_until_crash(killed, 6, progress=False)
    assert killed.state.epoch == 1 and killed.state.step_in_epoch  # killed in the second epoch
    resumed = resume(tmp_path / "killed")
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    schedule = AnnealedVAE.from_config(config)
    for row in resumed.metrics():  # validation uses the C of the epoch's last step
        assert row["valid_capacity"] == pytest.approx(schedule.capacity_at(row["step"] - 1))
    assert resumed.metrics()[0]["valid_capacity"] < config.train.capacity_max == resumed.metrics()[1]["valid_capacity"]


# ----- every objective, end to end ----------------------------------------------------------
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.name)
def test_each_objective_trains_and_reports_its_terms(objective, tmp_path, digits):
    config = config_of(objective)
    trainer = Trainer(config, tmp_path / "run", data=digits)
    batch = next(iter(trainer.batches.epoch(0)))[1]
    trainer.objective(trainer.model, batch).loss.mean().backward()
    grads = [p.grad for p in [*trainer.model.parameters(), *trainer.objective.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    trainer.model.zero_grad(set_to_none=True)
    trainer.objective.zero_grad(set_to_none=True)
    trainer.start_run()
    trainer.fit(progress=False)
    with open(tmp_path / "run" / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for name in ("loss", "neg_elbo", *OWN_TERMS[objective]):
        for split in ("train", "valid"):
            assert all(math.isfinite(float(r[f"{split}_{name}"])) for r in rows), (split, name)


# ----- the study's network ------------------------------------------------------------------
def test_the_study_network_shapes_and_a_training_step():
    torch.manual_seed(0)
    config = ModelConfig(arch="study-conv", input_shape=(1, 64, 64), latent_dim=10)
    model = build_model(config)
    assert model.encoder.out_features == 256
    x = torch.rand(4, 1, 64, 64).round()
    q = model.encode(x)
    assert q.mean.shape == (4, 10)
    assert model.decode(q.rsample()).mean.shape == (4, 1, 64, 64)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = ELBO()(model, Batch(x, x)).loss.mean()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    wide = build_model(ModelConfig(arch="study-conv", input_shape=(3, 32, 48), latent_dim=4))
    assert wide.decode(torch.zeros(2, 4)).mean.shape == (2, 3, 32, 48)
    with pytest.raises(ConfigError, match="multiples of 16"):
        build_model(ModelConfig(arch="study-conv", input_shape=(1, 28, 28)))


# ----- settings -----------------------------------------------------------------------------
def refused(message: str, **settings) -> None:
    model = {k: settings.pop(k) for k in ("kind", "flow", "latent_layers") if k in settings}
    config = small_config(**settings)
    for k, v in model.items():
        setattr(config.model, k, v)
    with pytest.raises(ConfigError, match=message) as caught:
        check(config)
    assert "\n" not in str(caught.value)


def test_bad_settings_are_refused_in_one_line():
    refused("--mi-weight must be >= 0", objective=BetaTCVAE.name, mi_weight=-1.0)
    refused("--beta must be >= 0|beta must be >= 0", objective=BetaTCVAE.name, beta=-1.0)
    refused("needs a diagonal Gaussian posterior", objective=BetaTCVAE.name, flow="iaf")
    refused("needs a posterior with a density", objective=BetaTCVAE.name, kind="ae")
    refused("needs a posterior with a density .*--model ae", objective=FactorVAE.name, kind="ae")
    refused("--factor-gamma must be >= 0", objective=FactorVAE.name, factor_gamma=-2.0)
    refused("--discriminator-lr must be positive", objective=FactorVAE.name, discriminator_lr=0.0)
    refused("--discriminator-betas", objective=FactorVAE.name, discriminator_betas=(0.5, 1.0))
    refused("--dip-lambda-d must be >= 0", objective=DIPVAEII.name, dip_lambda_d=-1.0)
    refused("needs a diagonal Gaussian posterior", objective=DIPVAEI.name, latent_layers=(2, 2))
    refused("--capacity-steps must be >= 0", objective=AnnealedVAE.name, capacity_steps=-1)
    refused("--tc-dataset-size must be at least 1", objective=BetaTCVAE.name, tc_dataset_size=0)
    assert isinstance(objective_from_config(small_config(objective=DIPVAEII.name)), DIPVAEII)


def test_a_setting_of_another_objective_is_reported_as_taking_no_effect():
    parser = build_parser(full=["train"])
    with pytest.raises(ConfigError, match=f"--mi-weight has no effect without --objective {BetaTCVAE.name}"):
        config_from_args(parser.parse_args(["train", "--mi-weight", "2"]))
    with pytest.raises(ConfigError, match="--beta has no effect without"):
        config_from_args(parser.parse_args(["train", "--objective", AnnealedVAE.name, "--beta", "4"]))
    config = config_from_args(parser.parse_args(["train", "--objective", DIPVAEII.name, "--dip-lambda-od", "5"]))
    assert (config.train.objective, config.train.dip_lambda_od) == (DIPVAEII.name, 5.0)
