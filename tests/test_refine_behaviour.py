"""The pair re-split against dense re-computations: edge counts by loops, normalised cuts from a
dense adjacency matrix, the spectral candidates from numpy's eigh."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from mixvae.refine import Resplit, pair_cuts, resplit_pairs, split_pair


def blobs_and_graph(sizes=(60, 60, 60), k=6, seed=0, spread=0.35):
    """Points in len(sizes) groups along a line, each group's label, and their k nearest neighbours."""
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.arange(len(sizes)), sizes)
    pts = np.stack([2.0 * cls + rng.normal(0, spread, len(cls)), rng.uniform(0, 1, len(cls))], 1)
    nb = NearestNeighbors(n_neighbors=k + 1).fit(pts).kneighbors(pts, return_distance=False)[:, 1:]
    return pts, cls, nb


def dense_graph(members, neighbors):
    """A + A^T + I among members, A[i, j] = 1 when j is one of i's neighbours."""
    pos = {m: i for i, m in enumerate(members)}
    a = np.zeros((len(members), len(members)))
    for i, m in enumerate(members):
        for j in neighbors[m]:
            if j in pos:
                a[i, pos[j]] += 1
    return a + a.T + np.eye(len(members))


def ncut(a, side):
    cut = a[np.ix_(side, ~side)].sum()
    return cut / a[side].sum() + cut / a[~side].sum()


def best_threshold_cut(a, n_vectors, min_share):
    """The lowest normalised cut among prefixes of the nodes sorted along each leading eigenvector."""
    degree = a.sum(1)
    scale = 1 / np.sqrt(degree)
    _, vectors = np.linalg.eigh(scale[:, None] * a * scale[None, :])
    n, best = len(a), np.inf
    for v in vectors[:, ::-1][:, :n_vectors + 1].T:
        order = np.argsort(v * scale, kind="stable")
        for t in range(1, n):
            if min_share * n <= t <= (1 - min_share) * n:
                side = np.zeros(n, bool)
                side[order[:t]] = True
                best = min(best, ncut(a, side))
    return best


def test_pair_cuts_are_the_shares_of_edges_joining_two_clusters():
    rng = np.random.default_rng(1)
    assign = rng.integers(0, 4, 50)
    nb = rng.integers(0, 50, (50, 3))
    edges = np.zeros((4, 4))
    for i in range(50):
        for j in nb[i]:
            edges[assign[i], assign[j]] += 1
    degree = edges.sum(1)
    got = pair_cuts(assign, nb, 5)  # cluster 4 is empty: its shares are 0, not a division by 0
    assert got.shape == (5, 5) and np.all(got[4] == 0) and np.all(np.diag(got) == 0)
    for a in range(4):
        for b in range(4):
            if a != b:
                assert got[a, b] == pytest.approx((edges[a, b] + edges[b, a]) / (degree[a] + degree[b]))


def test_split_pair_cuts_against_dense_reference():
    pts, cls, nb = blobs_and_graph()
    # experts 0 and 1 hold groups 0 and 1, split across the groups by the y coordinate
    assign = np.where(cls == 2, 2, (pts[:, 1] > 0.5).astype(int))
    members = np.flatnonzero(assign < 2)
    a = dense_graph(members, nb)
    experts, move = split_pair(assign, nb, 0, 1, n_vectors=3, min_share=0.1)
    assert move == Resplit(0, 1, len(members), move.ncut_before, move.ncut_after)
    assert move.ncut_before == pytest.approx(ncut(a, assign[members] == 0), rel=1e-9)
    assert move.ncut_after == pytest.approx(ncut(a, experts == 0), rel=1e-9)
    assert move.ncut_after == pytest.approx(best_threshold_cut(a, 3, 0.1), rel=1e-6)
    assert move.ncut_after < 0.5 * move.ncut_before
    # the side holding more of expert 0's images stays expert 0
    assert np.sum((experts == 0) & (assign[members] == 0)) >= np.sum((experts == 1) & (assign[members] == 0))


def test_min_share_keeps_both_sides_large():
    # a group of 10 points far from the other 110: the best cut isolates it unless min_share forbids it
    pts, cls, nb = blobs_and_graph(sizes=(10, 110), seed=2, spread=0.2)
    assign = (pts[:, 1] > 0.5).astype(int)
    members = np.arange(len(cls))
    a = dense_graph(members, nb)
    for share in (0.05, 0.2):
        experts, move = split_pair(assign, nb, 0, 1, n_vectors=2, min_share=share)
        small = min(np.sum(experts == 0), np.sum(experts == 1))
        assert small >= share * len(members)
        assert move.ncut_after == pytest.approx(best_threshold_cut(a, 2, share), rel=1e-6)
    assert min(np.bincount(split_pair(assign, nb, 0, 1, n_vectors=2, min_share=0.05)[0])) == 10


@pytest.mark.parametrize("n, n_vectors, splits", [(19, 1, False), (20, 1, True), (23, 5, False), (24, 5, True)])
def test_pairs_below_the_size_floor_are_not_split(n, n_vectors, splits):
    _, cls, nb = blobs_and_graph(sizes=(n // 2, n - n // 2), k=4)
    assert (split_pair(cls, nb, 0, 1, n_vectors=n_vectors) is not None) == splits


def two_stuck_pairs():
    """Four groups along x; experts 0 and 1 share groups 0 and 1 (a band across the middle of y
    against the rest: two borders, many joining edges), experts 2 and 3 share groups 2 and 3 (split
    at one y: one border, fewer joining edges)."""
    pts, cls, nb = blobs_and_graph(sizes=(60, 60, 60, 60), seed=3)
    band = (pts[:, 1] > 0.25) & (pts[:, 1] < 0.75)
    assign = np.where(cls < 2, band.astype(int), 2 + (pts[:, 1] > 0.5).astype(int))
    return pts, cls, nb, assign


def test_the_most_joined_pairs_are_tried_first_and_each_expert_moves_once():
    _, cls, nb, assign = two_stuck_pairs()
    cuts = pair_cuts(assign, nb, 4)
    assert cuts[0, 1] > cuts[2, 3] > 0
    one, changed, moves = resplit_pairs(assign, nb, 4, max_pairs=1)
    assert [(m.a, m.b) for m in moves] == [(0, 1)]
    assert np.array_equal(changed, cls < 2) and np.array_equal(one[cls >= 2], assign[cls >= 2])
    both, changed, moves = resplit_pairs(assign, nb, 4, max_pairs=6)
    assert [(m.a, m.b) for m in moves] == [(0, 1), (2, 3)] and changed.all()
    for a, b in ((0, 1), (2, 3)):  # each expert of a pair now holds (almost only) one group, not the same
        major = [np.bincount(cls[both == e]).argmax() for e in (a, b)]
        assert major[0] != major[1]
        assert all(np.mean(cls[both == e] == m) > 0.95 for e, m in zip((a, b), major))
    experts, move = split_pair(assign, nb, 0, 1)
    assert np.array_equal(both[cls < 2], experts) and moves[0] == move


def test_a_pair_with_no_edges_between_it_is_not_tried():
    _, cls, nb, _ = two_stuck_pairs()
    _, _, moves = resplit_pairs(cls, nb, 4, ratio=1e9, max_pairs=6)  # the groups barely touch
    cuts = pair_cuts(cls, nb, 4)
    tried = {(a, b) for a in range(4) for b in range(a + 1, 4) if cuts[a, b] > 0}
    assert {(m.a, m.b) for m in moves} <= tried and (0, 2) not in tried and (0, 3) not in tried
