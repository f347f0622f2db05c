"""The run folder's records and its clearing, read back from the files themselves."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from mixvae.figures import FIGURES
from mixvae.runfolder import (
    CHECKPOINT_DIR,
    EVAL_FILE,
    LOCK_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    RunFolderError,
    RunLock,
    clear_run,
    read_eval,
    read_metrics,
    write_eval,
    write_metrics,
)


def test_metrics_are_one_sorted_json_object_per_line(tmp_path: Path) -> None:
    records = [{"epoch": 1, "loss": 2.5, "acc": 0.5}, {"epoch": 2, "loss": 1.25, "usage": [0.5, 0.5]}]
    assert read_metrics(tmp_path) == []
    write_metrics(tmp_path, records)
    lines = (tmp_path / METRICS_FILE).read_text().split("\n")
    assert lines[-1] == "" and [json.loads(line) for line in lines[:-1]] == records
    assert lines[0] == json.dumps(records[0], sort_keys=True)
    (tmp_path / METRICS_FILE).write_text(lines[0] + "\n\n  \n" + lines[1] + "\n")  # blank lines are skipped
    assert read_metrics(tmp_path) == records


def test_eval_round_trip(tmp_path: Path) -> None:
    assert read_eval(tmp_path) == {}
    result = {"run": "r", "test": {"acc": 0.9, "usage": [0.25, 0.75]}}
    write_eval(tmp_path, result)
    assert read_eval(tmp_path) == result
    assert json.loads((tmp_path / EVAL_FILE).read_text()) == result
    assert (tmp_path / EVAL_FILE).read_text().startswith('{\n  "run"')  # indented for people


def test_clear_run_removes_the_runs_files_and_nothing_else(tmp_path: Path) -> None:
    run = tmp_path / "run"
    names = ["config.yaml", "model.safetensors", METRICS_FILE, EVAL_FILE, "report.html", "progress.png",
             "estimator.json", "neighbours.npy", "neighbours.json", *FIGURES]
    for d in (CHECKPOINT_DIR, TENSORBOARD_DIR):
        (run / d).mkdir(parents=True)
        (run / d / "f").write_text("x")
    for name in names:
        (run / name).write_text("x")
    mine = [run / "notes.txt", run / "data.npz", run / LOCK_FILE]
    for p in mine:
        p.write_text("keep")
    clear_run(run, also=FIGURES)
    assert sorted(run.iterdir()) == sorted(mine)
    clear_run(tmp_path / "missing")  # nothing there: nothing to do


def test_the_lock_names_its_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path / "run") as lock:
        assert lock.path == tmp_path / "run" / LOCK_FILE
        assert lock.path.read_text() == f"process {os.getpid()} on {socket.gethostname()}\n"
        with pytest.raises(RunFolderError) as e:
            RunLock(tmp_path / "run").acquire()
        assert str(e.value) == (f"{tmp_path / 'run'} is in use by process {os.getpid()} on {socket.gethostname()}: "
                                f"wait for it to finish or use another --out")
    with RunLock(tmp_path / "run"):  # released: another holder writes its own line over the old one
        assert len((tmp_path / "run" / LOCK_FILE).read_text().splitlines()) == 1


def test_the_lock_makes_its_folders_and_releasing_is_idempotent(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "a" / "b" / "run")
    lock.release()  # never acquired: nothing to do
    with lock:
        assert lock.path.exists()
    lock.release()  # released twice: nothing to do
    with RunLock(tmp_path / "a" / "b" / "run"):
        pass


def test_a_holder_that_has_not_written_its_name_yet_is_another_process(tmp_path: Path) -> None:
    import fcntl

    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / LOCK_FILE, "a+") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, file still empty
        with pytest.raises(RunFolderError, match=re.escape(f"{tmp_path / 'run'} is in use by another process: ")):
            RunLock(tmp_path / "run").acquire()
