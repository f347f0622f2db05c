"""Nearest neighbours of the training images, for the manager's regularisers.

An unsupervised embedding (PCA of the pixels) and a cosine nearest-neighbour search: exact, in
chunks whose memory is bounded whatever N, for up to ``EXACT_MAX`` images; approximate above that
(an inverted-file index of faiss: time and memory grow about linearly with N). No label is
involved. :func:`neighbour_graph` builds the graph once per run and keeps it in the run folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae import distributed, memory, runfolder
from mixvae.atomic import atomic_open, atomic_write, file_sha256
from mixvae.config.schema import NEIGHBOUR_SEARCHES
from mixvae.devices import cpu_draw
from mixvae.inference import images_to_tensor, to_unit_floats
from mixvae.rows import read_rows

__all__ = [
    "CHUNK_BYTES",
    "EXACT_MAX",
    "METRICS",
    "SEARCH_METHODS",
    "approximate_neighbours",
    "cosine_neighbours",
    "data_fingerprint",
    "graph_memory",
    "mutual_counts",
    "mutual_neighbours",
    "nearest_neighbours",
    "neighbour_graph",
    "pca_axes",
    "pca_embedding",
    "search_method",
]

SEARCH_METHODS = NEIGHBOUR_SEARCHES
METRICS = ("cosine", "euclidean")
EXACT_MAX = 100_000  # "auto" searches exactly up to this many images (about 2 minutes on 2 cores)
CHUNK_BYTES = 256 * 2**20  # the exact search holds at most this much of the distance matrix at once


def search_method(n: int, method: str = "auto") -> str:
    """``exact`` or ``approximate``: what ``method`` means for ``n`` images."""
    if method not in SEARCH_METHODS:
        raise ValueError(f"neighbour_search={method!r} is invalid: expected one of {SEARCH_METHODS}")
    if method == "auto":
        return "exact" if n <= EXACT_MAX else "approximate"
    return method


def pca_axes(images: Any, dims: int = 50, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (D,) and the ``dims`` leading principal axes (dims, D) of images (N, H, W) uint8 (or
    vectors (N, D) float).

    The mean is taken over every image, a chunk at a time; the axes come from a fixed random
    sample of at most 10,000 images. Memory: about (chunk + 10,000) x D floats, whatever N.
    """
    n = len(images)
    total = torch.zeros(int(np.prod(images.shape[1:])), dtype=torch.float64, device="cpu")
    for start in range(0, n, chunk):
        total += images_to_tensor(images, start, start + chunk).sum(0, dtype=torch.float64)
    mean = (total / n).float()  # (D,)
    dims = min(dims, total.shape[0], n)
    gen = torch.Generator().manual_seed(0)
    pick = cpu_draw(torch.randperm, n, generator=gen)[:10000].numpy()
    sample = to_unit_floats(torch.cat([torch.from_numpy(read_rows(images, pick[s:s + chunk])).reshape(
        -1, total.shape[0]) for s in range(0, len(pick), chunk)])) - mean  # (<= 10000, D)
    _, _, v = torch.linalg.svd(sample, full_matrices=False)  # principal axes from a sample
    return mean, v[:dims].clone()  # not a view: the whole (min(10000, D), D) matrix is freed


def pca_embedding(images: Any, dims: int = 50, chunk: int = 2048) -> torch.Tensor:
    """Images (N, H, W) uint8 (or vectors (N, D) float) -> (N, dims) coordinates on their leading
    principal axes (:func:`pca_axes`), projected a chunk at a time."""
    mean, axes = pca_axes(images, dims, chunk)
    return torch.cat([_project(images, mean, axes, s, s + chunk) for s in range(0, len(images), chunk)])


def _project(images: Any, mean: torch.Tensor, axes: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of images on the principal axes, (n, dims)."""
    return (images_to_tensor(images, start, stop) - mean) @ axes.t()


def graph_memory(n: int, d: int, k: int, dims: int = 50, method: str = "auto", keep: str = "none") -> int:
    """Bytes the neighbour graph stage holds at its peak for n images of d values each (beyond the
    images, when they are in memory): the PCA's sample (10,000 x d floats, with the SVD's work),
    then for the exact search the (n, dims) embedding twice and one chunk of distances (with its
    temporaries, 4 chunks of at most ``CHUNK_BYTES``), for the
    approximate one faiss's index (n x (4 dims + 8) bytes, up to twice that while its lists grow),
    its training sample and one slice of projected queries; and the (n, k) answer, twice when the mutual neighbours are kept."""
    dims = min(dims, d, max(n, 1))
    pca = 3 * min(n, 10_000) * d * 4 + 2048 * d * 4
    answer = n * k * 8 * (2 if keep == "mutual" else 1)
    if search_method(n, method) == "exact":
        rows = max(1, min(2048, CHUNK_BYTES // (4 * max(n, 1))))  # as cosine_neighbours chunks the rows
        return pca + 2 * n * dims * 4 + 4 * rows * n * 4 + answer  # a chunk's distances and their temporaries
    cells = max(1, min(int(2 * math.sqrt(n)), n // 39))
    queries = 65536 * (2 * dims * 4 + (k + 1) * 12) + 2048 * d * 4
    # the index's lists grow by doubling their capacity: up to twice their n x (4 dims + 8) bytes
    return pca + 2 * n * (4 * dims + 8) + min(n, 64 * cells) * dims * 4 + queries + answer


def nearest_neighbours(images: Any, k: int, dims: int = 50, method: str = "auto",
                       metric: str = "cosine") -> torch.Tensor:
    """Indices (N, k) of each image's k nearest other images after PCA to ``dims`` dimensions, by
    cosine similarity (``metric="cosine"``: each image's distance from the mean image counts, not
    its size) or Euclidean distance (``"euclidean"``: overall brightness and colour cast count too);
    ``method`` as in :func:`search_method`.

    The exact search holds the (N, dims) embedding; the approximate one projects the images again
    in each of its passes instead, so it holds only its index and the answer (see
    :data:`mixvae.memory` plan of the graph stage).
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is invalid: expected one of {METRICS}")
    normalise = metric == "cosine"
    if search_method(len(images), method) == "exact":
        return cosine_neighbours(pca_embedding(images, dims), k, normalise=normalise)
    mean, axes = pca_axes(images, dims)
    chunk = 2048

    def rows(start: int, stop: int) -> np.ndarray:  # the embedding of images[start:stop], as the index takes it
        e = torch.cat([_project(images, mean, axes, s, min(s + chunk, stop)) for s in range(start, stop, chunk)])
        return _as_index_rows(e, normalise)

    return _approximate(rows, len(images), axes.shape[0], k, 0, normalise, chunk)


def cosine_neighbours(e: torch.Tensor, k: int, chunk: int | None = None, normalise: bool = True) -> torch.Tensor:
    """Indices (N, k) of each row's k most cosine-similar other rows of embeddings e (N, d), exactly
    (``normalise=False``: the k nearest by Euclidean distance).

    Rows are compared a chunk at a time; by default a chunk holds at most ``CHUNK_BYTES`` of
    distances, so memory stays bounded at any N (the time grows as N^2).
    """
    n = e.shape[0]
    chunk = chunk or max(1, min(2048, CHUNK_BYTES // (4 * max(n, 1))))
    if normalise:
        e = torch.nn.functional.normalize(e, dim=1)  # cosine similarity: the nearest have the largest e_i . e_j
    sq = (e * e).sum(1)  # (N,)
    out = torch.empty(n, k, dtype=torch.long, device="cpu")
    for start in range(0, n, chunk):
        d = sq[start:start + chunk, None] - 2 * e[start:start + chunk] @ e.t() + sq[None]  # (c, N)
        rows = torch.arange(start, min(start + chunk, n), device="cpu")
        d[rows - start, rows] = float("inf")  # not its own neighbour
        out[start:start + chunk] = d.topk(k, dim=1, largest=False).indices
    return out


def mutual_neighbours(graph: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """The mutual neighbours of a graph (N, k), in a graph of the same shape.

    A neighbour j of i is kept when i is also among j's k neighbours. A row keeps its kept
    neighbours in their order and fills its k slots by repeating them in turn, so a row with m
    kept neighbours draws each of them about k/m times as often; a row with none keeps its
    nearest neighbour in every slot.
    """
    n, k = graph.shape
    out = torch.empty_like(graph)
    slots = torch.arange(k, device="cpu")
    for start in range(0, n, chunk):
        rows = graph[start:start + chunk]  # (c, k)
        own = torch.arange(start, start + len(rows), device="cpu")
        kept = (graph[rows] == own[:, None, None]).any(-1)  # (c, k): i is among j's neighbours
        kept[:, 0] |= ~kept.any(1)  # none mutual: the nearest one stays
        first = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)  # kept ones first, in order
        count = kept.sum(1, keepdim=True)  # (c, 1) >= 1
        out[start:start + len(rows)] = rows.gather(1, first.gather(1, slots % count))
    return out


def mutual_counts(graph: torch.Tensor, mutual: torch.Tensor) -> tuple[float, float]:
    """For a graph (N, k) and its :func:`mutual_neighbours`: the mean number of mutual neighbours
    per image (0 for an image with none), and the share of images with none."""
    own = torch.arange(len(graph), device=graph.device)[:, None]
    first_kept = (graph[mutual[:, 0]] == own).any(1)  # a row with any mutual neighbour starts with one
    distinct = torch.tensor([len(set(row)) for row in mutual.tolist()], device="cpu")
    return float(torch.where(first_kept, distinct, 0).float().mean()), float((~first_kept).float().mean())


def approximate_neighbours(e: torch.Tensor, k: int, seed: int = 0, normalise: bool = True) -> torch.Tensor:
    """Indices (N, k) of each row's k most cosine-similar other rows, approximately
    (``normalise=False``: the k nearest by Euclidean distance).

    faiss's inverted-file index (``IndexIVFFlat``, inner product of unit vectors): k-means on a
    sample cuts the space into about 2 sqrt(N) cells, and each row is compared with the rows of its
    16 nearest cells, about 8 sqrt(N) rows, so the time grows about as N^1.5 with a small constant.
    ``benchmarks/scale.py`` measures its recall against the exact graph on MNIST. The result is the same for the same rows, seed and thread count.
    """
    if len(e) <= k + 1:
        return cosine_neighbours(e, k, normalise=normalise)
    x = _as_index_rows(e, normalise)  # (N, d)
    return _approximate(lambda start, stop: x[start:stop], len(x), x.shape[1], k, seed, normalise)


def _as_index_rows(e: torch.Tensor, normalise: bool) -> np.ndarray:
    """Embeddings (n, d) as faiss takes them: float32, C-ordered, of unit length for cosine."""
    return np.ascontiguousarray((torch.nn.functional.normalize(e.float(), dim=1) if normalise else e.float()).numpy())


def _approximate(rows: Callable[[int, int], np.ndarray], n: int, d: int, k: int, seed: int, normalise: bool,
                 align: int = 65536) -> torch.Tensor:
    """:func:`approximate_neighbours` of the n rows that ``rows(start, stop)`` gives (n, d), read a
    slice at a time (slices start at multiples of ``align``): memory holds the index (n x (4 d +
    8) bytes), the answer (n x k x 8 bytes) and one slice, never all the rows at once."""
    import faiss  # faiss loads its SIMD library (about 0.3 s): only for an approximate search

    if n <= k + 1:
        return cosine_neighbours(torch.from_numpy(rows(0, n)), k, normalise=False)
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    cells = max(1, min(int(2 * math.sqrt(n)), n // 39))  # faiss wants >= 39 training points per cell
    quantiser = faiss.IndexFlatIP(d) if normalise else faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantiser, d, cells, faiss.METRIC_INNER_PRODUCT if normalise else faiss.METRIC_L2)
    index.cp.seed, index.cp.niter, index.cp.max_points_per_centroid = seed, 10, 64
    rng = np.random.default_rng(seed)
    index.train(_gather(rows, n, d, rng.permutation(n)[:min(n, 64 * cells)], align))  # k-means on a sample
    step = 65536 // align * align or align  # slices of the rows at a time: memory stays bounded
    for start in range(0, n, step):
        index.add(rows(start, min(start + step, n)))
    index.nprobe = min(16, cells)
    out = np.empty((n, k), np.int64)
    for start in range(0, n, step):
        _, found = index.search(rows(start, min(start + step, n)), k + 1)  # (c, k + 1), usually itself first
        out[start:start + step] = _drop_self(found, start, k)
    return torch.from_numpy(out)


def _gather(rows: Callable[[int, int], np.ndarray], n: int, d: int, pick: np.ndarray, align: int) -> np.ndarray:
    """Rows ``pick`` (m,), in that order, (m, d), reading the slices of ``align`` rows that hold them."""
    out = np.empty((len(pick), d), np.float32)
    order = np.argsort(pick, kind="stable")
    ordered = pick[order]
    for start in range(0, n, align):
        lo, hi = np.searchsorted(ordered, [start, start + align])
        if hi > lo:
            out[order[lo:hi]] = rows(start, min(start + align, n))[ordered[lo:hi] - start]
    return out


def _drop_self(found: np.ndarray, start: int, k: int) -> np.ndarray:
    """Each row's k first entries other than the row itself (and other than -1, "not found")."""
    rows = np.arange(start, start + len(found))[:, None]
    keep = (found != rows) & (found >= 0)  # (c, k + 1)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept entries first, in rank order
    picked = np.take_along_axis(found, order, axis=1)[:, :k]
    short = ~np.take_along_axis(keep, order, axis=1)[:, :k]
    picked[short] = picked[:, :1].repeat(k, axis=1)[short]  # rare: fewer than k found; repeat the nearest
    return picked


# ------------------------------------------------------------------ the graph of a run, built once
def data_fingerprint(images: Any) -> str:
    """A cheap identity of an image array: its shape, dtype and up to 1,000 evenly spaced rows; the
    same for the same images held as a numpy array, a memory map or a tensor (training holds
    in-memory images as a tensor, the app and the benchmarks as an array)."""
    dtype = torch.empty(0, dtype=images.dtype, device="cpu").numpy().dtype if torch.is_tensor(images) else images.dtype
    digest = hashlib.sha256(f"{tuple(images.shape)} {dtype}".encode())
    n = len(images)
    picks = np.unique(np.linspace(0, n - 1, num=min(n, 1000)).astype(np.int64)) if n else np.zeros(0, np.int64)
    for row in read_rows(images, picks):  # read from a memory map's file: its pages stay out of the process
        digest.update(np.ascontiguousarray(row).tobytes())
    return digest.hexdigest()



def _load_graph(run_dir: Path, expected: dict[str, Any]) -> torch.Tensor | None:
    """The saved graph when it is there, intact and made for ``expected``; else None (with a
    warning when a graph is there but cannot be used)."""
    meta_path, path = run_dir / runfolder.NEIGHBOURS_META, run_dir / runfolder.NEIGHBOURS_FILE
    if not meta_path.exists() and not path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if {k: v for k, v in meta.items() if k != "sha256"} != expected:  # every setting, no more, no fewer
            raise ValueError("it was built for other data or settings")
        if file_sha256(path) != meta["sha256"]:
            raise ValueError("its checksum does not match")
        graph = np.load(path, allow_pickle=False)
        if graph.shape != (expected["n"], expected["k"]) or graph.min() < 0 or graph.max() >= expected["n"]:
            raise ValueError("it holds indices out of range")
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        warnings.warn(f"the neighbour graph in {run_dir} cannot be used ({e}); building it again", RuntimeWarning,
                      stacklevel=3)
        return None
    return torch.from_numpy(graph.astype(np.int64))


def _save_graph(run_dir: Path, graph: torch.Tensor, expected: dict[str, Any]) -> None:
    path = run_dir / runfolder.NEIGHBOURS_FILE
    with atomic_open(path) as handle:
        np.save(handle, graph.numpy().astype(np.int32 if expected["n"] < 2**31 else np.int64))
    meta = {**expected, "sha256": file_sha256(path)}
    atomic_write(run_dir / runfolder.NEIGHBOURS_META, json.dumps(meta, indent=2).encode())


def neighbour_graph(images: Any, k: int, dims: int, method: str = "auto", run_dir: Path | None = None,
                    rank: int = 0, world: int = 1, log: Callable[[str], None] | None = None,
                    keep: str = "none", metric: str = "cosine") -> torch.Tensor:
    """The (N, k) neighbour graph of a run: loaded from ``run_dir`` when a graph built for the same
    images and settings is there and intact, else built (by process 0 alone when several processes
    share the run folder; the others wait and load it) and saved there. ``keep="mutual"`` keeps
    the mutual neighbours alone (:func:`mutual_neighbours`)."""

    expected = {"n": len(images), "k": k, "dims": dims, "method": search_method(len(images), method),
                "data": data_fingerprint(images)}
    if keep != "none":  # graphs kept before this setting existed have no such key
        expected["filter"] = keep
    if metric != "cosine":  # nor this one
        expected["metric"] = metric
    if run_dir is None:  # nowhere to share it: every process builds the same graph
        return _build(images, expected, log)
    run_dir = Path(run_dir)
    if rank != 0:
        distributed.barrier(world)  # process 0 loads or builds and saves it meanwhile
        graph = _load_graph(run_dir, expected)
        if graph is None:
            raise RuntimeError(f"process {rank} found no usable neighbour graph in {run_dir}")
        return graph
    graph = _load_graph(run_dir, expected)
    if graph is not None:
        if log:
            log(f"loaded the {k} nearest neighbours of {len(images)} images from {run_dir}")
    else:
        graph = _build(images, expected, log)
        _save_graph(run_dir, graph, expected)
    distributed.barrier(world)
    return graph


@memory.stage("neighbour graph")
def _build(images: Any, expected: dict[str, Any], log: Callable[[str], None] | None) -> torch.Tensor:
    t0 = time.perf_counter()
    graph = nearest_neighbours(images, expected["k"], expected["dims"], expected["method"],
                               expected.get("metric", "cosine"))
    if log:
        log(f"found {expected['k']} nearest neighbours ({expected['method']}) of {expected['n']} images in "
            f"{time.perf_counter() - t0:.1f}s")
    if expected.get("filter") == "mutual":
        mutual = mutual_neighbours(graph)
        if log:
            kept, none = mutual_counts(graph, mutual)
            log(f"kept the mutual neighbours: {kept:.1f} per image on average; {100 * none:.1f}% of the images have "
                f"none and keep their nearest")
        graph = mutual
    memory.release()  # the index's memory back to the system, not kept by the heap for the stages after
    return graph
