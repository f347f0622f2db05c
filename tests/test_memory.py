"""Memory at every stage: rows read from a file without staying in the process, uncompressed .npz
archives memory-mapped, streaming passes equal to the in-memory ones, the per-stage peak record,
and the plan that refuses a run before it starts."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mixvae import memory, neighbours, refine
from mixvae.cli import main
from mixvae.config import resolve_config
from mixvae.data import DataError, load
from mixvae.data.formats import load_npz, stored_array
from mixvae.kinds import fit_to_data
from mixvae.plan import memory_plan
from mixvae.rows import Subset, file_rows, read_range, read_rows

from conftest import blobs


def rss_file() -> int:
    """Bytes of file-backed pages mapped into this process (Linux's RssFile)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no RssFile in /proc/self/status")


# ------------------------------------------------------------------ rows read from a file
def test_rows_of_a_memory_map_equal_its_indexing(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (1000, 5, 7), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert file_rows(mm) == (str(tmp_path / "x.npy"), mm.offset, 35)
    idx = np.array([999, 3, 4, 5, 3, 0, 500, 501, 998])  # unsorted, repeated, with runs
    got = read_rows(mm, idx)
    assert type(got) is np.ndarray and got.flags.writeable
    np.testing.assert_array_equal(got, x[idx])
    np.testing.assert_array_equal(read_range(mm, 10, 400), x[10:400])
    np.testing.assert_array_equal(read_range(mm, 990, None), x[990:])
    assert read_range(mm, 5, 5).shape == (0, 5, 7)
    with pytest.raises(IndexError):
        read_rows(mm, np.array([1000]))
    view = mm.reshape(1000, 35)  # a reshape starts where the map starts: read from the file too
    assert file_rows(view) == (str(tmp_path / "x.npy"), mm.offset, 35)
    np.testing.assert_array_equal(read_rows(view, idx), x.reshape(1000, 35)[idx])
    later = mm[10:]  # a view that starts elsewhere is read by indexing, the usual way
    assert file_rows(later) is None
    np.testing.assert_array_equal(read_rows(later, np.array([0, 5])), x[[10, 15]])
    np.save(tmp_path / "flat.npy", x.reshape(1000, 1, 35, 1))  # (N, H, W, 1), as check_images takes it
    flat = load(tmp_path / "flat.npy").images
    assert flat.shape == (1000, 1, 35) and file_rows(flat) is not None
    np.testing.assert_array_equal(read_rows(flat, idx), x.reshape(1000, 1, 35)[idx])
    np.testing.assert_array_equal(Subset(mm, idx)[2:5], x[idx[2:5]])


def test_a_pass_over_a_file_leaves_its_pages_out_of_the_process(tmp_path: Path) -> None:
    n = 160_000  # 125 MiB of 28 x 28 images
    x = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    x[:] = 7
    x.flush()
    del x
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = rss_file()
    total = sum(int(read_range(mm, s, s + 8192)[:, 0, 0].sum()) for s in range(0, n, 8192))
    assert total == 7 * n
    assert rss_file() - before < 16 * 2**20  # read with preadv: the page cache holds them, not the process
    np.asarray(mm[:]).sum()  # through the map, the same pages count against the process
    assert rss_file() - before > 100 * 2**20


# ------------------------------------------------------------------ .npz archives
def test_an_uncompressed_npz_is_memory_mapped_and_a_compressed_one_read(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, (50, 6, 6), dtype=np.uint8)
    y = np.arange(50) % 3
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y)
    np.savez_compressed(tmp_path / "b.npz", x_train=x, y_train=y)
    stored = load_npz(tmp_path / "a.npz")["train"]
    assert type(stored[0]) is np.memmap and file_rows(stored[0]) is not None
    np.testing.assert_array_equal(stored[0], x)
    np.testing.assert_array_equal(stored[1], y)
    np.testing.assert_array_equal(read_rows(stored[0], np.array([49, 0, 7])), x[[49, 0, 7]])
    packed = load_npz(tmp_path / "b.npz")["train"][0]
    assert type(packed) is np.ndarray
    np.testing.assert_array_equal(packed, x)
    assert stored_array(tmp_path / "b.npz", "x_train") is None
    assert stored_array(tmp_path / "a.npz", "y_train") is None  # not uint8 images: read as usual
    np.savez(tmp_path / "f.npz", x_train=np.asfortranarray(x))
    assert stored_array(tmp_path / "f.npz", "x_train") is None
    np.testing.assert_array_equal(load(tmp_path / "f.npz").images, x)


def test_a_zip64_member_is_found_past_its_longer_local_header(tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(0, 256, (40, 4, 4), dtype=np.uint8)
    with zipfile.ZipFile(tmp_path / "z.npz", "w", zipfile.ZIP_STORED) as archive, \
            archive.open("x_train.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, x)
    mapped = stored_array(tmp_path / "z.npz", "x_train")
    assert mapped is not None
    np.testing.assert_array_equal(mapped, x)


def test_a_truncated_uncompressed_npz_is_a_one_line_error(tmp_path: Path) -> None:
    x = np.zeros((100, 8, 8), np.uint8)
    np.savez(tmp_path / "t.npz", x_train=x)
    raw = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(DataError, match="t.npz"):
        load(tmp_path / "t.npz")


# ------------------------------------------------------------------ streaming passes
def test_the_streamed_approximate_search_equals_the_in_memory_one(tmp_path: Path) -> None:
    x, _ = blobs(n_per=1300, k=4, size=12)  # 5200 images: chunks of 2048 that do not divide N
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for metric, normalise in (("cosine", True), ("euclidean", False)):
        want = neighbours.approximate_neighbours(neighbours.pca_embedding(x, 16), 6, normalise=normalise)
        for images in (x, mm):
            got = neighbours.nearest_neighbours(images, 6, 16, method="approximate", metric=metric)
            assert torch.equal(got, want), metric


def test_pair_cuts_in_chunks_count_every_edge() -> None:
    rng = np.random.default_rng(3)
    n, k, K = 70_000, 5, 6  # more rows than one chunk
    assign = rng.integers(0, K, n)
    nb = rng.integers(0, n, (n, k))
    edges = np.zeros((K, K))
    np.add.at(edges, (np.repeat(assign, k), assign[nb.ravel()]), 1.0)
    between = edges + edges.T
    np.fill_diagonal(between, 0.0)
    want = between / (edges.sum(1)[:, None] + edges.sum(1)[None, :])
    np.testing.assert_array_equal(refine.pair_cuts(assign, nb, K), want)


def test_figures_route_a_fixed_sample_of_a_large_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mixvae import figures
    from mixvae.model import MixtureModule

    cfg = resolve_config("seed", values={"model": {"n_components": 3, "image_shape": [8, 8], "hidden": [8],
                                                   "manager_hidden": [8], "latent_dim": 2}})
    module = MixtureModule(cfg.model)
    x, y = blobs(n_per=100, k=3)
    seen: list[int] = []
    real = figures.predict_proba
    monkeypatch.setattr(figures, "predict_proba", lambda m, images, **kw: seen.append(len(images)) or
                        real(m, images, **kw))
    monkeypatch.setattr(figures, "FIGURE_IMAGES", 50)
    figures.write_figures(tmp_path, module, [], x, y)
    assert seen == [50]
    monkeypatch.setattr(figures, "FIGURE_IMAGES", 1000)
    figures.write_figures(tmp_path, module, [], x, y)
    assert seen == [50, 300]


# ------------------------------------------------------------------ what each stage took
def test_each_stage_records_its_own_peak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if memory.resident_memory() is None:
        pytest.skip("no /proc/self/status")
    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv(memory.LOG_ENV, str(log))
    with memory.stage("outer"):
        with memory.stage("inner"):
            block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
            del block
        with memory.stage("small"):
            np.ones(1000).sum()
    rows = {r["stage"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert list(rows) == ["inner", "small", "outer"]
    assert rows["inner"]["peak_rss"] - rows["inner"]["start_rss"] > 190 * 2**20
    if rows["small"]["peak_of"] == "stage":  # the kernel's peak count was started again
        assert rows["small"]["peak_rss"] - rows["small"]["start_rss"] < 50 * 2**20
    assert rows["outer"]["peak_rss"] >= rows["inner"]["peak_rss"]  # the enclosing stage keeps the inner peak
    monkeypatch.delenv(memory.LOG_ENV)
    with memory.stage("silent"):
        pass
    assert len(log.read_text().splitlines()) == 3


# ------------------------------------------------------------------ the plan
def test_the_plan_grows_with_the_images_and_names_each_stage() -> None:
    cfg = fit_to_data(resolve_config("default", values={"model": {"image_shape": [28, 28]}}), 60_000)
    small = {need.stage: need.bytes for need in memory_plan(cfg, 60_000)}
    large = {need.stage: need.bytes for need in memory_plan(cfg, 5_000_000)}
    assert list(small) == ["the neighbour graph", "training", "the self-labelling pass"]
    k, dims = cfg.train.n_neighbours, cfg.train.neighbour_pca_dims
    # the approximate index (4 dims + 8 bytes a row) and the kept graph (8 k) at 5M images
    assert large["the neighbour graph"] >= 5_000_000 * (4 * dims + 8 + 8 * k)
    assert large["training"] - small["training"] == (5_000_000 - 60_000) * k * 8
    assert all(large[s] > small[s] for s in small)


def test_a_plan_that_does_not_fit_is_one_line_naming_the_stage() -> None:
    needs = [memory.Need("a", 10, "way a"), memory.Need("the big stage", 5 * 2**30, "do less")]
    memory.check_plan(needs, available=6 * 2**30)
    with pytest.raises(memory.PlanError) as err:
        memory.check_plan(needs, held=2**30, available=4 * 2**30)
    text = str(err.value)
    assert "\n" not in text and text.startswith("the big stage needs about 5.0 GiB")
    assert "4.0 GiB available besides the 1.0 GiB of images already read; do less" in text
    assert isinstance(err.value, MemoryError)


def test_train_refuses_a_run_that_would_not_fit_before_writing_anything(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = blobs(n_per=50, k=4)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(memory, "available_memory", lambda: 64 * 2**20)  # 64 MiB free
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "x.npy"), "--epochs", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.count("\n") == 0 and err.startswith("mixvae: error: ") and "Traceback" not in err
    assert "needs about" in err and "64.0 MiB available" in err


def test_the_estimator_refuses_a_fit_that_would_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixvae import MixtureVAE

    x, _ = blobs(n_per=30, k=3)
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    with pytest.raises(MemoryError, match="needs about"):
        MixtureVAE(n_components=3, preset="seed", max_epochs=1).fit(x)


def test_loading_a_large_uncompressed_npz_reads_none_of_its_images(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mixvae.config import config_from_dict
    from mixvae.kinds import training_data

    if memory.resident_memory() is None:
        pytest.skip("no /proc/self/status")
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(200_000, 28, 28))
    x[:] = 3  # 150 MiB
    np.savez(tmp_path / "big.npz", x_train=x)
    del x
    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv(memory.LOG_ENV, str(log))
    cfg, train, _ = training_data(config_from_dict({"data": str(tmp_path / "big.npz")}), resume=False)
    assert len(train) == 200_000 and cfg.model.image_shape == (28, 28)
    (row,) = map(json.loads, log.read_text().splitlines())
    assert row["stage"] == "load" and row["peak_rss"] - row["start_rss"] < 32 * 2**20


def test_a_pass_in_batches_hands_freed_memory_back_after_each_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixvae import inference

    calls: list[int] = []
    monkeypatch.setattr(memory, "release", lambda: calls.append(1))
    x, _ = blobs(n_per=25, k=4)  # 100 images
    assert sum(len(b) for b in inference.batches(x, 30)) == 100
    assert len(calls) == 4  # one trim after each of the 4 batches
    monkeypatch.undo()
    memory.release()  # glibc's malloc_trim, or nothing where there is none
    monkeypatch.setattr(memory, "_libc", None)
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    memory.release()
    assert memory._libc == []


def test_the_plan_counts_every_process_of_the_machine() -> None:
    cfg = fit_to_data(resolve_config("default", values={"model": {"image_shape": [28, 28]}}), 1_000_000)
    one = {need.stage: need.bytes for need in memory_plan(cfg, 1_000_000)}
    two = {need.stage: need.bytes for need in memory_plan(cfg, 1_000_000, processes=2)}
    assert two["the neighbour graph"] == one["the neighbour graph"]  # process 0 builds it, the others wait
    assert two["training"] == 2 * one["training"] and two["the self-labelling pass"] == 2 * one["the self-labelling pass"]
