"""Assigning every image of a dataset to an expert: the table of ``mixvae assign`` and its sorted folders.

One row per image: where it came from, the expert it is routed to and the probability, the
runner-up expert and its probability, the expert's matched class when the run was evaluated with
labels, and an outlier score: minus the importance-weighted bound on log p(x) in nats
(:func:`mixvae.inference.log_likelihood`), with its rank (1 = the least likely image).

Images are read and scored a chunk at a time, so a folder larger than memory is assigned in
bounded memory; an image's score does not depend on the chunk it falls in (the bound seeds each
image's draws), so the scores are those of one call on the whole set, and the same input gives the
same table.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixvae import memory
from mixvae.atomic import atomic_write
from mixvae.inference import log_likelihood, predict_proba
from mixvae.model import MixtureModule

__all__ = ["COLUMNS", "INDEX_FILE", "IW_SAMPLES", "Assignments", "assign", "csv_text", "expert_folder", "folder_name", "sort_into",
           "write_csv"]

COLUMNS = ("source", "expert", "probability", "runner_up", "runner_up_probability", "matched_class",
           "outlier_score", "outlier_rank", "name")
IW_SAMPLES = 10  # draws per expert of the outlier score's bound: assign's, the app's and its uploads' alike
INDEX_FILE = "index.csv"  # in each expert's folder of --sort-into: its members, most typical first


@dataclass
class Assignments:
    """The assignment of N images; every array has N rows."""

    sources: list[str]
    expert: np.ndarray  # (N,) int
    probability: np.ndarray  # (N,) float
    runner_up: np.ndarray  # (N,) int
    runner_up_probability: np.ndarray  # (N,) float
    outlier_score: np.ndarray  # (N,) float64: -log p(x) bound, nats
    matched_class: list[str] | None = None  # per expert
    names: list[str] | None = None  # per expert: the name a user gave its cluster (mixvae.curation), "" for none
    routing: np.ndarray | None = None  # (N, K) float32: every expert's probability, for merged clusters' sums

    @property
    def outlier_rank(self) -> np.ndarray:
        """1 for the highest score (least likely image); ties go to the earlier image."""
        n = len(self.outlier_score)
        order = np.lexsort((np.arange(n), -self.outlier_score))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(1, n + 1)
        return rank

    def rows(self, indices: Iterable[int] | None = None) -> Iterator[list[Any]]:
        """The CSV's rows (``COLUMNS``), of every image or of ``indices`` in their order."""
        rank = self.outlier_rank
        for i in range(len(self.sources)) if indices is None else indices:
            source = self.sources[i]
            k = int(self.expert[i])  # -1: marked as junk in mixvae serve
            yield [source, k, f"{self.probability[i]:.6f}", int(self.runner_up[i]),
                   f"{self.runner_up_probability[i]:.6f}",
                   self.matched_class[k] if self.matched_class and k >= 0 else "", f"{self.outlier_score[i]:.4f}",
                   int(rank[i]), "junk" if k < 0 else self.names[k] if self.names else ""]


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


@memory.stage("assign")
def assign(module: MixtureModule, images: Any, sources: list[str], *, iw_samples: int = IW_SAMPLES, binarize: bool = False,
           chunk: int = 1000, device: str = "cpu", progress: Callable[[int], object] | None = None) -> Assignments:
    """Route and score ``images`` (uint8 (N, H, W), any object sliced into arrays) ``chunk`` at a time.

    ``progress`` receives the number of images done after each chunk.
    """
    if chunk < 1:
        raise ValueError(f"chunk={chunk} is invalid: expected an integer >= 1")
    n = len(images)
    routing, scores = [], []
    for start, stop in _chunks(n, chunk):
        x = np.asarray(images[start:stop])  # (n, H, W) uint8: read once, used twice
        routing.append(predict_proba(module, x, device=device))  # (n, K)
        scores.append(-log_likelihood(module, x, iw_samples, binarize=binarize, device=device))
        if progress is not None:
            progress(stop - start)
    if not routing:
        raise ValueError("there are no images to assign")
    probs = np.concatenate(routing)
    return Assignments(list(sources), *top_two(probs), np.concatenate(scores), routing=probs)


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(expert, its probability, runner-up, its probability) of each row of probabilities (N, K)
    (the runner-up is the expert itself, at probability 0, when K = 1)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :2]  # (N, 2); with K = 1 only one column
    p = np.take_along_axis(probs, order, 1)
    second = 1 if order.shape[1] > 1 else 0
    return order[:, 0], p[:, 0], order[:, second], p[:, second] if second else np.zeros(len(probs), np.float32)


def csv_text(result: Assignments, indices: Iterable[int] | None = None) -> str:
    """The table as CSV text: every image, or ``indices`` in their order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(result.rows(indices))
    return buf.getvalue()


def write_csv(result: Assignments, path: Path) -> Path:
    """Write the table atomically (a reader never sees half a file)."""
    atomic_write(Path(path), csv_text(result).encode())
    return Path(path)


def folder_name(name: str) -> str:
    """A cluster's name as part of a folder name: letters, digits, dot, dash and underscore."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "named"


def expert_folder(k: int) -> str:
    """The name of expert k's folder in ``--sort-into``: expert-00, expert-01, ..."""
    return f"expert-{k:02d}"


def sort_into(result: Assignments, files: list[Path], out: Path, copy: bool = False) -> list[Path]:
    """One folder per expert under ``out`` holding a link to (or a copy of) each member's file,
    named with its place in the expert (most probable first), and an ``index.csv``.

    Returns the folders written.
    """
    written = []
    for k in np.unique(result.expert):
        members = np.flatnonzero(result.expert == k)
        members = members[np.lexsort((members, -result.probability[members]))]  # most typical first
        named = result.names[int(k)] if result.names and k >= 0 else ""
        folder = Path(out) / ("junk" if k < 0 else expert_folder(int(k)) + (f"-{folder_name(named)}" if named else ""))
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(("file", "source", "probability", "outlier_score"))
        for place, i in enumerate(members):
            src = files[i]
            name = f"{place:06d}-{src.name}"
            if copy:
                shutil.copyfile(src, folder / name)
            else:
                (folder / name).symlink_to(src.resolve())
            writer.writerow((name, result.sources[i], f"{result.probability[i]:.6f}",
                             f"{result.outlier_score[i]:.4f}"))
        atomic_write(folder / INDEX_FILE, buf.getvalue().encode())
        written.append(folder)
    return written
