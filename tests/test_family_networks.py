"""The gated dense MLP and the residual conv network: shapes, the gate's formula, a training step; dropout in the dense networks."""

import dataclasses

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.data import Dataset
from vaekit.errors import ConfigError
from vaekit.evaluation import elbo_terms, iw_log_likelihood
from vaekit.models import DECODERS, ENCODERS, build_model
from vaekit.models.gated import GatedDense
from vaekit.objectives import elbo


def test_gated_dense_is_linear_times_sigmoid_gate():
    torch.manual_seed(0)
    layer = GatedDense(5, 3)
    x = torch.randn(4, 5)
    w, b = layer.linear.weight, layer.linear.bias
    expected = (x @ w[:3].T + b[:3]) * torch.sigmoid(x @ w[3:].T + b[3:])
    torch.testing.assert_close(layer(x), expected)


def test_both_networks_are_registered_beside_mlp_and_conv():
    for name in ("mlp", "conv", "gated", "resnet"):
        assert name in ENCODERS and name in DECODERS


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 9), (2, 28, 28), (4, 5, 5)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-learned"])
def test_resnet_shapes_over_image_sizes_and_channels(shape, likelihood):
    config = ModelConfig(arch="resnet", input_shape=shape, latent_dim=3, hidden=(4, 8), likelihood=likelihood)
    model = build_model(config)
    x = torch.rand(2, *shape)
    q = model.encode(x)
    assert q.mean.shape == (2, 3)
    px = model.decode(q.rsample())
    assert px.batch_shape == (2,) and px.event_shape == shape
    assert model.decode(torch.randn(5, 2, 3)).batch_shape == (5, 2)  # sample-batched z


@pytest.mark.parametrize("shape", [(1, 8, 8), (6,)])
def test_gated_shapes_for_images_and_vectors(shape):
    config = ModelConfig(arch="gated", input_shape=shape, latent_dim=3, hidden=(12, 10), likelihood="gaussian")
    model = build_model(config)
    q = model.encode(torch.rand(2, *shape))
    assert model.encoder.out_features == 10 and q.mean.shape == (2, 3)
    assert model.decode(q.rsample()).event_shape == shape


def test_resnet_needs_images_and_dense_layer_works():
    with pytest.raises(ConfigError, match="needs images"):
        build_model(ModelConfig(arch="resnet", input_shape=(6,), hidden=(4,)))
    model = build_model(ModelConfig(arch="resnet", input_shape=(1, 8, 8), hidden=(4,), conv_dense=16, latent_dim=2))
    assert model.encoder.out_features == 16


@pytest.mark.parametrize("arch", ["gated", "resnet"])
def test_a_training_step_lowers_the_loss_and_output_bias_starts_at_the_data_mean(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, input_shape=(1, 8, 8), latent_dim=2, hidden=(8, 8)))
    x = (torch.rand(16, 1, 8, 8) < 0.3).float()
    model.init_output_bias(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = elbo(model, x).loss.mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ["mlp", "gated"])
def test_dropout_acts_in_training_only_and_evaluation_sees_the_undropped_network(arch):
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, input_shape=(1, 8, 8), latent_dim=3, hidden=(32, 16), dropout=(0.5, 0.5))
    model = build_model(config)
    plain = build_model(dataclasses.replace(config, dropout=(0.0, 0.0)))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 4 and all(m.p == 0.5 for m in dropouts)  # after each hidden layer of the encoder and the decoder
    if arch == "gated":  # the same parameter names with and without dropout
        plain.load_state_dict(model.state_dict())
    else:  # Dropout modules shift the Sequential's indices: copy parameter by parameter
        for p, q in zip(plain.parameters(), model.parameters(), strict=True):
            p.data.copy_(q.data)
    x = (torch.rand(50, 1, 8, 8) < 0.3).float()
    model.train()
    assert not torch.equal(model.encode(x).mean, model.encode(x).mean)  # a fresh mask per pass
    live = plain.encoder(x) != 0  # (50, 16): the units the undropped network leaves on (ReLU zeroes some)
    assert 0.3 < (model.encoder(x)[live] == 0).float().mean() < 0.7  # dropout zeroes about half of them
    model.eval()
    torch.testing.assert_close(model.encode(x).mean, plain.encode(x).mean)
    model.train()
    torch.testing.assert_close(
        elbo_terms(model, Dataset(x)).loss, elbo_terms(plain, Dataset(x)).loss
    )  # evaluation switches dropout off ...
    assert model.training  # ... and gives the training mode back
    torch.testing.assert_close(iw_log_likelihood(model, Dataset(x), k=8), iw_log_likelihood(plain, Dataset(x), k=8))
    assert model.training


@pytest.mark.parametrize("arch", ["mlp", "gated"])
def test_dropout_of_the_encoder_and_of_the_decoder_are_set_apart(arch):
    model = build_model(ModelConfig(arch=arch, input_shape=(1, 8, 8), latent_dim=3, hidden=(32, 16), dropout=(0.0, 0.2)))
    rates = [[m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] for net in (model.encoder, model.decoder)]
    assert rates == [[], [0.2, 0.2]]


def test_dropout_is_refused_on_conv_networks_and_outside_zero_one():
    with pytest.raises(ConfigError, match="--dropout is for the dense networks"):
        build_model(ModelConfig(arch="conv", input_shape=(1, 8, 8), hidden=(4,), dropout=(0.0, 0.1)))
    with pytest.raises(ConfigError, match=r"dropout must be one or two probabilities \(encoder, decoder\) in \[0, 1\)"):
        build_model(ModelConfig(dropout=(0.1, 1.0)))
