"""Using a trained model on arrays of images: routing probabilities, latent means, the IW bound.

Each is computed here once, in batches, and every caller (training's evaluation, the command
line, the estimator, figures, benchmarks) goes through these functions.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mixvae import memory
from mixvae.devices import cpu_draw
from mixvae.model import MixtureModule
from mixvae.rows import read_range

__all__ = ["batches", "images_to_tensor", "latent_means", "log_likelihood", "predict_proba", "samples_per_expert",
           "to_unit_floats"]

Device = str | torch.device


def images_to_tensor(images: Any, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 (n, H*W) in [0, 1] for rows start:stop.

    Float input (vectors (N, D) already in the model's units, see :mod:`mixvae.kinds.vectors`) is kept
    as it is, as float32.
    """
    part = read_range(images, start, stop)
    if torch.is_tensor(part):
        t = part  # used where it lives
    else:
        part = np.asarray(part)
        if not part.flags.writeable:  # a read-only memory map: torch warns about sharing it, so copy the rows
            part = part.copy()
        t = torch.as_tensor(part, device="cpu")  # host rows, moved by the caller
    return to_unit_floats(t.reshape(t.shape[0], -1))


def to_unit_floats(t: torch.Tensor) -> torch.Tensor:
    """The model's input from stored rows: uint8 pixels / 255; floats (vectors) as float32."""
    return t.float() if t.is_floating_point() else t.float().div_(255.0)


def batches(images: Any, batch_size: int, device: Device = "cpu", stop: int | None = None
            ) -> Iterator[torch.Tensor]:
    """Consecutive batches (B, D) of images[:stop] as floats in [0, 1] on ``device``."""
    n = len(images) if stop is None else min(stop, len(images))
    for start in range(0, n, batch_size):
        yield images_to_tensor(images, start, min(start + batch_size, n)).to(device)
        memory.release()  # the last batch's blocks back to the system: a long pass does not grow the process


class _EvalMode:
    """``with _EvalMode(module):`` runs in eval mode and restores the module's mode afterwards."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


@torch.no_grad()
def predict_proba(module: MixtureModule, images: Any, batch_size: int = 1000, device: Device = "cpu") -> np.ndarray:
    """Routing probabilities q(k|x) for uint8 images (N, H, W) -> (N, K) float32."""
    with _EvalMode(module):
        out = [module.predict_proba(x).float().cpu() for x in batches(images, batch_size, device)]
    return torch.cat(out).numpy() if out else np.zeros((0, module.config.n_components), np.float32)


@torch.no_grad()
def latent_means(module: MixtureModule, images: Any, batch_size: int = 500, device: Device = "cpu") -> np.ndarray:
    """Each image's latent mean under the expert it is routed to, (N, latent_dim)."""
    out = []
    with _EvalMode(module):
        for x in batches(images, batch_size, device):
            mu, _ = module.encode(x)  # (K, B, L)
            k = module.manager_logits(x).argmax(-1)  # (B,)
            out.append(mu[k, torch.arange(x.shape[0], device=x.device)].cpu())  # (B, L)
    return torch.cat(out).numpy() if out else np.zeros((0, module.config.latent_dim), np.float32)


@torch.no_grad()
def samples_per_expert(module: MixtureModule, n: int, seed: int) -> list[np.ndarray]:
    """n decoder means of each expert in turn, (n, D) each, from one generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [module.sample(n, k, generator=gen).numpy() for k in range(module.config.n_components)]


def log_likelihood(module: MixtureModule, images: Any, n_samples: int, *, binarize: bool = False,
                   stop: int | None = None, device: Device = "cpu", batch_size: int = 100) -> np.ndarray:
    """Importance-weighted lower bound on log p(x) in nats of each of images[:stop], (n,) float64.

    ``n_samples`` draws per expert (see :meth:`MixtureModule.log_likelihood`). The draws for each
    image are seeded by its content (and seed 0), so an image gets the same bound wherever it
    sits in the array and whatever else is in it. A model trained on binarised pixels
    (``binarize``) is evaluated on one fixed binarisation of each image (seed 1): each pixel is 1
    with probability its intensity. The bound is computed in float64, so consecutive calls on
    consecutive parts of an array give the bound of one call on the whole array.
    """
    K, L = module.config.n_components, module.config.latent_dim
    module = copy.deepcopy(module).double()  # in float64, an image's bound does not depend on its batch
    out = []
    with _EvalMode(module):
        for x in batches(images, batch_size, "cpu", stop):
            keys = [zlib.crc32(row.numpy().tobytes()) for row in x]  # (B,) one seed per row, from its content
            if binarize:
                coins = torch.stack([cpu_draw(torch.rand, x.shape[1], generator=_seeded(1, k)) for k in keys])  # (B, D)
                x = (coins < x).float()
            noise = torch.stack([cpu_draw(torch.randn, n_samples, K, L, generator=_seeded(0, k)) for k in keys], 2)
            x, noise = x.to(device, torch.float64), noise.double()  # noise (S, K, B, L)
            out.append(module.log_likelihood(x, n_samples, noise=noise).cpu())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def _seeded(seed: int, key: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 2**32 + key)
