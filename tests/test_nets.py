import torch

from mixvae.nets import ExpertLinear, Manager


def test_expert_linear_equals_a_loop_over_experts():
    torch.manual_seed(0)
    layer = ExpertLinear(3, 5, 4)
    x = torch.randn(7, 5)
    shared = layer(x)  # (K, B, out)
    per_expert = layer(x.expand(3, 7, 5).contiguous())
    loop = torch.stack([x @ layer.weight[k] + layer.bias[k] for k in range(3)])
    assert shared.shape == (3, 7, 4)
    torch.testing.assert_close(shared, loop)
    torch.testing.assert_close(per_expert, loop)


def test_glorot_bounds_and_zero_bias():
    layer = ExpertLinear(2, 100, 50, init="glorot_uniform")
    bound = (6 / 150) ** 0.5
    assert layer.weight.abs().max() <= bound and torch.all(layer.bias == 0)


def test_manager_shapes():
    m = Manager(16, (8,), 3, "relu", "torch", batchnorm=True)
    assert m(torch.rand(5, 16)).shape == (5, 3)
