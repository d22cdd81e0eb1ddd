"""The latent-variable model: encoder -> q(z|x), prior p(z), decoder -> p(x|z).

One class serves the VAE and the plain autoencoder; they differ only in the posterior head
(Gaussian or point mass). Its ``forward`` is the objective (``vaekit.objectives.elbo``), so the
module can be wrapped by DistributedDataParallel as it is.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.config import ModelConfig, validate, RunConfig
from vaekit.models.likelihoods import build_likelihood
from vaekit.models.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from vaekit.models.posteriors import DeterministicPosterior, GaussianPosterior, full_precision
from vaekit.models.priors import build_prior
from vaekit.errors import ConfigError


class LatentVariableModel(nn.Module):
    """encode(x) -> q(z|x); decode(z) -> p(x|z); prior() -> p(z).

    x: (B, *input_shape); z: (B, L). All three return ``torch.distributions`` objects with batch
    shape (B,) (or () for the prior) and event shapes (L,) and input_shape.
    """

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module, prior: nn.Module, config: ModelConfig):
        super().__init__()
        self.encoder, self.posterior = encoder, posterior
        self.decoder, self.likelihood = decoder, likelihood
        self.prior_module = prior
        self.config = config

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
    def deterministic(self) -> bool:
        """True for a plain autoencoder (point-mass posterior, no KL term)."""
        return self.posterior.deterministic

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.posterior(self.encoder(x))

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for z (*batch, L): batch shape ``batch``, so samples (S, B, L) decode to (S, B)."""
        if z.dim() == 2:
            return self.likelihood(full_precision(self.decoder(z)))
        params = full_precision(self.decoder(z.reshape(-1, z.shape[-1])))  # (prod(batch), k, *shape)
        return self.likelihood(params.view(*z.shape[:-1], *params.shape[1:]))

    def init_output_bias(self, x: torch.Tensor) -> None:
        """Start the decoder at the data: its last bias is set so that p(x|z) has the per-dimension
        mean (and spread) of ``x`` (N, *shape) wherever its last pre-activation is zero; saves the
        first epochs the work of learning the average image. A no-op where the likelihood has no
        such start (the continuous Bernoulli)."""
        x = x.float()
        params = self.likelihood.output_params(x.mean(0), x.std(0) if len(x) > 1 else torch.ones_like(x[0]))
        if params is not None:
            self.decoder.set_output_bias(params.to(next(self.parameters())))

    def prior(self) -> Distribution:
        return self.prior_module()

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None, **objective):
        from vaekit.objectives import elbo

        return elbo(self, x, target, **objective)


def build_model(config: ModelConfig) -> LatentVariableModel:
    """Build the module described by ``config`` (every field documented on ``ModelConfig``)."""
    validate(RunConfig(model=config))
    shape = tuple(config.input_shape)
    likelihood = build_likelihood(config.likelihood, shape, config.likelihood_scale)
    k = likelihood.params_per_output
    if config.arch == "conv":
        if len(shape) != 3:
            raise ConfigError(f"a conv model needs images (C, H, W), got data of shape {shape}; use --arch mlp")
        encoder = ConvEncoder(shape, config.hidden, config.activation, config.conv_dense)
        decoder = ConvDecoder(config.latent_dim, config.hidden, config.activation, shape, k, config.conv_dense)
    else:
        encoder = MLPEncoder(shape, config.hidden, config.activation)
        decoder = MLPDecoder(config.latent_dim, config.hidden, config.activation, shape, k)
    head = DeterministicPosterior if config.kind == "ae" else GaussianPosterior
    posterior = head(encoder.out_features, config.latent_dim)
    prior = build_prior(config.prior, config.latent_dim, config.prior_components)
    return LatentVariableModel(encoder, posterior, decoder, likelihood, prior, config)
