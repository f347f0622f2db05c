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


def _peak(r: dict[str, Any]) -> int:
    """The training process's peak: its stages', and the sampled one where the row has it."""
    return max(r["train"]["peak_rss"], r["train"].get("sampled_peak_rss", 0))


def memory() -> str:
    head = ("| images | stored as | file, GiB | load | neighbour graph (s) | one step | figures "
            "| self-labelling pass (s) | peak of the run | code | graph's growth / plan |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
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
        sampled = " (sampled)" if r["train"].get("sampled_peak_rss", 0) > r["train"]["peak_rss"] else ""
        lines.append(f"| {r['n']:,} | {r['format']} | {r['file_bytes'] / GIB:.2f} | " + " | ".join(cells)
                     + f" | {self_cell} | {_gib(_peak(r))}{sampled}{status} | {str(r.get('code')).split()[0]} | {growth} |")
    return "\n" + "\n".join(lines) + "\n"


def _row(n: int, fmt: str) -> dict[str, Any] | None:
    """The newest row of n images stored as fmt."""
    return next((r for r in reversed(_rows()) if r["n"] == n and r["format"] == fmt), None)


def memory_values() -> dict[str, str]:
    rows = _rows()
    out = {"memory.machine": "not run", "memory.code": "not run", "memory.5m": "not run", "memory.1m.graph": "not run",
           "memory.growth": "not run"}
    if not rows:
        return out
    first = rows[0]["machine"]
    out["memory.machine"] = (f"{first['cpu']}, {first['cores']} cores, {first['threads']} torch threads; load average "
                             "at the start of each row: "
                             + ", ".join(f"{r['machine']['load_average_at_start']:.1f}" for r in rows))
    out["memory.code"] = ", ".join(sorted({str(r.get("code")) for r in rows}))
    five = _row(5_000_000, "npz")
    if five:
        status = "exit status 0" if five["train"]["exit_status"] == 0 else f"exit status {five['train']['exit_status']}"
        out["memory.5m"] = (f"{status}, peak {_gib(_peak(five))} GiB for one step of 5,000,000 images "
                            f"from an uncompressed .npz ({five['file_bytes'] / GIB:.2f} GiB; code "
                            f"{str(five.get('code')).split()[0]})")
    graphs = [(r, s) for r in rows if r["n"] == 1_000_000 and (s := _stage(r, "train", "neighbour graph"))]
    if graphs:
        out["memory.1m.graph"] = ", ".join(f"{s['seconds'] / 60:.1f} minutes ({r['format']})" for r, s in graphs)
    ends = [r for r in rows if r["format"] == "npz"]  # one way of storing them, at every size
    if len({r["n"] for r in ends}) > 1:
        lo = [r for r in ends if r["n"] == min(e["n"] for e in ends)][-1]  # the newest row of each size
        hi = [r for r in ends if r["n"] == max(e["n"] for e in ends)][-1]
        out["memory.growth"] = (f"{hi['n'] / lo['n']:.0f} times the images take {_peak(hi) / _peak(lo):.2f} "
                                f"times the peak ({_gib(_peak(lo))} to {_gib(_peak(hi))} GiB)")
    return out


TABLES: dict[str, Callable[[], str]] = {"memory": memory}
VALUES: tuple[Callable[[], dict[str, str]], ...] = (memory_values,)
