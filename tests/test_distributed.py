"""Training on two CPU processes (torchrun, gloo) matches training on one with the same global batch.

Tolerance: the two runs differ only in floating-point rounding (each process sums half of the batch,
DistributedDataParallel adds the two halves), so after 10 Adam steps every parameter tensor agrees
to a relative 1e-5 (max |a - b| / max |a|); 2e-7 to 8e-7 is typical. Without the global balance
term (each process balancing its own half batch) the difference is about 0.5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from mixvae.cli import main

from conftest import blobs

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(120)]

RTOL = 1e-5
# 160 training images, global batch 32: 5 steps per epoch, the same batches for 1 and 2 processes
# the seed preset, plus the neighbour regulariser (its marginal entropy is a batch-level term too)
# and binarised pixels and deformed views (random draws per image)
TINY = ["--preset", "seed", "--experts", "4", "--set", "model.hidden=[16]", "--set", "model.manager_hidden=[16]",
        "--set", "model.latent_dim=2", "--batch-size", "32", "--epochs", "2", "--quiet",
        "--set", "train.manager_regulariser=neighbours", "--set", "train.n_neighbours=3",
        "--set", "train.neighbour_pca_dims=8", "--set", "train.binarize=true", "--set", "train.augment=true"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    x, y = blobs(n_per=50, k=4, size=8, seed=0)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    return path


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The run on one process."""
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(["train", "--data", str(data), *TINY, "--out", str(out)]) == 0
    return out


def torchrun(*args: str) -> None:
    """mixvae train on two local CPU processes; torchrun --standalone picks a free port."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "mixvae", "train", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        rel = np.abs(wa[k] - wb[k]).max() / np.abs(wa[k]).max()
        assert rel < RTOL, (k, rel)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_like_one_on_the_same_global_batch(data, reference, tmp_path):
    torchrun("--data", str(data), *TINY, "--out", str(tmp_path / "two"))
    assert_same_weights(reference, tmp_path / "two")
    one, two = records(reference), records(tmp_path / "two")
    assert [r["step"] for r in two] == [5, 10]  # one record per epoch, written once
    for r1, r2 in zip(one, two):
        # the logged loss parts are means over the global batch, not over process 0's half
        for key in ("loss", "mixture", "recon", "kl", "balance"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-4), key
        # evaluation on the whole test set, once, by process 0
        assert sum(r2["usage"]) == pytest.approx(sum(r1["usage"]))
        assert r2["test_acc"] == pytest.approx(r1["test_acc"], abs=1e-6)


def test_a_two_process_run_resumes_from_its_checkpoint(data, reference, tmp_path):
    torchrun("--data", str(data), *TINY, "--out", str(tmp_path / "two"), "--max-steps", "3")  # stops mid-epoch
    assert not (tmp_path / "two" / "metrics.jsonl").exists()
    torchrun("--resume", str(tmp_path / "two"))  # every process loads the same checkpoint
    assert_same_weights(reference, tmp_path / "two")
    assert [r["step"] for r in records(tmp_path / "two")] == [5, 10]


def test_a_batch_that_does_not_split_evenly_is_refused(monkeypatch):
    import mixvae.distributed
    from mixvae import train
    from mixvae.config import ConfigError, RunConfig, TrainConfig

    monkeypatch.setattr(mixvae.distributed, "rank_world", lambda: (0, 2))  # as if under torchrun with 2 processes
    with pytest.raises(ConfigError, match="batch_size=33 is invalid for 2 processes"):
        train.fit(RunConfig(train=TrainConfig(batch_size=33)), np.zeros((40, 28, 28), np.uint8), log=None)
