"""The importance-weighted bounds: IWAE (Burda et al. 2016) and the MIWAE, CIWAE and PIWAE
variants of Rainforth et al. 2018, over the log-weights log w_s = log p(x|z_s) + β·(log p(z_s) − log q(z_s|x))."""

from __future__ import annotations

import math

import torch

from vaekit.config import RunConfig
from vaekit.errors import ConfigError
from vaekit.objectives.base import OBJECTIVES, Draws
from vaekit.objectives.elbo import MAX_SAMPLES, ELBOTerms, LatentBound, check_beta, check_groups, check_samples
from vaekit.objectives.estimate import Posterior, chunks, closed_form_kl, sample_count, squared_error


@OBJECTIVES.register("iw")
class ImportanceWeighted(LatentBound):
    """−log (1/S) Σ_s w_s with w_s = p(x|z_s) (p(z_s) / q(z_s|x))^β over S draws (β = 1: the IWAE
    bound; −loss then estimates log p(x)). The reported reconstruction and KL are the ELBO's, over
    the same draws.

    n_samples: S. beta: the weight of log p(z) − log q(z|x) in each log-weight.
    groups: M: the S samples form M groups of K = S / M and the loss is the mean of the groups' IW
        bounds, MIWAE(M, K) (M = 1: IWAE; M = S: the S-sample ELBO).
    elbo_mix: c in [0, 1]: the loss is −(c·ELBO + (1 − c)·IW bound) over the same samples (CIWAE).
    partial: PIWAE: the loss is the IW bound over all S samples, but its gradient reaches the encoder
        as MIWAE(M, K)'s does, from the same samples (``GroupGradient``).
    """

    terms = ELBOTerms.names

    def __init__(self, n_samples: int = 1, beta: float = 1.0, groups: int = 1, elbo_mix: float = 0.0, partial: bool = False):
        super().__init__()
        check_beta(beta)
        check_samples(n_samples)
        check_groups(n_samples, groups)
        if not 0 <= elbo_mix <= 1:
            raise ConfigError(f"iw elbo mix must be in [0, 1], got {elbo_mix}")
        if partial and elbo_mix > 0:
            raise ConfigError("piwae trains on the IW bound: it needs --iw-samples and no --iw-elbo-mix")
        self.n_samples, self.beta, self.groups, self.elbo_mix, self.partial = n_samples, beta, groups, elbo_mix, partial

    @classmethod
    def from_config(cls, config: RunConfig) -> ImportanceWeighted:
        t = config.train
        check_samples(t.n_samples, MAX_SAMPLES)
        if t.stl:
            raise ConfigError(
                "--stl (the path-derivative gradient) needs a Gaussian posterior without a flow (--model vae, no --flow) "
                "and the ELBO, not --iw-samples"
            )
        return cls(t.n_samples, beta=t.beta, groups=t.iw_groups, elbo_mix=t.iw_elbo_mix, partial=t.piwae)

    def estimate(self, model, batch, posterior: Posterior, beta: float | torch.Tensor, draws: Draws) -> ELBOTerms:
        q, p, given = posterior.q, posterior.p, posterior.given
        total = sample_count(self.n_samples, draws)
        check_groups(total, self.groups)
        keep_weights = self.groups > 1 or self.elbo_mix > 0 or self.partial
        route = GroupGradient() if self.partial and torch.is_grad_enabled() else None
        log_ws: list[torch.Tensor] = []  # the (c, B) log-weights of each chunk, when the variant needs them all
        log_qs: list[torch.Tensor] = []  # PIWAE: β·log q(z|x) (c, B) of each chunk
        closed = closed_form_kl(q, p)
        rec_sum = log_ratio_sum = error_sum = 0.0
        log_w_sum = None  # running logsumexp of the log-weights (B,)
        for s0, z in chunks(q, total, draws):
            zg = z if route is None else route.pass_on(z, s0)  # what the decoder and the prior see
            px = model.decode(zg, *given)  # batch (c, B)
            log_px = px.log_prob(batch.target)  # (c, B); the target broadcasts over the samples
            rec_sum = rec_sum + log_px.sum(0)
            if draws.squared_error:
                error_sum = error_sum + squared_error(px, batch.target).sum(0)
            log_q = q.log_prob(z)  # (c, B)
            log_ratio = p.log_prob(zg) - log_q  # (c, B): log p(z) − log q(z|x)
            log_ratio_sum = log_ratio_sum + log_ratio.sum(0)
            if route is not None:
                log_qs.append(beta * log_q)
            if keep_weights:
                log_ws.append(log_px + beta * log_ratio)
            else:
                chunk_lse = torch.logsumexp(log_px + beta * log_ratio, 0)
                log_w_sum = chunk_lse if log_w_sum is None else torch.logaddexp(log_w_sum, chunk_lse)
        rec = rec_sum / total
        kl = closed if closed is not None else -log_ratio_sum / total
        if self.partial:
            log_w = torch.cat(log_ws)  # (S, B)
            loss = -grouped_bound(log_w, 1, 0.0)
            if route is not None:
                loss = loss.detach() + route.surrogate(log_w, torch.cat(log_qs), self.groups)
        elif keep_weights:
            loss = -grouped_bound(torch.cat(log_ws), self.groups, self.elbo_mix)
        else:
            loss = -(log_w_sum - math.log(total))
        error = error_sum / total if draws.squared_error else None
        return ELBOTerms(loss=loss, reconstruction=rec, kl=kl, squared_error=error)


def grouped_bound(log_w: torch.Tensor, groups: int, elbo_mix: float) -> torch.Tensor:
    """c·mean_s log w_s + (1 − c)·(1/M) Σ_m log (1/K) Σ_k w_mk from log-weights (S, B), S = M·K -> (B,)."""
    k = len(log_w) // groups
    miwae = (torch.logsumexp(log_w.view(groups, k, -1), 1) - math.log(k)).mean(0)  # (B,)
    return miwae if elbo_mix == 0 else elbo_mix * log_w.mean(0) + (1 - elbo_mix) * miwae


class GroupGradient:
    """PIWAE's two gradient routes from one set of log-weights log w = A − log q, A = log p(x, z).

    The draws z reach the decoder and the prior through ``pass_on``, whose gradient is multiplied,
    per sample, by r = w̃_MIWAE / w̃_IWAE = exp(LSE_all(log w) − LSE_group(log w) − log M) (one
    value per group, known once every chunk is decoded). With the surrogate −Σ w̃_IWAE·A + Σ w̃_MIWAE·log q
    (the weights held constant), the decoder and prior parameters get the IWAE gradient
    −Σ w̃_IWAE ∇A and the encoder, through z and log q, the MIWAE gradient −Σ w̃_MIWAE ∇ log w.
    """

    def __init__(self):
        self.scale: torch.Tensor | None = None  # (S, B), set by ``surrogate`` before the backward pass

    def pass_on(self, z: torch.Tensor, s0: int) -> torch.Tensor:
        """z (c, B, L) of samples s0 .. s0 + c − 1, as the decoder sees it."""
        zg = z.view_as(z)
        if zg.requires_grad:
            zg.register_hook(lambda g: g * self.scale[s0 : s0 + len(g)].unsqueeze(-1).to(g.dtype))
        return zg

    def surrogate(self, log_w: torch.Tensor, log_q: torch.Tensor, groups: int) -> torch.Tensor:
        """Per example (B,), zero in value: its gradient is PIWAE's. log_w = A − log_q and log_q
        (the posterior's term, β·log q(z|x)): (S, B)."""
        s, b = log_w.shape
        lw = log_w.detach()
        w_iwae = torch.softmax(lw, 0)  # (S, B)
        grouped = lw.view(groups, s // groups, b)
        w_miwae = (torch.softmax(grouped, 1) / groups).reshape(s, b)
        lse_group = torch.logsumexp(grouped, 1, keepdim=True).expand_as(grouped).reshape(s, b)
        self.scale = torch.exp(torch.logsumexp(lw, 0) - lse_group - math.log(groups))  # (S, B)
        a = log_w + log_q  # A = log p(x|z) + β log p(z): the log q terms cancel, in value and gradient
        value = -(w_iwae * a).sum(0) + (w_miwae * log_q).sum(0)
        return value - value.detach()
