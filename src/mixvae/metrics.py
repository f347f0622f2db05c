"""Evaluation: label-matched accuracy, NMI, ARI, expert usage and routing entropy.

Labels are used here only, to evaluate; never to train or to select a model.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = ["cluster_accuracy", "clustering_report", "confusion", "match_clusters", "routing_entropy", "usage"]


def confusion(labels: np.ndarray, clusters: np.ndarray, n_clusters: int, n_classes: int | None = None) -> np.ndarray:
    """Counts C[k, c] of images of class c assigned to cluster k. -> (K, C) int64."""
    labels = np.asarray(labels, dtype=np.int64)
    clusters = np.asarray(clusters, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    c = np.zeros((n_clusters, n_classes), dtype=np.int64)
    np.add.at(c, (clusters, labels), 1)
    return c


def match_clusters(conf: np.ndarray) -> np.ndarray:
    """The one-to-one cluster -> class matching that maximises agreement (Hungarian).

    Returns an array of length K: the matched class of each cluster, or, for clusters left over
    when K > C, their majority class.
    """
    rows, cols = linear_sum_assignment(-conf)
    mapping = conf.argmax(1).copy()
    mapping[rows] = cols
    return mapping


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray, n_clusters: int | None = None) -> float:
    """Hungarian-matched accuracy: the best one-to-one cluster -> class matching's accuracy."""
    labels = np.asarray(labels)
    clusters = np.asarray(clusters)
    if labels.size == 0:
        raise ValueError("cluster_accuracy needs at least one sample")
    k = max(int(clusters.max()) + 1, n_clusters or 0)
    conf = confusion(labels, clusters, k)
    rows, cols = linear_sum_assignment(-conf)
    return float(conf[rows, cols].sum() / labels.size)


def usage(clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Fraction of images assigned to each cluster. -> (K,)."""
    return np.bincount(np.asarray(clusters, dtype=np.int64), minlength=n_clusters) / max(len(clusters), 1)


def routing_entropy(probs: np.ndarray) -> float:
    """Mean entropy (nats) of the per-image routing q(.|x): 0 when every image goes to one expert."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(1).mean())


def clustering_report(labels: np.ndarray | None, probs: np.ndarray) -> dict:
    """Everything we report about a routing: usage and entropy, and with labels ACC/NMI/ARI and,
    for each expert, its matched class and purity (fraction of its images of the majority class).
    """
    probs = np.asarray(probs)
    K = probs.shape[1]
    clusters = probs.argmax(1)
    out: dict = {
        "n": len(clusters),
        "usage": [round(float(u), 5) for u in usage(clusters, K)],
        "experts_used": int((np.bincount(clusters, minlength=K) > 0).sum()),
        "routing_entropy": round(routing_entropy(probs), 5),
    }
    if labels is None:
        return out
    labels = np.asarray(labels, dtype=np.int64)
    conf = confusion(labels, clusters, K, max(int(labels.max()) + 1, 1))
    mapping = match_clusters(conf)
    sizes = conf.sum(1)
    out.update(
        acc=cluster_accuracy(labels, clusters, K),
        nmi=float(normalized_mutual_info_score(labels, clusters)),
        ari=float(adjusted_rand_score(labels, clusters)),
        matched_class=[int(m) for m in mapping],
        purity=[float(conf[k].max() / sizes[k]) if sizes[k] else 0.0 for k in range(K)],
        confusion=conf.tolist(),
    )
    return out
