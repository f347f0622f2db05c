"""``mixvae assign``: the CSV against the estimator and the IW bound computed independently, sorted
folders, refusals that write nothing; and class names from sub-folders wherever a class is shown."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixvae.cli import main
from mixvae.estimator import MixtureVAE
from mixvae.inference import log_likelihood

from conftest import blobs

CLASSES = ("band-a-top", "band-b-upper", "band-c-lower", "band-d-bottom")  # sorted: label c is CLASSES[c]
TINY = ["--preset", "seed", "--experts", "4", "--epochs", "3", "--batch-size", "40",
        "--set", "model.hidden=[16]", "--set", "model.manager_hidden=[16]", "--quiet"]


def png_folder(root: Path, n_per: int = 30) -> tuple[Path, list[Path]]:
    """A folder of 8x8 PNG files, one sub-folder per class; returns it and its files in load order."""
    x, y = blobs(n_per=n_per)
    folder = root / "pngs"
    for i, (image, c) in enumerate(zip(x, y)):
        (folder / CLASSES[c]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[c] / f"img{i:03d}.png")
    return folder, sorted(folder.rglob("*.png"), key=lambda p: p.relative_to(folder).as_posix())


def train_tiny(data: Path, out: Path) -> Path:
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("assign")
    folder, files = png_folder(root)
    run = train_tiny(folder, root / "run")
    assert main(["evaluate", str(run)]) == 0
    return run, folder, files


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_matches_the_estimator_and_the_bound(folder_run, tmp_path):
    run, folder, files = folder_run
    out = tmp_path / "a.csv"
    # chunks of 50 over 120 images: the scores must still be those of one call on all of them
    assert main(["assign", str(run), "--data", str(folder), "--out", str(out), "--batch-size", "50",
                 "--iw", "5", "--quiet"]) == 0
    rows = read_csv(out)
    assert [r["source"] for r in rows] == [f.relative_to(folder).as_posix() for f in files]
    images = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    model = MixtureVAE.load(run)
    probs = model.predict_proba(images)  # (N, K), computed independently of the CSV
    expert = np.array([int(r["expert"]) for r in rows])
    np.testing.assert_array_equal(expert, model.predict(images))
    np.testing.assert_allclose([float(r["probability"]) for r in rows], probs.max(1), atol=1e-6)
    second = np.sort(probs, 1)[:, -2]
    np.testing.assert_allclose([float(r["runner_up_probability"]) for r in rows], second, atol=1e-6)
    runner = np.array([int(r["runner_up"]) for r in rows])
    np.testing.assert_allclose(probs[np.arange(len(rows)), runner], second, atol=1e-6)
    assert (runner != expert).all()
    score = -log_likelihood(model.module_, images, 5)
    np.testing.assert_allclose([float(r["outlier_score"]) for r in rows], score, atol=1e-3)
    rank = np.array([int(r["outlier_rank"]) for r in rows])
    assert sorted(rank) == list(range(1, len(rows) + 1))
    assert rank[np.argmax(score)] == 1 and rank[np.argmin(score)] == len(rows)
    assert (np.diff(score[np.argsort(rank)]) <= 1e-3).all()  # rank 1 is the least likely image
    # the matched class is the evaluation's, by folder name
    import json

    ev = json.loads((run / "eval.json").read_text())
    assert ev["class_names"] == list(CLASSES)
    assert [r["matched_class"] for r in rows] == [CLASSES[ev["train"]["matched_class"][k]] for k in expert]


def test_scores_do_not_depend_on_the_chunks():
    from mixvae.assign import assign
    from mixvae.config import resolve_config
    from mixvae.model import MixtureModule

    torch.manual_seed(0)
    x, _ = blobs(n_per=60)
    module = MixtureModule(resolve_config("seed", n_components=3, image_shape=(8, 8)).model).eval()  # z matters
    whole = -log_likelihood(module, x, 3)
    got = assign(module, x, [str(i) for i in range(len(x))], iw_samples=3, chunk=130)
    np.testing.assert_allclose(got.outlier_score, whole, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got.expert, module.predict_proba(torch.as_tensor(x).reshape(len(x), -1) / 255.0)
                                  .argmax(1).numpy())


def test_same_input_same_file_and_no_overwrite(folder_run, tmp_path, capsys):
    run, folder, _ = folder_run
    out = tmp_path / "a.csv"
    args = ["assign", str(run), "--data", str(folder), "--out", str(out), "--iw", "2", "--quiet"]
    assert main(args) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(args) == 2  # exists: refused, one line, untouched
    err = capsys.readouterr().err
    assert err.startswith("mixvae: error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert out.read_bytes() == first
    assert main([*args, "--overwrite"]) == 0
    assert out.read_bytes() == first


@pytest.mark.parametrize("extra, message", [
    (["--data", "/nonexistent/folder"], "does not exist"),
    (["--iw", "0"], "--iw"),
    (["--batch-size", "0"], "--batch-size 0"),
])
def test_bad_input_writes_nothing(folder_run, tmp_path, capsys, extra, message):
    run, folder, _ = folder_run
    out, sorted_dir = tmp_path / "a.csv", tmp_path / "sorted"
    args = ["assign", str(run), "--data", str(folder), "--out", str(out), "--sort-into", str(sorted_dir), "--quiet"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixvae: error: ") and err.count("\n") == 1 and message in err
    assert not out.exists() and not sorted_dir.exists()


def test_sort_into_links_and_copies(folder_run, tmp_path):
    run, folder, files = folder_run
    out, dest = tmp_path / "a.csv", tmp_path / "sorted"
    assert main(["assign", str(run), "--data", str(folder), "--out", str(out), "--sort-into", str(dest),
                 "--iw", "2", "--quiet"]) == 0
    rows = read_csv(out)
    by_expert: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        by_expert.setdefault(int(r["expert"]), []).append(r)
    assert sorted(p.name for p in dest.iterdir()) == [f"expert-{k:02d}" for k in sorted(by_expert)]
    for k, members in by_expert.items():
        index = read_csv(dest / f"expert-{k:02d}" / "index.csv")
        assert sorted(r["source"] for r in index) == sorted(r["source"] for r in members)
        probs = [float(r["probability"]) for r in index]
        assert probs == sorted(probs, reverse=True)  # most typical first
        for r in index:
            link = dest / f"expert-{k:02d}" / r["file"]
            assert link.is_symlink() and link.resolve() == (folder / r["source"]).resolve()
    # a second run into the same folder is refused, then --overwrite replaces the expert folders only
    (dest / "notes.txt").write_text("mine")
    assert main(["assign", str(run), "--data", str(folder), "--out", str(tmp_path / "b.csv"),
                 "--sort-into", str(dest), "--quiet"]) == 2
    assert not (tmp_path / "b.csv").exists()
    assert main(["assign", str(run), "--data", str(folder), "--out", str(out), "--sort-into", str(dest),
                 "--copy", "--overwrite", "--iw", "2", "--quiet"]) == 0
    assert (dest / "notes.txt").read_text() == "mine"
    copies = [p for p in dest.rglob("*.png")]
    assert len(copies) == len(files) and not any(p.is_symlink() for p in copies)
    index = read_csv(dest / "expert-00" / "index.csv") if (dest / "expert-00").exists() else []
    for r in index:
        assert (dest / "expert-00" / r["file"]).read_bytes() == (folder / r["source"]).read_bytes()


def test_arrays_are_assigned_by_index(tmp_path, capsys):
    x, y = blobs(n_per=30)
    xt, yt = blobs(n_per=10, seed=1)
    np.savez(tmp_path / "b.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    run = train_tiny(tmp_path / "b.npz", tmp_path / "run")
    out = tmp_path / "a.csv"
    assert main(["assign", str(run), "--data", str(tmp_path / "b.npz"), "--split", "test", "--out", str(out),
                 "--iw", "2", "--quiet"]) == 0
    rows = read_csv(out)
    assert [r["source"] for r in rows] == [str(i) for i in range(len(xt))]
    model = MixtureVAE.load(run)
    np.testing.assert_array_equal([int(r["expert"]) for r in rows], model.predict(xt))
    capsys.readouterr()
    assert main(["assign", str(run), "--data", str(tmp_path / "b.npz"), "--out", str(tmp_path / "c.csv"),
                 "--sort-into", str(tmp_path / "s"), "--quiet"]) == 2
    assert "--sort-into needs a folder of image files" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "s").exists()


def test_class_names_are_shown_wherever_a_class_is(folder_run, capsys):
    run, _, _ = folder_run
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "expert -> matched class" in out and any(f"->{c} (" in out for c in CLASSES)
    assert not any(f"->{i} (" in out for i in range(4))
    files = sorted((run.parent / "pngs").rglob("*.png"))[:2]
    assert main(["predict", str(run), *map(str, files)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == "file\texpert\tprobability\tmatched_class"
    assert all(row.split("\t")[3] in CLASSES for row in rows) and len(rows) == 2
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert any(f"<td>{c}</td>" in page for c in CLASSES)  # the experts table names the matched class


def test_training_without_a_test_split_prints_no_legend_warning(tmp_path, capfd):
    folder, _ = png_folder(tmp_path, n_per=10)
    train_tiny(folder, tmp_path / "run")
    err = capfd.readouterr().err
    assert "legend" not in err.lower() and "warning" not in err.lower(), err
    assert os.path.getsize(tmp_path / "run" / "curves.png") > 0
