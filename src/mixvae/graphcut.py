"""Partitions of a neighbour graph: spectral clustering (Ng, Jordan and Weiss, 2001; Shi and Malik,
2000) of the symmetrised k-nearest-neighbour graph, and its normalised cut.

The graph is the one the manager's regulariser uses (:mod:`mixvae.neighbours`); no label is
involved. :mod:`mixvae.refine` cuts pairs of clusters in two; this module cuts the whole graph in K.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import spectral_clustering

__all__ = ["affinity", "normalised_cut", "partition_cut", "spectral_partition"]


def affinity(neighbours: np.ndarray) -> sp.csr_matrix:
    """The symmetric 0/1 (2 where both name each other) adjacency (N, N) of a graph (N, k)."""
    n, k = neighbours.shape
    rows = np.repeat(np.arange(n), k)
    a = sp.coo_matrix((np.ones(n * k, np.float64), (rows, neighbours.ravel())), shape=(n, n)).tocsr()
    return (a + a.T).tocsr()


def spectral_partition(neighbours: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster (N,) of each node: scikit-learn's spectral clustering of :func:`affinity`."""

    a = affinity(np.asarray(neighbours))
    return spectral_clustering(a, n_clusters=n_clusters, random_state=seed, assign_labels="cluster_qr").astype(
        np.int64)


def normalised_cut(neighbours: np.ndarray, assign: np.ndarray, n_clusters: int) -> float:
    """The K-way normalised cut sum_k cut(A_k, rest) / vol(A_k) of a partition, in [0, K]."""
    a = affinity(np.asarray(neighbours)).tocoo()
    assign = np.asarray(assign)
    degree = np.bincount(a.row, a.data, len(assign))
    vol = np.bincount(assign, degree, n_clusters)
    cut_edges = assign[a.row] != assign[a.col]
    cut = np.bincount(assign[a.row[cut_edges]], a.data[cut_edges], n_clusters)
    used = vol > 0
    return float((cut[used] / vol[used]).sum())


def partition_cut(neighbours: np.ndarray, assign: np.ndarray, n_clusters: int) -> float:
    """The K-way normalised cut of a partition into ``n_clusters``, each empty cluster counted as
    wholly cut (1), in [0, K]: lower is a partition that follows the graph better. Without that
    count, a partition that leaves a cluster empty would gain by cutting one cluster fewer."""
    assign = np.asarray(assign)
    empty = n_clusters - len(np.unique(assign))
    return normalised_cut(neighbours, assign, n_clusters) + empty
