"""The mutation-testing tables, for benchmarks/tables.py, from benchmarks/results/mutation.json
(written by tools/mutation.py; survivors it marks equivalent carry their reason from
tools/mutation_equivalent.json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; a | inside a cell (code in a mutation) is escaped."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n" + "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines) + "\n"


def mutation() -> str:
    m = load("mutation.json")
    rows = []
    for name, t in [*m["modules"].items(), ("all", m["overall"])]:
        ran = t["total"] - t["not_checked"]
        caught = t["killed"] + t["timeout"]
        survived = t["survived"] + t["no_tests"]
        score = f"{t['score']:.1%}" if t["score"] is not None else "-"
        clean = f"{t['score_without_equivalent']:.1%}" if t["score_without_equivalent"] is not None else "-"
        label = f"**{name}**" if name == "all" else f"`{name}`"
        rows.append([label, t["total"], ran, caught, survived, t["equivalent"], score, clean, commits(t)])
    return table(["module", "mutants", "run", "killed", "survived", "of them equivalent", "score",
                  "score without the equivalent", "commit mutated"], rows)


def commits(t: dict[str, Any]) -> str:
    """The commit a module's mutants were made from (and the earlier ones whose results it kept)."""
    if "commit" not in t:  # the overall row
        return ""
    kept = t.get("results_kept")
    earlier = f" ({kept['mutants']} results kept from {', '.join(c[:7] for c in kept['commits'])})" if kept else ""
    return f"{t['commit'][:7]}{earlier}"


def mutation_survivors() -> str:
    m = load("mutation.json")
    rows = [[f"`{s['module']}.{s['function']}`", s["line"], f"`{s['from']}` -> `{s['to']}`",
             s.get("equivalent", "**not equivalent: no test catches it yet**")]
            for s in m["survivors"]]
    return table(["function", "line", "mutation", "why it survives"], rows)


def mutation_values() -> dict[str, str]:
    m = load("mutation.json")
    o = m["overall"]
    not_run = [name for name, t in m["modules"].items() if t["not_checked"]]
    return {
        "mutation.score": f"{o['score']:.1%}",
        "mutation.score_without_equivalent": f"{o['score_without_equivalent']:.1%}",
        "mutation.run": f"{o['total'] - o['not_checked']:,} of {o['total']:,}",
        "mutation.not_equivalent": str(sum(1 for s in m["survivors"] if "equivalent" not in s)),
        "mutation.not_run": ", ".join(f"`{n}`" for n in not_run) or "none",
        "mutation.tool": f"mutmut {m['version']}",
        "mutation.commits": "; ".join(f"{c[:7]}: " + ", ".join(f"`{n}`" for n, t in m["modules"].items()
                                                              if t["commit"] == c)
                                      for c in dict.fromkeys(t["commit"] for t in m["modules"].values())),
    }


TABLES: dict[str, Callable[[], str]] = {"mutation": mutation, "mutation-survivors": mutation_survivors}
VALUES: tuple[Callable[[], dict[str, str]], ...] = (mutation_values,)
