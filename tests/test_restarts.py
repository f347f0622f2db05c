"""Several trainings and the one kept: how many a set gets, the criterion, the training kept (in
memory and in a run folder), and a run stopped in the middle of a restart resuming exactly."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mixvae import checkpoint as ckpt
from mixvae.cli import main
from mixvae.config import ConfigError, config_from_dict, resolve_config
from mixvae.graphcut import normalised_cut, partition_cut
from mixvae.inference import predict_proba
from mixvae.kinds import fit_to_data
from mixvae.neighbours import nearest_neighbours
from mixvae.restarts import restart_seed
from mixvae.train import Runtime, fit

from conftest import blobs
from test_cli_errors import TINY
from test_train import blob_config


@pytest.mark.parametrize("n", [1, 100, 1797, 2400, 2401, 3600, 10_000, 15_000, 15_001, 60_000, 1_000_000])
def test_auto_restarts_spend_no_more_images_than_one_run_of_60000(n):
    cfg = fit_to_data(config_from_dict({"preset": "default"}), n)
    expected = min(5, max(1, math.floor(math.sqrt(60_000 / n))))
    assert cfg.train.restarts == expected
    seen = cfg.train.restarts * cfg.train.epochs * n
    assert cfg.train.restarts == 1 or seen <= 60_000 * 8 * 1.1  # the 60,000-image run's 8 epochs, give or take rounding


def test_a_number_of_epochs_means_one_training_and_a_number_given_is_kept():
    assert fit_to_data(resolve_config("default", overrides=["train.epochs=3"]), 500).train.restarts == 1
    assert fit_to_data(resolve_config("default", overrides=["train.restarts=3"]), 500).train.restarts == 3
    assert fit_to_data(resolve_config("default", overrides=["train.restarts=2"]), 10**6).train.restarts == 2
    for bad in ("0", "two", "1.5", -1):
        with pytest.raises(ConfigError, match="restarts"):
            config_from_dict({"preset": "default", "train": {"restarts": bad}})


def test_restart_seeds_start_at_the_runs_own_and_do_not_overlap_between_runs():
    assert restart_seed(7, 0) == 7
    seeds = {restart_seed(s, r) for s in range(5) for r in range(1, 5)}
    assert len(seeds) == 20 and not seeds & set(range(5))
    assert restart_seed(3, 2) == restart_seed(3, 2)


def test_the_cut_counts_an_empty_cluster_as_wholly_cut():
    x, _ = blobs(n_per=20, k=4)
    graph = nearest_neighbours(x, 5, 8).numpy()
    assign = np.arange(len(x)) % 3  # clusters 0-2 used, 3 empty
    assert partition_cut(graph, assign, 4) == pytest.approx(normalised_cut(graph, assign, 4) + 1.0)
    full = np.arange(len(x)) % 4
    assert partition_cut(graph, full, 4) == pytest.approx(normalised_cut(graph, full, 4))


def _blob_file(folder: Path) -> Path:
    """100 8x8 blob images as an .npz file in ``folder``."""
    data = folder / "blobs.npz"
    np.savez(data, x_train=blobs(n_per=25, k=4)[0])
    return data


def _restarted(**train):
    return blob_config(manager_regulariser="neighbours", n_neighbours=5, neighbour_pca_dims=8, entropy_weight=1.0,
                       epochs=2, **train)


def _cut_of(module, x, graph):
    return partition_cut(graph, predict_proba(module, x).argmax(1), 4)


def test_the_kept_training_is_the_one_with_the_lowest_cut_and_equals_it_trained_alone():
    x, _ = blobs(n_per=30, k=4)
    graph = nearest_neighbours(x, 5, 8).numpy()
    kept, history = fit(_restarted(restarts=3), x, log=None, runtime=Runtime(progress=False))
    alone = []
    for r in range(3):
        module, _ = fit(_restarted(seed=restart_seed(0, r)), x, log=None, runtime=Runtime(progress=False))
        alone.append((_cut_of(module, x, graph), r, module))
    _, _, best = min(alone, key=lambda t: (t[0], t[1]))
    assert len({round(c, 6) for c, _, _ in alone}) > 1  # the seeds do differ, so the choice means something
    for name, value in kept.state_dict().items():
        assert torch.equal(value, best.state_dict()[name]), name
    assert len(history) == 2


def test_a_run_folder_keeps_every_restart_and_saves_the_kept_one_as_the_run(tmp_path: Path):
    data, out = _blob_file(tmp_path), tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2",
            *[a for s in ("train.restarts=3", "train.manager_regulariser=neighbours", "train.n_neighbours=5",
                          "train.neighbour_pca_dims=8", "model.route_by_loss=false") for a in ("--set", s)]]
    assert main(args) == 0
    summary = json.loads((out / "restarts.json").read_text())
    cuts = {o["restart"]: o["cut"] for o in summary["restarts"]}
    assert sorted(cuts) == [1, 2, 3] and summary["kept"] == min(cuts, key=lambda r: (cuts[r], r))
    kept_dir = out / "restarts" / str(summary["kept"])
    assert json.loads((kept_dir / "restart.json").read_text())["cut"] == cuts[summary["kept"]]
    kept = ckpt.load_checkpoint(ckpt.latest_checkpoint(kept_dir))["model"]
    run = ckpt.load_checkpoint(ckpt.latest_checkpoint(out))["model"]
    for name in kept:
        assert torch.equal(kept[name], run[name]), name
    assert (out / "metrics.jsonl").read_text() == (kept_dir / "metrics.jsonl").read_text()
    assert (out / "model.safetensors").exists() and (out / "progress.png").exists()

    # stopped inside the second restart, then resumed: the same three trainings, the same choice
    again = tmp_path / "again"
    assert main([*[a if a != str(out) else str(again) for a in args], "--max-steps", "13"]) == 0  # 10 a restart
    assert (again / "restarts" / "1" / "restart.json").exists() and not (again / "restarts.json").exists()
    assert (again / "model.safetensors").exists()  # a stopped run has its weights so far, as one training does
    assert main(["train", "--resume", str(again), "--quiet"]) == 0
    assert json.loads((again / "restarts.json").read_text()) == summary
    resumed = ckpt.load_checkpoint(ckpt.latest_checkpoint(again))["model"]
    for name in kept:
        assert torch.equal(resumed[name], run[name]), name


def test_overwrite_removes_the_restarts_of_the_run_before(tmp_path: Path):
    data, out = _blob_file(tmp_path), tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1", "--set", "train.restarts=2"]) == 0
    assert (out / "restarts" / "2").is_dir()
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1", "--overwrite"]) == 0
    assert not (out / "restarts").exists() and not (out / "restarts.json").exists()


def test_one_restart_trains_exactly_as_before():
    x, _ = blobs(n_per=20, k=4)
    a, _ = fit(_restarted(), x, log=None, runtime=Runtime(progress=False))
    b, _ = fit(dataclasses.replace(_restarted(), train=dataclasses.replace(_restarted().train, restarts="auto")), x,
               log=None, runtime=Runtime(progress=False))
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_the_estimator_lists_every_restart_and_the_one_kept(tmp_path: Path):
    from mixvae import MixtureVAE

    x, _ = blobs(n_per=20, k=4)
    est = MixtureVAE(n_components=4, preset="seed", random_state=0,
                     settings={"train": {"epochs": 2, "restarts": 3, "batch_size": 20}}).fit(x)
    assert [r["restart"] for r in est.restarts_] == [1, 2, 3]
    kept = [r for r in est.restarts_ if r["kept"]]
    assert len(kept) == 1 and kept[0]["cut"] == min(r["cut"] for r in est.restarts_)
    assert est.restarts_[0]["seed"] == 0 and len(est.history_) == 2
    assert MixtureVAE.load(est.save(tmp_path / "model")).restarts_ == est.restarts_
    assert MixtureVAE(n_components=4, preset="seed", random_state=0, settings={"train": {"epochs": 1}}).fit(x).restarts_ == []


def test_vectors_train_once_however_few():
    from mixvae.config import preset
    from mixvae.kinds import Vectors

    assert fit_to_data(preset("default", 3, (1, 4), Vectors()), 150).train.restarts == 1
    assert fit_to_data(preset("default", 3, (1, 4), Vectors()), 50_000).train.restarts == 1
    assert fit_to_data(preset("default"), 150).train.restarts == 5  # images of the same number: five


def test_a_restart_trained_on_after_it_ended_is_scored_again(tmp_path: Path):
    data, out = _blob_file(tmp_path), tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1", "--set", "train.restarts=2"]) == 0
    # two more epochs each, stopped inside the second restart's: its outcome at 1 epoch must not count
    assert main(["train", "--resume", str(out), "--quiet", "--epochs", "2", "--max-steps", "17"]) == 0
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # the run's length is now 2 epochs
    summary = json.loads((out / "restarts.json").read_text())
    assert [(o["epochs"], o["steps"]) for o in summary["restarts"]] == [(2, 10), (2, 10)]


def test_the_callers_callbacks_see_every_restart_numbered_on_and_the_end_once():
    from mixvae.callbacks import Callback

    seen, ended = [], []

    class Watch(Callback):
        def on_epoch_end(self, record, trainer):
            seen.append((record["restart"], record["epoch"]))

        def on_train_end(self, trainer):
            ended.append(trainer)

    x, _ = blobs(n_per=20, k=4)
    fit(_restarted(restarts=2), x, log=None, runtime=Runtime(progress=False), callbacks=[Watch()])
    assert seen == [(1, 1), (1, 2), (2, 3), (2, 4)] and len(ended) == 1


def test_the_memory_plan_counts_the_choice_among_restarts():
    from mixvae.plan import memory_plan

    stages = [need.stage for need in memory_plan(_restarted(restarts=3), 10_000)]
    assert "the choice among restarts" in stages
    alone = blob_config(restarts=3)  # no regulariser: the graph is built to score the restarts all the same
    assert {"the neighbour graph", "the choice among restarts"} <= {need.stage for need in memory_plan(alone, 10_000)}
    assert [need.stage for need in memory_plan(blob_config(), 10_000)] == ["training"]
