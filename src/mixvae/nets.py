"""Networks, no probability: batched expert layers, expert encoder/decoder stacks, the manager.

Every expert layer is one weight tensor of shape (K, in, out) applied with a batched matmul, so
adding an expert changes a number, not the code.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ExpertDecoder", "ExpertEncoder", "ExpertLinear", "ExpertMLP", "Manager", "activation"]


def activation(name: str) -> nn.Module:
    return {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh}[name]()


def _glorot_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound)


class ExpertLinear(nn.Module):
    """K independent linear layers stored as one (K, in, out) weight.

    Input is either shared by all experts, shape (B, in), or per expert, shape (K, B, in);
    the output is (K, B, out).
    """

    def __init__(self, n_experts: int, in_features: int, out_features: int, init: str = "glorot_uniform"):
        super().__init__()
        self.n_experts, self.in_features, self.out_features = n_experts, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n_experts, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n_experts, 1, out_features))
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "glorot_uniform") -> None:
        if init == "glorot_uniform":
            _glorot_(self.weight, self.in_features, self.out_features)
            nn.init.zeros_(self.bias)
        else:  # torch's nn.Linear default, per expert
            bound = 1.0 / math.sqrt(self.in_features)
            with torch.no_grad():
                self.weight.uniform_(-bound, bound)
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            # the shared input is broadcast, not copied: (K, B, in) with a zero stride over K, so
            # neither x nor the weight is rearranged and the output is contiguous (K, B, out)
            x = x.expand(self.n_experts, *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)  # (K, B, out)

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, in={self.in_features}, out={self.out_features}"


class ExpertMLP(nn.Module):
    """A stack of ExpertLinear layers with an activation after each hidden layer."""

    def __init__(self, n_experts: int, sizes: list[int], act: str, init: str):
        super().__init__()
        self.layers = nn.ModuleList(ExpertLinear(n_experts, a, b, init) for a, b in pairwise(sizes))
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.act(layer(x))
        return x


class ExpertEncoder(nn.Module):
    """q_k(z|x) = N(mu_k(x), diag(var_k(x))) for all K experts at once."""

    def __init__(self, n_experts: int, input_dim: int, hidden: tuple[int, ...], latent_dim: int, act: str, init: str,
                 min_var: float):
        super().__init__()
        self.trunk = ExpertMLP(n_experts, [input_dim, *hidden], act, init)
        self.mu = ExpertLinear(n_experts, hidden[-1], latent_dim, init)
        self.log_var = ExpertLinear(n_experts, hidden[-1], latent_dim, init)
        self.min_var = min_var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)  # (K, B, H)
        var = self.min_var + torch.exp(self.log_var(h))  # (K, B, L)
        return self.mu(h), var


class ExpertDecoder(nn.Module):
    """Decoder parameters of p_k(x|z) for all experts: z (K, B, L) -> (K, B, D) pre-activation."""

    def __init__(self, n_experts: int, latent_dim: int, hidden: tuple[int, ...], output_dim: int, act: str, init: str):
        super().__init__()
        self.trunk = ExpertMLP(n_experts, [latent_dim, *reversed(hidden)], act, init)
        self.out = ExpertLinear(n_experts, hidden[0], output_dim, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(z))


class Manager(nn.Module):
    """The gating network: x (B, D) -> routing logits (B, K)."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], n_experts: int, act: str, init: str,
                 batchnorm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        sizes = [input_dim, *hidden]
        for a, b in pairwise(sizes):
            layers.append(nn.Linear(a, b))
            if batchnorm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(activation(act))
        layers.append(nn.Linear(sizes[-1], n_experts))
        self.net = nn.Sequential(*layers)
        if init == "glorot_uniform":
            for m in self.net:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """-log N(x; mean, std^2) summed over the last dim. x (B, D), mean (K, B, D) -> (K, B)."""
    d = x.shape[-1]
    const = d * (math.log(std) + 0.5 * math.log(2 * math.pi))
    # mse_loss is one fused kernel forward and one backward: no (K, B, D) difference or square is
    # kept for the backward pass (about 3x faster than ((x - mean) ** 2).sum(-1) on a CPU)
    sq = F.mse_loss(mean, x.expand_as(mean), reduction="none").sum(-1)  # (K, B)
    return sq / (2 * std * std) + const


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x; sigmoid(logits)) summed over the last dim; x may be in [0, 1]. -> (K, B).

    -[x log s(l) + (1 - x) log(1 - s(l))] = softplus(l) - x l, summed over pixels.
    """
    return F.softplus(logits).sum(-1) - (logits * x).sum(-1)  # (K, B)
