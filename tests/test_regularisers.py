"""Self-labelling's targets: the manager's confident experts, and, where two experts each hold half
of two kinds of image, the re-split pair's new experts; from the function, through the
regulariser, to a training run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from mixvae.batches import BatchSource
from mixvae.model import MixtureModule
from mixvae.regularisers import SelfLabelling, self_labels
from mixvae.train import Runtime, Trainer

from conftest import blobs
from test_train import blob_config

N_PER = 60  # points in each of three clouds


class StubModule:
    """What self-labelling asks of a model: a designed routing q(k|x), looked up by the image's
    index, which each image (1, 2) carries in its two pixels (index // 256, index % 256)."""

    def __init__(self, probs: np.ndarray):
        self.probs = torch.as_tensor(probs, dtype=torch.float32)
        self.config = SimpleNamespace(n_components=probs.shape[1])
        self.training = True

    def eval(self) -> StubModule:
        self.training = False
        return self

    def train(self, mode: bool = True) -> StubModule:
        self.training = mode
        return self

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        code = (x * 255).round().long()  # (B, 2)
        return self.probs[code[:, 0] * 256 + code[:, 1]]


def index_images(n: int) -> np.ndarray:
    i = np.arange(n)
    return np.stack([i // 256, i % 256], 1).astype(np.uint8)[:, None, :]  # (n, 1, 2)


def stuck_routing() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three well-separated clouds (the kinds of image). Experts 0 and 1 each hold half of cloud 0
    and half of cloud 1 (split by y, across both clouds); expert 2 holds cloud 2. Every tenth image
    is routed with confidence 0.6 only, the others with 0.998. Returns (cloud, expert, probs, the
    8 nearest neighbours of each point)."""
    rng = np.random.default_rng(0)
    cloud = np.repeat([0, 1, 2], N_PER)
    points = rng.normal(0, 0.3, (3 * N_PER, 2)) + np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[cloud]
    expert = np.where(cloud == 2, 2, (points[:, 1] > np.median(points[cloud < 2, 1])).astype(int))
    conf = np.where(np.arange(3 * N_PER) % 10 == 0, 0.6, 0.998)
    probs = np.full((3 * N_PER, 3), 0.0)
    probs[np.arange(3 * N_PER), expert] = conf
    probs += (1 - conf)[:, None] / 2 * (probs == 0)
    neighbours = NearestNeighbors(n_neighbors=8).fit(points).kneighbors(return_distance=False)
    return cloud, expert, probs, neighbours


def test_targets_are_the_confident_experts_without_a_resplit() -> None:
    cloud, expert, probs, neighbours = stuck_routing()
    module = StubModule(probs)
    (targets, weight), moves = self_labels(module, index_images(len(cloud)), 0.99, 50, torch.device("cpu"),
                                           torch.from_numpy(neighbours), 0.0)
    want = np.where(probs.max(1) > 0.99, expert, -1)
    np.testing.assert_array_equal(targets.numpy(), want)
    assert moves == [] and module.training  # the module's mode is restored
    counts = np.bincount(want[want >= 0], minlength=3)
    np.testing.assert_allclose(weight.numpy(), (1 / counts) / (1 / counts).sum() * 3, rtol=1e-6)
    assert adjusted_rand_score(cloud, targets.numpy()) < 0.5  # experts 0 and 1 mix clouds 0 and 1


def test_a_resplit_pair_gives_its_images_their_new_experts() -> None:
    cloud, _, probs, neighbours = stuck_routing()
    (targets, weight), moves = self_labels(StubModule(probs), index_images(len(cloud)), 0.99, 50,
                                           torch.device("cpu"), torch.from_numpy(neighbours), 0.5)
    assert len(moves) == 1 and {moves[0].a, moves[0].b} == {0, 1}
    t, pair = targets.numpy(), cloud < 2
    assert set(t[pair]) == {0, 1}  # the pair's unsure images get their new expert too
    assert adjusted_rand_score(cloud[pair], t[pair]) == 1.0  # one expert per cloud
    np.testing.assert_array_equal(t[~pair], np.where(probs[~pair].max(1) > 0.99, 2, -1))  # the rest as before
    counts = np.array([N_PER, N_PER, np.sum(t == 2)])
    np.testing.assert_allclose(weight.numpy(), (1 / counts) / (1 / counts).sum() * 3, rtol=1e-6)


def test_the_self_labelling_regulariser_trains_on_the_resplit_targets() -> None:
    cloud, _, probs, neighbours = stuck_routing()
    images = index_images(len(cloud))
    cfg = blob_config(manager_regulariser="neighbours", self_label_epoch=1, resplit_ratio=0.5, eval_batch_size=50)
    source = BatchSource(images, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    reg = SelfLabelling(source, torch.from_numpy(neighbours), cfg)
    lines: list[str] = []
    module: Any = StubModule(probs)
    assert reg.start_epoch(module, 3, True, lines.append) == {"resplits": 1}
    assert reg.targets is not None
    pair = cloud < 2
    assert adjusted_rand_score(cloud[pair], reg.targets.numpy()[pair]) == 1.0
    assert len(lines) == 1 and lines[0].startswith("epoch 4: re-split experts 0 and 1 (120 images)")
    assert reg.state_dict()["resplits"] == 1 and torch.equal(reg.state_dict()["self_labels"], reg.targets)


def test_training_resplits_a_stuck_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose manager (patched) routes each image of two blob clusters to expert 0 or 1 by the
    parity of its pixel sum, a feature the neighbour graph does not see: when self-labelling starts,
    the pair is re-split and the targets it trains on are the two clusters."""
    x, y = blobs(n_per=50, k=2)

    def parity_routing(self: MixtureModule, images: torch.Tensor) -> torch.Tensor:
        odd = (images * 255).round().long().sum(1) % 2  # (B,)
        probs = torch.full((len(images), self.config.n_components), 0.0005)
        probs[torch.arange(len(images)), odd] = 1 - 0.0005 * (self.config.n_components - 1)
        return probs

    monkeypatch.setattr(MixtureModule, "predict_proba", parity_routing)
    cfg = blob_config(epochs=2, batch_size=20, manager_regulariser="neighbours", n_neighbours=5,
                      neighbour_pca_dims=8, self_label_epoch=1, resplit_ratio=0.5)
    trainer = Trainer(cfg, x, log=None, runtime=Runtime(progress=False))
    _, history = trainer.run()
    assert history.column("resplits") == [None, 1]
    reg = trainer.state.schedule.at(1)
    assert isinstance(reg, SelfLabelling) and reg.targets is not None
    routed = parity_routing(trainer.module, torch.from_numpy(x.reshape(len(x), -1) / 255.0).float()).argmax(1)
    assert adjusted_rand_score(y, routed.numpy()) < 0.1  # the manager's own routing ignores the clusters
    assert adjusted_rand_score(y, reg.targets.numpy()) == 1.0  # the targets are the clusters
