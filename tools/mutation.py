"""Mutation testing of the core modules with mutmut; writes benchmarks/results/mutation.json.

mutmut (configured in pyproject.toml, [tool.mutmut]) copies src/ and tests/ into mutants/, makes
every mutant of every function of the modules in ``only_mutate``, and for each mutant runs only the
selected tests that call the mutated function. This script runs it module by module, in order of
importance and within a time budget, then writes per module killed / survived / timeout / total and
the score, and lists every survivor with its line and mutation. A survivor that cannot change
behaviour is listed in tools/mutation_equivalent.json with the reason, and is marked so here.

    pip install -c constraints.txt -e '.[mutation]'
    python tools/mutation.py                          # every core module (about an hour on one core)
    python tools/mutation.py --modules objectives     # rerun some modules; the others keep their results
    python tools/mutation.py --modules train --resume # run only train's mutants with no result yet, and its
                                                      # survivors not listed as equivalent
    python tools/mutation.py --modules train --resume --only '*_step*'   # ... of those, only these
    python tools/mutation.py --report-only            # rewrite the result file from mutants/
    python tools/mutation.py --report-only --modules refine   # rewrite refine's entry only

Each module's entry records the commit its mutants were made from (and, after --resume, the commit
and count of the results it kept); a module not run keeps its entry and survivors from the result file.

Not part of `make test` (too slow); mutants/ is a scratch folder (ignored by git, ruff and pytest).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "mutation.json"
EQUIVALENT = ROOT / "tools" / "mutation_equivalent.json"
MUTMUT = Path(sys.executable).with_name("mutmut")
# the order modules run in: when the budget runs out, the most important have run
IMPORTANCE = ["objectives", "model", "nets", "inference", "metrics", "train", "regularisers", "batches",
              "refine", "runfolder", "atomic", "evaluation"]
KILLED = {"killed", "timeout", "caught by type check"}


def mutmut_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def core_modules(cfg: dict) -> list[str]:
    names = [Path(p).stem for p in cfg["only_mutate"]]
    return sorted(names, key=lambda m: IMPORTANCE.index(m) if m in IMPORTANCE else len(IMPORTANCE))


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout.strip()


def unfinished(module: str, only: list[str] | None = None) -> tuple[list[str], int]:
    """The module's mutants in mutants/ with no result yet or that survived without being listed as
    equivalent (of them, those matching a glob in ``only``), and how many of its other mutants have
    a result, which stands."""
    found = {n: s for n, s in statuses().items() if n.split(".")[1] == module} if (ROOT / "mutants").is_dir() else {}
    reasons = equivalent_reasons()
    names = sorted(n for n, s in found.items() if s not in KILLED
                   and (not only or any(fnmatch.fnmatch(n, pattern) for pattern in only))
                   and (s == "not checked" or not reason_for(describe(n), reasons)))
    return names, sum(s != "not checked" for n, s in found.items() if n not in names)


def run_module(module: str, max_children: int, budget_s: float, names: list[str] | None = None) -> tuple[float, bool]:
    """`mutmut run` on one module's mutants: all of them (even those with a stored result), or only
    ``names``. Returns the seconds it took and whether it finished inside the budget."""
    log = ROOT / "mutants" / f"run-{module}.log"
    log.parent.mkdir(exist_ok=True)
    cmd = [str(MUTMUT), "run", "--max-children", str(max_children), *(names or [f"mixvae.{module}.*"])]
    print(f"{module}: {' '.join(cmd[1:5])}{' ...' if len(cmd) > 5 else ''} (log {log.relative_to(ROOT)}, budget {budget_s / 60:.0f} min)", flush=True)
    start = time.monotonic()
    with log.open("w") as out:
        # its own process group, so that the budget stops mutmut and the workers it forked
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=max(budget_s, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)
            proc.wait()
            return time.monotonic() - start, False
    seconds = time.monotonic() - start
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"mutmut failed on {module} (exit {code}); the end of {log}:\n{tail}")
    return seconds, True


def statuses() -> dict[str, str]:
    """Every mutant mutmut knows of (mutants/), name -> status."""
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    found = (re.match(r"\s+(mixvae\.\S+): (.+)$", line) for line in out.splitlines())
    return {m[1]: m[2].strip() for m in found if m}


def function_lines(module: str) -> dict[str, int]:
    """The first line (decorators included) of each function and method of src/mixvae/<module>.py,
    under mutmut's names: x_name for a function, xǁClassǁname for a method."""
    tree = ast.parse((ROOT / "src" / "mixvae" / f"{module}.py").read_text())
    lines: dict[str, int] = {}
    for node in tree.body:
        defs = [(f"x_{node.name}", node)] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else []
        if isinstance(node, ast.ClassDef):
            defs = [(f"xǁ{node.name}ǁ{f.name}", f) for f in node.body
                    if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        for name, f in defs:
            lines[name] = min([f.lineno] + [d.lineno for d in f.decorator_list])
    return lines


def describe(name: str) -> dict:
    """A mutant's module, function, line in the source and the lines it changes (from `mutmut show`)."""
    diff = subprocess.run([str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    module = name.split(".")[1]
    function = name.rpartition(".")[2].partition("__mutmut_")[0]
    first = None
    removed, added = [], []
    offset = 0
    for line in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)", line)
        if hunk:
            offset = int(hunk[1])
        elif line.startswith(("---", "+++", "#")):
            continue
        elif line.startswith("-"):
            first = first or offset
            removed.append(line[1:].strip())
            offset += 1
        elif line.startswith("+"):
            first = first or offset
            added.append(line[1:].strip())
        elif line.startswith(" "):
            offset += 1
    start = function_lines(module).get(function)
    line_no = start + first - 1 if start and first else None
    readable = function[2:].replace("ǁ", ".")  # x_f -> f, xǁClassǁf -> Class.f
    return {"module": module, "mutant": name, "function": readable,
            "line": line_no, "from": " / ".join(removed), "to": " / ".join(added)}


def equivalent_reasons() -> list[dict]:
    return json.loads(EQUIVALENT.read_text())["equivalent"] if EQUIVALENT.exists() else []


def reason_for(survivor: dict, reasons: list[dict]) -> str | None:
    """The recorded reason for an equivalent mutant, matched on what it changes (not its number,
    which shifts when the code does)."""
    for r in reasons:
        if all(r[k] == survivor[k] for k in ("module", "function", "from", "to")):
            return r["reason"]
    return None


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cpus": os.cpu_count(), "os": platform.platform(), "python": platform.python_version(),
            "torch": version("torch"), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def summarise(modules: list[str], updated: set[str], seconds: dict[str, float], finished: dict[str, bool],
              kept: dict[str, int], command: str) -> dict:
    """The result file: the ``updated`` modules from mutants/, the others as the result file had them
    (their survivors' equivalence matched again against tools/mutation_equivalent.json)."""
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    old_modules = previous.get("modules", {})
    head = git_head()
    reasons = equivalent_reasons()
    by_module: dict[str, dict[str, int]] = {m: {} for m in modules}
    found = {n: s for n, s in statuses().items() if n.split(".")[1] in updated}
    for name, status in found.items():
        counts = by_module.setdefault(name.split(".")[1], {})
        counts[status] = counts.get(status, 0) + 1
    survivors = []
    for name, status in sorted(found.items()):
        if status in KILLED or status == "not checked":  # a mutant not run yet is no survivor
            continue
        s = describe(name) | {"status": status}
        reason = reason_for(s, reasons)
        if reason:
            s["equivalent"] = reason
        survivors.append(s)
    for s in previous.get("survivors", []):
        if s["module"] in modules and (s["module"] not in updated or not by_module.get(s["module"])):
            s = {k: v for k, v in s.items() if k != "equivalent"}
            reason = reason_for(s, reasons)
            survivors.append(s | ({"equivalent": reason} if reason else {}))
    survivors.sort(key=lambda s: s["mutant"])
    table = {}
    for m in modules:
        counts = by_module.get(m, {})
        total = sum(counts.values())
        if m in old_modules and (m not in updated or not total):
            # not run now (or no mutmut results here for it): keep the last run's, with the commit it ran on
            t = dict(old_modules[m])
            t.setdefault("commit", previous.get("commit"))
            t["equivalent"] = sum(1 for s in survivors if s["module"] == m and "equivalent" in s)
            ran, caught = t["total"] - t["not_checked"], t["killed"] + t["timeout"]
            t["score_without_equivalent"] = round(caught / (ran - t["equivalent"]), 4) if ran > t["equivalent"] else None
            table[m] = t
            continue
        killed = counts.get("killed", 0) + counts.get("caught by type check", 0)
        timeout = counts.get("timeout", 0)
        equivalent = sum(1 for s in survivors if s["module"] == m and "equivalent" in s)
        ran = total - counts.get("not checked", 0)  # mutants the budget left unrun count for neither side
        old = old_modules.get(m, {})
        table[m] = {
            "killed": killed, "timeout": timeout, "survived": counts.get("survived", 0),
            "no_tests": counts.get("no tests", 0), "not_checked": counts.get("not checked", 0), "total": total,
            "score": round((killed + timeout) / ran, 4) if ran else None,
            "equivalent": equivalent,
            "score_without_equivalent": round((killed + timeout) / (ran - equivalent), 4) if ran > equivalent else None,
            "seconds": round(seconds[m], 1) if m in seconds else None,
            "finished": finished.get(m, not counts.get("not checked", 0)),
            "run_at": datetime.now(timezone.utc).isoformat(timespec="seconds") if m in seconds else None,
            "commit": head,  # the code and tests mutated and run (--report-only: the checkout it reports on)
        }
        if kept.get(m):  # --resume: these results stand from the runs before, on the commits they recorded
            before = old.get("results_kept", {}).get("commits", []) + [old.get("commit") or previous.get("commit")]
            table[m]["results_kept"] = {"mutants": kept[m], "commits": list(dict.fromkeys(c for c in before if c))}
        elif m not in seconds and old.get("results_kept"):  # --report-only: what stood before still stands
            table[m]["results_kept"] = old["results_kept"]
    totals = {k: sum(t[k] for t in table.values()) for k in
              ("killed", "timeout", "survived", "no_tests", "not_checked", "total", "equivalent")}
    caught = totals["killed"] + totals["timeout"]
    ran = totals["total"] - totals["not_checked"]
    totals["score"] = round(caught / ran, 4) if ran else None
    totals["score_without_equivalent"] = round(caught / (ran - totals["equivalent"]), 4) if ran else None
    totals["seconds"] = round(sum(t["seconds"] or 0 for t in table.values()), 1)
    cfg = mutmut_config()
    return {
        "tool": "mutmut", "version": version("mutmut"),
        "command": command,
        "mutmut_command": "mutmut run --max-children N 'mixvae.<module>.*' (one call per module; with --resume, "
                          "the names of the module's mutants with no result yet and of its survivors not listed as equivalent)",
        "score_definition": "(killed + timeout) / mutants run (total - not_checked); score_without_equivalent "
                            "leaves out the survivors listed as equivalent in tools/mutation_equivalent.json",
        "tests": cfg["pytest_add_cli_args_test_selection"], "pytest_args": cfg["pytest_add_cli_args"],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "modules": table, "overall": totals, "survivors": survivors,  # each module with its commit
    }


def main() -> None:
    cfg = mutmut_config()
    modules = core_modules(cfg)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modules", nargs="+", choices=modules,
                   help="run (or with --report-only, report) these modules only (default: all)")
    p.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    p.add_argument("--budget-min", type=float, default=90.0, help="stop starting or running modules after this")
    p.add_argument("--fresh", action="store_true", help="delete mutants/ first (no stored results)")
    p.add_argument("--resume", action="store_true",
                   help="run only the mutants with no result yet and the survivors not listed as equivalent; "
                        "the others' results stand")
    p.add_argument("--only", nargs="+", metavar="PATTERN",
                   help="with --resume: of those mutants, only the ones whose names match one of these globs")
    p.add_argument("--report-only", action="store_true", help="run nothing; rewrite the result file from mutants/")
    args = p.parse_args()
    if args.only and not args.resume:
        p.error("--only needs --resume")
    if not MUTMUT.exists():
        sys.exit(f"{MUTMUT} not found: pip install -c constraints.txt -e '.[mutation]'")
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    seconds: dict[str, float] = {}
    finished: dict[str, bool] = {}
    kept: dict[str, int] = {}
    chosen = [m for m in modules if not args.modules or m in args.modules]
    deadline = time.monotonic() + args.budget_min * 60
    for m in [] if args.report_only else chosen:
        left = deadline - time.monotonic()
        if left < 60:
            print(f"{m}: not run, the budget of {args.budget_min:.0f} min is spent", flush=True)
            continue
        names = None
        if args.resume:
            names, kept[m] = unfinished(m, args.only)
            if not kept[m]:
                names = None  # nothing stands: the whole module
            elif not names:
                print(f"{m}: nothing to run", flush=True)
                continue
        seconds[m], finished[m] = run_module(m, args.max_children, left, names)
        print(f"{m}: {seconds[m]:.0f} s{'' if finished[m] else ' (stopped by the budget)'}", flush=True)
    updated = set(chosen) if args.report_only else set(seconds)
    result = summarise(modules, updated, seconds, finished, kept,
                       "python tools/mutation.py " + " ".join(sys.argv[1:]))
    RESULT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"{'module':14} {'killed':>7} {'timeout':>7} {'surv.':>6} {'equiv.':>6} {'not run':>7} {'total':>6} "
          f"{'score':>6}")
    for m, t in result["modules"].items():
        score = f"{t['score']:.1%}" if t["score"] is not None else "-"
        print(f"{m:14} {t['killed']:7} {t['timeout']:7} {t['survived'] + t['no_tests']:6} {t['equivalent']:6} "
              f"{t['not_checked']:7} {t['total']:6} {score:>6}")
    o = result["overall"]
    print(f"overall: {o['score']:.1%} caught ({o['killed'] + o['timeout']} of the {o['total'] - o['not_checked']} run), "
          f"{o['score_without_equivalent']:.1%} without the {o['equivalent']} equivalent; wrote {RESULT}")


if __name__ == "__main__":
    main()
