"""Label-free repair of a clustering on the nearest-neighbour graph of the training images.

A neighbour-consistency objective has a local optimum in which two experts share two kinds of
image, split by some other feature (say slant), instead of holding one kind each. Such a pair is
visible without labels: many neighbour edges run between its two experts. :func:`resplit_pairs`
takes the pairs with the most such edges, re-splits the images of each pair in two by a spectral
cut of their neighbour graph, and keeps the new split where it lowers the pair's normalised cut
(Shi and Malik, 2000) to at most ``ratio`` times the current one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, eigsh

__all__ = ["Resplit", "pair_cuts", "resplit_pairs", "split_pair"]


@dataclass(frozen=True)
class Resplit:
    """A re-split of experts ``a`` and ``b``: how many images, and their normalised cut before and after."""

    a: int
    b: int
    images: int
    ncut_before: float
    ncut_after: float

    def __str__(self) -> str:
        return (f"re-split experts {self.a} and {self.b} ({self.images} images) on the neighbour graph: "
                f"normalised cut {self.ncut_before:.3f} -> {self.ncut_after:.3f}")


def pair_cuts(assign: np.ndarray, neighbors: np.ndarray, n_clusters: int) -> np.ndarray:
    """(K, K) symmetric matrix: the share of the two clusters' neighbour edges that join them.

    assign (N,) cluster of each image; neighbors (N, k) indices of each image's nearest neighbours.
    """
    k, chunk = neighbors.shape[1], 65536  # a chunk of rows at a time: memory stays bounded whatever N
    counts = np.zeros(n_clusters * n_clusters, np.int64)
    for start in range(0, len(assign), chunk):
        pairs = np.repeat(assign[start:start + chunk], k) * n_clusters + assign[neighbors[start:start + chunk].ravel()]
        counts += np.bincount(pairs, minlength=n_clusters * n_clusters)
    edges = counts.reshape(n_clusters, n_clusters).astype(np.float64)
    degree = edges.sum(1)  # (K,)
    between = edges + edges.T
    np.fill_diagonal(between, 0.0)
    return between / np.maximum(degree[:, None] + degree[None, :], 1.0)


def resplit_pairs(assign: np.ndarray, neighbors: np.ndarray, n_clusters: int, *, ratio: float = 0.5,
                  max_pairs: int = 3, n_vectors: int = 5, min_share: float = 0.05
                  ) -> tuple[np.ndarray, np.ndarray, list[Resplit]]:
    """Re-split the cluster pairs joined by the most neighbour edges where that cuts fewer edges.

    Parameters
    ----------
    assign : (N,) int
        Cluster of each image.
    neighbors : (N, k) int
        Each image's nearest neighbours (an unsupervised graph; no label is involved).
    ratio : float
        Keep a re-split only when its normalised cut is at most ``ratio`` times the current one.
    max_pairs : int
        How many of the most joined pairs to try, most joined first; a cluster takes part in at
        most one accepted re-split per call.
    n_vectors : int
        Candidate cuts are the best threshold along each of the ``n_vectors + 1`` leading
        eigenvectors of the pair's normalised adjacency matrix (the first is constant on a
        connected graph).
    min_share : float
        Each side of a cut holds at least this share of the pair's images.

    Returns
    -------
    (new assignment (N,), changed (N,) bool: the images of re-split pairs, list of :class:`Resplit`)
    """
    assign = np.asarray(assign)
    neighbors = np.asarray(neighbors)
    out = assign.copy()
    changed = np.zeros(len(assign), bool)
    cuts = pair_cuts(assign, neighbors, n_clusters)
    iu = np.triu_indices(n_clusters, 1)
    order = np.argsort(-cuts[iu], kind="stable")[:max_pairs]
    done: set[int] = set()
    moves: list[Resplit] = []
    for a, b in zip(iu[0][order], iu[1][order]):
        a, b = int(a), int(b)
        if a in done or b in done or cuts[a, b] <= 0:
            continue
        found = split_pair(assign, neighbors, a, b, n_vectors=n_vectors, min_share=min_share)
        if found is None or not found[1].ncut_after <= ratio * found[1].ncut_before:
            continue
        members = np.flatnonzero((assign == a) | (assign == b))
        out[members] = found[0]
        changed[members] = True
        done.update((a, b))
        moves.append(found[1])
    return out, changed, moves


def split_pair(assign: np.ndarray, neighbors: np.ndarray, a: int, b: int, *, n_vectors: int = 5,
               min_share: float = 0.05) -> tuple[np.ndarray, Resplit] | None:
    """The spectral two-way split of experts ``a`` and ``b``'s images with the lowest normalised cut.

    Returns (the new expert, a or b, of each of those images in index order, the :class:`Resplit`
    with the cut before and after), or None when the pair is too small to split.
    """
    members = np.flatnonzero((assign == a) | (assign == b))
    graph, degree = _subgraph(members, neighbors)
    side = _spectral_split(graph, degree, n_vectors, min_share)
    if side is None:
        return None
    was_a = assign[members] == a
    before, after = _ncut(graph, degree, was_a), _ncut(graph, degree, side)
    if np.sum(side & was_a) < np.sum(~side & was_a):  # the side with more of a's images stays a
        side = ~side
    return np.where(side, a, b), Resplit(a, b, len(members), before, after)


def _subgraph(members: np.ndarray, neighbors: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Symmetric neighbour graph among ``members`` (n x n), with self-loops, and its degrees (n,)."""
    n, k = len(members), neighbors.shape[1]
    pos = np.full(len(neighbors), -1)
    pos[members] = np.arange(n)
    rows = np.repeat(np.arange(n), k)
    cols = pos[neighbors[members].ravel()]
    keep = cols >= 0
    graph = sp.coo_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    graph = (graph + graph.T + sp.identity(n)).tocsr()  # a self-loop: no image is isolated
    return graph, np.asarray(graph.sum(1)).ravel()


def _ncut(graph: sp.csr_matrix, degree: np.ndarray, side: np.ndarray) -> float:
    """Normalised cut of a two-way split: cut / vol(A) + cut / vol(B)."""
    vol_a, vol_b = degree[side].sum(), degree[~side].sum()
    if vol_a == 0 or vol_b == 0:
        return float("inf")
    cut = graph[side][:, ~side].sum()
    return float(cut / vol_a + cut / vol_b)


def _spectral_split(graph: sp.csr_matrix, degree: np.ndarray, n_vectors: int,
                    min_share: float) -> np.ndarray | None:
    """The two-way split of a graph's nodes with the lowest normalised cut among threshold cuts
    along the leading eigenvectors of D^-1/2 A D^-1/2 (None when the graph is too small)."""
    n = len(degree)
    if n < max(4 * (n_vectors + 1), 20):
        return None
    scale = 1.0 / np.sqrt(degree)
    norm = sp.diags(scale) @ graph @ sp.diags(scale)
    try:  # a fixed start vector keeps the result the same on every run and in every process
        values, vectors = eigsh(norm, k=n_vectors + 1, which="LA", v0=np.sqrt(degree), tol=1e-6)
    except ArpackError:
        return None
    coo = sp.triu(graph, 1).tocoo()  # each undirected edge once
    lo_hi = np.stack([coo.row, coo.col])
    best, best_side = np.inf, None
    for e in range(len(values)):  # the leading one is constant on a connected graph, but not otherwise
        f = vectors[:, e] * scale
        order = np.argsort(f, kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        r = rank[lo_hi]
        first, last = r.min(0), r.max(0)
        # an edge is cut by every prefix of length t with first < t <= last
        delta = np.bincount(first + 1, coo.data, n + 1) - np.bincount(last + 1, coo.data, n + 1)
        cut = np.cumsum(delta)[1:n]  # prefix lengths 1..n-1
        vol = np.cumsum(degree[order])[:-1]
        ncut = cut / vol + cut / (degree.sum() - vol)
        lengths = np.arange(1, n)
        ncut[(lengths < min_share * n) | (lengths > (1 - min_share) * n)] = np.inf
        t = int(np.argmin(ncut))
        if ncut[t] < best:
            best = ncut[t]
            best_side = np.zeros(n, bool)
            best_side[order[:t + 1]] = True
    return best_side
