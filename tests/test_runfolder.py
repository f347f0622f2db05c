"""The run folder: files that honour the umask, one process at a time, one IW bound for all callers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mixvae import MixtureVAE
from mixvae.cli import main
from mixvae.evaluation import evaluate_run
from mixvae.runfolder import LOCK_FILE, RunFolderError, RunLock

from conftest import blobs
from test_cli_errors import TINY, digest, one_line_error


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = blobs(n_per=25, k=4)
    xt, yt = blobs(n_per=10, k=4, seed=1)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def train(npz: Path, out: Path, *extra: str) -> None:
    assert main(["train", "--data", str(npz), "--out", str(out), "--epochs", "1", *TINY, *extra]) == 0


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
            for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE}


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_honour_the_umask(npz: Path, tmp_path: Path, umask: int, expected: int) -> None:
    old = os.umask(umask)
    try:
        run = tmp_path / "run"
        train(npz, run)
        assert main(["evaluate", str(run)]) == 0
        assert main(["report", str(run)]) == 0
    finally:
        os.umask(old)
    found = modes(run)
    for name in ("model.safetensors", "config.yaml", "metrics.jsonl", "eval.json", "report.html", "samples.png"):
        assert found[name] == expected, (name, oct(found[name]))
    assert any(name.startswith("checkpoints/") for name in found)
    assert set(found.values()) == {expected}, {k: oct(v) for k, v in found.items()}


def test_a_folder_in_use_is_refused_and_left_alone(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    run = tmp_path / "run"
    train(npz, run)
    before = digest(run)
    before.pop(LOCK_FILE)
    hold = ("import sys, time; from mixvae.runfolder import RunLock; lock = RunLock(sys.argv[1]).acquire();"
            " print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for argv in (["train", "--resume", str(run), "--epochs", "2"],
                     ["train", "--data", str(npz), "--out", str(run), "--epochs", "1", *TINY, "--overwrite"]):
            line = one_line_error(capsys, argv)
            assert f"is in use by process {holder.pid} on " in line, line
        after = digest(run)
        after.pop(LOCK_FILE)  # the lock file names the holder
        assert after == before  # nothing written, nothing removed
    finally:
        holder.kill()  # a killed holder leaves no stale lock
        holder.wait()
    train(npz, run, "--overwrite")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(RunFolderError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on exit
        pass


@pytest.mark.parametrize("binarize", ["false", "true"])
def test_score_samples_equals_evaluate_iw(npz: Path, tmp_path: Path, binarize: str) -> None:
    run = tmp_path / "run"
    train(npz, run, "--set", f"train.binarize={binarize}")
    result = evaluate_run(run, iw_samples=5, iw_images=17)
    images = np.load(npz)["x_test"][:17]
    scores = MixtureVAE.load(run).score_samples(images, n_iw_samples=5)
    assert result["log_likelihood"]["images"] == 17
    assert result["log_likelihood"]["mean_nats"] == pytest.approx(scores.mean(), abs=1e-9)
    assert result["log_likelihood"]["stderr"] == pytest.approx(scores.std(ddof=1) / np.sqrt(17), abs=1e-9)
