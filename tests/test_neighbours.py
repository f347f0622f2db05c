"""The neighbour graph equals scikit-learn's: PCA of the pixels, then the exact cosine nearest
neighbours of each image, nearest first, itself excluded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from mixvae.neighbours import cosine_neighbours, mutual_counts, mutual_neighbours, nearest_neighbours, pca_embedding

from conftest import blobs


def sklearn_cosine_neighbours(e: np.ndarray, k: int) -> np.ndarray:
    """Each row's k most cosine-similar other rows, nearest first (kneighbors without X leaves the
    row itself out)."""
    return NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(e).kneighbors()[1]


@pytest.mark.parametrize("chunk", [2048, 7])  # one block, and blocks that do not divide N
def test_cosine_neighbours_equal_scikit_learn(chunk: int) -> None:
    e = np.random.default_rng(0).normal(size=(150, 6))
    got = cosine_neighbours(torch.from_numpy(e), 5, chunk)
    assert got.dtype == torch.long and got.shape == (150, 5)
    np.testing.assert_array_equal(got.numpy(), sklearn_cosine_neighbours(e, 5))


def test_cosine_neighbours_rank_by_angle_not_length() -> None:
    """Row 0's nearest by angle is row 2 (a long vector at 10 degrees), then row 1 (20 degrees)."""
    angle = np.deg2rad([0.0, 20.0, 10.0, 90.0])
    length = np.array([1.0, 1.0, 50.0, 1.0])
    e = torch.from_numpy(np.stack([np.cos(angle), np.sin(angle)], 1) * length[:, None])
    assert cosine_neighbours(e, 3)[0].tolist() == [2, 1, 3]


def test_pca_embedding_equals_scikit_learn_up_to_sign() -> None:
    x, _ = blobs(n_per=30, k=4)
    got = pca_embedding(x, dims=5).numpy()
    want = PCA(n_components=5, svd_solver="full").fit_transform(x.reshape(len(x), -1) / 255.0)
    sign = np.sign((got * want).sum(0))  # each axis is defined up to its sign
    np.testing.assert_allclose(got * sign, want, atol=1e-4)


def test_nearest_neighbours_are_pca_then_cosine() -> None:
    x, _ = blobs(n_per=30, k=4)
    got = nearest_neighbours(x, 4, dims=8).numpy()
    emb = pca_embedding(x, dims=8).numpy().astype(np.float64)
    np.testing.assert_array_equal(got, sklearn_cosine_neighbours(emb, 4))


def mutual_by_sets(graph: np.ndarray) -> np.ndarray:
    """The mutual-neighbour graph, row by row with Python sets."""
    k = graph.shape[1]
    out = []
    for i, row in enumerate(graph.tolist()):
        kept = [j for j in row if i in set(graph[j].tolist())] or row[:1]
        out.append([kept[m % len(kept)] for m in range(k)])
    return np.array(out)


@pytest.mark.parametrize("chunk", [65536, 7])
def test_mutual_neighbours_keep_the_pairs_that_name_each_other(chunk: int) -> None:
    x, _ = blobs(n_per=40, k=3)
    graph = nearest_neighbours(x, 6, 8)
    got = mutual_neighbours(graph, chunk)
    assert got.shape == graph.shape and got.dtype == graph.dtype
    np.testing.assert_array_equal(got.numpy(), mutual_by_sets(graph.numpy()))


def test_a_row_without_mutual_neighbours_keeps_its_nearest() -> None:
    # 0 -> 1, 2; 1 -> 2, 3; 2 -> 1, 3; 3 -> 2, 1: row 0 is nobody's neighbour
    graph = torch.tensor([[1, 2], [2, 3], [1, 3], [2, 1]])
    assert mutual_neighbours(graph).tolist() == [[1, 1], [2, 3], [1, 3], [2, 1]]
    # mutual: 0-1, 1-3, 2-3; row 2 keeps 3 alone, twice, and row 1 keeps both, in order
    graph = torch.tensor([[1, 2], [0, 3], [3, 1], [1, 2]])
    assert mutual_neighbours(graph).tolist() == [[1, 1], [0, 3], [3, 3], [1, 2]]


def test_mutual_counts_count_each_images_mutual_neighbours() -> None:
    x, _ = blobs(n_per=40, k=3)
    graph = nearest_neighbours(x, 6, 8).numpy()
    counts = [sum(i in set(graph[j].tolist()) for j in row) for i, row in enumerate(graph.tolist())]
    kept, none = mutual_counts(torch.from_numpy(graph), mutual_neighbours(torch.from_numpy(graph)))
    assert kept == pytest.approx(np.mean(counts)) and none == pytest.approx(np.mean(np.array(counts) == 0))
    assert 0 < none < 1  # the case of an image with none is exercised


def test_euclidean_neighbours_are_pca_then_distance() -> None:
    """``metric="euclidean"`` keeps each image's distance from the mean (brightness, colour cast):
    scikit-learn's Euclidean neighbours of the same PCA coordinates, exactly and through faiss."""
    x, _ = blobs(n_per=30, k=4)
    emb = pca_embedding(x, dims=8).numpy().astype(np.float64)
    want = NearestNeighbors(n_neighbors=4, algorithm="brute").fit(emb).kneighbors()[1]
    np.testing.assert_array_equal(nearest_neighbours(x, 4, dims=8, metric="euclidean").numpy(), want)
    approx = nearest_neighbours(x, 4, dims=8, method="approximate", metric="euclidean").numpy()
    assert np.mean([len(set(a) & set(w)) / 4 for a, w in zip(approx, want)]) > 0.95
    assert not np.array_equal(want, nearest_neighbours(x, 4, dims=8).numpy())  # cosine ranks differently


def test_an_unknown_metric_is_refused() -> None:
    x, _ = blobs(n_per=10, k=2)
    with pytest.raises(ValueError, match="metric='manhattan'"):
        nearest_neighbours(x, 2, dims=4, metric="manhattan")
