"""``mixvae train`` on vectors: .csv tables (header optional, a label column for evaluation only)
and float .npy/.npz matrices; bad tables get one line and exit status 2, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
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


# ------------------------------------------------------------------ predict, assign and serve on a run on vectors
@pytest.fixture(scope="module")
def vector_run(tmp_path_factory) -> tuple[Path, np.ndarray, Path]:
    """A short run on a .csv with a label column of names, evaluated (its matched classes are names)."""
    root = tmp_path_factory.mktemp("vector-run")
    X, y = blobs()
    data = write_csv(root / "t.csv", X, y)
    run = root / "run"
    assert main(["train", "--data", str(data), "--label-column", "kind", "--out", str(run), "--experts", "3",
                 "--epochs", "3", "--batch-size", "30", "--quiet"]) == 0
    assert main(["evaluate", str(run)]) == 0
    return run, X, data


def model_units(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Rows in the model's units, computed here: each feature standardised by the training rows."""
    return ((X - train.mean(0)) / train.std(0)).astype(np.float32)


def read_table(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_assign_on_vectors_matches_the_module_and_the_bound(vector_run, tmp_path: Path) -> None:
    from mixvae.checkpoint import load_run
    from mixvae.inference import log_likelihood

    run, X, data = vector_run
    out = tmp_path / "a.csv"
    # a .csv with the training table's columns, its label column among them; chunks of 40 over 90 rows
    assert main(["assign", str(run), "--data", str(data), "--out", str(out), "--iw", "4", "--batch-size", "40",
                 "--quiet"]) == 0
    rows = read_table(out)
    assert [r["source"] for r in rows] == [str(i) for i in range(len(X))]
    module, _ = load_run(run)
    U = model_units(X, X)
    probs = module.predict_proba(torch.as_tensor(U)).numpy()  # (N, K), in the model's units
    expert = np.array([int(r["expert"]) for r in rows])
    np.testing.assert_array_equal(expert, probs.argmax(1))
    np.testing.assert_allclose([float(r["probability"]) for r in rows], probs.max(1), atol=1e-6)
    runner = np.array([int(r["runner_up"]) for r in rows])
    assert (runner != expert).all()
    np.testing.assert_allclose([float(r["runner_up_probability"]) for r in rows], np.sort(probs, 1)[:, -2], atol=1e-6)
    np.testing.assert_allclose(probs[np.arange(len(X)), runner], np.sort(probs, 1)[:, -2], atol=1e-6)
    # minus the bound in nats of the data's own units: the bound in model units minus sum_d log s_d
    score = -(log_likelihood(module, U, 4) - np.log(X.std(0)).sum())
    np.testing.assert_allclose([float(r["outlier_score"]) for r in rows], score, atol=1e-3)
    np.testing.assert_allclose(score, -MixtureVAE.load(run).score_samples(X, n_iw_samples=4), atol=1e-6)
    rank = np.array([int(r["outlier_rank"]) for r in rows])
    assert rank[np.argmax(score)] == 1 and sorted(rank) == list(range(1, len(X) + 1))
    # the matched class is the evaluation's, named by the label column's values; the rows' own labels are unused
    ev = json.loads((run / "eval.json").read_text())
    assert ev["class_names"] == ["class-0", "class-1", "class-2"]
    assert [r["matched_class"] for r in rows] == [ev["class_names"][ev["train"]["matched_class"][k]] for k in expert]
    # the same rows as an .npy, a .npz and a .csv of the features alone give the same table
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "x.npz", x_train=X[:10], x_test=X)
    bare = tmp_path / "bare.csv"
    bare.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n")
    for extra in (["--data", str(tmp_path / "x.npy")], ["--data", str(tmp_path / "x.npz"), "--split", "test"],
                  ["--data", str(bare)]):
        assert main(["assign", str(run), *extra, "--out", str(tmp_path / "b.csv"), "--iw", "4", "--quiet",
                     "--overwrite"]) == 0
        assert (tmp_path / "b.csv").read_bytes() == out.read_bytes(), extra


def test_predict_on_vectors_matches_the_estimator(vector_run, tmp_path: Path, capsys) -> None:
    run, X, data = vector_run
    np.save(tmp_path / "x.npy", X[:5])
    capsys.readouterr()
    assert main(["predict", str(run), str(data), str(tmp_path / "x.npy")]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == "file\texpert\tprobability\tmatched_class"
    fields = [line.split("\t") for line in lines]
    assert [f[0] for f in fields] == [f"{data}[{i}]" for i in range(len(X))] + [f"{tmp_path / 'x.npy'}[{i}]"
                                                                               for i in range(5)]
    rows = np.concatenate([X, X[:5]])
    probs = MixtureVAE.load(run).predict_proba(rows)
    np.testing.assert_array_equal([int(f[1]) for f in fields], probs.argmax(1))
    np.testing.assert_allclose([float(f[2]) for f in fields], probs.max(1), atol=1e-4)
    assert {f[3] for f in fields} <= {"class-0", "class-1", "class-2"}


@pytest.mark.parametrize("content, extra, match", [
    ("a,b,kind,c\n1,2,x,3\n", [], "has 3 features per row, but the run was trained on 4"),
    ("1,2,3,4,5,6\n", [], "has 6 features per row, but the run was trained on 4"),
    ("a,b,kind,c,d\n1,2,x,nan,4\n", [], "contains 1 NaN or infinite value"),
    ("a,b,kind,c,d\n1,2,x,inf,4\n5,6,y,7,-inf\n", [], "contains 2 NaN or infinite values"),
    ("a,b,kind,c,d\n1,2,x,three,4\n", [], "'three' is not a number"),
    ("a,b,c,d\n1,two,3,4\n", [], "'two' is not a number"),
    ("a,b,kind,c,d\n1,2,x,3,4\n", ["--sort-into", "sorted"], "--sort-into sorts image files"),
    (None, [], "does not exist"),
    ("not an image", [], "not a .csv, .npy or .npz file"),
])
def test_bad_rows_for_a_run_on_vectors_are_one_line_and_write_nothing(vector_run, tmp_path: Path, capsys, content,
                                                                        extra, match) -> None:
    import re

    run, _, _ = vector_run
    data = tmp_path / ("rows.png" if content == "not an image" else "rows.csv")
    if content is not None:
        data.write_text(content)
    out = tmp_path / "a.csv"
    extra = [str(tmp_path / e) if e == "sorted" else e for e in extra]
    line = one_line_error(capsys, ["assign", str(run), "--data", str(data), "--out", str(out), "--quiet", *extra])
    assert re.search(re.escape(match), line), line
    assert not out.exists() and not (tmp_path / "sorted").exists()
    if not extra:
        line = one_line_error(capsys, ["predict", str(run), str(data)])
        assert re.search(re.escape(match), line), line
        assert capsys.readouterr().out == ""


@pytest.mark.parametrize("array, match", [
    (np.zeros((4, 5)), "has 5 features per row, but the run was trained on 4"),
    (np.full((3, 4), np.nan), "contains 12 NaN or infinite values"),
    (np.zeros((2, 2, 4)), "holds an array of shape (2, 2, 4)"),
])
def test_bad_arrays_for_a_run_on_vectors(vector_run, tmp_path: Path, capsys, array, match) -> None:
    run, _, _ = vector_run
    np.save(tmp_path / "x.npy", array)
    line = one_line_error(capsys, ["assign", str(run), "--data", str(tmp_path / "x.npy"), "--out",
                                   str(tmp_path / "a.csv"), "--quiet"])
    assert match in line and not (tmp_path / "a.csv").exists()
    line = one_line_error(capsys, ["assign", str(run), "--data", str(tmp_path / "x.npy"), "--split", "test",
                                   "--out", str(tmp_path / "a.csv"), "--quiet"])
    assert "no test split" in line


def test_serve_refuses_a_run_on_vectors(vector_run, capsys, monkeypatch) -> None:
    import mixvae.app

    def never(*args, **kwargs):
        raise AssertionError("a run on vectors got as far as starting the server")

    monkeypatch.setattr(mixvae.app, "make_server", never)
    run, _, _ = vector_run
    line = one_line_error(capsys, ["serve", str(run), "--port", "0"])
    assert "trained on vectors" in line and "images only" in line
