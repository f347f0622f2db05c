import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from mixvae.refine import pair_cuts, resplit_pairs, split_pair


def two_groups_and_a_third(n: int = 300, seed: int = 0):
    """Points in two groups along x that barely touch (the true classes), each spread evenly along y,
    plus a third, separate group; and their 8 nearest neighbours."""
    rng = np.random.default_rng(seed)
    cls = np.repeat([0, 1, 2], n)
    pts = np.stack([np.array([0.0, 2.0, 0.0])[cls] + rng.normal(0, 0.3, 3 * n),
                    rng.uniform(0, 2, 3 * n) + 20.0 * (cls == 2)], 1)
    nb = NearestNeighbors(n_neighbors=9).fit(pts).kneighbors(pts, return_distance=False)[:, 1:]
    return pts, cls, nb


def test_a_pair_split_across_the_classes_is_repaired():
    pts, cls, nb = two_groups_and_a_third()
    # experts 0 and 1 each hold half of both classes, split by y: many neighbour edges join them
    stuck = np.where(cls == 2, 2, (pts[:, 1] > 1).astype(int))
    assert adjusted_rand_score(cls, stuck) < 0.5
    new, changed, moves = resplit_pairs(stuck, nb, 3)
    assert len(moves) == 1 and {moves[0].a, moves[0].b} == {0, 1}
    assert moves[0].ncut_after <= 0.5 * moves[0].ncut_before
    assert adjusted_rand_score(cls, new) > 0.95
    assert changed.sum() == np.sum(cls != 2) and np.all(new[cls == 2] == 2)  # the third expert is untouched
    assert "re-split experts 0 and 1" in str(moves[0])


def test_a_repaired_partition_is_left_alone():
    pts, cls, nb = two_groups_and_a_third()
    stuck = np.where(cls == 2, 2, (pts[:, 1] > 1).astype(int))
    repaired, _, _ = resplit_pairs(stuck, nb, 3)
    new, changed, moves = resplit_pairs(repaired, nb, 3)
    assert moves == [] and not changed.any() and np.array_equal(new, repaired)


def test_a_small_gain_is_not_enough():
    pts, cls, nb = two_groups_and_a_third()
    stuck = np.where(cls == 2, 2, (pts[:, 1] > 1).astype(int))
    _, _, moves = resplit_pairs(stuck, nb, 3)
    gain = moves[0].ncut_after / moves[0].ncut_before
    _, changed, moves = resplit_pairs(stuck, nb, 3, ratio=gain * 0.9)
    assert moves == [] and not changed.any()


def test_result_is_deterministic_and_keeps_the_bigger_overlap():
    pts, cls, nb = two_groups_and_a_third(seed=1)
    stuck = np.where(cls == 2, 2, ((pts[:, 1] > 1) ^ (cls == 1)).astype(int))
    stuck[(cls == 0) & (pts[:, 1] > 1) & (pts[:, 1] < 1.5)] = 0  # expert 0: 3/4 of class 0, 1/2 of class 1
    a, _, _ = resplit_pairs(stuck, nb, 3)
    b, _, _ = resplit_pairs(stuck, nb, 3)
    assert np.array_equal(a, b)
    assert np.mean(a[cls == 0] == 0) > 0.95 and np.mean(a[cls == 1] == 1) > 0.95  # expert 0 keeps class 0


def test_pair_cuts_counts_edges_between_clusters():
    assign = np.array([0, 0, 1, 1])
    nb = np.array([[1], [2], [3], [2]])  # one of the four edges (1 -> 2) joins clusters 0 and 1
    cuts = pair_cuts(assign, nb, 2)
    assert cuts[0, 1] == cuts[1, 0] == pytest.approx(1 / 4)
    assert cuts[0, 0] == 0


def test_tiny_pairs_are_skipped():
    assign = np.array([0, 0, 1, 1, 1])
    nb = np.array([[1], [2], [3], [4], [0]])
    new, _changed, moves = resplit_pairs(assign, nb, 2)
    assert moves == [] and np.array_equal(new, assign)


def test_split_pair_reports_the_cut_before_and_after():
    pts, cls, nb = two_groups_and_a_third()
    stuck = np.where(cls == 2, 2, (pts[:, 1] > 1).astype(int))
    experts, move = split_pair(stuck, nb, 0, 1)
    assert experts.shape == (np.sum(cls != 2),) and set(np.unique(experts)) == {0, 1}
    assert (move.a, move.b, move.images) == (0, 1, np.sum(cls != 2))
    assert move.ncut_after < move.ncut_before
