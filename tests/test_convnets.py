"""Batched convolutional experts equal K ordinary torch convolutions built from the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixvae.config import ConfigError, ModelConfig
from mixvae.convnets import (
    ConvExpertDecoder,
    ConvExpertEncoder,
    ExpertConv2d,
    ExpertConvTranspose2d,
    conv_sizes,
)
from mixvae.model import MixtureModule

K = 3


def _conv(layer: ExpertConv2d, k: int) -> nn.Conv2d:
    """Expert k's layer as an ordinary nn.Conv2d holding a copy of its weights."""
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, 4, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(layer.weight[k])
        conv.bias.copy_(layer.bias[k])
    return conv


def _deconv(layer: ExpertConvTranspose2d, k: int, output_padding: tuple[int, int]) -> nn.ConvTranspose2d:
    conv = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, 4, stride=2, padding=1,
                              output_padding=output_padding)
    with torch.no_grad():
        conv.weight.copy_(layer.weight[k])
        conv.bias.copy_(layer.bias[k])
    return conv


def _linear(layer, k: int) -> nn.Linear:
    lin = nn.Linear(layer.in_features, layer.out_features)
    with torch.no_grad():
        lin.weight.copy_(layer.weight[k].t())
        lin.bias.copy_(layer.bias[k, 0])
    return lin


def test_conv_sizes_halve_rounding_down():
    assert conv_sizes(28, 2) == [28, 14, 7]
    assert conv_sizes(13, 3) == [13, 6, 3, 1]


@pytest.mark.parametrize("init", ["glorot_uniform", "torch"])
def test_expert_conv2d_equals_a_loop_of_conv2d_forward_and_gradients(init):
    torch.manual_seed(0)
    layer = ExpertConv2d(K, 2, 5, init)
    convs = [_conv(layer, k) for k in range(K)]
    x = torch.randn(4, K * 2, 9, 8)  # per-expert input: group k is expert k's
    out = layer(x)  # (B, K*5, 4, 4)
    ref = torch.cat([convs[k](x[:, 2 * k:2 * k + 2]) for k in range(K)], 1)
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    for k in range(K):
        torch.testing.assert_close(layer.weight.grad[k], convs[k].weight.grad)
        torch.testing.assert_close(layer.bias.grad[k], convs[k].bias.grad)


def test_expert_conv2d_on_a_shared_image_gives_every_expert_the_same_input():
    torch.manual_seed(1)
    layer = ExpertConv2d(K, 3, 4)
    x = torch.randn(2, 3, 8, 8)
    out = layer(x)
    ref = torch.cat([_conv(layer, k)(x) for k in range(K)], 1)
    torch.testing.assert_close(out, ref)
    assert not torch.equal(out[:, :4], out[:, 4:8])  # experts differ


@pytest.mark.parametrize("padding", [(0, 0), (1, 0), (1, 1)])
def test_expert_conv_transpose2d_equals_a_loop_of_conv_transpose2d(padding):
    torch.manual_seed(2)
    layer = ExpertConvTranspose2d(K, 4, 2, "torch")
    deconvs = [_deconv(layer, k, padding) for k in range(K)]
    x = torch.randn(3, K * 4, 5, 6, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x, padding)
    ref = torch.cat([deconvs[k](x_ref[:, 4 * k:4 * k + 4]) for k in range(K)], 1)
    assert out.shape == (3, K * 2, 10 + padding[0], 12 + padding[1])
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    for k in range(K):
        torch.testing.assert_close(layer.weight.grad[k], deconvs[k].weight.grad)


def _expert_encoder(enc: ConvExpertEncoder, k: int):
    """Expert k of the batched encoder as ordinary torch layers applied one after another."""
    convs = [_conv(c, k) for c in enc.convs]
    trunk = [_linear(lin, k) for lin in enc.trunk.layers]
    mu, log_var = _linear(enc.mu, k), _linear(enc.log_var, k)
    h_, w_, c_ = enc.image_shape

    def run(x):  # x (B, D) in (H, W, C) order
        h = x.view(-1, h_, w_, c_).permute(0, 3, 1, 2)
        for conv in convs:
            h = torch.relu(conv(h))
        h = h.flatten(1)
        for lin in trunk:
            h = torch.relu(lin(h))
        return mu(h), enc.min_var + torch.exp(log_var(h))

    return run, [*convs, *trunk, mu, log_var]


def _expert_decoder(dec: ConvExpertDecoder, k: int):
    trunk = [_linear(lin, k) for lin in dec.trunk.layers]
    fc = _linear(dec.fc, k)
    n = len(dec.deconvs)
    deconvs = [_deconv(d, k, (dec.heights[n - 1 - i] % 2, dec.widths[n - 1 - i] % 2)) for i, d in enumerate(dec.deconvs)]

    def run(z):  # z (B, L) -> (B, D) in (H, W, C) order
        h = z
        for lin in trunk:
            h = torch.relu(lin(h))
        h = torch.relu(fc(h)).view(z.shape[0], *dec.start)
        for i, d in enumerate(deconvs):
            h = d(h)
            if i < n - 1:
                h = torch.relu(h)
        return h.permute(0, 2, 3, 1).flatten(1)

    return run, [*trunk, fc, *deconvs]


def _params(modules):
    return [p for m in modules for p in m.parameters()]


@pytest.mark.parametrize("shape", [(13, 10, 3), (8, 8, 1)])
def test_conv_encoder_and_decoder_equal_a_loop_over_experts_forward_and_gradients(shape):
    torch.manual_seed(3)
    enc = ConvExpertEncoder(K, shape, (4, 6), (7,), 5, "relu", "torch", 1e-5)
    dec = ConvExpertDecoder(K, shape, (4, 6), (7,), 5, "relu", "torch")
    D = shape[0] * shape[1] * shape[2]
    x = torch.rand(4, D)
    mu, var = enc(x)  # (K, B, L)
    z = torch.randn(K, 4, 5)
    out = dec(z)  # (K, B, D)
    assert out.shape == (K, 4, D)
    loss = (mu * torch.arange(5.0)).sum() + var.sum() + (out * torch.linspace(-1, 1, D)).sum()
    loss.backward()
    for k in range(K):
        run_enc, enc_layers = _expert_encoder(enc, k)
        run_dec, dec_layers = _expert_decoder(dec, k)
        mu_k, var_k = run_enc(x)
        out_k = run_dec(z[k])
        torch.testing.assert_close(mu[k], mu_k)
        torch.testing.assert_close(var[k], var_k)
        torch.testing.assert_close(out[k], out_k)
        ((mu_k * torch.arange(5.0)).sum() + var_k.sum() + (out_k * torch.linspace(-1, 1, D)).sum()).backward()
        torch.testing.assert_close(enc.convs[0].weight.grad[k], enc_layers[0].weight.grad)
        torch.testing.assert_close(enc.convs[1].weight.grad[k], enc_layers[1].weight.grad)
        torch.testing.assert_close(dec.deconvs[0].weight.grad[k], dec_layers[-2].weight.grad)
        torch.testing.assert_close(dec.deconvs[1].weight.grad[k], dec_layers[-1].weight.grad)
        torch.testing.assert_close(dec.fc.weight.grad[k], dec_layers[-3].weight.grad.t())


def test_conv_encoder_takes_per_expert_images():
    torch.manual_seed(4)
    enc = ConvExpertEncoder(K, (8, 8, 2), (3,), (5,), 4, "relu", "torch", 1e-5)
    x = torch.rand(K, 6, 128)  # (K, B, D): expert k sees x[k]
    mu, _ = enc(x)
    for k in range(K):
        torch.testing.assert_close(mu[k], _expert_encoder(enc, k)[0](x[k])[0])


def test_the_model_builds_conv_experts_from_the_config_and_trains():
    cfg = ModelConfig(n_components=2, image_shape=(12, 12), channels=3, expert_network="conv", conv_channels=(4, 8),
                      hidden=(16,), manager_hidden=(8,), latent_dim=3)
    torch.manual_seed(0)
    module = MixtureModule(cfg)
    assert isinstance(module.encoder, ConvExpertEncoder) and isinstance(module.decoder, ConvExpertDecoder)
    x = torch.rand(5, 12 * 12 * 3)
    before = [p.detach().clone() for p in module.parameters()]
    opt = torch.optim.Adam(module.parameters(), 1e-2)
    out = module.loss(x)
    assert out.nelbo.shape == (5, 2) and torch.isfinite(out.loss)
    out.loss.backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    assert module.sample(4, 1).shape == (4, 432)
    assert module.log_likelihood(x, 2).shape == (5,)


@pytest.mark.parametrize(("changes", "field"), [
    ({"expert_network": "cnn"}, "expert_network"),
    ({"expert_network": "conv", "image_shape": (6, 20)}, "image_shape"),  # 3 layers need sides >= 8
    ({"conv_channels": (8, 0)}, "conv_channels"),
    ({"expert_network": "conv", "conv_channels": ()}, "conv_channels"),
    ({"channels": 0}, "channels"),
])
def test_bad_conv_settings_name_the_field(changes, field):
    base = {"conv_channels": (4, 8, 16)}
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{**base, **changes})


def test_channels_count_in_the_input_dimension():
    assert ModelConfig(image_shape=(5, 4), channels=3).input_dim == 60
    assert ModelConfig(image_shape=(5, 4)).input_dim == 20


def test_conv_manager_is_convolutions_then_the_dense_manager():
    from mixvae.convnets import ConvManager

    torch.manual_seed(5)
    man = ConvManager((9, 8, 3), (4, 6), (7,), K, "relu", "glorot_uniform", batchnorm=False)
    x = torch.rand(5, 9 * 8 * 3)
    h = x.view(5, 9, 8, 3).permute(0, 3, 1, 2)
    conv1, conv2 = man.convs[0], man.convs[2]
    h = torch.relu(nn.functional.conv2d(torch.relu(nn.functional.conv2d(h, conv1.weight, conv1.bias, 2, 1)),
                                        conv2.weight, conv2.bias, 2, 1))
    torch.testing.assert_close(man(x), man.head(h.flatten(1)))
    assert man(x).shape == (5, K)


def test_the_model_builds_a_conv_manager_that_learns():
    cfg = ModelConfig(n_components=2, image_shape=(8, 8), channels=3, manager_network="conv",
                      manager_conv_channels=(4,), manager_hidden=(8,), hidden=(8,), latent_dim=2,
                      manager_batchnorm=True)
    torch.manual_seed(0)
    module = MixtureModule(cfg)
    assert type(module.manager).__name__ == "ConvManager"
    before = [p.detach().clone() for p in module.manager.parameters()]
    out = module.loss(torch.rand(6, 192))
    out.loss.backward()
    torch.optim.SGD(module.parameters(), 0.1).step()
    assert all(not torch.equal(a, b) for a, b in zip(before, module.manager.parameters(), strict=True))
    with pytest.raises(ConfigError, match="image_shape"):
        ModelConfig(image_shape=(8, 8), manager_network="conv", manager_conv_channels=(2, 2, 2, 2))
    with pytest.raises(ConfigError, match="manager_network"):
        ModelConfig(manager_network="resnet")
