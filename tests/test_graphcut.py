"""Spectral partitions and normalised cuts of a neighbour graph, against hand calculations."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from mixvae.graphcut import affinity, normalised_cut, spectral_partition
from mixvae.neighbours import nearest_neighbours

from conftest import blobs


def test_affinity_is_the_symmetrised_graph() -> None:
    graph = np.array([[1], [0], [0]])  # 0 <-> 1 name each other; 2 names 0
    a = affinity(graph).toarray()
    np.testing.assert_array_equal(a, [[0, 2, 1], [2, 0, 0], [1, 0, 0]])


def test_normalised_cut_by_hand() -> None:
    # a path 0 - 1 - 2 - 3 (each names its right neighbour, the last its left one)
    graph = np.array([[1], [2], [3], [2]])
    a = affinity(graph).toarray()  # weights: 0-1: 1, 1-2: 1, 2-3: 2
    assign = np.array([0, 0, 1, 1])
    degree = a.sum(1)
    cut = a[np.ix_(assign == 0, assign == 1)].sum()
    want = cut / degree[assign == 0].sum() + cut / degree[assign == 1].sum()
    assert np.isclose(normalised_cut(graph, assign, 2), want)
    assert normalised_cut(graph, np.zeros(4, int), 2) == 0.0  # one cluster cuts nothing


def test_spectral_partition_recovers_separated_clusters() -> None:
    x, y = blobs(n_per=60, k=4)
    graph = nearest_neighbours(x, 8, dims=16).numpy()
    part = spectral_partition(graph, 4, seed=0)
    assert part.shape == (240,) and part.dtype == np.int64
    assert adjusted_rand_score(y, part) > 0.95
    np.testing.assert_array_equal(part, spectral_partition(graph, 4, seed=0))  # the same on every call
    assert normalised_cut(graph, part, 4) < normalised_cut(graph, np.random.default_rng(0).integers(0, 4, 240), 4)
