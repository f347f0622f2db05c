"""Convolutional expert VAEs written the way most people would: K ``nn.Module`` VAEs of ``nn.Conv2d``
and ``nn.ConvTranspose2d`` and a Python loop over them, the reference that ``benchmarks/speed.py``
measures ``mixvae``'s batched convolutional experts (``model.expert_network=conv``) against.

Both sides compute the same maths: manager 784-128 sigmoid-K softmax; each expert: two 4x4
stride-2 convolutions (1 -> c1 -> c2 channels, ReLU), an h-unit ReLU layer, mu (10) and
var = 1e-5 + exp(linear) (10); the decoder mirrors it with transposed convolutions (:data:`SIZES`);
Gaussian likelihood with std 0.5 on sigmoid means; loss = mean_x sum_k m_k(x) L_k(x) +
0.1 * var_k(sum_x m_k(x)); Adam 1e-3, batch 100.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

__all__ = ["NaiveConvMixture", "NaiveConvVAE", "conv_rows"]

SIZES = {"c1, c2, h = 32, 64, 128": (32, 64, 128), "c1, c2, h = 4, 8, 32": (4, 8, 32)}


class NaiveConvVAE(nn.Module):
    """One expert: a plain convolutional VAE on (B, 1, 28, 28) images."""

    def __init__(self, c1: int, c2: int, h: int, latent: int = 10):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(c2 * 7 * 7, h), nn.ReLU())
        self.mu, self.log_var = nn.Linear(h, latent), nn.Linear(h, latent)
        self.dec = nn.Sequential(nn.Linear(latent, h), nn.ReLU(), nn.Linear(h, c2 * 7 * 7), nn.ReLU(),
                                 nn.Unflatten(1, (c2, 7, 7)), nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(c1, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Negative ELBO of every image, x (B, 784), noise (B, L) -> (B,)."""
        h = self.enc(x.view(-1, 1, 28, 28))
        mu, var = self.mu(h), 1e-5 + torch.exp(self.log_var(h))
        z = mu + var.sqrt() * noise
        mean = torch.sigmoid(self.dec(z)).flatten(1)
        std = 0.5
        recon = ((x - mean) ** 2).sum(1) / (2 * std * std) + x.shape[1] * (math.log(std) + 0.5 * math.log(2 * math.pi))
        kl = 0.5 * (var + mu * mu - 1.0 - var.log()).sum(1)
        return recon + kl


class NaiveConvMixture(nn.Module):
    """A manager and a Python list of K convolutional VAEs."""

    def __init__(self, sizes: tuple[int, int, int], n_experts: int = 10):
        super().__init__()
        self.manager = nn.Sequential(nn.Linear(784, 128), nn.Sigmoid(), nn.Linear(128, n_experts))
        self.experts = nn.ModuleList(NaiveConvVAE(*sizes) for _ in range(n_experts))

    def loss(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The seed objective; noise (K, B, L)."""
        probs = self.manager(x).softmax(1)  # (B, K)
        nelbo = torch.stack([e(x, noise[k]) for k, e in enumerate(self.experts)], 1)  # (B, K)
        return (probs * nelbo).sum(1).mean() + 0.1 * probs.sum(0).var(unbiased=False)


def _step(module: nn.Module, loss_of, batch, gen: torch.Generator):
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        x = batch()
        loss = loss_of(x, torch.randn(10, x.shape[0], 10, generator=gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def conv_rows(images, quick: bool, interleaved, batches) -> list[dict[str, Any]]:
    """Training images per second of the batched convolutional experts and of the Python loop, at
    two network sizes, taking turns (``interleaved``) so that load on the machine hits both alike;
    images (N, 28, 28)."""
    import dataclasses

    from mixvae.config import preset
    from mixvae.model import MixtureModule

    rows: list[dict[str, Any]] = []
    for label, (c1, c2, h) in SIZES.items():
        cfg = dataclasses.replace(preset("seed").model, expert_network="conv", conv_channels=(c1, c2), hidden=(h,),
                                  activation="relu")
        torch.manual_seed(0)
        batched, naive = MixtureModule(cfg), NaiveConvMixture((c1, c2, h), cfg.n_components)
        batch = batches(images, 100)
        fns = {"batched": _step(batched, lambda x, n, m=batched: m.loss(x, n).loss, batch,
                                torch.Generator().manual_seed(0)),
               "loop": _step(naive, naive.loss, batch, torch.Generator().manual_seed(0))}
        rounds, calls = (2, 1) if quick else ((4, 1) if c1 > 8 else (10, 5))
        t0 = time.perf_counter()
        best = interleaved(fns, rounds, calls)
        spent = time.perf_counter() - t0
        rows += [
            {"what": f"conv experts ({label}), batched: one grouped convolution per layer for all 10 experts",
             "batch": 100, "images_per_s": 100 / best["batched"]},
            {"what": f"the same conv VAEs ({label}) as a Python loop over 10 nn.Module experts "
                     "(benchmarks/naive_conv.py)", "batch": 100, "images_per_s": 100 / best["loop"]},
            {"what": f"ratio conv batched / loop, {label} ({rounds} interleaved rounds of {calls}, {spent:.0f} s)",
             "ratio": best["loop"] / best["batched"]},
        ]
    return rows
