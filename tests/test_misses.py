"""Breakages that once went unseen, each caught here: neighbours of the approximate search in the
wrong order, a run on vectors evaluated on the wrong split, a saved graph reused under other
settings, the app's server listening beyond this machine by default, and the estimator's samples
drawn from one expert."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from mixvae import MixtureVAE
from mixvae.cli import main, parser
from mixvae.metrics import clustering_report
from mixvae.neighbours import approximate_neighbours, cosine_neighbours, neighbour_graph
from mixvae.runfolder import EVAL_FILE

from conftest import blobs


def test_the_approximate_neighbours_come_nearest_first() -> None:
    rng = np.random.default_rng(0)
    e = torch.from_numpy(rng.normal(size=(3000, 16)).astype(np.float32))
    approx = approximate_neighbours(e, 8).numpy()
    unit = torch.nn.functional.normalize(e, dim=1).numpy()
    similarity = np.einsum("nd,nkd->nk", unit, unit[approx])  # (N, k) cosine to each neighbour, in the given order
    assert (np.diff(similarity, axis=1) <= 1e-5).all()  # non-increasing: the nearest first
    exact = cosine_neighbours(e, 8).numpy()
    assert np.mean(approx[:, 0] == exact[:, 0]) > 0.9  # the first is the nearest


def test_a_run_on_vectors_is_evaluated_on_its_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 4, (3, 5))
    y_train, y_test = np.arange(150) % 3, np.array([0] * 30 + [1] * 5 + [2] * 5)  # splits of other sizes and mixes
    x_train = centres[y_train] + rng.normal(size=(150, 5))
    x_test = centres[y_test] + rng.normal(size=(40, 5))
    data = tmp_path / "v.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--experts", "3", "--epochs", "2",
                 "--batch-size", "50", "--quiet"]) == 0
    assert main(["evaluate", str(run)]) == 0
    import json

    result = json.loads((run / EVAL_FILE).read_text())
    model = MixtureVAE.load(run)
    for split, (x, y) in {"test": (x_test, y_test), "train": (x_train, y_train)}.items():
        want = clustering_report(y, model.predict_proba(x))
        assert result[split]["n"] == len(x)
        assert result[split]["acc"] == pytest.approx(want["acc"]) and result[split]["confusion"] == want["confusion"]


@pytest.mark.parametrize("change", [{"dims": 4}, {"method": "approximate"}, {"k": 3}, {"metric": "euclidean"}])
def test_a_saved_graph_is_rebuilt_when_it_was_made_with_other_settings(tmp_path: Path, change: dict) -> None:
    x, _ = blobs(n_per=30, k=4)
    settings = {"k": 4, "dims": 8, "method": "exact", "metric": "cosine"}
    first = neighbour_graph(x, run_dir=tmp_path, **settings)
    other = {**settings, **change}
    with pytest.warns(RuntimeWarning, match="built for other data or settings"):
        again = neighbour_graph(x, run_dir=tmp_path, **other)
    fresh = neighbour_graph(x, run_dir=None, **other)
    np.testing.assert_array_equal(again.numpy(), fresh.numpy())
    if change != {"method": "approximate"}:  # faiss at 120 images may find the same graph
        assert again.shape != first.shape or not torch.equal(again, first)


def test_the_app_listens_on_this_machine_only_unless_told() -> None:
    pytest.importorskip("flask")
    from mixvae.app import make_server

    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    assert parser().parse_args(["serve", "run"]).host == "127.0.0.1"


def test_the_estimators_samples_come_from_the_experts_it_names() -> None:
    x, _ = blobs(n_per=40, k=4)
    model = MixtureVAE(n_components=4, max_epochs=2, batch_size=40, random_state=3).fit(x)
    model.weights_ = np.full(4, 0.25)
    images, experts = model.sample(400)
    assert np.bincount(experts, minlength=4).min() >= 60  # every expert, about a quarter each
    # each image is its own expert's decoding of a standard normal draw: the decoder that made it
    # reproduces it from the latent mean its expert's encoder gives it
    module = model.module_
    with torch.no_grad():
        flat = torch.from_numpy(images.reshape(len(images), -1))
        decoded = module.decode(module.encode(flat)[0])  # (K, n, D): each expert's reconstruction from its latent mean
        error = (decoded - flat).abs().mean(-1)  # (K, n)
    best = error.argmin(0).numpy()
    assert np.mean(best == experts) > 0.8, np.mean(best == experts)
