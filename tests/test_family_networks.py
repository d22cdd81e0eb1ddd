"""The gated dense MLP and the residual conv network: shapes over sizes and channels, the gate's formula, a training step."""

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.errors import ConfigError
from vaekit.models import DECODERS, ENCODERS, build_model
from vaekit.models.gated import GatedDense


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
        loss = model(x).loss.mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())
