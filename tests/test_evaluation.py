"""A run's evaluation: each split's scores are those of that split's own predictions, computed
independently (Hungarian accuracy with scipy, NMI and ARI with scikit-learn), and the IW bound is
the estimator's on the test images."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mixvae import evaluation, plots
from mixvae.checkpoint import load_run
from mixvae.cli import main
from mixvae.data.arrays import resize
from mixvae.estimator import MixtureVAE
from mixvae.evaluation import EvaluationError, evaluate_run
from mixvae.inference import predict_proba

from conftest import blobs
from test_cli_errors import TINY
from test_cli_use import scores, split, train_tiny_run
from test_colour import TINY as COLOUR_TINY
from test_colour import colour_blobs


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
    _, cfg = load_run(run)
    assert ll["likelihood"] == cfg.model.likelihood == "gaussian"  # the seed preset's
    assert ll["pixels"] == "continuous in [0, 1], not binarised"
    assert result["data"] == cfg.data == str(run.parent / "blobs.npz")


def test_the_bounds_stderr_is_the_sample_stderr_and_zero_for_one_image(run: Path) -> None:
    images, _ = split(run, "test")
    want = MixtureVAE.load(run).score_samples(images[:2], n_iw_samples=3)
    one = evaluate_run(run, iw_samples=3, iw_images=1)["log_likelihood"]
    assert one["images"] == 1 and one["mean_nats"] == pytest.approx(float(want[0]), abs=1e-9)
    assert one["stderr"] == 0.0  # no spread to estimate from one image
    two = evaluate_run(run, iw_samples=3, iw_images=2)["log_likelihood"]
    assert two["images"] == 2 and two["mean_nats"] == pytest.approx(float(want.mean()), abs=1e-9)
    assert two["stderr"] == pytest.approx(abs(float(want[0] - want[1])) / 2, abs=1e-9)  # s / sqrt(2), s with ddof=1


def test_data_without_a_test_split_is_scored_and_bounded_on_its_training_images(run: Path, tmp_path: Path) -> None:
    x, y = blobs(n_per=6, k=4, seed=7)
    np.savez(tmp_path / "train_only.npz", x_train=x, y_train=y)
    result = evaluate_run(run, data=str(tmp_path / "train_only.npz"), iw_samples=3, iw_images=5)
    est = MixtureVAE.load(run)
    assert "test" not in result and result["data"] == str(tmp_path / "train_only.npz")
    for metric, value in scores(y, est.predict(x)).items():
        assert result["train"][metric] == pytest.approx(value, abs=1e-12), metric
    ll = result["log_likelihood"]
    assert ll["split"] == "train" and ll["images"] == 5
    assert ll["mean_nats"] == pytest.approx(float(est.score_samples(x[:5], n_iw_samples=3).mean()), abs=1e-9)


def test_a_resized_runs_data_is_resized_as_in_training(tmp_path: Path) -> None:
    """A run trained with --image-size 6 on 8x8 images (binarised pixels) is evaluated on its data
    resized to 6x6 the same way, and its bound on one fixed binarisation of them."""
    x, y = blobs(n_per=8, k=4, seed=0)
    x_test, y_test = blobs(n_per=5, k=4, seed=1)
    np.savez(tmp_path / "blobs.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "blobs.npz"), "--out", str(run), "--epochs", "1", "--image-size", "6",
                 "--set", "train.binarize=true", *TINY]) == 0
    result = evaluate_run(run, iw_samples=2, iw_images=4)
    est = MixtureVAE.load(run)
    small = resize(x_test, 6)
    for metric, value in scores(y_test, est.predict(small)).items():
        assert result["test"][metric] == pytest.approx(value, abs=1e-12), metric
    ll = result["log_likelihood"]
    assert ll["pixels"] == "binarised once, each pixel 1 with probability its intensity (seed 1)"
    assert ll["mean_nats"] == pytest.approx(float(est.score_samples(small[:4], n_iw_samples=2).mean()), abs=1e-9)


def test_evaluation_runs_on_the_device_asked_for(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices: list[object] = []

    def spy(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            devices.append(kwargs.get("device", "not given"))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(evaluation, "predict_proba", spy(evaluation.predict_proba))
    monkeypatch.setattr(evaluation, "log_likelihood", spy(evaluation.log_likelihood))
    evaluate_run(run, iw_samples=2, iw_images=2, device="cpu")
    assert devices == ["cpu"] * 3  # the two splits' routing, then the bound


def test_a_colour_run_is_evaluated_in_colour_and_refuses_grayscale_data(tmp_path: Path) -> None:
    x, y = colour_blobs(n_per=10, seed=0)
    x_test, y_test = colour_blobs(n_per=5, seed=1)
    np.savez(tmp_path / "colour.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "colour.npz"), "--out", str(run), "--epochs", "1", *COLOUR_TINY]) == 0
    result = evaluate_run(run)
    est = MixtureVAE.load(run)
    for name, images, labels in (("test", x_test, y_test), ("train", x, y)):
        assert result[name]["n"] == len(images)
        for metric, value in scores(labels, est.predict(images)).items():
            assert result[name][metric] == pytest.approx(value, abs=1e-12), (name, metric)
    np.savez(tmp_path / "gray.npz", x_train=x[..., 0], y_train=y)
    with pytest.raises(EvaluationError, match=r"have 1 channel\(s\), but the model was trained on 3$"):
        evaluate_run(run, data=str(tmp_path / "gray.npz"))


def test_a_one_channel_run_reads_colour_data_in_grayscale(run: Path, tmp_path: Path) -> None:
    x, y = colour_blobs(n_per=6, seed=2)  # 8x8 RGB; the run was trained on grayscale 8x8 images
    np.savez(tmp_path / "colour.npz", x_train=x, y_train=y)
    result = evaluate_run(run, data=str(tmp_path / "colour.npz"))
    luma = np.stack([np.asarray(Image.fromarray(im, "RGB").convert("L")) for im in x])  # Pillow's conversion
    for metric, value in scores(y, MixtureVAE.load(run).predict(luma)).items():
        assert result["train"][metric] == pytest.approx(value, abs=1e-12), metric


def test_an_image_folders_class_names_name_the_labels(run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = blobs(n_per=3, k=4, seed=3)
    names = ["bottom", "lower", "top", "upper"]  # sorted, as the loader numbers the sub-folders
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (tmp_path / "folder" / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(tmp_path / "folder" / names[label] / f"{i}.png")
    figures: list[tuple[Any, ...]] = []
    real = plots.confusion_figure
    monkeypatch.setattr(plots, "confusion_figure", lambda *args: figures.append(args) or real(*args))
    result = evaluate_run(run, data=str(tmp_path / "folder"))
    assert result["class_names"] == names and "test" not in result
    for metric, value in scores(y, MixtureVAE.load(run).predict(x)).items():
        assert result["train"][metric] == pytest.approx(value, abs=1e-12), metric
    ((confusion, path, matched, class_names),) = figures
    assert confusion.tolist() == result["train"]["confusion"] and path == run / "confusion.png"
    assert matched == result["train"]["matched_class"] and class_names == names
    assert "class_names" not in evaluate_run(run)  # an array file has no class names
