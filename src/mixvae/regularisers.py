"""What the manager learns from besides the experts' losses: routing regularisers.

Each regulariser has one small interface (:class:`Regulariser`): it may prepare something at
the start of an epoch, ask for extra images to route in the step's one forward call (``views``),
add a term to the loss, and save and restore its own state in checkpoints. A schedule picks the
regulariser of each epoch; the training loop only talks to the interface, so adding one never
edits the loop.

Built in (``train.manager_regulariser = "neighbours"``):

- :class:`NeighbourConsistency`: an image and one of its nearest neighbours, each randomly
  deformed, should be routed alike, while the batch's mean routing keeps a high entropy (SCAN,
  Van Gansbeke et al., 2020; IMSAT, Hu et al., 2017);
- :class:`SelfLabelling`: from ``self_label_epoch`` on, the manager learns from its own
  confident routings, after expert pairs that share two kinds of image are re-split on the
  neighbour graph (:mod:`mixvae.refine`), keeping the batch's mean routing spread
  (``self_label_entropy_weight``) so that no expert loses every image;
- :class:`GraphStart` (``graph_start_epochs`` > 0; off in the presets): for the first epochs the
  consistency term is joined by the spectral partition of the neighbour graph as a target.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae import graphcut, kinds, memory, objectives, refine
from mixvae.batches import BatchSource
from mixvae.config import RunConfig
from mixvae.inference import predict_proba
from mixvae.model import LossOutput, MixtureModule
from mixvae.neighbours import neighbour_graph

__all__ = ["NeighbourConsistency", "Regulariser", "Schedule", "SelfLabelling", "build_schedule", "run_graph",
           "self_labels"]

Log = Callable[[str], None] | None
Gather = Callable[[torch.Tensor], torch.Tensor] | None


class Regulariser:
    """The interface, and the regulariser that adds nothing."""

    def start_epoch(self, module: MixtureModule, epoch: int, fresh: bool, log: Log) -> dict[str, Any]:
        """Called before the first step of ``epoch`` (0-based; ``fresh``) or when resuming inside
        it; returns numbers for the epoch's record."""
        return {}

    def views(self, idx: np.ndarray, x: torch.Tensor) -> torch.Tensor | None:
        """Extra images (V*B, D) to route in the forward call for images idx (x: (B, D)), or None."""
        return None

    def loss(self, out: LossOutput, idx: np.ndarray) -> torch.Tensor | None:
        """The term added to the loss (from ``out.view_logits``), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class NeighbourConsistency(Regulariser):
    """-log <q(.|x'), q(.|x'')> for deformed views x', x'' of an image and of one of its neighbours,
    minus ``entropy_weight`` times the entropy of the batch's mean routing."""

    def __init__(self, source: BatchSource, neighbours: torch.Tensor, weight: float, entropy_weight: float,
                 gather: Gather = None):
        self.source, self.neighbours = source, neighbours
        self.weight, self.entropy_weight, self.gather = weight, entropy_weight, gather

    def views(self, idx: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        pick = self.source.pick(self.neighbours.shape[1], len(idx))
        x_nb = self.source.batch(self.neighbours[torch.from_numpy(idx), pick].numpy())  # (B, D)
        return torch.cat([self.source.view(x), self.source.view(x_nb)])  # (2B, D)

    def loss(self, out: LossOutput, idx: np.ndarray) -> torch.Tensor:
        assert out.view_logits is not None
        p_x, p_nb = out.view_logits.softmax(-1).chunk(2)  # (B, K) each
        reg = self.weight * objectives.neighbour_consistency(p_x, p_nb)
        spread = objectives.marginal_entropy(p_x if self.gather is None else self.gather(p_x))
        return reg - self.entropy_weight * spread


class GraphStart(NeighbourConsistency):
    """Neighbour consistency, plus ``weight`` times the cross-entropy of a deformed view's routing
    against the image's cluster in the spectral partition of the neighbour graph
    (:func:`mixvae.graphcut.spectral_partition`): the manager starts where spectral clustering ends,
    and the consistency term takes over when this phase ends."""

    def __init__(self, source: BatchSource, neighbours: torch.Tensor, weight: float, entropy_weight: float,
                 gather: Gather, n_clusters: int, target_weight: float, seed: int):
        super().__init__(source, neighbours, weight, entropy_weight, gather)
        self.n_clusters, self.target_weight, self.seed = n_clusters, target_weight, seed
        self.targets: torch.Tensor | None = None  # (N,) cluster of each image
        self.cluster_weight: torch.Tensor | None = None  # (K,)

    def start_epoch(self, module: MixtureModule, epoch: int, fresh: bool, log: Log) -> dict[str, Any]:
        if self.targets is None:  # the same partition on every process and after a resume
            part = graphcut.spectral_partition(self.neighbours.numpy(), self.n_clusters, self.seed)
            self.targets = torch.from_numpy(part)
            counts = torch.bincount(self.targets, minlength=self.n_clusters).float()  # (K,)
            weight = 1.0 / counts.clamp_min(1.0)
            self.cluster_weight = weight / weight.sum() * self.n_clusters
            if log:
                log(f"spectral partition of the neighbour graph: cluster sizes {counts.long().tolist()}")
        return {}

    def loss(self, out: LossOutput, idx: np.ndarray) -> torch.Tensor:
        assert out.view_logits is not None and self.targets is not None and self.cluster_weight is not None
        dev = out.view_logits.device
        logits_x = out.view_logits.chunk(2)[0]  # (B, K) the images' own views
        start = objectives.self_label(logits_x, self.targets[torch.from_numpy(idx)].to(dev), self.cluster_weight.to(dev))
        return super().loss(out, idx) + self.target_weight * start


class SelfLabelling(Regulariser):
    """Cross-entropy of a deformed view's routing against the image's target expert: the expert
    the manager chose with confidence above ``threshold`` at the start of the epoch (re-split
    pairs included), weighted inversely to each expert's number of targets."""

    def __init__(self, source: BatchSource, neighbours: torch.Tensor, cfg: RunConfig, gather: Gather = None):
        self.source, self.neighbours, self.gather = source, neighbours, gather
        tc = cfg.train
        self.weight, self.threshold, self.ratio = tc.self_label_weight, tc.self_label_threshold, tc.resplit_ratio
        self.entropy_weight = float(kinds.resolve(cfg).train.self_label_entropy_weight)  # "auto" when built by hand
        self.eval_batch_size = tc.eval_batch_size
        self.targets: torch.Tensor | None = None  # (N,) expert per image, -1 for none
        self.expert_weight: torch.Tensor | None = None  # (K,)
        self.resplits = 0  # expert pairs re-split when this epoch's targets were made

    def start_epoch(self, module: MixtureModule, epoch: int, fresh: bool, log: Log) -> dict[str, Any]:
        if self.targets is None or fresh:
            (self.targets, self.expert_weight), moves = self_labels(
                module, self.source.images, self.threshold, self.eval_batch_size, self.source.device,
                self.neighbours, self.ratio)
            self.resplits = len(moves)
            for move in moves:
                if log:
                    log(f"epoch {epoch + 1}: {move}")
        return {"resplits": self.resplits}

    def views(self, idx: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        return self.source.view(x)  # (B, D)

    def loss(self, out: LossOutput, idx: np.ndarray) -> torch.Tensor:
        assert out.view_logits is not None and self.targets is not None and self.expert_weight is not None
        dev = out.view_logits.device
        targets = self.targets[torch.from_numpy(idx)].to(dev)
        loss = self.weight * objectives.self_label(out.view_logits, targets, self.expert_weight.to(dev))
        if self.entropy_weight > 0:  # experts without confident images keep their share of the routing
            p = out.view_logits.softmax(-1)  # (B, K)
            loss = loss - self.entropy_weight * objectives.marginal_entropy(p if self.gather is None else self.gather(p))
        return loss

    def state_dict(self) -> dict[str, Any]:
        empty = torch.zeros(0, device="cpu")
        return {"self_labels": self.targets if self.targets is not None else empty,
                "self_label_weight": self.expert_weight if self.expert_weight is not None else empty,
                "resplits": self.resplits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("self_labels", ())):
            self.targets, self.expert_weight = state["self_labels"], state["self_label_weight"]
        self.resplits = int(state.get("resplits", 0))


class Schedule:
    """The regulariser of each epoch: phases (first epoch, regulariser), the latest started wins;
    before the first phase, none."""

    def __init__(self, phases: list[tuple[int, Regulariser]] | None = None, graph: torch.Tensor | None = None):
        self.phases = sorted(phases or [], key=lambda p: p[0])
        self.graph = graph  # (N, k) the neighbour graph the phases share, when they use one

    def at(self, epoch: int) -> Regulariser:
        active = Regulariser()
        for start, reg in self.phases:
            if start <= epoch:
                active = reg
        return active

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for _, reg in self.phases:
            state.update(reg.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for _, reg in self.phases:
            reg.load_state_dict(state)


def build_schedule(cfg: RunConfig, source: BatchSource, gather: Gather = None, log: Log = None,
                   run_dir: Path | None = None) -> Schedule:
    """The configured regularisers, and the neighbour graph they share (built once per run and
    kept in ``run_dir``; see :func:`mixvae.neighbours.neighbour_graph`)."""
    cfg = kinds.resolve(cfg)  # the kind's neighbour metric and self-labelling spread, where "auto"
    tc, n = cfg.train, source.n
    if tc.manager_regulariser == "none" or n < 2:
        return Schedule()
    graph = run_graph(cfg, source, log, run_dir)
    start = tc.regulariser_warmup_epochs
    phases: list[tuple[int, Regulariser]] = [
        (start, NeighbourConsistency(source, graph, tc.consistency_weight, tc.entropy_weight, gather))]
    if tc.graph_start_epochs > 0:
        phases.insert(0, (start, GraphStart(source, graph, tc.consistency_weight, tc.entropy_weight, gather,
                                            cfg.model.n_components, tc.graph_start_weight, tc.seed)))
        phases[1] = (start + tc.graph_start_epochs, phases[1][1])
    if tc.self_label_epoch > 0:
        phases.append((max(tc.self_label_epoch, start), SelfLabelling(source, graph, cfg, gather)))
    return Schedule(phases, graph)


def run_graph(cfg: RunConfig, source: BatchSource, log: Log = None, run_dir: Path | None = None) -> torch.Tensor:
    """The run's neighbour graph of its training images, as its settings name it (kept in
    ``run_dir``; see :func:`mixvae.neighbours.neighbour_graph`)."""
    tc = kinds.resolve(cfg).train
    k = min(tc.n_neighbours, max(source.n - 1, 1))  # a tiny dataset has fewer neighbours to offer
    return neighbour_graph(source.images, k, tc.neighbour_pca_dims, tc.neighbour_search, run_dir, source.rank,
                           source.world, log, tc.neighbour_filter, tc.neighbour_metric)


@memory.stage("self-labelling pass")
def self_labels(module: MixtureModule, images: Any, threshold: float, batch_size: int, device: torch.device,
                neighbours: torch.Tensor | None = None, resplit_ratio: float = 0.0
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[refine.Resplit]]:
    """Targets for self-labelling: each training image's expert where the manager is at least
    ``threshold`` sure (else -1), and per-expert weights inversely proportional to their counts.

    With ``resplit_ratio`` > 0, the images of expert pairs that :func:`mixvae.refine.resplit_pairs`
    re-splits on the neighbour graph all get their new expert as the target."""
    probs = torch.from_numpy(predict_proba(module, images, batch_size, device))  # (N, K)
    conf, expert = probs.max(1)
    targets = torch.where(conf > threshold, expert, torch.full_like(expert, -1))  # (N,)
    moves: list[refine.Resplit] = []
    if resplit_ratio > 0 and neighbours is not None:
        new, changed, moves = refine.resplit_pairs(expert.numpy(), neighbours.numpy(), probs.shape[1],
                                                   ratio=resplit_ratio)
        mask = torch.from_numpy(changed)
        targets[mask] = torch.from_numpy(new)[mask]
    counts = torch.bincount(targets[targets >= 0], minlength=probs.shape[1]).float()  # (K,)
    weight = 1.0 / counts.clamp_min(1.0)
    return (targets, weight / weight.sum() * probs.shape[1]), moves
