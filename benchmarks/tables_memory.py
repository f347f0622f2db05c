"""BENCHMARKS.md's "Memory at every stage" table, from benchmarks/memory.py's result file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
GIB = 2**30
STAGES = ("load", "neighbour graph", "training", "figures")


def _rows() -> list[dict[str, Any]]:
    path = RESULTS / "memory.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def _gib(b: float) -> str:
    return f"{b / GIB:.2f}"


def _stage(row: dict[str, Any], part: str, name: str) -> dict[str, Any] | None:
    return next((s for s in row.get(part, {}).get("stages", []) if s["stage"] == name), None)


def memory() -> str:
    head = ("| images | stored as | file, GiB | load | neighbour graph (s) | one step | figures "
            "| self-labelling pass (s) | peak of the run | graph's growth / plan |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for r in _rows():
        cells = []
        for name in STAGES:
            s = _stage(r, "train", name)
            cells.append("-" if s is None else _gib(s["peak_rss"]) + (f" ({s['seconds']:.0f})"
                                                                      if name == "neighbour graph" else ""))
        sl = _stage(r, "self_labelling", "self-labelling pass")
        graph = _stage(r, "train", "neighbour graph")
        plan = r.get("plan", {}).get("the neighbour graph")
        growth = (f"{_gib(graph['peak_rss'] - graph['start_rss'])} / {_gib(plan)}" if graph and plan else "-")
        status = "" if r["train"]["exit_status"] == 0 else f" (exit {r['train']['exit_status']})"
        self_cell = "-" if sl is None else f"{_gib(sl['peak_rss'])} ({sl['seconds']:.0f})"
        lines.append(f"| {r['n']:,} | {r['format']} | {r['file_bytes'] / GIB:.2f} | " + " | ".join(cells)
                     + f" | {self_cell} | {_gib(r['train']['peak_rss'])}{status} | {growth} |")
    return "\n" + "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[], str]] = {"memory": memory}
VALUES: tuple[Callable[[], dict[str, str]], ...] = ()
