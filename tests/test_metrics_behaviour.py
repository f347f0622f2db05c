"""The clustering metrics against brute force: every one-to-one matching tried, counts by loops."""

from itertools import permutations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mixvae.metrics import cluster_accuracy, clustering_report, confusion, match_clusters, routing_entropy, usage


def counts(labels, clusters, k, c):
    table = [[0] * c for _ in range(k)]
    for y, z in zip(labels, clusters):
        table[z][y] += 1
    return table


def best_accuracy(labels, clusters, k, c):
    """The best one-to-one cluster -> class matching, by trying every one."""
    table = counts(labels, clusters, k, c)
    if k <= c:
        best = max(sum(table[i][p[i]] for i in range(k)) for p in permutations(range(c), k))
    else:
        best = max(sum(table[p[j]][j] for j in range(c)) for p in permutations(range(k), c))
    return best / len(labels)


def random_clustering(seed, n=40, k=4, c=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    clusters = np.where(rng.random(n) < 0.6, labels % k, rng.integers(0, k, n))
    return labels, clusters


def test_confusion_counts_every_pair():
    labels, clusters = random_clustering(0)
    conf = confusion(labels, clusters, 4)
    assert conf.dtype == np.int64 and conf.shape == (4, 3)
    assert conf.tolist() == counts(labels, clusters, 4, 3)
    wide = confusion(labels.astype(float), clusters.astype(float), 5, 6)  # float arrays of whole numbers
    assert wide.shape == (5, 6) and wide[:4, :3].tolist() == conf.tolist() and wide[4].sum() == wide[:, 3:].sum() == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k, c", [(3, 3), (4, 3), (2, 4)])
def test_accuracy_is_the_best_one_to_one_matching(seed, k, c):
    labels, clusters = random_clustering(seed, k=k, c=c)
    clusters = clusters % k
    assert cluster_accuracy(labels, clusters) == pytest.approx(best_accuracy(labels, clusters, k, c))
    assert cluster_accuracy(list(labels), list(clusters), n_clusters=k + 2) == pytest.approx(
        best_accuracy(labels, clusters, k + 2, c))


def test_accuracy_counts_unused_clusters_and_refuses_no_samples():
    y = np.array([0, 1, 2, 2])
    assert cluster_accuracy(y, np.array([0, 1, 2, 2]), n_clusters=6) == 1.0
    assert cluster_accuracy(y, np.array([4, 4, 1, 1])) == 0.75  # clusters 0, 2, 3 unused
    with pytest.raises(ValueError, match=r"^cluster_accuracy needs at least one sample$"):
        cluster_accuracy(np.array([], int), np.array([], int))


def test_matching_gives_leftover_clusters_their_majority_class():
    conf = np.array([[5, 0, 1], [0, 4, 0], [3, 0, 0], [0, 1, 6], [2, 1, 0]])  # (K=5, C=3)
    mapping = match_clusters(conf)
    assert mapping.tolist()[:2] == [0, 1] and mapping[3] == 2  # the one-to-one part
    assert mapping[2] == 0 and mapping[4] == 0  # left over: majority class
    assert conf.argmax(1).tolist() == [0, 1, 0, 2, 0]  # the input is not changed


def test_usage_is_the_fraction_of_images_per_cluster():
    assert usage(np.array([3, 0, 3, 3]), 5).tolist() == [0.25, 0, 0, 0.75, 0]
    assert usage(np.array([1.0, 1.0]), 2).tolist() == [0, 1]
    assert usage(np.array([], int), 3).tolist() == [0, 0, 0]
    assert usage(np.array([1]), 2).tolist() == [0, 1]


def test_routing_entropy_is_the_mean_per_image_entropy():
    p = np.array([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=np.float32)
    per_image = [-sum(q * np.log(q) for q in row if q > 0) for row in p.astype(np.float64)]
    assert routing_entropy(p) == pytest.approx(np.mean(per_image), rel=1e-12, abs=1e-10)  # float64 maths
    assert routing_entropy(np.array([[1.0, 0.0]])) == pytest.approx(0.0, abs=1e-10)
    assert isinstance(routing_entropy(p), float)
    rounded_up = np.array([[1.0000001, 0.0]], dtype=np.float32)  # a float32 routing that sums to just over 1
    assert 0 <= routing_entropy(rounded_up) < 1e-10


def test_report_every_field_against_an_independent_calculation():
    rng = np.random.default_rng(3)
    labels, clusters = random_clustering(3, n=60, k=4, c=3)
    clusters[clusters == 2] = 1  # expert 2 gets no image
    probs = rng.dirichlet(np.ones(4) * 0.3, 60)
    probs[np.arange(60), clusters] += 2.0
    probs /= probs.sum(1, keepdims=True)
    rep = clustering_report(labels, probs)
    table = np.array(counts(labels, clusters, 4, 3))
    assert rep["n"] == 60
    assert rep["usage"] == [round(float(np.mean(clusters == k)), 5) for k in range(4)] and rep["usage"][2] == 0
    assert rep["experts_used"] == 3
    entropy = np.mean([-(row * np.log(row)).sum() for row in probs])
    assert rep["routing_entropy"] == pytest.approx(round(entropy, 5), abs=1e-12)
    assert rep["acc"] == pytest.approx(best_accuracy(labels, clusters, 4, 3))
    assert rep["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert rep["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert rep["confusion"] == table.tolist()
    assert rep["purity"] == [table[k].max() / table[k].sum() if table[k].sum() else 0.0 for k in range(4)]
    assert rep["purity"][2] == 0.0
    assert rep["matched_class"] == match_clusters(table).tolist()
    assert all(type(v) is int for v in rep["matched_class"])


def test_an_expert_with_one_image_is_used():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.2, 0.7]])
    assert clustering_report(None, probs)["experts_used"] == 2


def test_report_rounds_to_five_places_and_keeps_a_missing_last_class():
    probs = np.array([[0.7, 0.3], [0.7, 0.3], [0.1, 0.9]])
    rep = clustering_report(np.array([0, 0, 0]), probs)  # one class: a (2, 1) confusion
    assert rep["confusion"] == [[2], [1]] and rep["usage"] == [0.66667, 0.33333]
    assert rep["routing_entropy"] == round(float(-(probs * np.log(probs)).sum(1).mean()), 5)
    unlabelled = clustering_report(None, probs)
    assert set(unlabelled) == {"n", "usage", "experts_used", "routing_entropy"}
