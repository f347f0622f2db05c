"""The batch source: this process's share of each training batch, read, binarised and deformed.

Randomness that shapes a batch (binarisation, reparameterisation noise, neighbour picks, the
deformations of views) is drawn for the *global* batch from one generator and each process
takes its own rows, so a run on several processes draws exactly what one process would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from mixvae.augment import random_affine
from mixvae.config import RunConfig
from mixvae.devices import cpu_draw
from mixvae.inference import to_unit_floats
from mixvae.rows import read_rows

__all__ = ["DEVICE_DATA_SHARE", "BatchSource", "fits_on_device"]

DEVICE_DATA_SHARE = 0.25  # the training images go on the device when they take at most this share of its free memory


def fits_on_device(images: torch.Tensor, device: torch.device) -> bool:
    """Whether ``images`` take at most ``DEVICE_DATA_SHARE`` of ``device``'s free memory (CUDA's
    count; other accelerators: no)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() * images.element_size() <= DEVICE_DATA_SHARE * free


class BatchSource:
    """Training images (N, H, W) uint8, in memory or memory-mapped, served batch by batch.

    Each process takes ``batch_size / world`` images per step, so a step sees ``batch_size``
    images in all. The sampler deals the shuffled indices out in turn (process r gets positions
    r, r + world, ...) and pads them to a multiple of world by repeating the first few indices.
    """

    def __init__(self, images: Any, cfg: RunConfig, generator: torch.Generator, device: torch.device,
                 rank: int = 0, world: int = 1, data_on_device: bool | str = "auto"):
        self.cfg, self.generator, self.device = cfg, generator, torch.device(device)
        self.rank, self.world = rank, world
        self.n = len(images)
        # a memory map (or any array-like that reads on access) stays on disk; batches read their rows
        self.in_memory = torch.is_tensor(images) or (type(images) is np.ndarray and images.flags.writeable)
        self.images = torch.as_tensor(images, device="cpu") if self.in_memory else images
        self.copies = self.copied_bytes = 0  # host-to-device copies made so far (none when the device is the CPU)
        if self.in_memory and self.device.type != "cpu" and (
                data_on_device is True or (data_on_device == "auto" and fits_on_device(self.images, self.device))):
            self.images = self._to_device(self.images)  # once: batches are then indexed on the device
        self.per_rank = cfg.train.batch_size // world
        # the sampler reads only len() of its dataset: the range stands for the images
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(self.n),  # type: ignore[arg-type]  # torch annotates Dataset; any sized sequence works
            num_replicas=world, rank=rank, shuffle=True, seed=cfg.train.seed)

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """This process's image indices for every step of ``epoch``, (per_rank,) each."""
        self.sampler.set_epoch(epoch)
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        steps = [order[i:i + self.per_rank] for i in range(0, len(order), self.per_rank)]
        if self.cfg.model.manager_batchnorm and len(steps) > 1 and len(steps[-1]) == 1:
            steps[-2:] = [np.concatenate(steps[-2:])]  # batch norm cannot train on one image: join it to the last
        return steps

    @property
    def data_on_device(self) -> bool:
        """Whether the training images live on the (non-CPU) device."""
        return torch.is_tensor(self.images) and self.images.device.type != "cpu"

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device, counting a host-to-device copy when one is made."""
        if t.device != self.device and self.device.type != "cpu":
            self.copies += 1
            self.copied_bytes += t.numel() * t.element_size()
        return t.to(self.device)

    def mine(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This process's share of a draw made for the global batch, on the device."""
        return self._to_device(t.index_select(dim, torch.arange(self.rank, t.shape[dim], self.world, device=t.device)))

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """Images idx as floats (B, D) in [0, 1] on the device (binarised when the config says so)."""
        if self.in_memory:
            index = torch.from_numpy(idx)
            x = self.images[self._to_device(index) if self.data_on_device else index]
        else:
            x = torch.from_numpy(read_rows(self.images, idx))
        x = to_unit_floats(self._to_device(x.reshape(len(idx), -1)))  # (B, D)
        if self.cfg.train.binarize:  # uniforms drawn for the global batch, so every process count binarises alike
            x = (self.mine(cpu_draw(torch.rand, len(idx) * self.world, x.shape[1], generator=self.generator)) < x).float()
        return x

    def noise(self, batch_size: int) -> torch.Tensor:
        """Standard normal noise (K, B, L) for the reparameterisation of this process's B images."""
        mc = self.cfg.model
        draw = cpu_draw(torch.randn, mc.n_components, batch_size * self.world, mc.latent_dim, generator=self.generator)
        return self.mine(draw, 1)  # this process's images sit at positions rank::world

    def pick(self, high: int, batch_size: int) -> torch.Tensor:
        """One integer in [0, high) per image of this process's batch, drawn for the global batch, (B,)."""
        return cpu_draw(torch.randint, high, (batch_size * self.world,), generator=self.generator)[self.rank::self.world]

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """A randomly deformed copy of each image x (B, D), for the routing regularisers (vectors: a
        copy with Gaussian noise of std ``view_noise``; or x itself)."""
        tc = self.cfg.train
        if not tc.augment:
            if tc.view_noise > 0:  # vectors: a noisy copy, the noise drawn for the global batch
                return x + tc.view_noise * self.mine(cpu_draw(torch.randn, len(x) * self.world, x.shape[1],
                                                                   generator=self.generator))
            return x
        u = self.mine(cpu_draw(torch.rand, len(x) * self.world, 5, generator=self.generator))  # drawn for the global batch
        return random_affine(x, self.cfg.model.array_shape, flip=tc.augment_flip, uniforms=u, fill=tc.augment_fill)
