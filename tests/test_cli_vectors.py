"""``mixvae train`` on vectors: .csv tables (header optional, a label column for evaluation only)
and float .npy/.npz matrices; bad tables get one line and exit status 2, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mixvae import MixtureVAE
from mixvae.cli import main
from mixvae.data.tables import read_csv

from test_cli_errors import one_line_error

SHORT = ["--experts", "3", "--epochs", "2", "--batch-size", "20", "--quiet"]


def blobs(n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    return rng.normal(0, 5, (3, 4))[y] * 100 + rng.normal(0, 1, (n, 4)) * 100 + 1000, y  # far from 0 and 1


def write_csv(path: Path, X: np.ndarray, y: np.ndarray | None, header: bool = True) -> Path:
    lines = ["a,b,kind,c,d"] if header else []
    for row, label in zip(X, y if y is not None else [None] * len(X), strict=True):
        fields = [repr(float(v)) for v in row]
        fields.insert(2, "0" if label is None else f"class-{label}" if header else str(label))
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_csv_with_and_without_header(tmp_path: Path) -> None:
    X, y = blobs(9)
    with_header = write_csv(tmp_path / "h.csv", X, y)
    got, labels = read_csv(with_header, "kind")
    np.testing.assert_array_equal(got, X)
    np.testing.assert_array_equal(labels, y)  # class-0 < class-1 < class-2
    plain = write_csv(tmp_path / "p.csv", X, y, header=False)
    got, labels = read_csv(plain, "2")
    np.testing.assert_array_equal(got, X)
    got, labels = read_csv(plain)  # no label column: the column of zeros is a feature
    assert got.shape == (9, 5) and labels is None


def test_train_on_a_csv_evaluates_with_its_label_column_only(tmp_path: Path) -> None:
    X, y = blobs()
    data = write_csv(tmp_path / "t.csv", X, y)
    assert main(["train", "--data", str(data), "--label-column", "kind", "--out", str(tmp_path / "run"), *SHORT]) == 0
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["model"]["input_type"] == "vectors" and cfg["model"]["image_shape"] == [1, 4]
    np.testing.assert_allclose(cfg["model"]["feature_mean"], X.mean(0))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["test_acc"] <= 1
    model = MixtureVAE.load(tmp_path / "run")
    assert model.input_type_ == "vectors" and model.predict(X).shape == (90,)
    assert model.sample(3)[0].shape == (3, 4)
    assert main(["evaluate", str(tmp_path / "run"), "--iw", "5"]) == 0  # the same numbers as the estimator's
    assert main(["sample", str(tmp_path / "run"), "--per-expert", "200"]) == 0  # rows in the data's units
    samples = np.loadtxt(tmp_path / "run" / "samples.csv", delimiter=",", skiprows=1)
    assert samples.shape == (600, 5) and set(samples[:, 0]) == {0, 1, 2}
    assert np.all(np.abs(samples[:, 1:].mean(0) - X.mean(0)) < 0.5 * X.std(0))
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["train"]["acc"] == pytest.approx(record["test_acc"], abs=1e-4)
    assert result["log_likelihood"]["mean_nats"] == pytest.approx(model.score_samples(X, n_iw_samples=5).mean(),
                                                                   abs=1e-9)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_train_on_float_arrays(tmp_path: Path, suffix: str) -> None:
    X, y = blobs()
    data = tmp_path / f"x{suffix}"
    np.save(data, X) if suffix == ".npy" else np.savez(data, x_train=X, y_train=y)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *SHORT]) == 0
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["model"]["input_type"] == "vectors" and cfg["train"]["epochs"] == 2


@pytest.mark.parametrize("content, extra, match", [
    ("a,b\n1,2\n3,x\n", [], "'x' is not a number"),
    ("a,b\n1,2\n3,nan\n", [], "NaN or infinite"),
    ("a,b\n1,2\n3\n", [], "1 fields where the first row has 2"),
    ("a,b\n1,2\n3,4\n", ["--label-column", "z"], "no column 'z'"),
    ("a,b\n", [], "no rows of numbers"),
    ("a,b\n1,2\n", [], r"shape \(1, 2\)"),
])
def test_bad_tables_are_one_line_and_write_nothing(tmp_path: Path, capsys, content, extra, match) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(content)
    line = one_line_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "run"), *extra, *SHORT])
    assert pytest.importorskip("re").search(match, line), line
    assert not (tmp_path / "run").exists()
