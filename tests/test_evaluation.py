"""A run's evaluation: each split's scores are those of that split's own predictions, computed
independently (Hungarian accuracy with scipy, NMI and ARI with scikit-learn), and the IW bound is
the estimator's on the test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixvae.checkpoint import load_run
from mixvae.estimator import MixtureVAE
from mixvae.evaluation import EvaluationError, evaluate_run
from mixvae.inference import predict_proba

from conftest import blobs
from test_cli_use import scores, split, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("evaluation"))


def test_each_split_is_scored_on_its_own_predictions(run: Path) -> None:
    result = evaluate_run(run)
    module, _ = load_run(run)
    for name, size in (("test", 60), ("train", 120)):
        images, labels = split(run, name)
        probs = predict_proba(module, images)
        clusters = probs.argmax(1)
        got = result[name]
        assert got["n"] == len(images) == size
        for metric, value in scores(labels, clusters).items():
            assert got[metric] == pytest.approx(value, abs=1e-12), (name, metric)
        K = probs.shape[1]
        assert got["usage"] == [round(u, 5) for u in np.bincount(clusters, minlength=K) / len(images)]
        table = np.zeros((K, 4), int)
        np.add.at(table, (clusters, labels), 1)
        assert got["confusion"] == table.tolist()
    assert json.loads((run / "eval.json").read_text()) == json.loads(json.dumps(result))
    assert (run / "confusion.png").is_file()
    assert result["run"] == str(run)
    assert "log_likelihood" not in result  # no likelihood bound unless asked for


def test_other_data_is_scored_instead_of_the_runs(run: Path, tmp_path: Path) -> None:
    x, y = blobs(n_per=10, k=4, seed=5)
    np.savez(tmp_path / "other.npz", x_train=x[:25], y_train=y[:25], x_test=x[25:], y_test=y[25:])
    result = evaluate_run(run, data=str(tmp_path / "other.npz"))
    est = MixtureVAE.load(run)
    for name, images, labels in (("test", x[25:], y[25:]), ("train", x[:25], y[:25])):
        assert result[name]["n"] == len(images)
        for metric, value in scores(labels, est.predict(images)).items():
            assert result[name][metric] == pytest.approx(value, abs=1e-12), (name, metric)
    np.savez(tmp_path / "big.npz", x_train=np.zeros((5, 10, 10), np.uint8))
    with pytest.raises(EvaluationError, match=r"\(10, 10\).*\(8, 8\)"):
        evaluate_run(run, data=str(tmp_path / "big.npz"))


def test_the_iw_bound_is_the_estimators_on_the_test_images(run: Path) -> None:
    result = evaluate_run(run, iw_samples=5, iw_images=20)
    ll = result["log_likelihood"]
    images, _ = split(run, "test")
    want = MixtureVAE.load(run).score_samples(images[:20], n_iw_samples=5)
    assert ll["split"] == "test" and ll["images"] == 20 and ll["iw_samples"] == 5
    assert ll["mean_nats"] == pytest.approx(float(want.mean()), abs=1e-9)
    assert ll["stderr"] == pytest.approx(float(want.std(ddof=1) / np.sqrt(20)), abs=1e-9)
