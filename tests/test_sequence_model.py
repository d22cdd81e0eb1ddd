"""The sequence VAE (``--arch gru --likelihood categorical``): the likelihood equals a hand-written
step-by-step masked sum, padding never changes a sequence's bound, the IW estimate stays below log p(x)
computed by quadrature over a one-dimensional z, gradients are right, samples are well formed, and a
small model trains on SMILES from the shared MOSES folder."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from vaekit.config import ModelConfig
from vaekit.data.base import Batch, Dataset
from vaekit.errors import ConfigError
from vaekit.evaluation import iw_log_likelihood
from vaekit.layouts import migrate_weights
from vaekit.models import build_model
from vaekit.models.sequence import END, PAD, START, TokenSequence, stored_lengths
from vaekit.objectives import ELBO, Draws

V = 7  # <pad> <start> <end> and four tokens


def model(latent=3, hidden=(8, 12), length=9, vocabulary=V, **kw):
    torch.manual_seed(0)
    config = ModelConfig(
        arch="gru",
        likelihood="categorical",
        input_shape=(length,),
        vocabulary_size=vocabulary,
        latent_dim=latent,
        hidden=hidden,
        embedding_dim=5,
        **kw,
    )
    return build_model(config).eval()


def stored(*sequences, width=None):
    """(N, T) ids stored as the data are: <start> tokens <end> <pad>..."""
    width = width or max(len(s) for s in sequences) + 2
    out = torch.full((len(sequences), width), PAD)
    for i, s in enumerate(sequences):
        out[i, : len(s) + 2] = torch.tensor([START, *s, END])
    return out


def hand_log_prob(decoder, z, x):
    """Σ_t log p(x_t | x_<t, z) by running the GRU one token at a time, up to each sequence's <end>."""
    total = []
    for zi, xi in zip(z, x):
        h, lp = decoder.initial_state(zi[None]), 0.0
        for t in range(1, len(xi)):
            if xi[t] == PAD:
                break
            step = torch.cat([decoder.embed(xi[t - 1 : t]), zi[None]], -1)[:, None]  # (1, 1, E + L)
            o, h = decoder.rnn(step, h)
            lp = lp + F.log_softmax(decoder.out(o[0, 0]), -1)[xi[t]]
        total.append(lp)
    return torch.stack(total)


def test_the_likelihood_is_the_hand_written_masked_sum_of_one_step_at_a_time():
    m = model()
    x = stored([3, 4, 5], [6], [3, 3, 4, 4, 5, 6, 6])
    z = torch.randn(3, m.latent_dim)
    px = m.decode(z)
    assert isinstance(px, TokenSequence) and px.batch_shape == (3,) and px.event_shape == (9,)
    torch.testing.assert_close(px.log_prob(x), hand_log_prob(m.decoder, z, x), rtol=1e-5, atol=1e-5)


def test_padding_never_changes_a_sequence_bound_or_its_code():
    m = model()
    alone = stored([3, 4, 5, 6])
    padded = stored([3, 4, 5, 6], [3, 3, 3, 3, 3, 3, 3], width=12)
    z = torch.randn(1, m.latent_dim)
    torch.testing.assert_close(m.decode(z).log_prob(alone), m.decode(z.expand(2, -1)).log_prob(padded)[:1])
    torch.testing.assert_close(m.encode(alone).mean, m.encode(padded).mean[:1])
    noise = torch.zeros(1, 1, m.latent_dim)  # the posterior mean: the whole bound, KL included
    terms = [ELBO()(m, Batch(x, x), draws=Draws(noise=noise)) for x in (alone, padded)]
    torch.testing.assert_close(terms[0].neg_elbo, terms[1].neg_elbo[:1])


def test_the_encoder_is_a_packed_bidirectional_gru_and_reads_the_weights_of_one():
    """Runs saved when the encoder held one bidirectional GRU (``rnn.*``) load, and give the same codes."""
    m = model()
    torch.manual_seed(1)
    gru = nn.GRU(5, 8, batch_first=True, bidirectional=True)
    earlier = {k: v for k, v in m.state_dict().items() if not k.startswith(("encoder.forward_rnn.", "encoder.backward_rnn."))}
    earlier |= {f"encoder.rnn.{k}": v for k, v in gru.state_dict().items()}
    m.load_state_dict(migrate_weights(earlier), strict=True)
    x = stored([3, 4, 5], [6], [3, 3, 4, 4, 5, 6, 6], width=12)
    packed = pack_padded_sequence(m.encoder.embed(x), stored_lengths(x), batch_first=True, enforce_sorted=False)
    _, h = gru(packed)  # (2, B, H): each direction's state after the sequence's last stored token
    torch.testing.assert_close(m.encoder(x), torch.cat([h[0], h[1]], -1))


def test_many_samples_of_z_broadcast_against_the_sequences():
    m = model()
    x = stored([3, 4], [5, 6, 3])
    z = torch.randn(4, 2, m.latent_dim)
    lp = m.decode(z).log_prob(x)
    assert lp.shape == (4, 2)
    torch.testing.assert_close(lp[2], m.decode(z[2]).log_prob(x))


def test_iw_estimate_stays_below_log_p_by_quadrature_over_a_one_dimensional_z():
    m = model(latent=1, length=5, vocabulary=5)
    with torch.no_grad():  # a decoder that leans on z, so that the posterior is far from q and the prior
        m.decoder.initial.weight.mul_(8)
        m.decoder.out.weight.mul_(3)
    x = stored([3], [4, 3], [3, 3, 4], width=5)
    grid = torch.linspace(-8, 8, 4001)[:, None]  # z (G, 1)
    with torch.no_grad():
        log_joint = m.decode(grid[:, None]).log_prob(x) + m.prior().log_prob(grid)[:, None]  # (G, 3)
        log_px = torch.logsumexp(log_joint, 0) + math.log(grid[1, 0] - grid[0, 0])  # the trapezoid's interior: ∫ p(x|z) p(z) dz
    data = Dataset(x)
    iw = torch.stack([iw_log_likelihood(m, data, k=500, seed=s) for s in range(12)])  # (seeds, 3)
    elbo = torch.stack([iw_log_likelihood(m, data, k=1, seed=s) for s in range(200)]).mean(0)
    stderr = iw.std(0) / math.sqrt(len(iw))
    assert (iw.mean(0) <= log_px + 3 * stderr + 1e-5).all()  # E[IW_K] <= log p(x), up to its Monte Carlo error
    assert (iw.mean(0) > log_px - 0.02).all() and (elbo < iw.mean(0) - 0.02).all()  # near log p, above the ELBO
    # every sequence of at most two tokens over {3, 4}: their probabilities add up to at most one
    every = stored([3], [4], [3, 3], [3, 4], [4, 3], [4, 4], width=5)
    with torch.no_grad():
        p = torch.exp(
            torch.logsumexp(m.decode(grid[:, None]).log_prob(every) + m.prior().log_prob(grid)[:, None], 0)
            + math.log(grid[1, 0] - grid[0, 0])
        )
    assert p.sum() <= 1.0


def test_gradients_of_the_bound_are_right():
    m = model(latent=2, hidden=(4, 5)).double()
    x = stored([3, 4, 5], [6, 3])
    z = torch.randn(2, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: m.decode(z).log_prob(x), (z,))
    m.train()
    torch.manual_seed(1)
    terms = ELBO()(m, Batch(x, x))
    terms.loss.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_word_dropout_blanks_tokens_only_in_training():
    m = model(dropout=(0.0, 0.5))
    m.decoder.word_dropout = 1.0  # (the config's range stops short of 1) every token read is blanked
    x = stored([3, 4, 5], [6, 3])
    z = torch.randn(2, m.latent_dim)
    blanked = model(dropout=(0.0, 0.0))
    blanked.load_state_dict(m.state_dict())
    with torch.no_grad():
        blanked.decoder.embed.weight[START + 1 :].zero_()  # every token read but <start> is a blank
        blanked.decoder.embed.weight[PAD].zero_()
    m.train()
    torch.testing.assert_close(m.decode(z).log_prob(x), blanked.decode(z).log_prob(x))
    m.eval()
    assert not torch.allclose(m.decode(z).log_prob(x), blanked.decode(z).log_prob(x))


def test_samples_are_well_formed_greedy_is_deterministic_and_a_generator_reproduces():
    m = model(length=12)
    z = torch.randn(50, m.latent_dim)
    px = m.decode(z)
    draws = px.sample(generator=torch.Generator().manual_seed(3))
    assert draws.shape == (50, 12) and (draws[:, 0] == START).all()
    assert ((draws == END).sum(1) == 1).all()  # one <end>, then only padding
    end = (draws == END).float().argmax(1)
    after = torch.arange(12) > end[:, None]
    assert (draws[after] == PAD).all() and not (draws[:, 1:] == START).any() and not ((draws == PAD) & ~after).any()
    assert torch.equal(draws, px.sample(generator=torch.Generator().manual_seed(3)))
    assert torch.equal(px.mode, px.mode)
    assert px.sample((2,)).shape == (2, 50, 12)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"likelihood": "bernoulli"}, "needs the categorical likelihood"),
        ({"condition": "label", "context_dim": 3}, "not conditional"),
        ({"prior": "vampprior"}, "pseudo-inputs are continuous"),
        ({"hidden": (8, 12, 16)}, "equally wide"),
    ],
)
def test_parts_that_cannot_read_tokens_are_refused(settings, message):
    fields = {
        "arch": "gru",
        "likelihood": "categorical",
        "input_shape": (9,),
        "vocabulary_size": V,
        "latent_dim": 2,
        "hidden": (8, 12),
        **settings,
    }
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(**fields))
    with pytest.raises(ConfigError, match="token sequences"):
        build_model(ModelConfig(arch="mlp", likelihood="categorical", input_shape=(9,)))
