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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[ast.stmt, bool]]:
    """Each import statement of a module and whether it sits inside a function; imports under
    ``if TYPE_CHECKING:`` (never run) are left out."""
    found: list[tuple[ast.stmt, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return found


def import_graph(modules: list[Path]) -> dict[str, set[str]]:
    """mixvae module -> the mixvae modules it imports, at its top or inside its functions."""
    names = {_module_name(p): p for p in modules}

    def known(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node, _ in _imports(path):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]  # a submodule, or a name in base
            edges |= {m for t in targets if t.startswith("mixvae") and (m := known(t)) and m != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_circle() -> None:
    """Counting imports inside functions too: an import moved into a function hides a circle, it
    does not remove it."""
    assert find_cycle(import_graph(MODULES)) is None, " -> ".join(find_cycle(import_graph(MODULES)) or [])


def test_the_circle_finder_finds_a_circle(tmp_path: Path) -> None:
    (tmp_path / "mixvae").mkdir()
    (tmp_path / "mixvae" / "a.py").write_text("from mixvae.b import f\n")
    (tmp_path / "mixvae" / "b.py").write_text("def f():\n    from mixvae import c\n")
    (tmp_path / "mixvae" / "c.py").write_text("import mixvae.a\n")
    global SRC
    saved, SRC = SRC, tmp_path / "mixvae"
    try:
        graph = import_graph(sorted(SRC.glob("*.py")))
    finally:
        SRC = saved
    assert find_cycle(graph) == ["mixvae.a", "mixvae.b", "mixvae.c", "mixvae.a"]
    graph["mixvae.c"] = set()
    assert find_cycle(graph) is None


def test_imports_inside_functions_only_in_the_command_line_or_with_a_reason() -> None:
    """Outside ``cli/`` (where they keep ``mixvae --help`` fast) an import inside a function is a
    third-party one with its reason on its line; mixvae's own modules are imported at the top
    (the package's lazy attributes aside)."""
    found = []
    for p in MODULES:
        rel = p.relative_to(SRC).as_posix()
        if rel.startswith("cli/"):
            continue
        lines = p.read_text().splitlines()
        for node, in_function in _imports(p):
            if not in_function:
                continue
            own = any(a.name.startswith("mixvae") for a in node.names) if isinstance(node, ast.Import) \
                else (node.module or "").startswith("mixvae") or node.level > 0
            if (own and rel != "__init__.py") or "#" not in lines[node.lineno - 1]:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_only_the_kinds_compare_the_kind_of_input() -> None:
    """``input_type`` (a field, a variable or the detector's answer) and the word "vectors" are
    compared in ``mixvae/kinds/`` alone; everywhere else asks a kind object (the schema's check of
    the field's values aside)."""
    found = []
    for p in MODULES:
        rel = p.relative_to(SRC).as_posix()
        if rel.startswith("kinds/"):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            called = [n.func for n in sides if isinstance(n, ast.Call)]
            names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in [*sides, *called]
                     if isinstance(n, (ast.Attribute, ast.Name))}
            words = {n.value for n in sides if isinstance(n, ast.Constant)}
            if ("input_type" in names or "vectors" in words) and not (
                    rel == "config/schema.py" and isinstance(node.ops[0], ast.In)):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_the_command_line_does_no_numerics() -> None:
    """``cli/`` parses, calls the library and prints: no numpy or torch of its own."""
    found = [f"{p.name}:{node.lineno}" for p in sorted((SRC / "cli").glob("*.py")) for node, _ in _imports(p)
             if any(n.split(".")[0] in ("numpy", "torch") for n in
                    ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]))]
    assert not found, found
