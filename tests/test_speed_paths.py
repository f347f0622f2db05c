"""The fast code paths compute the same maths as the plain formulas they replace."""

from __future__ import annotations

import math
import subprocess
import sys

import torch
from torch.nn import functional as F

from mixvae import cli
from mixvae import train as train_mod
from mixvae.config import ModelConfig, RunConfig, TrainConfig
from mixvae.nets import ExpertLinear, bernoulli_nll, gaussian_nll
from mixvae.train import Runtime, fit, make_adam

from conftest import blobs


def test_gaussian_nll_equals_the_plain_formula_and_its_gradient():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 20, generator=gen)  # (B, D)
    mean = torch.rand(3, 6, 20, generator=gen, dtype=torch.float64).float().requires_grad_()  # (K, B, D)
    std = 0.5
    plain = ((x - mean) ** 2).sum(-1) / (2 * std**2) + 20 * (math.log(std) + 0.5 * math.log(2 * math.pi))
    fast = gaussian_nll(x, mean, std)
    assert fast.shape == (3, 6)
    torch.testing.assert_close(fast, plain)
    (g_plain,) = torch.autograd.grad(plain.sum(), mean)
    (g_fast,) = torch.autograd.grad(fast.sum(), mean)
    torch.testing.assert_close(g_fast, g_plain)


def test_bernoulli_nll_equals_binary_cross_entropy_even_for_large_logits():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 30, generator=gen)
    logits = (torch.randn(4, 5, 30, generator=gen) * 30).requires_grad_()  # far into the flat tails
    plain = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    fast = bernoulli_nll(x, logits)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-4)
    (g_plain,) = torch.autograd.grad(plain.sum(), logits)
    (g_fast,) = torch.autograd.grad(fast.sum(), logits)
    torch.testing.assert_close(g_fast, g_plain)
    assert torch.isfinite(fast).all()


def test_expert_linear_on_a_shared_input_equals_one_layer_per_expert():
    torch.manual_seed(0)
    layer = ExpertLinear(4, 7, 5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 7)
    y = layer(x)  # (K, B, out)
    assert y.shape == (4, 3, 5) and y.is_contiguous()
    for k in range(4):
        torch.testing.assert_close(y[k], x @ layer.weight[k] + layer.bias[k])
    y.square().sum().backward()
    expected = torch.stack([x.t() @ (2 * y[k].detach()) for k in range(4)])  # (K, in, out)
    torch.testing.assert_close(layer.weight.grad, expected)


def test_fused_adam_takes_the_plain_adam_steps():
    torch.manual_seed(0)
    a = torch.nn.Linear(6, 3)
    b = torch.nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    x = torch.randn(8, 6)
    for _ in range(5):
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_compile_flag_is_parsed():
    assert cli.parser().parse_args(["train", "--compile"]).compile is True
    assert cli.parser().parse_args(["train"]).compile is False


def _tiny_config() -> RunConfig:
    model = ModelConfig(n_components=2, image_shape=(8, 8), latent_dim=2, hidden=(8,), manager_hidden=(8,))
    return RunConfig(preset="test", data="blobs", model=model, train=TrainConfig(epochs=1, batch_size=50, seed=0))


def test_compile_falls_back_with_one_line_when_unavailable(monkeypatch):
    x, _ = blobs(n_per=25, k=2)
    expected, _ = fit(_tiny_config(), x, log=None, runtime=Runtime(progress=False))

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    lines: list[str] = []
    module, _history = fit(_tiny_config(), x, log=lines.append, runtime=Runtime(progress=False, compile=True))
    notes = [m for m in lines if "torch.compile" in m]
    assert notes == ["torch.compile is unavailable here (RuntimeError: no compiler here); training without it"]
    for p, q in zip(module.parameters(), expected.parameters()):
        torch.testing.assert_close(p, q)


def test_compile_falls_back_when_the_first_call_fails():
    calls = []

    def model(*args):
        calls.append(args)
        return "eager"

    wrapper = train_mod._Compiled(model, log=calls.append)  # type: ignore[arg-type]

    def failing(*args):
        raise RuntimeError("backend failed")

    wrapper.compiled = failing
    assert wrapper(1) == "eager"
    assert wrapper.compiled is None
    assert any("RuntimeError: backend failed" in str(c) for c in calls)


def test_cli_import_does_not_import_torch():
    code = "import sys, mixvae, mixvae.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
