import numpy as np
import pytest

from mixvae.metrics import cluster_accuracy, clustering_report, confusion, match_clusters, routing_entropy, usage


def test_accuracy_is_invariant_to_renaming_clusters():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0


def test_accuracy_hand_computed():
    y = np.array([0, 0, 0, 1, 1, 1])
    c = np.array([1, 1, 0, 0, 0, 0])
    # best matching: cluster 1 -> class 0 (2 right), cluster 0 -> class 1 (3 right): 5/6
    assert cluster_accuracy(y, c) == pytest.approx(5 / 6)


def test_one_cluster_for_everything():
    y = np.array([0, 1, 2, 3])
    assert cluster_accuracy(y, np.zeros(4, int)) == 0.25


def test_confusion_and_matching():
    y = np.array([0, 0, 1, 1, 1])
    c = np.array([1, 1, 0, 0, 1])
    conf = confusion(y, c, 2)
    assert conf.tolist() == [[0, 2], [2, 1]]
    assert match_clusters(conf).tolist() == [1, 0]


def test_report_with_and_without_labels():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    rep = clustering_report(np.array([1, 1, 0, 0]), probs)
    assert rep["acc"] == 1.0 and rep["nmi"] == pytest.approx(1.0) and rep["ari"] == pytest.approx(1.0)
    assert rep["matched_class"] == [1, 0] and rep["purity"] == [1.0, 1.0]
    assert rep["usage"] == [0.5, 0.5] and rep["experts_used"] == 2
    bare = clustering_report(None, probs)
    assert "acc" not in bare and bare["experts_used"] == 2


def test_usage_and_entropy():
    assert usage(np.array([0, 0, 2]), 3).tolist() == pytest.approx([2 / 3, 0, 1 / 3])
    assert routing_entropy(np.array([[1.0, 0.0]])) == pytest.approx(0.0, abs=1e-9)
    assert routing_entropy(np.array([[0.5, 0.5]])) == pytest.approx(np.log(2))
