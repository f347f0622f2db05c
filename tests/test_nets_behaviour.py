"""Initialisation reaches every expert layer, and the likelihoods equal torch.distributions'."""

import math

import pytest
import torch

from mixvae.nets import ExpertDecoder, ExpertEncoder, ExpertLinear, Manager, activation, bernoulli_nll, gaussian_nll


def expert_layers(module: torch.nn.Module) -> list[ExpertLinear]:
    return [m for m in module.modules() if isinstance(m, ExpertLinear)]


def stacks(init: str) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [ExpertEncoder(2, 30, (20, 10), 4, "relu", init, 1e-5), ExpertDecoder(2, 4, (20, 10), 30, "relu", init)]


def test_glorot_fills_the_whole_symmetric_interval():
    """Uniform on [-b, b] with b = sqrt(6 / (fan_in + fan_out)): both signs, spread to the bound."""
    torch.manual_seed(0)
    w = ExpertLinear(2, 100, 50, init="glorot_uniform").weight.detach()
    bound = math.sqrt(6 / 150)
    assert w.min() < -0.9 * bound and w.max() > 0.9 * bound
    assert abs(float(w.mean())) < 0.05 * bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)  # the std of U(-b, b)


def test_glorot_init_reaches_every_expert_layer():
    for stack in stacks("glorot_uniform"):
        layers = expert_layers(stack)
        assert len(layers) == 4 if isinstance(stack, ExpertEncoder) else len(layers) == 3
        for layer in layers:
            bound = math.sqrt(6 / (layer.in_features + layer.out_features))
            assert torch.all(layer.bias == 0), layer
            assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.8 * bound, layer


def test_torch_init_reaches_every_expert_layer():
    """torch's nn.Linear default: weight and bias uniform on +-1/sqrt(fan_in), so biases are not zero."""
    for stack in stacks("torch"):
        for layer in expert_layers(stack):
            bound = 1 / math.sqrt(layer.in_features)
            assert torch.all(layer.bias != 0) and layer.bias.abs().max() <= bound, layer
            assert layer.weight.abs().max() <= bound, layer


@pytest.mark.parametrize("init", ["glorot_uniform", "torch"])
def test_manager_init(init):
    torch.manual_seed(0)
    manager = Manager(30, (20, 10), 3, "relu", init)
    assert manager(torch.rand(4, 30)).shape == (4, 3)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in manager.modules())  # only when asked for
    linears = [m for m in manager.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(30, 20), (20, 10), (10, 3)]
    for lin in linears:
        fan_out, fan_in = lin.weight.shape
        if init == "glorot_uniform":
            assert torch.all(lin.bias == 0) and lin.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        else:
            assert torch.all(lin.bias != 0) and lin.weight.abs().max() <= 1 / math.sqrt(fan_in)


def test_likelihoods_equal_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 12, generator=g, dtype=torch.float64)
    out = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    mean = torch.sigmoid(out)
    normal = -torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_nll(x, mean, 0.3), normal)
    coins = (x > 0.5).double()
    bern = -torch.distributions.Bernoulli(logits=out).log_prob(coins).sum(-1)
    torch.testing.assert_close(bernoulli_nll(coins, out), bern)


@pytest.mark.parametrize("name, kind", [("sigmoid", torch.nn.Sigmoid), ("relu", torch.nn.ReLU), ("elu", torch.nn.ELU),
                                        ("gelu", torch.nn.GELU), ("tanh", torch.nn.Tanh)])
def test_activations_by_name(name, kind):
    assert type(activation(name)) is kind


def test_the_default_init_is_glorot_and_torchs_fills_both_signs():
    torch.manual_seed(0)
    layer = ExpertLinear(2, 100, 50)
    assert torch.all(layer.bias == 0) and layer.weight.abs().max() <= math.sqrt(6 / 150)
    layer.reset_parameters("torch")
    bias = layer.bias.detach()
    assert bias.min() < -0.05 and bias.max() > 0.05 and bias.abs().max() <= 0.1  # U(-1/sqrt(100), 1/sqrt(100))
    layer.reset_parameters()  # the default again
    assert torch.all(layer.bias == 0) and layer.weight.abs().max() <= math.sqrt(6 / 150)
