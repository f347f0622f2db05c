import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from mixvae import checkpoint as ckpt
from mixvae.config import ModelConfig, RunConfig, TrainConfig
from mixvae.inference import predict_proba
from mixvae.neighbours import nearest_neighbours
from mixvae.runfolder import save_config
from mixvae.train import Runtime, TrainingError, fit

from conftest import blobs


def blob_config(**train) -> RunConfig:
    """A small model for 8x8 blobs; with the neighbour regulariser the manager learns from it alone."""
    model = ModelConfig(n_components=4, image_shape=(8, 8), latent_dim=2, hidden=(32,), manager_hidden=(32,),
                        activation="relu", manager_activation="relu", likelihood="bernoulli", init="torch",
                        objective="elbo", balance="kl", balance_weight=1.0,
                        route_by_loss=train.get("manager_regulariser", "none") == "none")
    t = {"epochs": 8, "batch_size": 40, "lr": 3e-3, "seed": 0}
    t.update(train)
    return RunConfig(preset="test", data="blobs", model=model, train=TrainConfig(**t))


def test_recovers_a_known_mixture():
    x, y = blobs(n_per=100, k=4)
    cfg = blob_config(manager_regulariser="neighbours", n_neighbours=5, neighbour_pca_dims=8, entropy_weight=5.0)
    module, history = fit(cfg, x, x, y, log=None, runtime=Runtime(progress=False))
    pred = predict_proba(module, x).argmax(1)
    assert adjusted_rand_score(y, pred) > 0.9
    assert len(history) == 8 and history[-1]["test_ari"] > 0.9
    assert history[-1]["experts_used"] == 4


@pytest.mark.parametrize("seed", [1, 2])
def test_recovery_does_not_depend_on_the_seed(seed):
    x, y = blobs(n_per=100, k=4, seed=seed)
    cfg = blob_config(manager_regulariser="neighbours", n_neighbours=5, neighbour_pca_dims=8, entropy_weight=5.0, epochs=6, seed=seed)
    module, _ = fit(cfg, x, log=None, runtime=Runtime(progress=False))
    assert adjusted_rand_score(y, predict_proba(module, x).argmax(1)) > 0.9


def test_nearest_neighbours_are_nearest():
    x, y = blobs(n_per=30, k=3)
    nb = nearest_neighbours(x, 4, dims=64)
    assert nb.shape == (90, 4)
    assert not torch.any(nb == torch.arange(90)[:, None])
    assert (y[nb.numpy()] == y[:, None]).mean() > 0.95


def test_run_folder_contents(tmp_path):
    x, y = blobs(n_per=20, k=4)
    fit(blob_config(epochs=2), x, x, y, run_dir=tmp_path, log=None, runtime=Runtime(progress=False))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("loss", "recon", "kl", "balance", "test_acc", "test_nmi", "test_ari", "usage", "routing_entropy",
                "seconds"):
        assert key in records[-1]
    assert (tmp_path / "progress.png").stat().st_size > 0
    assert len(list((tmp_path / "checkpoints").glob("step-*.pt"))) == 2


def test_save_load_round_trip(tmp_path):
    x, _y = blobs(n_per=20, k=4)
    cfg = blob_config(epochs=1)
    module, _ = fit(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=False))
    save_config(tmp_path, cfg)
    loaded, cfg2 = ckpt.load_run(tmp_path)
    assert cfg2 == cfg
    a, b = module.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(predict_proba(module, x), predict_proba(loaded, x))


def _params_and_optimizer(module, run_dir):
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir))
    return module.state_dict(), state["optimizer"]


# 10 steps per epoch: mid-epoch, at an epoch boundary, and in the middle of the self-labelling epoch
@pytest.mark.parametrize("stop_at", [7, 10, 15])
def test_resume_is_exact(tmp_path, stop_at):
    x, _ = blobs(n_per=100, k=4)
    cfg = blob_config(epochs=2, batch_size=40, manager_regulariser="neighbours", n_neighbours=3, neighbour_pca_dims=8,
                      augment=True, self_label_epoch=1, self_label_threshold=0.5, resplit_ratio=0.9)
    straight, _ = fit(cfg, x, run_dir=tmp_path / "a", log=None, runtime=Runtime(progress=False))
    fit(cfg, x, run_dir=tmp_path / "b", log=None, runtime=Runtime(progress=False, max_steps=stop_at))
    resumed, history = fit(cfg, x, run_dir=tmp_path / "b", resume=True, log=None, runtime=Runtime(progress=False))
    p1, o1 = _params_and_optimizer(straight, tmp_path / "a")
    p2, o2 = _params_and_optimizer(resumed, tmp_path / "b")
    for k in p1:
        assert torch.equal(p1[k], p2[k]), k
    for pid, s in o1["state"].items():
        for name, v in s.items():
            assert torch.equal(v, o2["state"][pid][name]), (pid, name)
    assert [r["epoch"] for r in history.records] == [1, 2]


def test_non_finite_loss_stops_with_a_message(tmp_path):
    x, _ = blobs(n_per=20, k=4)
    cfg = blob_config(epochs=3, lr=1e30)
    with pytest.raises(TrainingError, match=r"epoch \d+, step \d+"):
        fit(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=False))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))

    path = tmp_path / "checkpoints" / "step-00000001.pt"
    path.parent.mkdir()
    torch.save({"model": Evil(), "step": 1}, path)
    with pytest.raises(ckpt.CheckpointError, match="run code"):
        ckpt.load_checkpoint(path)


def test_corrupt_and_mismatched_weights_are_refused(tmp_path):
    x, _ = blobs(n_per=20, k=4)
    cfg = blob_config(epochs=1)
    _module, _ = fit(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=False))
    save_config(tmp_path, cfg)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt or truncated"):
        ckpt.load_run(tmp_path)
    weights.write_bytes(data)
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, latent_dim=3))
    save_config(tmp_path, other)
    with pytest.raises(ckpt.CheckpointError, match="another model configuration"):
        ckpt.load_run(tmp_path)


def test_default_recipe_on_blobs():
    """Deformed views, neighbour consistency, then self-labelling: the default preset's recipe."""
    x, y = blobs(n_per=100, k=4, seed=3)
    cfg = blob_config(manager_regulariser="neighbours", n_neighbours=5, neighbour_pca_dims=8, entropy_weight=5.0, augment=True,
                      self_label_epoch=4, self_label_threshold=0.9, resplit_ratio=0.5, epochs=6, seed=3)
    module, history = fit(cfg, x, x, y, log=None, runtime=Runtime(progress=False))
    assert adjusted_rand_score(y, predict_proba(module, x).argmax(1)) > 0.9
    assert [r.get("resplits") for r in history.records] == [None] * 4 + [0, 0]  # nothing to repair here


def test_the_graph_start_phase_teaches_the_spectral_partition():
    """With nothing else to learn from (no consistency, no entropy, the experts' losses kept off the
    manager), one epoch of the graph start routes the images as spectral clustering of the
    neighbour graph splits them; without it the routing stays where the initial weights put it."""
    from mixvae.graphcut import spectral_partition

    x, _ = blobs(n_per=60, k=4)
    spectral = spectral_partition(nearest_neighbours(x, 5, dims=8).numpy(), 4, seed=0)
    agreement = []
    for graph_start in (0, 1):
        cfg = blob_config(manager_regulariser="neighbours", n_neighbours=5, neighbour_pca_dims=8,
                          consistency_weight=0.0, entropy_weight=0.0, epochs=1, graph_start_epochs=graph_start)
        module, _ = fit(cfg, x, log=None, runtime=Runtime(progress=False))
        agreement.append(adjusted_rand_score(spectral, predict_proba(module, x).argmax(1)))
    assert agreement[1] > 0.95 and agreement[1] > agreement[0] + 0.15
