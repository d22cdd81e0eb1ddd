"""β-TCVAE (Chen, Li, Grosse & Duvenaud 2018): the ELBO's KL split into three parts, each weighted,

    E_p(x) KL(q(z|x) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ Π_j q(z_j)) + Σ_j KL(q(z_j) ‖ p(z_j)),

the index-code mutual information (MI), the total correlation (TC) and the dimension-wise KL, where
q(z) = (1/N) Σ_n q(z|x_n) is the aggregate posterior over the N training examples. Per example, at a
draw z ~ q(z|x):

    MI = log q(z|x) − log q(z),   TC = log q(z) − Σ_j log q(z_j),   dim-wise KL = Σ_j log q(z_j) − log p(z),

which add up to log q(z|x) − log p(z), a one-draw estimate of the KL, whatever estimates of log q(z)
and log q(z_j) enter. Those come from the minibatch of M examples, with the matrix log q(z_i|x_j):

- minibatch-weighted sampling (``mws``, the paper's eq. S6): log q(z_i) ≈ log Σ_j q(z_i|x_j) − log(N·M).
  Its weights add up to 1/N, not 1 (as in the paper and its code): log q(z) and each log q(z_j) are
  low by about log N, so the reported MI is high by log N, the TC by (L − 1)·log N and the dim-wise
  KL low by L·log N (their sum, and every gradient, are as they would be without the offset);
- minibatch-stratified sampling (``mss``, eq. S7): weight 1/N on the example's own x_i, (N − M')/(N·M')
  on one other (the next in the batch, cyclically) and 1/M' on the remaining M' − 1, M' = M − 1;
  the weights add up to 1. (The paper's code gives the last row no stratum weight and the one
  before it two; here every row has one.)

The loss is −E_q log p(x|z) + KL + (α − 1)·MI + (β − 1)·TC + (γ − 1)·dim-wise KL, with the KL in
closed form: equal in expectation to the paper's −E_q log p(x|z) + α·MI + β·TC + γ·dim-wise KL (the
three terms add up to an estimate of the KL), with a lower variance, and the ELBO exactly at
α = β = γ = 1; ``neg_elbo`` stays the true negative ELBO.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Normal

from vaekit.config import TC_ESTIMATORS, RunConfig
from vaekit.errors import ConfigError
from vaekit.objectives.base import OBJECTIVES, Draws
from vaekit.objectives.elbo import ELBO, ELBOTerms, LatentBound, check_samples
from vaekit.objectives.estimate import Posterior
from vaekit.objectives.regularised import check_nonnegative, codes, require_gaussian

MWS, MSS = TC_ESTIMATORS


def log_weights(estimator: str, batch: int, dataset_size: int, like: torch.Tensor) -> torch.Tensor:
    """log w (M, M): the weight of q(z_i|x_j) in the estimate of q(z_i) (row i), for a batch of M = ``batch``
    examples drawn from ``dataset_size`` (N). A batch larger than N (an evaluation's) is taken as the data."""
    n, m = max(dataset_size, batch), batch
    if estimator == MWS:
        return torch.full((m, m), -math.log(n * m), dtype=like.dtype, device=like.device)
    if m == 1:
        return torch.full((1, 1), -math.log(n), dtype=like.dtype, device=like.device)
    others = m - 1
    w = torch.full((m, m), 1 / others, dtype=torch.float64)
    w.fill_diagonal_(1 / n)
    rows = torch.arange(m)
    w[rows, (rows + 1) % m] = (n - others) / (n * others)  # the stratum of the examples not in the batch
    return w.log().to(like)


def decomposition(q: Distribution, p: Distribution, z: torch.Tensor, dataset_size: int, estimator: str) -> tuple[torch.Tensor, ...]:
    """(MI, TC, dim-wise KL), each (B,), at the draws z (B, L) of the diagonal Gaussian q(z|x) (batch (B,))."""
    units = Normal(q.mean.unsqueeze(0), q.stddev.unsqueeze(0))
    log_q_units = units.log_prob(z.unsqueeze(1))  # (B, B, L): log q(z_i,d | x_j) at [i, j, d]
    log_w = log_weights(estimator, len(z), dataset_size, z)  # (B, B)
    log_qz = torch.logsumexp(log_w + log_q_units.sum(-1), dim=1)  # log q(z_i) (B,)
    log_qz_units = torch.logsumexp(log_w.unsqueeze(-1) + log_q_units, dim=1).sum(-1)  # Σ_d log q(z_i,d) (B,)
    log_qzx = log_q_units.diagonal(dim1=0, dim2=1).sum(0)  # log q(z_i|x_i) (B,)
    return log_qzx - log_qz, log_qz - log_qz_units, log_qz_units - p.log_prob(z)


@OBJECTIVES.register("beta-tcvae")
class BetaTCVAE(LatentBound):
    """β-TCVAE (see the module docstring), the weights and the estimator as settings.

    dataset_size: N, the examples of the aggregate posterior (``resolve`` fills in the training examples).
    beta: β, the weight of the total correlation (the warm-up's β, when there is one).
    mi_weight, dimkl_weight: α and γ, the weights of the mutual information and the dimension-wise KL.
    estimator: ``mws`` (minibatch-weighted sampling) or ``mss`` (minibatch-stratified sampling).

    Terms (B,), besides the ELBO's: ``mutual_info``, ``total_correlation``, ``dimwise_kl``.
    """

    terms = (*ELBOTerms.names, "mutual_info", "total_correlation", "dimwise_kl")

    def __init__(
        self, dataset_size: int | None, beta: float = 1.0, mi_weight: float = 1.0, dimkl_weight: float = 1.0, estimator: str = MSS
    ):
        super().__init__()
        check_nonnegative(beta=beta, mi_weight=mi_weight, dimkl_weight=dimkl_weight)
        if estimator not in TC_ESTIMATORS:
            raise ConfigError(f"--tc-estimator must be one of {', '.join(TC_ESTIMATORS)}, got {estimator!r}")
        if dataset_size is not None and dataset_size < 1:
            raise ConfigError(f"--tc-dataset-size must be at least 1, got {dataset_size}")
        self.elbo = ELBO()
        self.dataset_size, self.beta, self.mi_weight, self.dimkl_weight, self.estimator = (
            dataset_size,
            beta,
            mi_weight,
            dimkl_weight,
            estimator,
        )

    @classmethod
    def from_config(cls, config: RunConfig) -> BetaTCVAE:
        t = config.train
        require_gaussian(config, cls.name)
        check_samples(t.n_samples, 1)
        return cls(t.tc_dataset_size, beta=t.beta, mi_weight=t.mi_weight, dimkl_weight=t.dimkl_weight, estimator=t.tc_estimator)

    @classmethod
    def resolve(cls, config: RunConfig, data) -> None:
        """N: the training examples, unless the run gives it."""
        if config.train.tc_dataset_size is None:
            config.train.tc_dataset_size = len(data.train)

    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        if self.dataset_size is None:
            raise ConfigError(f"{self.name} needs the dataset size N (--tc-dataset-size; training fills it in from the data)")
        terms = self.elbo.estimate(model, batch, posterior, 1.0, draws)  # −E log p(x|z) + KL (closed form where registered)
        z = codes(posterior.q, draws)  # (S, B, L)
        parts = [decomposition(posterior.q, posterior.p, z_s, self.dataset_size, self.estimator) for z_s in z]
        mi, tc, dimkl = (torch.stack(values).mean(0) for values in zip(*parts))  # (B,) each
        loss = terms.loss + (self.mi_weight - 1) * mi + (beta - 1) * tc + (self.dimkl_weight - 1) * dimkl
        extra = {"mutual_info": mi, "total_correlation": tc, "dimwise_kl": dimkl}
        return ELBOTerms(loss, terms.reconstruction, terms.kl, terms.squared_error, extra)
