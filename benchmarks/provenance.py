"""Which code made a result: the commit it ran from and the git tree of its ``src/``.

``src_tree()`` hashes the working tree's ``src/`` as git would commit it (uncommitted changes
included), so two runs made by the same library code carry the same tree whatever else changed in
the repository. Result files record it (``"src_tree"``, beside ``"code"``: the commit, with
"+ changes to src/" when the tree differed from it); ``benchmarks/tables.py`` compares it with the
``src/`` of the code at hand to say whether a published number was made by the code that ships.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def code_version() -> str:
    """The commit the code runs from, with "+ changes to src/" when the tree differs from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "src")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + changes to src/" if dirty else "")


def src_tree() -> str | None:
    """The git tree hash of the working tree's ``src/`` (through a temporary index: the
    repository's own index is left alone); None outside a git checkout."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            _git("read-tree", "HEAD", env=env)
            _git("add", "--all", "src", env=env)
            return _git("write-tree", "--prefix=src/", env=env)
    except (OSError, subprocess.CalledProcessError):
        return None


def fingerprint() -> dict[str, Any]:
    """What a result file records about the code that made it: ``code`` and ``src_tree``."""
    return {"code": code_version(), "src_tree": src_tree()}


def tree_of(record: dict[str, Any]) -> str | None:
    """The ``src/`` tree that made a result: the one it recorded, else its commit's when it ran
    from a clean tree; None when it cannot be known."""
    if record.get("src_tree"):
        return str(record["src_tree"])
    code = str(record.get("code") or "")
    if not code or code == "unknown" or "+" in code:
        return None
    try:
        return _git("rev-parse", f"{code.split()[0]}:src")
    except (OSError, subprocess.CalledProcessError):
        return None


def made_by(records: list[dict[str, Any]], names: list[str]) -> str:
    """"the code at HEAD" when every record was made by a ``src/`` equal to the one at hand, else
    which code made them (the commits they name, or where their files were committed)."""
    here = src_tree()
    if here is not None and records and all(tree_of(r) == here for r in records):
        return "the code at HEAD"
    named = sorted({str(r["code"]).split()[0] for r in records if r.get("code") and r.get("code") != "unknown"})
    if named:
        return "code of " + ", ".join(named) + ", whose src/ differs from HEAD's"
    committed = sorted({_committed_in(name) for name in names})
    return "code not recorded (the result files were last committed in " + ", ".join(committed) + ")"


def _committed_in(name: str) -> str:
    try:
        return _git("log", "--format=%h", "-1", "--", f"benchmarks/results/{name}") or "?"
    except (OSError, subprocess.CalledProcessError):
        return "?"
