"""Never lose a run: exact resume from the command line, a run killed mid-epoch resumes, a corrupt
newest checkpoint falls back to the one before, a diverging run stops before saving a bad step (naming
the step, what became non-finite and, with anomaly detection, the operation), and a checkpoint that
would run code is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mixvae import checkpoint as ckpt
from mixvae.cli import main
from mixvae.model import LossOutput, MixtureModule
from mixvae.train import Runtime, TrainingError, fit

from conftest import blobs
from test_cli_errors import TINY, digest, one_line_error
from test_train import blob_config

# 100 images in batches of 20: 5 steps an epoch, 10 in all; a checkpoint every 2 steps as well.
EVERY_2 = [*TINY, "--epochs", "2", "--set", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=blobs(n_per=25, k=4)[0])
    return path


@pytest.fixture(scope="module")
def straight(data: Path) -> Path:
    """The run trained in one go, to compare resumed runs with."""
    out = data.parent / "straight"
    assert main(["train", "--data", str(data), "--out", str(out), *EVERY_2]) == 0
    return out


def newest(run: Path) -> dict:
    return ckpt.load_checkpoint(ckpt.latest_checkpoint(run))


def assert_same_state(a: Path, b: Path) -> None:
    """Every parameter and every optimiser statistic of the two runs' newest checkpoints is equal."""
    sa, sb = newest(a), newest(b)
    assert sa["step"] == sb["step"] == 10
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    oa, ob = sa["optimizer"], sb["optimizer"]
    assert oa["state"].keys() == ob["state"].keys() and oa["param_groups"] == ob["param_groups"]
    for pid, s in oa["state"].items():
        for name, v in s.items():
            assert torch.equal(v, ob["state"][pid][name]), (pid, name)
    assert torch.equal(sa["generator"], sb["generator"])
    assert epochs_logged(a) == epochs_logged(b) == [1, 2]


def epochs_logged(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cli_resume_is_exact(data: Path, straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *EVERY_2, "--max-steps", "7"]) == 0
    assert newest(out)["step"] == 7  # stopped in the middle of epoch 2
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_state(straight, out)


def test_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    data: Path, straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *EVERY_2, "--max-steps", "7"]) == 0
    steps = sorted((out / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in steps] == ["step-00000006.pt", "step-00000007.pt"]
    steps[-1].write_bytes(steps[-1].read_bytes()[:1000])  # a disk that filled up mid-write
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: .*step-00000007\.pt is corrupt or truncated.*step-00000006\.pt", err), err
    assert_same_state(straight, out)


def test_checkpoint_that_runs_code_is_refused_by_resume(straight: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(straight, tmp_path / "run"))
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = run / "checkpoints" / "step-00000099.pt"
    torch.save({"model": Evil(), "step": 99}, evil)
    before = digest(run)
    line = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "3", "--quiet"])
    assert "step-00000099.pt was refused: it asks to run code" in line
    assert not marker.exists() and digest(run) == before  # not run, and no fall back past it
    torch.load(evil, weights_only=False)  # the file really is dangerous: an unsafe load runs it
    assert marker.exists()


def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2", "--lr", "1e30",
            "--set", "train.checkpoint_every=1"]
    line = one_line_error(capsys, argv, code=1)
    found = re.search(r"at epoch (\d+), step (\d+) \(global step (\d+)\)", line)
    assert found and ("NaN or infinite" in line or "loss became" in line), line
    failed_at = int(found.group(3))
    saved = sorted((out / "checkpoints").glob("step-*.pt"))
    assert saved, "the steps before the bad one were checkpointed"
    for path in saved:
        state = ckpt.load_checkpoint(path)
        assert state["step"] < failed_at
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not list(out.rglob(".*.tmp"))


def test_detect_anomaly_is_accepted(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1", "--max-steps", "2",
                 "--detect-anomaly"]) == 0
    line = one_line_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "bad"), *TINY,
                                   "--epochs", "1", "--lr", "1e30", "--detect-anomaly"], code=1)
    assert "epoch 1, step" in line


def test_sigkill_mid_epoch_then_resume(tmp_path: Path) -> None:
    """A real `mixvae train` killed with SIGKILL right after its first checkpoint resumes to the end."""
    data = tmp_path / "blobs.npz"
    np.savez(data, x_train=blobs(n_per=150, k=4)[0])  # 30 steps an epoch, a checkpoint every 5
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "mixvae", "train"]
    argv = ["--data", str(data), "--out", str(out), *TINY, "--epochs", "2", "--set", "train.checkpoint_every=5"]
    proc = subprocess.Popen(cmd + argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "checkpoints").glob("step-*.pt")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.jsonl").exists()  # killed inside epoch 1
    (out / "checkpoints" / ".step-00000010.pt.k1ll.tmp").write_bytes(b"half")  # as a kill mid-write leaves
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # in this process, to save a start-up
    assert epochs_logged(out) == [1, 2]
    assert not list(out.rglob(".*.tmp"))
    saved = sorted((out / "checkpoints").glob("step-*.pt"))
    assert len(saved) == 2 and ckpt.load_checkpoint(saved[-1])["step"] == 60
    for path in saved:
        ckpt.load_checkpoint(path)
    ckpt.load_run(out)


def test_non_finite_gradients_are_never_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finite loss whose gradient is NaN (from step 3 on) stops training before the step is taken."""
    forward, calls = MixtureModule.forward, []

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls.append(1)
        if len(calls) >= 3:
            p = next(self.parameters())
            out = dataclasses.replace(out, loss=out.loss + torch.sqrt(p - p.detach()).sum())  # 0, gradient NaN
        return out

    monkeypatch.setattr(MixtureModule, "forward", poisoned)
    cfg = blob_config(epochs=1, batch_size=20, checkpoint_every=1)
    x, _ = blobs(n_per=25, k=4)  # 5 steps
    with pytest.raises(TrainingError, match=r"gradients became NaN or infinite at epoch 1, step 3 "):
        fit(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=False))
    saved = sorted((tmp_path / "checkpoints").glob("step-*.pt"))
    assert [ckpt.load_checkpoint(p)["step"] for p in saved] == [1, 2]
    assert all(torch.isfinite(v).all() for v in ckpt.load_checkpoint(saved[-1])["model"].values())


def test_a_step_that_makes_the_parameters_infinite_is_named(tmp_path: Path) -> None:
    """Adam's first step moves each weight by about lr: lr = 1e39 takes finite weights, a finite
    loss and finite gradients beyond float32's largest number (3.4e38) in step 1."""
    x, _ = blobs(n_per=25, k=4)  # 5 steps of 20
    cfg = blob_config(epochs=1, batch_size=20, lr=1e39, checkpoint_every=1)
    with pytest.raises(TrainingError, match=r"^the parameters became NaN or infinite at epoch 1, step 1 "
                                            r"\(global step 1\)"):
        fit(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=False))
    assert ckpt.latest_checkpoint(tmp_path) is None  # the bad step was never saved


def poison_gradients(monkeypatch: pytest.MonkeyPatch, from_call: int = 3) -> list[int]:
    """From the ``from_call``-th forward call on, add 0 * sqrt(p - p) to the loss: the loss stays
    finite, but SqrtBackward0 computes 0 / (2 sqrt(0)) = NaN for the first parameter p. Returns
    the list that counts the calls (clear it to start again)."""
    forward, calls = MixtureModule.forward, []

    def poisoned(self: MixtureModule, *args: Any, **kwargs: Any) -> LossOutput:
        out = forward(self, *args, **kwargs)
        calls.append(1)
        if len(calls) >= from_call:
            p = next(self.parameters())
            out = dataclasses.replace(out, loss=out.loss + (torch.sqrt(p - p.detach()) * 0).sum())
        return out

    monkeypatch.setattr(MixtureModule, "forward", poisoned)
    return calls


def test_detect_anomaly_names_the_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = poison_gradients(monkeypatch)
    x, _ = blobs(n_per=25, k=4)
    cfg = blob_config(epochs=1, batch_size=20)
    with pytest.raises(TrainingError, match=r"^the gradients became NaN or infinite at epoch 1, step 3 "):
        fit(cfg, x, log=None, runtime=Runtime(progress=False))  # without: only that the gradients are bad
    calls.clear()
    named = (r"^the gradients became NaN or infinite at epoch 1, step 3 \(global step 3\): "
             r"Function 'SqrtBackward0' returned nan values")
    with pytest.raises(TrainingError, match=named):
        fit(cfg, x, log=None, runtime=Runtime(progress=False, detect_anomaly=True))  # only anomaly mode names it
    assert not torch.is_anomaly_enabled()  # switched off again after training


def test_cli_detect_anomaly_names_the_operation(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    poison_gradients(monkeypatch)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1", "--detect-anomaly",
            "--set", "train.checkpoint_every=1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1, err  # one line: anomaly mode's own warning is not passed on
    assert re.fullmatch(r"mixvae: error: the gradients became NaN or infinite at epoch 1, step 3 \(global step 3\): "
                        r"Function 'SqrtBackward0' returned nan values in its 0th output; "
                        r"the last good checkpoint is kept", errors[0]), err
    assert "Traceback (most recent call last)" not in err and 'File "' not in err
    saved = sorted((tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert [ckpt.load_checkpoint(p)["step"] for p in saved] == [1, 2]  # the steps before the bad one
