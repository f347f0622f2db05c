"""Every ```python block in README.md and docs/readme_*.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("readme_*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _examples() -> list:
    out, seen = [], set()
    for doc in DOCS:
        if doc.exists():
            text = doc.read_text()
            for m in BLOCK.finditer(text):
                if m.group(1) in seen:  # the same example merged into README.md from docs/
                    continue
                seen.add(m.group(1))
                line = text.count("\n", 0, m.start()) + 2
                out.append(pytest.param(m.group(1), id=f"{doc.relative_to(ROOT)}:{line}"))
    return out


EXAMPLES = _examples()


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<readme>", "exec"), {"__name__": "__main__"})  # noqa: S102 - running the docs' code is the test
