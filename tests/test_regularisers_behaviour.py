"""The regulariser schedule: which regulariser each epoch gets, and the state it saves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from mixvae.batches import BatchSource
from mixvae.regularisers import (
    NeighbourConsistency,
    Regulariser,
    Schedule,
    SelfLabelling,
    build_schedule,
    self_labels,
)
from mixvae.runfolder import NEIGHBOURS_FILE

from conftest import blobs
from test_refine_behaviour import blobs_and_graph
from test_regularisers import StubModule, index_images, stuck_routing
from test_train import blob_config


class Named(Regulariser):
    def __init__(self, name: str):
        self.name, self.loaded = name, None

    def state_dict(self) -> dict[str, Any]:
        return {self.name: 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded = state


def test_the_latest_started_phase_wins_and_before_the_first_there_is_none():
    a, b = Named("a"), Named("b")
    s = Schedule([(5, b), (2, a)])  # given out of order
    assert type(s.at(0)) is Regulariser and type(s.at(1)) is Regulariser
    assert s.at(2) is a and s.at(4) is a and s.at(5) is b and s.at(100) is b
    assert type(Schedule().at(3)) is Regulariser


def test_the_schedule_saves_and_restores_every_phase():
    a, b = Named("a"), Named("b")
    s = Schedule([(0, a), (3, b)])
    assert s.state_dict() == {"a": 1, "b": 1}
    s.load_state_dict({"x": 2})
    assert a.loaded == b.loaded == {"x": 2}


def test_the_plain_regulariser_adds_nothing():
    r = Regulariser()
    assert r.start_epoch(None, 0, True, None) == {} and r.views(None, None) is None  # type: ignore[arg-type]
    assert r.loss(None, None) is None and r.state_dict() == {}  # type: ignore[arg-type]


def source_for(images, **train) -> BatchSource:
    cfg = blob_config(**train)
    return BatchSource(images, cfg, torch.Generator().manual_seed(5), torch.device("cpu"))


def test_neighbour_consistency_routes_two_views_and_scores_them():
    x, _ = blobs(n_per=10, k=4)
    src = source_for(x, augment=False)
    nb = torch.from_numpy(np.random.default_rng(0).integers(0, len(x), (len(x), 3)))
    reg = NeighbourConsistency(src, nb, weight=0.7, entropy_weight=0.3)
    idx = np.array([4, 0, 9, 17])
    batch = src.batch(idx)
    picks = torch.randint(3, (4,), generator=torch.Generator().manual_seed(5))  # the source's next draw
    views = reg.views(idx, batch)
    assert views.shape == (8, 64)
    torch.testing.assert_close(views[:4], batch)  # no augmentation: the views are the images themselves
    torch.testing.assert_close(views[4:], src.batch(nb[torch.from_numpy(idx), picks].numpy()))
    logits = torch.randn(8, 4, dtype=torch.float64)
    out = SimpleNamespace(view_logits=logits)
    p = torch.softmax(logits, 1).numpy()
    agree = (p[:4] * p[4:]).sum(1)
    mean = p[:4].mean(0)
    expected = 0.7 * -np.log(agree).mean() - 0.3 * -(mean * np.log(mean)).sum()
    assert float(reg.loss(out, idx)) == pytest.approx(expected, rel=1e-9)  # type: ignore[arg-type]
    gathered = NeighbourConsistency(src, nb, 0.7, 0.3, gather=lambda t: torch.cat([t, t[:1]]))
    extra = np.concatenate([p[:4], p[:1]]).mean(0)  # the entropy is the global batch's
    expected = 0.7 * -np.log(agree).mean() - 0.3 * -(extra * np.log(extra)).sum()
    assert float(gathered.loss(out, idx)) == pytest.approx(expected, rel=1e-9)  # type: ignore[arg-type]


def test_self_labelling_targets_are_made_at_a_fresh_epoch_and_kept_inside_it():
    cloud, expert, probs, neighbours = stuck_routing()
    images = index_images(len(cloud))
    cfg = blob_config(manager_regulariser="neighbours", self_label_epoch=1, self_label_threshold=0.9,
                      self_label_weight=2.0, eval_batch_size=50)
    src = BatchSource(images, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    reg = SelfLabelling(src, torch.from_numpy(neighbours), cfg)
    empty = reg.state_dict()  # before any targets: empty tensors, which a checkpoint holds like any other
    assert empty["self_labels"].numel() == 0 and empty["self_label_weight"].numel() == 0 and empty["resplits"] == 0
    module: Any = StubModule(probs)
    assert reg.start_epoch(module, 0, False, None) == {"resplits": 0}  # no targets yet: made even mid-epoch
    assert reg.targets is not None
    np.testing.assert_array_equal(reg.targets.numpy(), np.where(probs.max(1) > 0.9, expert, -1))
    made = reg.targets
    module.probs = torch.full_like(module.probs, 1 / 3)
    reg.start_epoch(module, 0, False, None)  # resuming inside the epoch: the same targets
    assert reg.targets is made
    reg.start_epoch(module, 1, True, None)  # a new epoch: new targets (none is confident now)
    assert torch.all(reg.targets == -1)
    idx = np.array([0, 1, 2])
    reg.targets = torch.tensor([2, -1, 0] + [1] * (len(cloud) - 3))
    reg.expert_weight = torch.tensor([0.5, 1.0, 1.5])
    logits = torch.randn(3, 3)
    loss = reg.loss(SimpleNamespace(view_logits=logits), idx)  # type: ignore[arg-type]
    expected = 2.0 * torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([2, 0]),
                                                       weight=torch.tensor([0.5, 1.0, 1.5]))
    torch.testing.assert_close(loss, expected)
    x = torch.rand(3, 2)
    assert reg.views(idx, x) is x  # no augmentation: the image itself


def test_self_labelling_keeps_the_routing_spread_when_asked():
    """With ``self_label_entropy_weight`` the loss is the weighted cross-entropy minus that weight
    times the entropy of the batch's mean routing."""
    cloud, _, _, neighbours = stuck_routing()
    src_cfg = {"manager_regulariser": "neighbours", "self_label_epoch": 1, "self_label_weight": 2.0,
               "entropy_weight": 5.0}
    idx, logits = np.array([0, 1, 2]), torch.randn(3, 3)
    targets, weight = torch.tensor([2, -1, 0] + [1] * (len(cloud) - 3)), torch.tensor([0.5, 1.0, 1.5])
    ce = 2.0 * torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([2, 0]), weight=weight)
    mean = logits.softmax(-1).mean(0)
    losses = {}
    for spread in (False, True):
        cfg = blob_config(**src_cfg, self_label_entropy_weight=0.3 if spread else 0.0)
        src = BatchSource(index_images(len(cloud)), cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
        reg = SelfLabelling(src, torch.from_numpy(neighbours), cfg)
        reg.targets, reg.expert_weight = targets, weight
        losses[spread] = reg.loss(SimpleNamespace(view_logits=logits), idx)  # type: ignore[arg-type]
    torch.testing.assert_close(losses[False], ce)
    torch.testing.assert_close(losses[True], ce - 0.3 * -(mean * mean.log()).sum())


def test_self_labelling_state_round_trip():
    cloud, _, _, neighbours = stuck_routing()
    cfg = blob_config(manager_regulariser="neighbours", self_label_epoch=1, eval_batch_size=50)
    src = BatchSource(index_images(len(cloud)), cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    reg = SelfLabelling(src, torch.from_numpy(neighbours), cfg)
    reg.targets, reg.expert_weight, reg.resplits = torch.tensor([1, -1, 0]), torch.tensor([1.0, 2.0]), 3
    state = reg.state_dict()
    other = SelfLabelling(src, torch.from_numpy(neighbours), cfg)
    other.load_state_dict(state)
    assert torch.equal(other.targets, reg.targets) and torch.equal(other.expert_weight, reg.expert_weight)
    assert other.resplits == 3
    fresh = SelfLabelling(src, torch.from_numpy(neighbours), cfg)
    fresh.load_state_dict({"self_labels": torch.zeros(0), "self_label_weight": torch.zeros(0)})  # saved before any
    assert fresh.targets is None and fresh.expert_weight is None and fresh.resplits == 0


def test_self_labels_threshold_is_strict_and_weights_average_one():
    probs = np.array([[0.95, 0.05, 0.0], [0.9, 0.1, 0.0], [0.0, 0.05, 0.95], [0.0, 0.96, 0.04], [0.97, 0.03, 0.0]])
    (targets, weight), moves = self_labels(StubModule(probs), index_images(5), 0.9, 2, torch.device("cpu"))
    assert targets.tolist() == [0, -1, 2, 1, 0] and moves == []  # 0.9 is not above 0.9
    counts = np.array([2, 1, 1])
    np.testing.assert_allclose(weight.numpy(), (1 / counts) / (1 / counts).sum() * 3, rtol=1e-6)
    (targets, weight), _ = self_labels(StubModule(probs), index_images(5), 0.96, 2, torch.device("cpu"))
    assert targets.tolist() == [-1, -1, -1, -1, 0]
    np.testing.assert_allclose(weight.numpy(), [1.0, 1.0, 1.0], rtol=1e-6)  # experts with no target count as one


def test_the_schedule_built_from_the_config():
    x, _ = blobs(n_per=10, k=4)
    assert build_schedule(blob_config(), source_for(x)).phases == []
    assert build_schedule(blob_config(manager_regulariser="neighbours"), source_for(x[:1])).phases == []
    cfg = blob_config(manager_regulariser="neighbours", n_neighbours=50, neighbour_pca_dims=8,
                      regulariser_warmup_epochs=2, consistency_weight=0.4, entropy_weight=0.6)
    (start, reg), = build_schedule(cfg, source_for(x)).phases
    assert start == 2 and isinstance(reg, NeighbourConsistency)
    assert reg.neighbours.shape == (40, 39)  # 50 asked, 39 others to offer
    assert (reg.weight, reg.entropy_weight) == (0.4, 0.6)
    for self_label_epoch, label_start in ((1, 2), (5, 5)):
        cfg = blob_config(manager_regulariser="neighbours", n_neighbours=3, neighbour_pca_dims=8,
                          regulariser_warmup_epochs=2, self_label_epoch=self_label_epoch)
        phases = build_schedule(cfg, source_for(x)).phases
        assert [(s, type(r)) for s, r in phases] == [(2, NeighbourConsistency), (label_start, SelfLabelling)]
        assert phases[0][1].neighbours is phases[1][1].neighbours  # one graph, shared


def test_two_images_are_enough_for_a_graph_and_it_is_kept_in_the_run_folder(tmp_path):
    x, _ = blobs(n_per=10, k=4)
    cfg = blob_config(manager_regulariser="neighbours", n_neighbours=3, neighbour_pca_dims=8)
    (_, reg), = build_schedule(cfg, source_for(x[:2])).phases
    assert reg.neighbours.tolist() == [[1], [0]]  # each other's only neighbour
    build_schedule(cfg, source_for(x), run_dir=tmp_path)
    assert (tmp_path / NEIGHBOURS_FILE).exists()


def test_pairs_are_resplit_only_when_asked_and_at_the_ratio_asked():
    pts, cls, nb = blobs_and_graph(sizes=(60, 60), spread=0.6)  # groups that touch: a re-split still cuts edges
    expert = (pts[:, 1] > 0.5).astype(int)  # the two experts split both groups by y
    probs = np.full((len(cls), 2), 0.001)
    probs[np.arange(len(cls)), expert] = 0.999
    args = (StubModule(probs), index_images(len(cls)), 0.99, 50, torch.device("cpu"), torch.from_numpy(nb))
    assert self_labels(*args)[1] == []  # no ratio: no re-split
    (move,) = self_labels(*args, 0.9)[1]
    gain = move.ncut_after / move.ncut_before
    assert 0 < gain < 0.9
    assert self_labels(*args, 0.9 * gain)[1] == []  # not enough of a gain for this ratio


def test_the_schedule_builds_the_graph_and_the_spread_the_kind_decides(tmp_path):
    """A colour run with "auto" settings gets a Euclidean graph (recorded beside the saved graph)
    and a self-labelling spread of 1; a grey one a cosine graph and no spread."""
    import json

    from mixvae.config import config_from_dict
    from mixvae.runfolder import NEIGHBOURS_META

    x, _ = blobs(n_per=10, k=4)
    auto = {"train": {"neighbour_metric": "auto", "self_label_entropy_weight": "auto", "self_label_epoch": 1}}
    for channels, metric, spread in ((3, "euclidean", 1.0), (1, None, 0.0)):
        cfg = config_from_dict({**auto, "model": {"channels": channels}},
                               base=blob_config(manager_regulariser="neighbours", n_neighbours=3, neighbour_pca_dims=8))
        images = np.repeat(x[..., None], channels, -1) if channels > 1 else x
        run = tmp_path / str(channels)
        run.mkdir()
        source = BatchSource(images, cfg, torch.Generator().manual_seed(5), torch.device("cpu"))
        schedule = build_schedule(cfg, source, run_dir=run)
        assert json.loads((run / NEIGHBOURS_META).read_text()).get("metric") == metric  # cosine is not recorded
        assert schedule.at(1).entropy_weight == spread  # type: ignore[attr-defined]
