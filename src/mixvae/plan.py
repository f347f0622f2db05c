"""The memory plan of a run: what each stage that sees every image will hold at its peak, as a
formula of the number of images N, their size D and the settings, checked against the memory
available before a run starts (docs/ARCHITECTURE.md, "Memory at each stage"; measured by
``benchmarks/memory.py``)."""

from __future__ import annotations

import numpy as np

from mixvae import memory
from mixvae.config import RunConfig
from mixvae.neighbours import graph_memory

__all__ = ["STEP_BYTES", "check_memory", "memory_plan"]

STEP_BYTES = 512 * 2**20  # one optimiser step's working set (model, Adam's state, a batch and its views), whatever N


def memory_plan(cfg: RunConfig, n: int, processes: int = 1) -> list[memory.Need]:
    """What each stage of training n images with ``cfg`` holds at its peak, beyond the images
    themselves (already held when they are in memory; read a batch at a time from a memory map).

    Only the stages that see every image grow with n: the neighbour graph
    (:func:`mixvae.neighbours.graph_memory`), the graph then kept for training (n x k x 8 bytes),
    and the self-labelling pass (the manager's (n, K) probabilities and, for the re-split repair,
    the symmetric neighbour graph of a pair of experts, at most n x k x 96 bytes). docs/ARCHITECTURE.md
    gives the formulas; ``benchmarks/memory.py`` measures them. With several ``processes`` on this
    machine, process 0 builds the graph while the others wait, and each then holds its own copy of
    the graph and of a step's working set, and takes the self-labelling pass.
    """
    tc, d = cfg.train, int(np.prod(cfg.model.array_shape))
    restarts = tc.restarts if isinstance(tc.restarts, int) else 1
    if n < 2 or (tc.manager_regulariser == "none" and restarts == 1):
        return [memory.Need("training", STEP_BYTES, "free some memory: one step needs this much whatever the data")]
    k = min(tc.n_neighbours, n - 1)
    kept = n * k * 8  # the graph the regulariser keeps, int64
    graph_way_out = (f"store the images as an uncompressed .npy or .npz (read from disk as a memory map), or lower "
                     f"train.neighbour_pca_dims ({tc.neighbour_pca_dims}) with --set")
    needs = [memory.Need("the neighbour graph", graph_memory(n, d, k, tc.neighbour_pca_dims, tc.neighbour_search,
                                                             tc.neighbour_filter), graph_way_out),
             memory.Need("training", processes * (kept + STEP_BYTES), _FEWER)]
    if restarts > 1:  # the kept training beside the one in progress, and the pass that scores each
        needs.append(memory.Need("the choice among restarts",
                                 processes * (kept + n * cfg.model.n_components * 8 + 2 * STEP_BYTES),
                                 "train once (--set train.restarts=1), or on fewer images"))
    if tc.self_label_epoch > 0:
        K = cfg.model.n_components
        resplit = n * k * 96 if tc.resplit_ratio > 0 else 0
        needs.append(memory.Need("the self-labelling pass", processes * (kept + n * (K * 8 + 24) + resplit + STEP_BYTES),
                                 "train on fewer images, or turn the re-split repair off (--set train.resplit_ratio=0)"))
    return needs


_FEWER = "train on fewer images, or keep fewer neighbours (--set train.n_neighbours=5)"


def check_memory(cfg: RunConfig, n: int, processes: int = 1) -> None:
    """:class:`mixvae.memory.PlanError` (one line: the stage, its need, the way out) when a stage
    of training n images (on ``processes`` processes of this machine) would not fit in the memory
    available now."""
    memory.check_plan(memory_plan(cfg, n, processes))
