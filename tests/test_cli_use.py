"""The commands that use a trained run give what the model gives: ``mixvae predict`` the
estimator's experts and probabilities, ``mixvae sample`` each expert's decoded means for the seeded
z, ``mixvae evaluate`` the test split's ACC/NMI/ARI computed independently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from mixvae.checkpoint import load_run
from mixvae.cli import main
from mixvae.estimator import MixtureVAE

from conftest import blobs
from test_cli_errors import TINY


def train_tiny_run(root: Path) -> Path:
    """A one-epoch TINY run on 8x8 blobs whose splits differ in size and content: 120 training
    images (seed 0) and 60 test images (seed 1), with labels; the data file is ``root/blobs.npz``."""
    x, y = blobs(n_per=30, k=4, seed=0)
    x_test, y_test = blobs(n_per=15, k=4, seed=1)
    np.savez(root / "blobs.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    assert main(["train", "--data", str(root / "blobs.npz"), "--out", str(root / "run"), "--epochs", "1", *TINY]) == 0
    return root / "run"


def split(run: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a split of the run's data file."""
    with np.load(run.parent / "blobs.npz") as f:
        return f[f"x_{name}"], f[f"y_{name}"]


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The accuracy of the best one-to-one matching of clusters to classes."""
    table = contingency_matrix(labels, clusters)  # (classes, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    return {"acc": hungarian_accuracy(labels, clusters), "nmi": normalized_mutual_info_score(labels, clusters),
            "ari": adjusted_rand_score(labels, clusters)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("use"))


def test_predict_prints_the_models_experts_and_probabilities(run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    images, _ = split(run, "test")
    np.save(tmp_path / "images.npy", images)
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "images.npy")]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == "file\texpert\tprobability"
    est = MixtureVAE.load(run)
    experts, probs = est.predict(images), est.predict_proba(images)
    assert len(set(experts)) > 1  # the run uses more than one expert, so "always 0" would show
    assert len(lines) == len(images)
    for i, line in enumerate(lines):
        name, expert, prob = line.split("\t")
        assert name == f"{tmp_path / 'images.npy'}[{i}]"
        assert int(expert) == experts[i]
        assert prob == f"{probs[i, experts[i]]:.4f}"


def test_sample_draws_each_experts_decoded_means(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    drawn: list[Any] = []

    def capture(samples: np.ndarray, shape: tuple[int, int], path: Path, *args: Any, **kwargs: Any) -> Path:
        drawn.append((samples, tuple(shape), Path(path)))
        return Path(path)

    monkeypatch.setattr("mixvae.plots.sample_grid", capture)
    out = tmp_path / "samples.png"
    assert main(["sample", str(run), "--per-expert", "5", "--seed", "7", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    (samples, shape, path), = drawn
    assert path == out and shape == (8, 8)
    module, cfg = load_run(run)
    K, L, n = cfg.model.n_components, cfg.model.latent_dim, 5
    assert samples.shape == (K, n, 64)
    g = torch.Generator().manual_seed(7)
    for k in range(K):  # one draw of z per expert, in order, decoded by that expert
        z = torch.randn(n, L, generator=g)
        with torch.no_grad():
            want = module.decode(z.expand(K, n, L))[k].numpy()
        np.testing.assert_allclose(samples[k], want, rtol=0, atol=1e-6)
    for k in range(K):
        assert samples[k].std() > 1e-3  # not blank
        for j in range(k):
            assert np.abs(samples[k] - samples[j]).max() > 1e-3, (k, j)  # each expert its own images


def test_evaluate_prints_and_saves_the_test_splits_scores(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    table = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    saved = json.loads((run / "eval.json").read_text())
    est = MixtureVAE.load(run)
    for name in ("test", "train"):
        images, labels = split(run, name)
        want = scores(labels, est.predict(images))
        assert table[name][1:4] == [f"{want[m]:.4f}" for m in ("acc", "nmi", "ari")], (name, table)
        assert saved[name]["n"] == len(images)
        for m in ("acc", "nmi", "ari"):
            assert saved[name][m] == pytest.approx(want[m], abs=1e-12), (name, m)
