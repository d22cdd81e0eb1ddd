"""FactorVAE (Kim & Mnih 2018): the ELBO plus γ times a discriminator's estimate of the total
correlation TC = KL(q(z) ‖ Π_j q(z_j)) of the aggregate posterior.

The discriminator D tells codes z ~ q(z|x) of the batch (class 0) from codes whose every unit is
shuffled across the batch on its own (class 1: draws of Π_j q(z_j), each unit's values kept); at its
optimum, logit_0(z) − logit_1(z) = log q(z) / Π_j q(z_j), whose mean over the batch estimates the TC.
The VAE's loss takes that estimate with D fixed (its weights' gradients stopped); D's cross-entropy
takes the codes as fixed (detached). Both are terms of the one forward pass, so one backward gives
each module its own gradient, and under DDP the discriminator's gradients are all-reduced with the
model's; ``step`` then steps both optimizers (as in Locatello et al.'s study: the same batch and
draws, the discriminator's Adam at lr 1e-4, betas (0.5, 0.9)).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from vaekit.config import RunConfig
from vaekit.errors import ConfigError
from vaekit.objectives.base import OBJECTIVES, Draws, StepContext, Terms
from vaekit.objectives.elbo import ELBO, ELBOTerms, LatentBound, check_beta, check_samples
from vaekit.objectives.estimate import Posterior
from vaekit.objectives.regularised import check_nonnegative, codes, require_density

DISCRIMINATOR = "discriminator"  # the trained module's name: its optimizer's, and its checkpoint entries'
LEAKY_SLOPE = 0.2  # the study's leaky ReLU (TensorFlow's default)


def discriminator(latent_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """An MLP z (*, L) -> two logits (*, 2): Linear/leaky ReLU per hidden size, then Linear."""
    layers: list[nn.Module] = []
    width = latent_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.LeakyReLU(LEAKY_SLOPE)]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 2))


def permuted_dims(z: torch.Tensor) -> torch.Tensor:
    """z (*S, B, L) with each unit's values shuffled across the batch, independently per unit (and
    per draw): each column keeps its values, the dependence between columns is broken."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=-2)  # a random permutation per column
    return z.gather(-2, order)


@dataclasses.dataclass
class JointTerms(Terms):
    """The step's view of the terms: ``loss`` is what the one backward takes (the VAE's loss plus the
    discriminator's cross-entropy: each module's gradient comes from its own part); ``reported`` is the
    objective's terms as they are."""

    terms: Terms

    def __post_init__(self):
        reported = self.terms.reported()
        self.loss = reported["loss"] + reported["discriminator_loss"]

    def reported(self) -> dict[str, torch.Tensor]:
        return self.terms.reported()


@OBJECTIVES.register("factor-vae")
class FactorVAE(LatentBound):
    """FactorVAE (see the module docstring).

    latent_dim: L, the size of z (the discriminator's input).
    gamma: γ, the weight of the density-ratio estimate of the total correlation.
    beta: the ELBO's KL weight (1 in the paper).
    hidden: the discriminator's hidden sizes (the study's: 6 layers of 1000).
    lr, betas: the discriminator's Adam learning rate and moment decays (its other settings: the run's).

    Terms (B,), besides the ELBO's: ``total_correlation`` (the discriminator's logit difference at z),
    ``discriminator_accuracy`` (the share of z and of its shuffled copy it classifies right) and
    ``discriminator_loss`` (its cross-entropy on them).
    """

    terms = (*ELBOTerms.names, "total_correlation", "discriminator_accuracy", "discriminator_loss")

    def __init__(
        self,
        latent_dim: int,
        gamma: float = 10.0,
        beta: float = 1.0,
        hidden: tuple[int, ...] = (1000,) * 6,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
    ):
        super().__init__()
        check_beta(beta)
        check_nonnegative(factor_gamma=gamma)
        if not all(h >= 1 for h in hidden):
            raise ConfigError(f"--discriminator-hidden sizes must be at least 1, got {' '.join(map(str, hidden))}")
        if not lr > 0:
            raise ConfigError(f"--discriminator-lr must be positive, got {lr}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"--discriminator-betas must be two numbers in [0, 1), got {' '.join(map(str, betas))}")
        self.elbo, self.gamma, self.beta, self.lr, self.betas = ELBO(beta=beta), gamma, beta, lr, tuple(betas)
        self.discriminator = discriminator(latent_dim, tuple(hidden))

    @classmethod
    def from_config(cls, config: RunConfig) -> FactorVAE:
        t = config.train
        require_density(config, cls.name)
        check_samples(t.n_samples, 1)
        return cls(config.model.latent_dim, t.factor_gamma, t.beta, t.discriminator_hidden, t.discriminator_lr, t.discriminator_betas)

    def trained_modules(self) -> dict[str, nn.Module]:
        return {DISCRIMINATOR: self.discriminator}

    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        terms = self.elbo.estimate(model, batch, posterior, beta, draws)
        z = codes(posterior.q, draws)  # (S, B, L)
        fixed = {name: p.detach() for name, p in self.discriminator.named_parameters()}  # the VAE's loss moves z, not D
        logits = torch.func.functional_call(self.discriminator, fixed, (z,)).float()  # (S, B, 2)
        tc = (logits[..., 0] - logits[..., 1]).mean(0)  # log q(z) / Π_j q(z_j) (B,)
        loss, accuracy = self.discriminated(z.detach())
        extra = {"total_correlation": tc, "discriminator_accuracy": accuracy, "discriminator_loss": loss}
        return ELBOTerms(terms.loss + self.gamma * tc, terms.reconstruction, terms.kl, terms.squared_error, extra)

    def discriminated(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's cross-entropy and accuracy (B,) on the codes z (S, B, L) (class 0) and
        their units shuffled (class 1), each example's the mean of its two."""
        logits = self.discriminator(torch.stack([z, permuted_dims(z)])).float()  # (2, S, B, 2)
        labels = torch.arange(2, device=z.device).view(2, 1, 1).expand(logits.shape[:-1])  # (2, S, B)
        loss = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none").view(labels.shape)
        right = (logits.argmax(-1) == labels).to(loss.dtype)
        return loss.mean((0, 1)), right.mean((0, 1))

    def step(self, ctx: StepContext, batch, beta: float | torch.Tensor) -> Terms | None:
        """The model's step with the discriminator's cross-entropy in the same backward (its gradients
        checked, and clipped where the run clips, with the model's), then the discriminator's Adam step."""
        optimizer = ctx.optimizers[DISCRIMINATOR]
        for group in optimizer.param_groups:  # its own rate and decays (saved and restored with its state)
            group["lr"], group["betas"] = self.lr, self.betas
        optimizer.zero_grad(set_to_none=True)
        own = list(self.discriminator.parameters())
        joint = dataclasses.replace(
            ctx,
            loss=lambda b, w: JointTerms(ctx.loss(b, w)),
            healthy=lambda loss, params: ctx.healthy(loss, params) and ctx.healthy(loss, own),
        )
        terms = super().step(joint, batch, beta)  # the model's step (its forward and backward reach both modules)
        if terms is None:
            optimizer.zero_grad(set_to_none=True)
            return None
        with ctx.guarded(optimizer):
            optimizer.step()
        return terms
