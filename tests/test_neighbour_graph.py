"""The neighbour graph at scale: exact or approximate by size, built once per run and kept in the
run folder, never used when it does not fit; memory planned before a large read."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mixvae import neighbours, runfolder
from mixvae.cli import main
from mixvae.data import DataError, load
from mixvae.neighbours import (
    approximate_neighbours,
    cosine_neighbours,
    mutual_neighbours,
    nearest_neighbours,
    search_method,
)
from mixvae.train import Runtime, fit

from conftest import blobs
from test_train import blob_config


def clustered(n: int, d: int = 20, centres: int = 30, seed: int = 0) -> torch.Tensor:
    """n points around ``centres`` random centres: data with neighbourhoods, as images have."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    return torch.from_numpy(c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, d))).float()


def test_the_search_is_chosen_by_size_and_can_be_forced():
    assert search_method(1000) == "exact" and search_method(neighbours.EXACT_MAX) == "exact"
    assert search_method(neighbours.EXACT_MAX + 1) == "approximate"
    assert search_method(10, "approximate") == "approximate"
    assert search_method(10**7, "exact") == "exact"
    with pytest.raises(ValueError, match="neighbour_search='fast' is invalid"):
        search_method(10, "fast")


def test_nearest_neighbours_follows_the_choice(monkeypatch: pytest.MonkeyPatch):
    x, _ = blobs(n_per=50, k=4)
    calls = []
    real = neighbours._approximate
    monkeypatch.setattr(neighbours, "_approximate", lambda *a, **kw: calls.append("approx") or real(*a, **kw))
    monkeypatch.setattr(neighbours, "EXACT_MAX", 100)
    nearest_neighbours(x, 3, 8)  # 200 images > 100: approximate
    assert calls == ["approx"]
    nearest_neighbours(x, 3, 8, method="exact")
    assert calls == ["approx"]


def test_approximate_recall_against_the_exact_graph():
    e = clustered(6000)
    exact = cosine_neighbours(e, 10).numpy()
    approx = approximate_neighbours(e, 10).numpy()
    assert approx.shape == (6000, 10)
    assert not (approx == np.arange(6000)[:, None]).any()  # never itself
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact)])
    assert recall >= 0.95, recall
    np.testing.assert_array_equal(approx, approximate_neighbours(e, 10).numpy())  # repeatable


def test_exact_search_memory_is_bounded(monkeypatch: pytest.MonkeyPatch):
    """The chunk of distances held at once shrinks as N grows, so memory stays bounded."""
    seen = []
    real = torch.Tensor.topk

    def spy(self, *args, **kwargs):
        seen.append(self.numel() * 4)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(neighbours, "CHUNK_BYTES", 64 * 1024)
    monkeypatch.setattr(torch.Tensor, "topk", spy)
    e = clustered(3000)
    np.testing.assert_array_equal(cosine_neighbours(e, 5).numpy(), cosine_neighbours(e, 5, chunk=3000).numpy()[:, :5])
    assert max(seen[:-1]) <= 64 * 1024


def graph_files(run: Path) -> tuple[Path, Path]:
    return run / runfolder.NEIGHBOURS_FILE, run / runfolder.NEIGHBOURS_META


def neighbour_config(**train):
    return blob_config(epochs=2, manager_regulariser="neighbours", n_neighbours=4, neighbour_pca_dims=8, **train)


def test_the_graph_is_saved_loaded_on_resume_and_rebuilt_when_it_does_not_fit(tmp_path: Path):
    x, _ = blobs(n_per=30, k=4)
    cfg, run = neighbour_config(), tmp_path / "run"
    lines: list[str] = []
    fit(cfg, x, run_dir=run, log=lines.append, runtime=Runtime(progress=False, max_steps=3))
    npy, meta = graph_files(run)
    saved = np.load(npy)
    np.testing.assert_array_equal(saved, nearest_neighbours(x, 4, 8).numpy())
    assert json.loads(meta.read_text())["n"] == 120 and any(line.startswith("found 4 nearest") for line in lines)
    lines.clear()
    fit(cfg, x, run_dir=run, resume=True, log=lines.append, runtime=Runtime(progress=False, max_steps=4))
    assert any(line.startswith("loaded the 4 nearest neighbours") for line in lines), lines  # no rebuild
    # a corrupt graph: rebuilt with one warning, never used
    graph = saved.copy()
    graph[:, 0] = graph[:, 1]
    np.save(npy, graph)
    with pytest.warns(RuntimeWarning, match="checksum does not match"):
        fit(cfg, x, run_dir=run, resume=True, log=None, runtime=Runtime(progress=False, max_steps=5))
    np.testing.assert_array_equal(np.load(npy), saved)


def test_a_graph_of_other_data_is_not_used(tmp_path: Path):
    x, _ = blobs(n_per=30, k=4)
    other, _ = blobs(n_per=30, k=4, seed=1)
    run = tmp_path / "run"
    fit(neighbour_config(), x, run_dir=run, log=None, runtime=Runtime(progress=False, max_steps=1))
    with pytest.warns(RuntimeWarning, match="built for other data or settings"):
        fit(neighbour_config(), other, run_dir=run, log=None, runtime=Runtime(progress=False, max_steps=1))
    np.testing.assert_array_equal(np.load(graph_files(run)[0]), nearest_neighbours(other, 4, 8).numpy())


def test_a_read_only_memory_map_trains_without_warnings(tmp_path: Path):
    x, y = blobs(n_per=30, k=4)
    np.save(tmp_path / "x.npy", x)
    images = np.load(tmp_path / "x.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning would fail here
        fit(neighbour_config(), images, images, y, run_dir=tmp_path / "run", log=None,
            runtime=Runtime(progress=False))


def test_an_archive_that_would_not_fit_is_refused_with_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]):
    import mixvae.memory

    path = tmp_path / "big.npz"
    np.savez_compressed(path, x_train=np.zeros((2000, 28, 28), np.uint8))  # 1.5 MiB inflated, a few KiB on disk
    monkeypatch.setattr(mixvae.memory, "available_memory", lambda: 2 * 2**20)
    with pytest.raises(DataError, match=r"holds 1\.5 MiB of arrays once read .* uncompressed \.npy"):
        load(path)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "np.save('images.npy', x)" in err[0]
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(mixvae.memory, "available_memory", lambda: 8 * 2**20)
    assert load(path).images.shape == (2000, 28, 28)


def test_a_mutual_graph_is_built_kept_and_never_taken_for_the_full_one(tmp_path: Path):
    x, _ = blobs(n_per=30, k=4)
    run = tmp_path / "run"
    fit(neighbour_config(), x, run_dir=run, log=None, runtime=Runtime(progress=False, max_steps=1))
    with pytest.warns(RuntimeWarning, match="built for other data or settings"):
        fit(neighbour_config(neighbour_filter="mutual"), x, run_dir=run, log=None,
            runtime=Runtime(progress=False, max_steps=1))
    full = nearest_neighbours(x, 4, 8)
    np.testing.assert_array_equal(np.load(graph_files(run)[0]), mutual_neighbours(full).numpy())
    assert json.loads(graph_files(run)[1].read_text())["filter"] == "mutual"
    assert not np.array_equal(mutual_neighbours(full).numpy(), full.numpy())  # the filter changed something
    with pytest.warns(RuntimeWarning, match="built for other data or settings"):  # and back: the full graph again
        fit(neighbour_config(), x, run_dir=run, log=None, runtime=Runtime(progress=False, max_steps=1))
    np.testing.assert_array_equal(np.load(graph_files(run)[0]), full.numpy())


def test_a_graph_built_from_a_tensor_is_found_from_the_same_images_as_an_array(tmp_path, monkeypatch):
    x, _ = blobs(n_per=30, k=4)
    built = neighbours.neighbour_graph(torch.from_numpy(x), 4, 8, "exact", run_dir=tmp_path)  # as training holds them
    calls = []
    real = neighbours._build
    monkeypatch.setattr(neighbours, "_build", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = neighbours.neighbour_graph(x, 4, 8, "exact", run_dir=tmp_path)  # as the app and the benchmarks hold them
    assert calls == [] and torch.equal(built, again)
    assert neighbours.data_fingerprint(torch.from_numpy(x)) == neighbours.data_fingerprint(x)
