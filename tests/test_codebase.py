"""The shape of the code: short modules and functions, private names kept private."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mixvae"
MODULES = sorted(SRC.rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_modules_are_short():
    long = {str(p.relative_to(SRC)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_functions_are_short():
    long = []
    for p in MODULES:
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None
                    and node.end_lineno - node.lineno + 1 > 80):
                long.append(f"{p.relative_to(SRC)}:{node.name}")
    assert not long, long


def test_no_module_uses_another_modules_private_names():
    """``from mixvae.x import _y`` and ``module._y`` for an imported mixvae module are both refused."""
    found = []
    for p in MODULES:
        tree = ast.parse(p.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mixvae"):
                found += [f"{p.name}: {node.module}.{a.name}" for a in node.names if _private(a.name)]
                aliases |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names if a.name.startswith("mixvae")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                found.append(f"{p.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, found
