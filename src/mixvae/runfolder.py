"""The run folder: its file names, the lock that gives it to one process, and its records.

A run folder holds::

    config.yaml          the resolved configuration (repeat the run with --config RUN/config.yaml)
    model.safetensors    the latest weights, with the configuration in the header
    checkpoints/         step-XXXXXXXX.pt: everything needed to resume exactly
    neighbours.npy       the neighbour graph of the training images (and neighbours.json: its origin)
    metrics.jsonl        one JSON record per finished epoch
    eval.json            the evaluation written by ``mixvae evaluate``
    map.npz              the 2-D map of the training images drawn by ``mixvae serve``
    routing.npz          their routing and outlier scores, computed once by ``mixvae serve``
    report.html          the page written by ``mixvae report``
    *.png                figures (see :data:`mixvae.figures.FIGURES`)

Every module names these files through this one; nothing here imports torch.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from mixvae.atomic import atomic_write
from mixvae.config.resolve import CONFIG_FILE
from mixvae.config.schema import RunConfig

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CURATION_FILE",
    "ESTIMATOR_FILE",
    "EVAL_FILE",
    "LOCK_FILE",
    "MAP_FILE",
    "METRICS_FILE",
    "PROGRESS_FILE",
    "REPORT_FILE",
    "RESTARTS_DIR",
    "RESTARTS_FILE",
    "RESTART_FILE",
    "ROUTING_FILE",
    "TENSORBOARD_DIR",
    "WEIGHTS_FILE",
    "RunFolderError",
    "RunLock",
    "clear_run",
    "matched_classes",
    "read_eval",
    "read_metrics",
    "save_config",
    "write_eval",
    "write_metrics",
]

WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
REPORT_FILE = "report.html"
PROGRESS_FILE = "progress.png"
ESTIMATOR_FILE = "estimator.json"
LOCK_FILE = ".lock"
TENSORBOARD_DIR = "tensorboard"
RESTARTS_DIR = "restarts"  # one folder per training of a run that trains several times (mixvae.restarts)
RESTARTS_FILE = "restarts.json"  # every restart's outcome and the one kept
RESTART_FILE = "restart.json"  # in a restart's own folder, once it has ended: its outcome
MAP_FILE = "map.npz"  # the app's 2-D map of the training images, with the weights' checksum it belongs to
CURATION_FILE = "curation.json"  # the app's decisions about the clusters: names and merges (mixvae.curation)
ROUTING_FILE = "routing.npz"  # the app's routing and outlier scores of the training images, likewise
NEIGHBOURS_FILE = "neighbours.npy"  # the neighbour graph of the training images, built once per run
NEIGHBOURS_META = "neighbours.json"  # what it was built from, and its checksum


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (for example another process holds it)."""


class RunLock:
    """An exclusive lock on a run folder, held while one process trains in it.

    It is an ``flock`` on ``RUN/.lock``, so the operating system releases it when the holder
    exits, however it exits (a killed process leaves no stale lock). The file records the holder
    (host and process id) for the message another process gets.

    Examples
    --------
    >>> with RunLock(run_dir):  # doctest: +SKIP
    ...     train(...)
    """

    def __init__(self, run_dir: Path | str):
        self.path = Path(run_dir) / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> Self:
        import fcntl  # POSIX only

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - the open file is the lock: release() closes it
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"{self.path.parent} is in use by {holder}: wait for it to finish or "
                                     f"use another --out") from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the flock
            self._handle = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """The per-epoch records of ``RUN/metrics.jsonl`` (empty when there are none yet)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path | str, records: list[dict[str, Any]]) -> None:
    """Write every record to ``RUN/metrics.jsonl``, one JSON object per line, atomically."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write(Path(run_dir) / METRICS_FILE, text.encode())


def read_eval(run_dir: Path | str) -> dict[str, Any]:
    """The evaluation results of ``RUN/eval.json`` (empty when the run was not evaluated)."""
    path = Path(run_dir) / EVAL_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def matched_classes(ev: dict[str, Any]) -> list[str] | None:
    """Each expert's matched class in an evaluation, as a user names it: the sub-folder name when the
    classes come from an image folder's sub-folders, else the label; None without labels."""
    r = ev.get("test") or ev.get("train") or {}
    if "matched_class" not in r:
        return None
    names = ev.get("class_names") or []
    return [str(names[c]) if 0 <= c < len(names) else str(c) for c in r["matched_class"]]


def write_eval(run_dir: Path | str, result: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / EVAL_FILE, json.dumps(result, indent=2).encode())


# what a run writes (everything but the lock), removed when a run folder is overwritten
_RUN_FILES = (CONFIG_FILE, CURATION_FILE, WEIGHTS_FILE, METRICS_FILE, EVAL_FILE, REPORT_FILE, PROGRESS_FILE, ESTIMATOR_FILE,
              NEIGHBOURS_FILE, NEIGHBOURS_META, MAP_FILE, ROUTING_FILE, RESTARTS_FILE)


def save_config(run_dir: Path | str, cfg: RunConfig) -> None:
    """Write ``RUN/config.yaml``, atomically (:func:`mixvae.config.load_config` reads it)."""
    atomic_write(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=True).encode())


def clear_run(run_dir: Path | str, also: Iterable[str] = ()) -> None:
    """Remove a run's files (for ``--overwrite``), and the files named in ``also`` (its figures:
    :data:`mixvae.figures.FIGURES`, which the caller knows)."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
    shutil.rmtree(run_dir / RESTARTS_DIR, ignore_errors=True)
    for name in (*_RUN_FILES, *also):
        (run_dir / name).unlink(missing_ok=True)
