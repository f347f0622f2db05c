"""A user's decisions about a run's clusters: a name for an expert, experts merged into one,
images moved to another expert, and images marked as junk.

The decisions are kept in the run folder (``RUN/curation.json``, written atomically while the run
lock is held, so never beside a training of the same folder) and used wherever a run's clusters
are shown or written: the app's pages, ``mixvae assign`` (the merged expert and the name in its
CSV, the name in ``--sort-into`` folders) and ``mixvae predict``. Training never reads them: the
model stays as it was trained, and a decision can be undone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixvae.assign import Assignments, top_two
from mixvae.atomic import atomic_write
from mixvae.runfolder import CURATION_FILE, RunFolderError, RunLock

__all__ = ["JUNK", "MAX_NAME", "Curation", "read_curation", "write_curation"]

MAX_NAME = 60  # characters of a cluster's name
JUNK = -1  # the expert of an image marked as junk


@dataclass
class Curation:
    """Names by expert, merges (an expert -> the expert it joined), moves (an image's source ->
    its expert) and junk (sources)."""

    names: dict[int, str] = field(default_factory=dict)
    merged: dict[int, int] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)
    junk: set[str] = field(default_factory=set)

    def target(self, k: int) -> int:
        """The expert k's images belong to now: k, or the expert it was merged into (followed)."""
        seen = {k}
        while k in self.merged:
            k = self.merged[k]
            if k in seen:  # a circle cannot be written (merge refuses one); stop rather than loop
                break
            seen.add(k)
        return k

    def name(self, k: int) -> str | None:
        """The name of the cluster expert k's images belong to, when one was given."""
        return self.names.get(self.target(k))

    def rename(self, k: int, name: str) -> None:
        name = " ".join(name.split())
        if len(name) > MAX_NAME:
            raise ValueError(f"the name is over {MAX_NAME} characters")
        if name:
            self.names[self.target(k)] = name
        else:
            self.names.pop(self.target(k), None)

    def merge(self, k: int, into: int) -> None:
        """Expert k's cluster joins expert ``into``'s (its name, if it had one, gives way)."""
        k, into = self.target(k), self.target(into)
        if k == into:
            raise ValueError(f"expert {k} is already in that cluster")
        self.merged[k] = into
        self.names.pop(k, None)

    def move(self, sources: list[str], into: int) -> None:
        """These images join expert ``into``'s cluster (and leave the junk)."""
        for source in sources:
            self.moved[source] = self.target(into)
            self.junk.discard(source)

    def discard(self, sources: list[str]) -> None:
        """These images are junk: in no cluster."""
        for source in sources:
            self.junk.add(source)
            self.moved.pop(source, None)

    def joined(self, routing: np.ndarray) -> np.ndarray:
        """Routing probabilities (N, K) with each merged expert's added to its cluster's expert (the
        expert it merged into; its own column 0): column k is the probability of k's cluster."""
        lookup = np.array([self.target(k) for k in range(routing.shape[1])])
        joined = np.zeros_like(routing)
        np.add.at(joined.T, lookup, routing.T)
        return joined

    def apply(self, a: Assignments) -> Assignments:
        """The assignments with every image's expert as the decisions make it (``JUNK`` for junk)."""
        if not (self.merged or self.moved or self.junk):
            return a
        if a.routing is not None and self.merged:  # a merged cluster's probability: its experts' sum
            n_experts = a.routing.shape[1]
            expert, probability, runner_up, runner_p = top_two(self.joined(a.routing))
            a = dataclasses.replace(a, expert=expert.astype(a.expert.dtype), probability=probability,
                                    runner_up=runner_up.astype(a.runner_up.dtype), runner_up_probability=runner_p)
            if n_experts > 1:  # every expert in one cluster: there is no other cluster to come second
                alone = runner_p == 0
                a.runner_up[alone], a.runner_up_probability[alone] = a.expert[alone], 0.0
        lookup = np.array([self.target(k) for k in range(int(a.expert.max()) + 1)]) if len(a.expert) else np.zeros(0)
        expert = lookup[a.expert].astype(a.expert.dtype)
        probability, runner_up, runner_p = a.probability.copy(), a.runner_up.copy(), a.runner_up_probability.copy()
        joined = self.joined(a.routing) if a.routing is not None and self.moved else None
        for i, source in enumerate(a.sources):
            if source in self.junk:
                expert[i] = JUNK
            elif source in self.moved:
                expert[i] = self.target(self.moved[source])
                if joined is not None:  # its new cluster's probability; the runner-up: the likeliest other cluster
                    row = joined[i].copy()
                    probability[i], row[expert[i]] = row[expert[i]], -1.0
                    best = int(row.argmax())
                    runner_up[i], runner_p[i] = (best, row[best]) if row[best] > 0 else (expert[i], 0.0)  # none left
        return dataclasses.replace(a, expert=expert, probability=probability, runner_up=runner_up,
                                   runner_up_probability=runner_p)

    def label(self, a: Assignments, n_experts: int) -> Assignments:
        """The assignments as the decisions make them: merged experts, and each cluster's name."""
        out = self.apply(a)
        if self.names:
            out = dataclasses.replace(out, names=[self.name(k) or "" for k in range(n_experts)])
        return out

    def to_json(self) -> str:
        return json.dumps({"names": {str(k): v for k, v in sorted(self.names.items())},
                           "merged": {str(k): v for k, v in sorted(self.merged.items())},
                           "moved": dict(sorted(self.moved.items())), "junk": sorted(self.junk)}, indent=2)


def read_curation(run: Path | str, n_experts: int) -> Curation:
    """The decisions kept in ``run`` (none when it has no curation file); RunFolderError, one
    line, for a file that is not one."""
    path = Path(run) / CURATION_FILE
    if not path.exists():
        return Curation()
    try:
        raw: Any = json.loads(path.read_text())
        names = {int(k): str(v) for k, v in raw.get("names", {}).items()}
        merged = {int(k): int(v) for k, v in raw.get("merged", {}).items()}
        moved = {str(k): int(v) for k, v in raw.get("moved", {}).items()}
        junk = {str(v) for v in raw.get("junk", [])}
    except (ValueError, TypeError, AttributeError) as e:
        raise RunFolderError(f"{path} is not a curation file written by mixvae serve ({e})") from None
    bad = [k for k in (*names, *merged, *merged.values(), *moved.values()) if not 0 <= k < n_experts]
    if bad:
        raise RunFolderError(f"{path} names expert {bad[0]}, but the run has {n_experts} experts")
    return Curation(names, merged, moved, junk)


def write_curation(run: Path | str, curation: Curation) -> None:
    """Keep the decisions in ``run``, atomically, holding the run lock (RunFolderError when a
    training holds it)."""
    with RunLock(Path(run)):
        atomic_write(Path(run) / CURATION_FILE, curation.to_json().encode())
