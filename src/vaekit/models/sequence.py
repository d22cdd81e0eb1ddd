"""Networks and the likelihood for token sequences: ``--arch gru`` with ``--likelihood categorical``.

Sequences are stored as ``<start> t_1 ... t_n <end> <pad> ...`` (int64 ids, ``vaekit.data.sequences``).

q(z|x): a bidirectional GRU reads each sequence up to its end (padding never reaches a state that is
read); its last states in both directions are the features the posterior head reads.

p(x|z) = Π_t p(x_t | x_<t, z): a GRU whose state starts from z reads the sequence so far, with z beside
each token (teacher forcing), and a linear layer gives the next token's logits. ``TokenSequence`` is
that distribution: ``log_prob`` sums the log-probabilities of the stored tokens after ``<start>``
(``<end>`` included, padding not), so a sequence's bound is the same alone or padded in a batch of
longer ones; ``sample`` runs the GRU one position at a time for the whole batch at once (temperature
sampling, or greedy at temperature 0), keeping to a token syntax (``vaekit.data.syntax``) where asked.

Word dropout (Bowman et al. 2016): in training, each token the decoder reads is replaced by a blank
(a zero embedding) with the decoder's dropout probability, so that it must lean on z.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, constraints
from torch.nn import functional as F

from vaekit.errors import ConfigError
from vaekit.models.likelihoods import LikelihoodHead, register_likelihood
from vaekit.models.networks import DECODERS, ENCODERS, Decoder, Encoder
from vaekit.models.posteriors import full_precision

if TYPE_CHECKING:
    from vaekit.config import ModelConfig
    from vaekit.data.syntax import TokenSyntax

PAD, START, END = 0, 1, 2  # the ids ``vaekit.data.sequences.Vocabulary`` gives its special tokens


def stored_lengths(x: torch.Tensor) -> torch.Tensor:
    """(*batch,) the stored tokens of sequences x (*batch, T): ``<start>`` to ``<end>``, padding not counted."""
    return (x != PAD).sum(-1)


def recurrent_precision(device: torch.device):
    """Where the GRUs run: under the run's autocast on a GPU, in float32 on a CPU, where PyTorch's bfloat16
    GRU is about ten times slower than its float32 one (a training step of the MOSES recipe: 34 s against 3.3 s)."""
    return torch.autocast("cpu", enabled=False) if device.type == "cpu" else contextlib.nullcontext()


def check_vocabulary(cls: type, config: ModelConfig) -> int:
    """The vocabulary size V of token data (filled from the data); a ``ConfigError`` for other data."""
    if config.vocabulary_size < 4 or len(config.input_shape) != 1:
        raise ConfigError(
            f"the {cls.name} network reads token sequences (a .smi/.txt file, --dataset moses), "
            f"not data of shape {tuple(config.input_shape)}"
        )
    return config.vocabulary_size


@ENCODERS.register("gru")
class GRUEncoder(Encoder):
    """x (B, T) token ids -> embedding -> bidirectional GRU over each sequence's stored tokens ->
    [last forward state, last backward state] -> (dropout) -> features (B, 2H).

    H: ``hidden[0]``; the embedding width: ``embedding_dim``; dropout: ``dropout[0]`` on the features.

    The two directions are two GRUs over the padded batch, cut at its longest sequence: the forward one
    reads each sequence as stored, the backward one each sequence reversed within its length, and each
    state is read at the sequence's last token. That is what a packed bidirectional GRU computes (padding
    never reaches a state that is read), at two thirds of its time on a CPU."""

    reads_tokens: ClassVar[bool] = True

    def __init__(self, vocabulary: int, embedding: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embedding, padding_idx=PAD)
        self.forward_rnn = nn.GRU(embedding, hidden, batch_first=True)
        self.backward_rnn = nn.GRU(embedding, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out_features = 2 * hidden

    @classmethod
    def from_config(cls, config: ModelConfig) -> GRUEncoder:
        return cls(check_vocabulary(cls, config), config.embedding_dim, config.hidden[0], config.dropout[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = stored_lengths(x).clamp_min(1)  # (B,)
        x = x[:, : int(lengths.max())]  # (B, T'): the batch's longest sequence
        steps = torch.arange(x.shape[1], device=x.device)
        reversed_x = x.gather(1, (lengths.unsqueeze(1) - 1 - steps) % x.shape[1])  # (B, T'): each reversed within its length
        last = (lengths - 1).view(-1, 1, 1)
        states = []
        with recurrent_precision(x.device):
            for rnn, tokens in ((self.forward_rnn, x), (self.backward_rnn, reversed_x)):
                out, _ = rnn(full_precision(self.embed(tokens)))  # (B, T', H)
                states.append(out.gather(1, last.expand(-1, 1, out.shape[-1])).squeeze(1))  # (B, H): after the last token
        return self.dropout(torch.cat(states, -1))  # (B, 2H)


@DECODERS.register("gru")
class GRUDecoder(Decoder):
    """p(x_t | x_<t, z): z (N, L) -> initial states tanh(Linear(z)) of a GRU of ``layers`` layers of H
    units, which reads [embedding(x_{t-1}), z] at each position; Linear(H, V) gives the logits of x_t.

    H and the layers: ``hidden[1:]`` (one width per layer, all equal; one layer of ``hidden[0]`` when
    ``hidden`` has a single width); word dropout: ``dropout[1]``."""

    reads_tokens: ClassVar[bool] = True
    autoregressive: ClassVar[bool] = True

    def __init__(self, latent_dim: int, vocabulary: int, embedding: int, hidden: int, layers: int = 1, word_dropout: float = 0.0):
        super().__init__()
        self.hidden, self.layers, self.word_dropout = hidden, layers, word_dropout
        self.embed = nn.Embedding(vocabulary, embedding)
        self.initial = nn.Linear(latent_dim, layers * hidden)
        self.rnn = nn.GRU(embedding + latent_dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocabulary)

    @classmethod
    def from_config(cls, config: ModelConfig, params_per_output: int) -> GRUDecoder:
        widths = tuple(config.hidden[1:]) or tuple(config.hidden[:1])
        if len(set(widths)) != 1:
            raise ConfigError(
                "the gru decoder's layers are equally wide: --hidden ENCODER DECODER [DECODER ...] with one decoder width, "
                f"got {list(widths)}"
            )
        vocabulary = check_vocabulary(cls, config)
        return cls(config.latent_dim, vocabulary, config.embedding_dim, widths[0], len(widths), config.dropout[1])

    def initial_state(self, z: torch.Tensor) -> torch.Tensor:
        """(layers, N, H) the GRU's state before ``<start>``, from z (N, L)."""
        h = torch.tanh(self.initial(z))  # (N, layers·H)
        return h.view(len(z), self.layers, self.hidden).transpose(0, 1).contiguous()

    def logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(N, T', V) logits of each next token, teacher-forced: z (N, L), inputs (N, T') the tokens read (``<start>`` first)."""
        e = self.embed(inputs)  # (N, T', E)
        if self.training and self.word_dropout > 0:  # blank each token read, but never <start>
            keep = torch.rand(inputs.shape, device=inputs.device) >= self.word_dropout
            e = e * (keep | (inputs == START)).unsqueeze(-1).to(e.dtype)
        z_each = z.unsqueeze(1).expand(-1, inputs.shape[1], -1).to(e.dtype)  # (N, T', L)
        with recurrent_precision(z.device):
            out, _ = self.rnn(full_precision(torch.cat([e, z_each], -1)), full_precision(self.initial_state(z)))  # (N, T', H)
        return self.out(out)

    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        syntax: TokenSyntax | None = None,
    ) -> torch.Tensor:
        """(N, length) sequences drawn from p(x|z) for z (N, L), stored as the data are: ``<start>``, the
        tokens, ``<end>`` (put at the last position when a sequence has not ended by then), padding.
        temperature: the logits are divided by it before sampling; 0: the most probable token each step (greedy).
        syntax: rules on the next token (``vaekit.data.syntax``): only the tokens they admit are drawn."""
        n = len(z)
        out = torch.full((n, length), PAD, dtype=torch.long, device=z.device)
        out[:, 0] = START
        h, token = self.initial_state(z), out[:, 0]
        ended = torch.zeros(n, dtype=torch.bool, device=z.device)
        state = syntax.start(n, length, z.device) if syntax is not None else None
        for t in range(1, length):
            step = torch.cat([self.embed(token), z], -1).unsqueeze(1)  # (N, 1, E + L)
            o, h = self.rnn(step, h)
            logits = self.out(o[:, 0]).float()  # (N, V)
            logits[:, [PAD, START]] = -torch.inf  # never drawn: they only frame a sequence
            if syntax is not None:
                logits = logits.masked_fill(~syntax.allowed(state), -torch.inf)
            if temperature == 0:
                token = logits.argmax(-1)
            else:
                token = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
            if t == length - 1:
                token = torch.full_like(token, END)
            token = torch.where(ended, PAD, token)
            out[:, t] = token
            if syntax is not None:
                state = syntax.advance(state, token)
            ended |= token == END
            if t % 8 == 0 and bool(ended.all()):  # (a sync every eight steps, not every step)
                break
        return out

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """Start the output layer at the log-frequencies ``params`` (V,) of the tokens."""
        self.out.bias.copy_(params.flatten())


class MaskedCategorical(Distribution):
    """Independent categoricals over V tokens at each of T positions, padding (id 0) not counted:
    logits (*batch, T, V) -> batch ``batch``, event (T,); ``log_prob(x)`` is Σ_t [x_t ≠ pad] log p(x_t)."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, logits: torch.Tensor):
        self.logits = logits
        super().__init__(logits.shape[:-2], logits.shape[-2:-1], validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits
        x = x.expand(logits.shape[:-1])  # (*batch, T)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), ignore_index=PAD, reduction="none")
        return -nll.view(x.shape).sum(-1)  # (*batch,)

    @property
    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)  # (*batch, T)


@register_likelihood("categorical")
class CategoricalHead(LikelihoodHead):
    """A categorical over the vocabulary for each token of a sequence, padding not counted (token data,
    with ``--arch gru``): logits (*batch, T, V) -> ``MaskedCategorical``."""

    support = "tokens"

    def forward(self, logits: torch.Tensor) -> MaskedCategorical:
        return MaskedCategorical(logits)

    def initial_params(self, x: torch.Tensor) -> torch.Tensor:
        """(V,) the log-frequencies of the tokens stored after ``<start>`` in x (N, T) (each seen once more:
        none is impossible), padding not counted: what the decoder's output starts at."""
        counts = torch.bincount(x[:, 1:].flatten(), minlength=int(x.max()) + 1).double() + 1
        counts[PAD] = 0
        return (counts / counts.sum()).clamp_min(1e-30).log().float()


class TokenSequence(Distribution):
    """p(x|z) = Π_t p(x_t | x_<t, z) of an autoregressive decoder: batch ``z.shape[:-1]``, event (T,).

    ``log_prob(x)`` for x (*, T) broadcast against the batch (token ids as stored: ``<start>`` first):
    the decoder reads x[..., :-1] and the head scores x[..., 1:]; any T works (the same sequence padded
    longer scores the same). ``sample()`` draws sequences of the model's length T at ``temperature``
    (0: greedy, the ``mode``), keeping to ``syntax`` where one is given (``obeying``)."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(
        self,
        decoder: GRUDecoder,
        head: CategoricalHead,
        z: torch.Tensor,
        length: int,
        temperature: float = 1.0,
        syntax: TokenSyntax | None = None,
    ):
        self.decoder, self.head, self.z, self.temperature, self.syntax = decoder, head, z, temperature, syntax
        super().__init__(z.shape[:-1], torch.Size((length,)), validate_args=False)

    def token_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(*shape, T − 1, V): the logits of each stored token after ``<start>`` of x (*, T), teacher-forced;
        ``shape`` is the batch shape and x's leading shape broadcast together."""
        shape = torch.broadcast_shapes(self.batch_shape, x.shape[:-1])
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])  # (N, L)
        x = x.expand(*shape, x.shape[-1]).reshape(-1, x.shape[-1])  # (N, T)
        logits = self.decoder.logits(z, x[:, :-1])  # (N, T − 1, V)
        return full_precision(logits.view(*shape, *logits.shape[1:]))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(*shape,) log p(x|z): the stored tokens' log-probabilities summed (``shape``: as ``token_logits``);
        the decoder reads x up to its longest sequence (the padding after it scores nothing)."""
        x = x[..., : int(stored_lengths(x).max())]
        return self.head(self.token_logits(x)).log_prob(x[..., 1:])

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        """(*sample_shape, *batch, T) sequences, drawn at ``temperature``."""
        z = self.z.expand(*sample_shape, *self.z.shape).reshape(-1, self.z.shape[-1])
        ids = self.decoder.generate(z, self.event_shape[0], self.temperature, generator, self.syntax)
        return ids.view(*sample_shape, *self.batch_shape, -1)

    def tempered(self, temperature: float) -> TokenSequence:
        """The same p(x|z), sampled at ``temperature`` (0: greedy; < 1: nearer the most probable tokens)."""
        return TokenSequence(self.decoder, self.head, self.z, self.event_shape[0], temperature, self.syntax)

    def obeying(self, syntax: TokenSyntax | None) -> TokenSequence:
        """The same p(x|z), sampled keeping to ``syntax`` (each step's draw among the tokens it admits;
        None: every token). ``log_prob`` stays the model's own."""
        return TokenSequence(self.decoder, self.head, self.z, self.event_shape[0], self.temperature, syntax)

    @property
    def mode(self) -> torch.Tensor:
        """(*batch, T) the greedy decoding: the most probable token at each step."""
        return self.tempered(0.0).sample()

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("a distribution over token sequences has no mean: use its mode (greedy decoding) or sample()")
