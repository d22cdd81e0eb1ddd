"""What a model of token sequences generates, as strings: samples, reconstructions, interpolations and
the neighbourhood of a string (tensors of token ids inside, strings outside; no drawing).

A ``StringCodec`` is a run's vocabulary and sequence length: it turns strings into the ids the model
reads (refusing, in one line, a token outside the vocabulary or a string too long for the model) and
ids back into strings. Every generator decodes in batches; the loop over positions is the decoder's
(``GRUDecoder.generate``), never a loop over strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vaekit.data.sequences import Vocabulary, vocabulary_of
from vaekit.data.syntax import TokenSyntax, syntax_of
from vaekit.data.tokenizers import TOKENIZERS, TokenizeError
from vaekit.errors import ConfigError, DataError

BATCH = 1000  # sequences decoded together


@dataclass(frozen=True)
class StringCodec:
    """Strings <-> the (N, T) token ids of a sequence model (``<start>`` tokens ``<end>`` padding).

    vocabulary: the run's (its data record's); length: T, the model's stored length (the longest
    string it writes is T − 2 tokens)."""

    vocabulary: Vocabulary
    length: int

    @classmethod
    def of_run(cls, run) -> StringCodec:
        """The codec of a loaded run of token data; a one-line ``ConfigError`` for any other run."""
        vocabulary = vocabulary_of(run.data_info)
        if vocabulary is None or not run.model.decoder.autoregressive:
            raise ConfigError(f"{run.path} is not a model of token sequences (strings read with a tokenizer, --arch gru)")
        return cls(vocabulary, int(run.model.input_shape[0]))

    def ids(self, strings: Sequence[str]) -> torch.Tensor:
        """(N, T) ids of ``strings``; a one-line ``DataError`` naming a string that cannot be read."""
        tokenizer = TOKENIZERS[self.vocabulary.tokenizer]()
        tokens = []
        for i, text in enumerate(strings, 1):
            try:
                tokens.append(tokenizer.tokens(text.strip()))
            except TokenizeError as exc:
                raise DataError(f"string {i} ({text!r}): {exc}") from None
            if not tokens[-1]:
                raise DataError(f"string {i} is empty")
            if len(tokens[-1]) > self.length - 2:
                raise DataError(f"string {i} ({text!r}) has {len(tokens[-1])} tokens; this model writes at most {self.length - 2}")
        try:
            ids, _ = self.vocabulary.encode(tokens, width=self.length)
        except DataError as exc:
            raise DataError(str(exc).replace("line", "string", 1)) from None
        return ids

    def syntax(self) -> TokenSyntax:
        """The syntax rules of the vocabulary's tokens (``vaekit.data.syntax``); a one-line ``ConfigError`` where there are none."""
        return syntax_of(self.vocabulary)

    def strings(self, ids: torch.Tensor) -> list[str]:
        """The strings of ids (N, T), each up to its ``<end>``."""
        return self.vocabulary.decode(ids.cpu())


def _in_batches(z: torch.Tensor, decode) -> torch.Tensor:
    return torch.cat([decode(z[i : i + BATCH]) for i in range(0, len(z), BATCH)]) if len(z) else z.new_zeros(0, 0, dtype=torch.long)


@torch.inference_mode()
def decode_codes(model, z: torch.Tensor, *, temperature: float = 0.0, seed: int = 0, syntax: TokenSyntax | None = None) -> torch.Tensor:
    """(N, T) sequences decoded from codes z (N, L): greedy at temperature 0, else drawn at ``temperature`` (seeded);
    with ``syntax``, each token among those it admits (``StringCodec.syntax``)."""
    if temperature < 0:
        raise ConfigError(f"temperature must be 0 (greedy) or positive, got {temperature}")
    generator = torch.Generator(device=model.device).manual_seed(seed)

    def decode(chunk: torch.Tensor) -> torch.Tensor:
        return model.decode(chunk.to(model.device)).tempered(temperature).obeying(syntax).sample(generator=generator)

    return _in_batches(z, decode).cpu()


@torch.inference_mode()
def sample_sequences(model, n: int, *, temperature: float = 1.0, seed: int = 0, syntax: TokenSyntax | None = None) -> torch.Tensor:
    """(n, T) sequences: z ~ p(z) (seeded), then x ~ p(x|z) at ``temperature`` (0: the greedy decoding of each z),
    keeping to ``syntax`` where given."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = model.prior().sample((n,))  # (n, L)
    return decode_codes(model, z, temperature=temperature, seed=seed, syntax=syntax)


def sample_strings(
    model, codec: StringCodec, n: int, *, temperature: float = 1.0, seed: int = 0, syntax: bool | TokenSyntax = False
) -> list[str]:
    """``n`` strings of ``sample_sequences``; syntax: rules to keep to, as there, or True for those of the
    codec's tokens (``StringCodec.syntax``)."""
    rules = codec.syntax() if syntax is True else syntax or None
    return codec.strings(sample_sequences(model, n, temperature=temperature, seed=seed, syntax=rules))


@torch.inference_mode()
def codes_of(model, ids: torch.Tensor) -> torch.Tensor:
    """(N, L) posterior means of the sequences ids (N, T), in batches."""
    return torch.cat([model.encode(ids[i : i + BATCH].to(model.device)).mean for i in range(0, len(ids), BATCH)]).cpu()


@dataclass
class Reconstructions:
    """Strings and their greedy decodings at the posterior mean; ``exact``: (N,) bool, decoded == original."""

    originals: list[str]
    decoded: list[str]
    exact: torch.Tensor

    @property
    def exact_match(self) -> float:
        """The share of strings decoded exactly."""
        return float(self.exact.float().mean()) if len(self.exact) else float("nan")


def reconstruct_strings(model, codec: StringCodec, ids: torch.Tensor) -> Reconstructions:
    """Encode sequences ids (N, T) to their posterior means and decode them greedily."""
    decoded = codec.strings(decode_codes(model, codes_of(model, ids)))
    originals = codec.strings(ids)
    return Reconstructions(originals, decoded, torch.tensor([a == b for a, b in zip(originals, decoded)], dtype=torch.bool))


def interpolate_strings(model, codec: StringCodec, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> list[str]:
    """The greedy decodings of ``steps`` points on the line between the posterior means of sequences a and b
    ((T,) ids each), ends included."""
    if steps < 2:
        raise ConfigError(f"an interpolation needs at least 2 steps, got {steps}")
    za, zb = codes_of(model, torch.stack([a, b]))
    t = torch.linspace(0, 1, steps)[:, None]
    return codec.strings(decode_codes(model, (1 - t) * za + t * zb))


def neighbourhood(model, codec: StringCodec, ids: torch.Tensor, n: int = 16, *, radius: float = 0.5, seed: int = 0) -> list[str]:
    """The greedy decodings of ``n`` codes around a sequence's posterior mean (ids (T,)): μ + radius · ε, ε ~ N(0, I), seeded."""
    if radius <= 0:
        raise ConfigError(f"the neighbourhood's radius must be positive, got {radius}")
    mu = codes_of(model, ids[None])  # (1, L)
    eps = torch.randn(n, mu.shape[1], generator=torch.Generator().manual_seed(seed))
    return codec.strings(decode_codes(model, mu + radius * eps))
