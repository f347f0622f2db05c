from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def blobs(n_per: int = 100, k: int = 4, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated image clusters: cluster c lights up its own band of rows, plus noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    band = size // k
    for c in range(k):
        base = np.zeros((size, size), np.float32)
        base[c * band:(c + 1) * band] = 1.0
        noisy = np.clip(base[None] * rng.uniform(0.7, 1.0, (n_per, 1, 1)) + rng.normal(0, 0.08, (n_per, size, size)), 0, 1)
        images.append((noisy * 255).round().astype(np.uint8))
        labels.append(np.full(n_per, c))
    x, y = np.concatenate(images), np.concatenate(labels)
    order = rng.permutation(len(x))
    return x[order], y[order]


@pytest.fixture
def blob_data():
    return blobs()
