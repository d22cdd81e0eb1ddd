"""The semi-supervised bound of Kingma, Rezende, Mohamed & Welling 2014 (M2), for partly labelled data.

The model is p(y) p(z) p(x|y, z) with q(y|x) q(z|x, y) (``vaekit.models.kinds.SemiSupervised``), p(y)
uniform over K classes. A labelled example (x, y) has the bound

    L(x, y) = E_q(z|x,y)[log p(x|y, z)] − β·KL(q(z|x, y) ‖ p(z)) + log p(y)  ≤ log p(x, y),

and an unlabelled one sums its label out exactly:

    U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x))  ≤ log p(x).

Training minimises −U on unlabelled examples and −L + α·(−log q(y|x)) on labelled ones, so the
classifier also learns from the labels directly. The K classes of an unlabelled example and the one
class of a labelled example are one batch of (example, class) pairs through the encoder and decoder:
one pass, no loop over classes.

With an auxiliary variable a (Maaløe et al. 2016's ADGM, ``vaekit.models.auxiliary``), one draw
a ~ q(a|x) per example is shared by its classes: L(x, y) gains log p(a|x, y, z) − log q(a|x), and the
classifier and the encoder read a: U(x) = Σ_y q(y|a, x) L(x, y, a) + H(q(y|a, x)), a bound on log p(x)
in expectation over a. The error is that of the classifier at E_q[a|x], the prediction vaekit makes.

An optional term, not the paper's, weighs γ·KL(q̄(y) ‖ p(y)): q̄(y) the mean of q(y|x) over the batch's
unlabelled examples. The bound constrains each q(y|x) against p(y) but not their aggregate, so with
few labels q(y|x) can hand a whole cluster of one class to another (MNIST, 100 labels: 311 of 1,009
test nines called sevens, q̄(7) = 0.14 and q̄(9) = 0.07); the term penalises that drift of the marginal.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from vaekit.config import RunConfig
from vaekit.errors import ConfigError
from vaekit.models import MODEL_KINDS
from vaekit.objectives.base import FRESH, OBJECTIVES, Draws, Objective
from vaekit.objectives.elbo import ELBOTerms, check_beta, check_samples
from vaekit.objectives.estimate import chunks, closed_form_kl, sample_count, squared_error, weighted

PAPER_ALPHA = 0.1  # α = 0.1·N in the paper's sum over the data: 0.1 × (examples / labelled examples) per labelled example


@OBJECTIVES.register("m2")
class SemiSupervisedBound(Objective):
    """The M2 objective (see the module docstring), β and α as settings.

    alpha: the weight of −log q(y|x) of a labelled example, against one example's bound (the paper's
        α = 0.1·N is ``PAPER_ALPHA`` × training examples / labelled ones: ``resolve`` fills it in). Per
        draw: with labelled examples filling half of every training batch, the paper's balance of the
        two is α = 0.2 (``RunConfig.train.alpha``'s docstring).
    beta: the weight of the KL term (1: the bound).
    balance: γ, the weight of KL(q̄(y) ‖ p(y)) per batch (the module docstring; 0: off, the paper's objective).

    Terms (B,): ``neg_elbo`` = −L(x, y) of a labelled example (a bound on −log p(x, y)), −U(x) of an
    unlabelled one (on −log p(x)); ``reconstruction`` and ``kl`` its two parts (for an unlabelled
    example averaged over q(y|x), with KL(q(y|x) ‖ p(y)) in ``kl``; for a labelled one −log p(y) in
    ``kl``; with an auxiliary variable, ``kl`` also holds log q(a|x) − log p(a|x, y, z));
    ``classification`` = −log q(y|x) and ``error`` = [argmax q(y|x) ≠ y] of the labelled examples, scaled
    by B / (labelled examples in the batch) so that a batch's mean is the labelled examples' mean (0 for
    an unlabelled one). A batch without labels (``context`` None) is all unlabelled.
    """

    terms = (*ELBOTerms.names, "classification", "error")
    monitor: ClassVar[str] = "error"  # validation error picks the best epoch and stops early

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, balance: float = 0.0):
        super().__init__()
        check_beta(beta)
        if not alpha >= 0:
            raise ConfigError(f"alpha must be >= 0, got {alpha}")
        if not balance >= 0:
            raise ConfigError(f"class balance must be >= 0, got {balance}")
        self.alpha, self.beta, self.balance = alpha, beta, balance

    @classmethod
    def from_config(cls, config: RunConfig) -> SemiSupervisedBound:
        t = config.train
        if MODEL_KINDS[config.model.kind].objective != cls.name:
            raise ConfigError(f"the {cls.name} objective needs a semi-supervised model with a classifier (--model m2)")
        check_samples(t.n_samples, 1)
        return cls(alpha=1.0 if t.alpha is None else t.alpha, beta=t.beta, balance=t.class_balance)

    @classmethod
    def resolve(cls, config: RunConfig, data) -> None:
        """Fill in the paper's α from the training split (``alpha`` None): 0.1 × examples / labelled ones."""
        labelled = data.train.labelled
        if labelled is None or not bool(labelled.any()):
            raise ConfigError(f"--model m2 needs some labelled training examples, and {config.data.source} has none")
        counts = torch.bincount(data.train.y[labelled], minlength=config.model.context_dim)
        if bool((counts == 0).any()):
            missing = ", ".join(str(c) for c in (counts == 0).nonzero().flatten().tolist())
            raise ConfigError(f"--model m2 needs a labelled training example of every class, and class {missing} has none")
        if config.train.alpha is None:
            config.train.alpha = PAPER_ALPHA * len(data.train) / int(labelled.sum())

    def forward(self, model, batch, *, beta: float | torch.Tensor | None = None, draws: Draws = FRESH) -> ELBOTerms:
        beta = self.beta if beta is None else beta
        qa = None if model.auxiliary is None else model.encode_auxiliary(batch.inputs)  # q(a|x), batch (B,)
        a = None if qa is None else qa.rsample()  # (B, A), one draw shared by the example's classes
        qy = model.classify(batch.inputs, a)  # batch (B,), K classes
        log_qy = qy.logits  # (B, K) normalised log-probabilities
        y = batch.context if batch.context is not None else torch.full(log_qy.shape[:1], -1, device=log_qy.device)
        known = batch.labelled if batch.labelled is not None else y >= 0  # (B,)
        rows, classes, pairs_of = example_class_pairs(known, y, model.classes)  # (M,), (M,)
        rec, kl, error_sq, log_pa = pair_terms(model, batch, rows, classes, draws, a)  # (M,) each
        log_qy = log_qy.to(rec.dtype)  # the bound's dtype (float32 under bf16 autocast, whose matrix products give bf16 logits)
        if a is not None:
            kl = kl + qa.log_prob(a)[rows] - log_pa  # log q(a|x) − log p(a|x, y, z)
        kl = kl + math.log(model.classes)  # −log p(y), uniform p(y)
        unlabelled = pairs_of.shape[0]
        n_known = len(rows) - unlabelled * model.classes
        rec_u = rec[n_known:].view(unlabelled, model.classes)  # (U, K)
        kl_u = kl[n_known:].view(unlabelled, model.classes)
        q_u = log_qy[~known].exp()  # (U, K)
        entropy = -(q_u * log_qy[~known]).sum(-1)  # H(q(y|x)) (U,)
        reconstruction = torch.empty_like(log_qy[:, 0])
        kl_all = torch.empty_like(reconstruction)
        reconstruction[known], kl_all[known] = rec[:n_known], kl[:n_known]
        reconstruction[~known] = (q_u * rec_u).sum(-1)
        kl_all[~known] = (q_u * kl_u).sum(-1) - entropy  # Σ_y q(y|x) [KL_z + log K] − H(q)
        loss = weighted(kl_all, beta) - reconstruction
        if self.balance and unlabelled:  # γ·KL(q̄(y) ‖ p(y)), spread over the unlabelled rows so the batch's mean carries it
            loss = loss + (~known) * (self.balance * marginal_kl(q_u) * len(known) / unlabelled)
        scale = len(known) / known.sum().clamp(min=1)  # a batch's mean over the labelled examples
        nll = torch.where(known, -log_qy.gather(1, y.clamp(min=0)[:, None])[:, 0], torch.zeros_like(loss))  # −log q(y|x) (B,)
        if a is None:
            predicted = log_qy
        else:
            with torch.no_grad():  # a reported figure only: no graph for it
                predicted = model.classify(batch.inputs, qa.mean).logits  # at E_q[a|x]
        wrong = (predicted.argmax(-1) != y) & known
        extra = {"classification": nll * scale, "error": wrong.to(loss.dtype) * scale}
        error = None if error_sq is None else scatter_mean(error_sq, known, n_known, q_u)
        return ELBOTerms(loss=loss + self.alpha * nll, reconstruction=reconstruction, kl=kl_all, squared_error=error, extra=extra)


def marginal_kl(q: torch.Tensor) -> torch.Tensor:
    """KL(q̄ ‖ uniform) () of the mean q̄ (K,) of the class probabilities q (U, K)."""
    mean = q.mean(0)
    return (mean * (mean * q.shape[1]).clamp_min(torch.finfo(q.dtype).tiny).log()).sum()


def example_class_pairs(known: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (example, class) pairs whose bound L(x, y) is needed: each labelled example with its label,
    then each unlabelled example with every class. Returns rows (M,) into the batch, classes (M,), and
    the unlabelled examples' rows (U,)."""
    labelled_rows = known.nonzero().flatten()  # (B_l,)
    unlabelled_rows = (~known).nonzero().flatten()  # (U,)
    every = torch.arange(classes, device=y.device)
    rows = torch.cat([labelled_rows, unlabelled_rows.repeat_interleave(classes)])  # (B_l + U·K,)
    labels = torch.cat([y[labelled_rows], every.repeat(len(unlabelled_rows))])
    return rows, labels, unlabelled_rows


def pair_terms(model, batch, rows: torch.Tensor, classes: torch.Tensor, draws: Draws, a: torch.Tensor | None = None):
    """E_q[log p(x|y, z)] and KL(q(z|x, y) ‖ p(z)) (M,) of each (example, class) pair, one batched pass;
    also E_q ||x − E[x|y, z]||² where the draws ask for it (else None). With the auxiliary variable's draw
    ``a`` (B, A): q(z|a, x, y), and E_q[log p(a|x, y, z)] (M,) (else None)."""
    target = batch.target[rows]  # (M, *shape)
    q = model.encode_pairs(batch.inputs, rows, classes, a)  # each example read once by the encoder's first layer
    p = model.prior()
    kl = closed_form_kl(q, p)  # the Gaussian posterior against N(0, I): closed form
    total = sample_count(1, draws)
    rec_sum = error_sum = log_pa_sum = 0.0
    y = None if a is None else model.condition(classes, rows.shape).to(a.dtype)  # (M, K)
    for _, z in chunks(q, total, draws):
        px = model.decode(z, classes)  # batch (c, M)
        rec_sum = rec_sum + px.log_prob(target).sum(0)
        if a is not None:
            log_pa_sum = log_pa_sum + model.auxiliary.log_prior(a, batch.inputs, rows, y, z).sum(0)
        if draws.squared_error:
            error_sum = error_sum + squared_error(px, target).sum(0)
    error = error_sum / total if draws.squared_error else None
    return rec_sum / total, kl, error, (None if a is None else log_pa_sum / total)


def scatter_mean(values: torch.Tensor, known: torch.Tensor, n_known: int, q_u: torch.Tensor) -> torch.Tensor:
    """Per-example values (B,) from per-pair ones (M,): a labelled example's own, an unlabelled one's mean under q(y|x)."""
    out = torch.empty(known.shape, dtype=values.dtype, device=values.device)
    out[known] = values[:n_known]
    out[~known] = (q_u * values[n_known:].view(len(q_u), -1)).sum(-1)
    return out
