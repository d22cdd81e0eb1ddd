"""The latent-variable model: encoder -> q(z|x), prior p(z), decoder -> p(x|z).

One class serves every model kind (``vaekit.models.kinds``): the VAE and the plain autoencoder differ
only in the posterior head (Gaussian or point mass), and the semi-supervised M2 adds a classifier
q(y|x) to the conditional VAE. What it is trained on is an objective of ``vaekit.objectives``, called
with the model as an argument.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.distributions import Categorical, Distribution

from vaekit.config import ModelConfig, RunConfig, validate
from vaekit.errors import ConfigError
from vaekit.models.auxiliary import AuxiliaryVariable
from vaekit.models.classifier import Classifier
from vaekit.models.condition import CONDITIONS, Condition
from vaekit.models.contract import Context, LatentSpec, Model
from vaekit.models.flows import FLOWS, FlowPosterior
from vaekit.models.hierarchy import HIERARCHIES, HierarchicalPrior, is_hierarchical
from vaekit.models.kinds import MODEL_KINDS
from vaekit.models.likelihoods import LIKELIHOODS, LikelihoodHead
from vaekit.models.networks import ACTIVATIONS, DECODERS, ENCODERS, DecoderNetwork, Encoder
from vaekit.models.posteriors import POSTERIORS, PosteriorHead, full_precision
from vaekit.models.priors import PRIORS, Prior
from vaekit.models.sequence import TokenSequence


class LatentVariableModel(nn.Module, Model):
    """encode(x) -> q(z|x); decode(z) -> p(x|z); prior() -> p(z): the ``Model`` every kind builds.

    x: (B, *input_shape); z: (B, L). All three return ``torch.distributions`` objects with batch
    shape (B,) (or () for the prior) and event shapes (L,) and input_shape.

    A conditional model (``condition`` not None) takes a context with each: q(z|x, y), p(x|z, y) and
    p(y) or p(z|y) (``vaekit.models.condition``); an unconditional model ignores a context.
    A semi-supervised model (``classifier`` not None) also gives q(y|x) (``classify``); with an auxiliary
    variable a (``auxiliary`` not None, the ADGM) the classifier and the encoder read a beside x: a draw
    a ~ q(a|x) where one is given, else its mean, so every view and command reads a deterministic a.

    Its ``latent`` declaration is read from the parts: the posterior head (layers, density,
    factorisation, Gaussian layers, closed-form family), the prior (closed-form KL, Gaussian, conditional)
    and the condition (its classes).
    """

    def __init__(
        self,
        encoder: Encoder,
        posterior: PosteriorHead,
        decoder: DecoderNetwork,
        likelihood: LikelihoodHead,
        prior: Prior,
        config: ModelConfig,
        condition: Condition | None = None,
        classifier: Classifier | None = None,
        auxiliary: AuxiliaryVariable | None = None,
    ):
        super().__init__()
        self.encoder, self.posterior = encoder, posterior
        self.decoder, self.likelihood = decoder, likelihood
        self.prior_module = prior
        self.config = config
        self.condition = condition
        self.classifier = classifier
        self.auxiliary = auxiliary

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.input_shape)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.parameters()).device

    @property
    def latent(self) -> LatentSpec:
        head, prior = self.posterior, self.prior_module
        return LatentSpec(
            layers=head.sizes,
            factorises=head.factorises,
            density=head.density,
            closed_form_kl=head.closed_form_kl and prior.closed_form_kl,
            gaussian_posterior=head.gaussian,
            gaussian_prior=prior.gaussian,
            conditional=self.condition is not None,
            conditional_prior=prior.conditional,
            label_classes=0 if self.condition is None else self.condition.classes,
        )

    @property
    def deterministic(self) -> bool:
        """True for a plain autoencoder (point-mass posterior, no KL term): ``latent.deterministic``, read
        from the head alone (objectives ask it inside the compiled training step)."""
        return not self.posterior.density

    @property
    def conditional(self) -> bool:
        """True for a conditional model (a context enters the encoder and the decoder)."""
        return self.condition is not None

    @property
    def classes(self) -> int:
        """K, the classes of a semi-supervised model's classifier; 0 for a model without one."""
        return 0 if self.classifier is None else self.classifier.classes

    def classify(self, x: torch.Tensor, a: torch.Tensor | None = None) -> Categorical:
        """q(y|x) (with an auxiliary variable, q(y|a, x) at ``a`` (B, A), by default E_q[a|x]): batch (B,)
        over the ``classes`` classes (a semi-supervised model's)."""
        if self.classifier is None:
            raise ConfigError("this model has no classifier q(y|x); train one with --model m2")
        if self.auxiliary is None:
            return self.classifier(x)
        return self.classifier(torch.cat([x.flatten(1), self._auxiliary(x, a)], 1))

    def encode_auxiliary(self, x: torch.Tensor) -> Distribution:
        """q(a|x) of a model with an auxiliary variable: batch (B,), event (A,)."""
        if self.auxiliary is None:
            raise ConfigError("this model has no auxiliary variable; train one with --model m2 --auxiliary-dim A")
        return self.auxiliary.encode(x)

    def _auxiliary(self, x: torch.Tensor, a: torch.Tensor | None) -> torch.Tensor:
        """``a`` (B, A), or E_q[a|x] where it is None."""
        return self.auxiliary.encode(x).mean if a is None else a

    def encode(self, x: torch.Tensor, context: Context = None, a: torch.Tensor | None = None) -> Distribution:
        """q(z|x) (or q(z|x, y), or q(z|a, x, y) at ``a`` (B, A), by default E_q[a|x]): batch (B,), event (L,)."""
        return self.posterior(self.encoder(self._encoder_input(x, context, a)))

    def encode_pairs(self, x: torch.Tensor, rows: torch.Tensor, context: torch.Tensor, a: torch.Tensor | None = None) -> Distribution:
        """q(z|x, y) (or q(z|a, x, y), ``a`` (B, A) as in ``encode``) of (example, context) pairs: examples x
        (B, *shape), rows (M,) into them, a context per pair (M,) or (M, K): batch (M,). The same as
        ``encode(x[rows], context, a[rows])``; a flat encoder reads each example once (``Encoder.with_extra_inputs``),
        so an example with each of K classes costs less than K examples."""
        if self.condition is None or self.encoder.needs_images:
            return self.encode(x[rows], context, None if a is None else a[rows])
        extra = self.condition(context, rows.shape).to(x.dtype)  # (M, K)
        if self.auxiliary is not None:
            extra = torch.cat([extra, self._auxiliary(x, a)[rows]], 1)  # (M, K + A)
        return self.posterior(self.encoder.with_extra_inputs(x.flatten(1), rows, extra))

    def encode_top(self, x: torch.Tensor, context: Context = None) -> Distribution:
        """q(z_top|x): the posterior of the layer the prior's top p(z_L) is over (a VampPrior's
        components); q(z|x) itself for a one-layer model."""
        return self.posterior.top(self.encoder(self._encoder_input(x, context)))

    def _encoder_input(self, x: torch.Tensor, context: Context, a: torch.Tensor | None = None) -> torch.Tensor:
        """x with the context beside it (``_with_context``), and with an auxiliary variable ``a`` or E_q[a|x] (B, D + K + A)."""
        h = self._with_context(x, context)
        return h if self.auxiliary is None else torch.cat([h, self._auxiliary(x, a)], 1)

    def _with_context(self, x: torch.Tensor, context: Context) -> torch.Tensor:
        """The encoder's input: x, or for a conditional model x with the context y (B, K) beside it."""
        if self.condition is None:
            return x
        y = self.condition(context, x.shape[:1]).to(x.dtype)  # (B, K)
        if self.encoder.needs_images:  # K constant channels beside the image's
            return torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return torch.cat([x.flatten(1), y], 1)  # (B, D + K)

    def decode(self, z: torch.Tensor, context: Context = None) -> Distribution:
        """p(x|z) (or p(x|z, y)) for z (*batch, L): batch shape ``batch``, so samples (S, B, L) decode to (S, B)."""
        if self.condition is not None:
            z = torch.cat([z, self.condition(context, z.shape[:-1]).to(z.dtype)], -1)  # (*batch, L + K)
        if self.decoder.autoregressive:  # p(x|z) = Π_t p(x_t | x_<t, z): the decoder reads the sequence it explains
            return TokenSequence(self.decoder, self.likelihood, z, self.input_shape[0])
        if z.dim() == 2:
            return self.likelihood(full_precision(self.decoder(z)))
        params = full_precision(self.decoder(z.reshape(-1, z.shape[-1])))  # (prod(batch), k, *shape)
        return self.likelihood(params.view(*z.shape[:-1], *params.shape[1:]))

    def init_output_bias(self, x: torch.Tensor) -> None:
        """Start the decoder at the data: its last bias is set so that p(x|z) has the per-dimension
        mean (and spread) of ``x`` (N, *shape) wherever its last pre-activation is zero (a token
        decoder: at the tokens' frequencies); saves the first epochs the work of learning the average
        example. A no-op where the likelihood has no such start (the continuous Bernoulli)."""
        params = self.likelihood.initial_params(x)
        if params is not None:
            self.decoder.set_output_bias(params.to(next(self.parameters())))

    def prior(self, context: Context = None) -> Distribution:
        """p(z): batch shape (), event shape (L,). The prior module gets the model (a VampPrior runs the encoder).
        A conditional prior p(z|y) has the context's batch shape: () for one context, (B,) for labels (B,) or vectors (B, K)."""
        if self.prior_module.conditional:
            return self.prior_module(self, self.condition(context))
        return self.prior_module(self)


def check_parts(config: ModelConfig) -> None:
    """Raise ``ConfigError`` unless every part ``config`` names is registered."""
    MODEL_KINDS[config.kind].check(config)
    for registry, name in (
        (ENCODERS, config.arch),
        (DECODERS, config.arch),
        (ACTIVATIONS, config.activation),
        (LIKELIHOODS, config.likelihood),
        (PRIORS, config.prior),
    ):
        registry.check(name)
    check_token_parts(config)
    check_channels(config)
    if (any(config.dropout) or config.classifier_dropout) and ENCODERS[config.arch].needs_images:
        flag = "--dropout" if any(config.dropout) else "--classifier-dropout"
        raise ConfigError(f"{flag} is for the dense networks (--arch mlp or gated); the {config.arch} network has none")
    if config.flow != "none":
        FLOWS.check(config.flow)
    if config.condition != "none":
        CONDITIONS.check(config.condition)
    if is_hierarchical(config):
        HIERARCHIES.check(config.hierarchy)
        if MODEL_KINDS[config.kind].deterministic or config.flow != "none":
            raise ConfigError("a hierarchical model (several --latent-dim sizes) has Gaussian layers: it needs --model vae without a flow")
        if PRIORS[config.prior].conditional:
            raise ConfigError(f"a hierarchical model's top prior is unconditional; --prior {config.prior} needs one latent layer")


def check_channels(config: ModelConfig) -> None:
    """Raise ``ConfigError`` for a convolutional network (``Encoder.needs_images``) without a channel stage;
    an ``arch`` not registered is ``check_parts``' to name."""
    if config.arch in ENCODERS and ENCODERS[config.arch].needs_images and not config.hidden:
        raise ConfigError("a conv model needs at least one channel stage (--hidden)")


def check_token_parts(config: ModelConfig) -> None:
    """Token networks (``gru``) with the categorical likelihood, each only with the other, and none of
    the parts that read or make continuous inputs (a condition, the VampPrior's pseudo-inputs, a hierarchy)."""
    tokens = ENCODERS[config.arch].reads_tokens
    if tokens != (LIKELIHOODS[config.likelihood].support == "tokens"):
        raise ConfigError(
            f"the {config.arch} network needs the categorical likelihood"
            if tokens
            else "the categorical likelihood is for token sequences (--arch gru)"
        )
    if not tokens:
        return
    if config.condition != "none" or MODEL_KINDS[config.kind].condition is not None:
        raise ConfigError(f"a {config.arch} model of token sequences is not conditional (no --condition, no --model m2) yet")
    if is_hierarchical(config):
        raise ConfigError(f"a {config.arch} model of token sequences has one latent layer (one --latent-dim)")
    if PRIORS[config.prior].name == "vampprior":
        raise ConfigError("the vampprior's pseudo-inputs are continuous, and token sequences are not: use --prior normal or mixture")


def build_model(config: ModelConfig) -> LatentVariableModel:
    """Build the module described by ``config`` (every field documented on ``ModelConfig``): each
    part is the class its registry holds under the name the config gives."""
    validate(RunConfig(model=config))
    check_parts(config)
    kind = MODEL_KINDS[config.kind]
    config = kind.resolved(config)
    likelihood = LIKELIHOODS[config.likelihood].from_config(config)
    condition = None if config.condition == "none" else CONDITIONS[config.condition].from_config(config)
    k = 0 if condition is None else condition.size  # the networks take K more inputs: [x, y] (or K more channels) and [z, y]
    encoder_config = config
    if condition is not None:
        shape = tuple(config.input_shape)
        wider = (shape[0] + k, *shape[1:]) if ENCODERS[config.arch].needs_images else (math.prod(shape) + k,)
        encoder_config = dataclasses.replace(config, input_shape=wider)
    if is_hierarchical(config):  # q(z|x) and p(z) over the layers, the decoder on the layers its wiring gives it (and y)
        hierarchy = HIERARCHIES[config.hierarchy]
        encoder = ENCODERS[config.arch].from_config(hierarchy.encoder_config(encoder_config))
        posterior = hierarchy.from_config(config, encoder.out_features)
        decoder = posterior.build_decoder(config, likelihood.params_per_output, extra=k)
        prior = HierarchicalPrior.from_config(config)
        return LatentVariableModel(encoder, posterior, decoder, likelihood, prior, config, condition)
    parts = kind.parts(config)
    if config.auxiliary_dim:  # the encoder reads [x, y, a]
        encoder_config = dataclasses.replace(encoder_config, input_shape=(encoder_config.input_shape[0] + config.auxiliary_dim,))
    encoder = ENCODERS[config.arch].from_config(encoder_config)
    decoder = DECODERS[config.arch].from_config(dataclasses.replace(config, latent_dim=config.latent_dim + k), likelihood.params_per_output)
    posterior = POSTERIORS[kind.posterior].from_config(config, encoder.out_features)
    if config.flow != "none":
        posterior = FlowPosterior.from_config(config, encoder.out_features, posterior)
    prior = PRIORS[config.prior].from_config(config)
    return LatentVariableModel(
        encoder, posterior, decoder, likelihood, prior, config, condition, parts.get("classifier"), parts.get("auxiliary")
    )
