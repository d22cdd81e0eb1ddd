"""The objective seam, proved from one file: an objective registered here (touching no other file)
with a named term of its own and a second module with its own optimizer (a toy adversarial critic
on the codes) trains, is killed and resumed to bit-identical weights, and its term reaches
metrics.csv, the curves and the report."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

import vaekit
from vaekit.config import RunConfig
from vaekit.data import load_data
from vaekit.objectives import ELBO, FRESH, OBJECTIVES, Draws, ELBOTerms, Objective, StepContext
from vaekit.plotting import curve_terms, training_curves
from vaekit.report import write_report
from vaekit.training import Trainer, resume

from helpers import small_config


class Killed(Exception):
    """Stands in for SIGKILL: the process ends between two checkpoints."""


@OBJECTIVES.register("toy-adversarial")
class ToyAdversarial(Objective):
    """The ELBO plus ``weight`` times a critic's score of the posterior mean; the critic, trained
    beside the model with an optimizer of its own, tells posterior means from prior draws."""

    terms = (*ELBOTerms.names, "critic")
    kill_at: int | None = None  # the global step at which the "process" dies (set by the test)

    def __init__(self, latent_dim: int, beta: float = 1.0, weight: float = 0.1):
        super().__init__()
        self.elbo, self.weight, self.beta = ELBO(beta=beta), weight, beta
        self.critic = nn.Sequential(nn.Linear(latent_dim, 16), nn.ReLU(), nn.Linear(16, 1))
        self.steps = 0

    @classmethod
    def from_config(cls, config: RunConfig) -> ToyAdversarial:
        return cls(config.model.latent_dim, beta=config.train.beta)

    def trained_modules(self) -> dict[str, nn.Module]:
        return {"critic": self.critic}

    def forward(self, model, batch, *, beta=None, draws: Draws = FRESH) -> ELBOTerms:
        terms = self.elbo(model, batch, beta=beta, draws=draws)
        score = self.critic(model.encode(batch.inputs).mean).squeeze(-1)  # (B,)
        return ELBOTerms(terms.loss + self.weight * score, terms.reconstruction, terms.kl, extra={"critic": score})

    def step(self, ctx: StepContext, batch, beta):
        terms = super().step(ctx, batch, beta)  # the model's step
        if terms is None:
            return None
        with torch.no_grad():
            codes = ctx.model.encode(batch.inputs).mean  # (B, L)
        logits = self.critic(torch.cat([codes, torch.randn_like(codes)]))  # posterior means, then prior draws
        labels = torch.cat([torch.ones(len(codes), 1), torch.zeros(len(codes), 1)])
        optimizer = ctx.optimizers["critic"]
        optimizer.zero_grad(set_to_none=True)
        nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
        optimizer.step()
        self.steps += 1
        if self.steps == self.kill_at:
            raise Killed
        return terms


def critic_config(epochs: int = 2) -> RunConfig:
    config = small_config(epochs=epochs, objective="toy-adversarial", checkpoint_every=5, threads=1)
    config.model.latent_dim = 2
    return config


def trained(out, data, kill_at: int | None = None):
    ToyAdversarial.kill_at = kill_at
    trainer = Trainer(critic_config(), out, data=data)
    trainer.start_run()
    try:
        return trainer.fit(progress=False)
    finally:
        ToyAdversarial.kill_at = None


def critic_weights(run_dir) -> dict[str, torch.Tensor]:
    saved = vaekit.runs.RunWriter(run_dir).read_checkpoint()
    return {k: v for k, v in saved.optimizer.items() if k.startswith(("module.critic.", "optimizer.critic."))}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("seam")
    trained(root / "whole", digits)
    with pytest.raises(Killed):
        trained(root / "killed", digits, kill_at=17)  # after the checkpoint at step 15, in the second epoch
    resume(root / "killed")
    return root / "whole", root / "killed"


def test_a_killed_run_resumes_to_the_same_weights_of_both_modules(runs):
    whole, killed = runs
    for which in ("last", "best"):
        a, b = vaekit.load(whole, which=which).model.state_dict(), vaekit.load(killed, which=which).model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = critic_weights(whole), critic_weights(killed)
    assert any(k.startswith("module.critic.") for k in a) and any(k.startswith("optimizer.critic.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_its_term_reaches_the_metrics_the_curves_and_the_report(runs, tmp_path):
    whole, killed = runs
    with open(killed / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(r["train_critic"] and r["valid_critic"] for r in rows)
    with open(whole / "metrics.csv", newline="", encoding="utf-8") as f:
        timeless = [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in csv.DictReader(f)]
    assert timeless == [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]  # the same numbers
    metrics = vaekit.load(killed).metrics()
    assert "critic" in curve_terms(metrics)
    with_critic, without = training_curves(metrics), training_curves([{k: v for k, v in r.items() if "critic" not in k} for r in metrics])
    assert with_critic.shape[0] > without.shape[0]  # a row of panels more: the critic's
    page = write_report(vaekit.load(killed), tmp_path / "report.html").read_text(encoding="utf-8")
    assert "train critic" in page and "valid critic" in page
