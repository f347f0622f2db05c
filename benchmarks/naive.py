"""The seed model written the way most people would: K separate ``nn.Module`` VAEs and a Python
loop over them. The same maths as ``mixvae``'s ``seed`` preset, kept as the reference that
``benchmarks/speed.py`` measures the batched model against.

manager 784-128 sigmoid-K softmax; each expert: encoder 784-128 sigmoid -> mu (10) and
var = 1e-5 + exp(linear) (10), decoder 10-128 sigmoid-784 sigmoid; Gaussian likelihood with
std 0.5; analytic KL; loss = mean_x sum_k m_k(x) L_k(x) + 0.1 * var_k(sum_x m_k(x)); Adam 1e-3.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NaiveMixture", "NaiveVAE"]


class NaiveVAE(nn.Module):
    """One expert: a plain VAE."""

    def __init__(self, input_dim: int = 784, hidden: int = 128, latent: int = 10):
        super().__init__()
        self.enc = nn.Linear(input_dim, hidden)
        self.mu = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.dec1 = nn.Linear(latent, hidden)
        self.dec2 = nn.Linear(hidden, input_dim)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Negative ELBO of every image, x (B, D), noise (B, L) -> (B,)."""
        h = torch.sigmoid(self.enc(x))
        mu, var = self.mu(h), 1e-5 + torch.exp(self.log_var(h))
        z = mu + var.sqrt() * noise
        mean = torch.sigmoid(self.dec2(torch.sigmoid(self.dec1(z))))
        std = 0.5
        recon = ((x - mean) ** 2).sum(1) / (2 * std * std) + x.shape[1] * (math.log(std) + 0.5 * math.log(2 * math.pi))
        kl = 0.5 * (var + mu * mu - 1.0 - var.log()).sum(1)
        return recon + kl


class NaiveMixture(nn.Module):
    """A manager and a Python list of K VAEs."""

    def __init__(self, n_experts: int = 10, input_dim: int = 784):
        super().__init__()
        self.manager = nn.Sequential(nn.Linear(input_dim, 128), nn.Sigmoid(), nn.Linear(128, n_experts))
        self.experts = nn.ModuleList(NaiveVAE(input_dim) for _ in range(n_experts))

    def loss(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The seed objective; noise (K, B, L)."""
        probs = self.manager(x).softmax(1)  # (B, K)
        nelbo = torch.stack([e(x, noise[k]) for k, e in enumerate(self.experts)], 1)  # (B, K)
        return (probs * nelbo).sum(1).mean() + 0.1 * probs.sum(0).var(unbiased=False)
