"""Every figure README.md and BENCHMARKS.md quote between markers matches its committed result file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tables():
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quoted_numbers_match_the_result_files():
    tables = _tables()
    values = {k: v for make in tables.VALUES for k, v in make().items()}
    generated = {name: make() for name, make in tables.TABLES.items()}
    for doc in tables.DOCS:
        text = doc.read_text()
        _, stale = tables.render(text, values, generated)
        assert not stale, f"{doc.name}: {stale} differ from their result files: run python benchmarks/tables.py"
        used = {m.group(2) for m in tables.MARK.finditer(text)}
        assert used, f"{doc.name} quotes no marked figure"
    missing = [v for v in values.values() if "MISSING" in v or v.startswith("NOT")]
    assert not missing, missing


def test_a_changed_number_is_caught():
    tables = _tables()
    values = {"x.acc": "0.9719"}
    text = "ACC <!-- value: x.acc -->0.9720<!-- end --> and a table <!-- table: t -->\n| a |\n<!-- end -->"
    fixed, stale = tables.render(text, values, {"t": "\n| a |\n"})
    assert stale == ["x.acc"]
    assert "<!-- value: x.acc -->0.9719<!-- end -->" in fixed
    assert tables.render(fixed, values, {"t": "\n| a |\n"})[1] == []


def test_headline_is_mean_sample_std_and_worst_over_every_seed():
    tables = _tables()
    import statistics

    accs = [r["acc"] for r in tables.runs(*tables.MNIST_FILES)]
    assert len(accs) == 10  # seeds 0-9: every seed that ran
    assert tables.mnist_values()["mnist.acc"] == f"{statistics.mean(accs):.4f} +/- {statistics.stdev(accs):.4f}"
    assert tables.mnist_values()["mnist.worst3"] == f"{min(accs):.3f}"


def test_a_headline_says_which_code_made_it_unless_the_code_at_head_did():
    tables = _tables()
    made = tables.made_by_values()
    text = (ROOT / "README.md").read_text()
    paragraphs = text.split("\n\n")
    quoted = 0
    for key in tables.HEADLINES:
        prefix = key.rsplit(".", 1)[0]
        for paragraph in (p for p in paragraphs if f"<!-- value: {key} -->" in p):
            quoted += 1
            if made[f"{prefix}.made_by"] != "the code at HEAD":
                assert f"<!-- value: {prefix}.made_by -->" in paragraph, (
                    f"README quotes {key}, made by {made[f'{prefix}.made_by']}, without saying so in its paragraph")
    assert quoted >= 3


def test_provenance_tells_the_code_at_head_from_other_code():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import provenance

    here = provenance.src_tree()
    if here is None:
        pytest.skip("not a git checkout")
    assert len(here) == 40
    assert provenance.made_by([{"code": "abc", "src_tree": here}], ["x.json"]) == "the code at HEAD"
    other = provenance.made_by([{"code": "abc1234", "src_tree": "0" * 40}], ["x.json"])
    assert other == "code of abc1234, whose src/ differs from HEAD's"
    assert provenance.made_by([{"code": "abc", "src_tree": here}, {"code": "def"}], ["x.json"]) != "the code at HEAD"
    assert provenance.made_by([{}], ["none.json"]).startswith("code not recorded")
