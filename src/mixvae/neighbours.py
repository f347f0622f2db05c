"""Nearest neighbours of the training images, for the manager's regularisers.

An unsupervised embedding (PCA of the pixels) and a cosine nearest-neighbour search in chunks,
so that memory stays bounded by the chunk size times N; no label is involved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mixvae.batches import read_rows
from mixvae.inference import images_to_tensor

__all__ = ["cosine_neighbours", "nearest_neighbours", "pca_embedding"]


def pca_embedding(images: Any, dims: int = 50, chunk: int = 2048) -> torch.Tensor:
    """Images (N, H, W) uint8 -> (N, dims) coordinates on their leading principal axes.

    The axes come from a fixed random sample of at most 10,000 images; the images are read in
    chunks, so a memory-mapped array is never read whole.
    """
    n = len(images)
    total = torch.zeros(int(np.prod(images.shape[1:])), dtype=torch.float64)
    for start in range(0, n, chunk):
        total += images_to_tensor(images, start, start + chunk).sum(0, dtype=torch.float64)
    mean = (total / n).float()  # (D,)
    dims = min(dims, total.shape[0], n)
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(n, generator=gen)[:10000].numpy()
    sample = torch.cat([torch.from_numpy(read_rows(images, pick[s:s + chunk])).reshape(-1, total.shape[0])
                        for s in range(0, len(pick), chunk)]).float().div_(255.0) - mean  # (<= 10000, D)
    _, _, v = torch.linalg.svd(sample, full_matrices=False)  # principal axes from a sample
    return torch.cat([(images_to_tensor(images, s, s + chunk) - mean) @ v[:dims].t()
                      for s in range(0, n, chunk)])  # (N, dims)


def nearest_neighbours(images: Any, k: int, dims: int = 50, chunk: int = 2048) -> torch.Tensor:
    """Indices (N, k) of each image's k nearest other images, by cosine similarity after PCA to
    ``dims`` dimensions."""
    return cosine_neighbours(pca_embedding(images, dims, chunk), k, chunk)


def cosine_neighbours(e: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Indices (N, k) of each row's k most cosine-similar other rows of embeddings e (N, d)."""
    e = torch.nn.functional.normalize(e, dim=1)  # cosine similarity: the nearest have the largest e_i . e_j
    sq = (e * e).sum(1)  # (N,)
    out = torch.empty(e.shape[0], k, dtype=torch.long)
    for start in range(0, e.shape[0], chunk):
        d = sq[start:start + chunk, None] - 2 * e[start:start + chunk] @ e.t() + sq[None]  # (c, N)
        rows = torch.arange(start, min(start + chunk, e.shape[0]))
        d[rows - start, rows] = float("inf")  # not its own neighbour
        out[start:start + chunk] = d.topk(k, dim=1, largest=False).indices
    return out
