"""``python -m benchmarks render`` and the rule that every benchmark table in the docs names where it came from."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from benchmarks.__main__ import main, render
from benchmarks.suites.common import render_document

ROOT = Path(__file__).resolve().parents[2]


def tables_without_source(text: str) -> list[str]:
    """The first lines of markdown tables with no ``Source:`` line between their section's heading and them."""
    missing, section, previous_is_table = [], [], False
    for line in text.splitlines():
        if line.startswith("#"):
            section = []
        is_table = line.lstrip().startswith("|")
        if is_table and not previous_is_table and not any(s.startswith("Source:") for s in section):
            missing.append(line)
        section.append(line)
        previous_is_table = is_table
    return missing


# the pages that hold figures (the overview and methods pages list suites and describe them)
BENCHMARK_PAGES = [ROOT / "BENCHMARKS.md", *sorted(path for path in (ROOT / "docs" / "benchmarks").glob("*.md")
                                                   if path.name not in ("index.md", "methods.md"))]


@functools.cache
def _hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_tables", ROOT / "docs" / "hooks" / "benchmark_tables.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def _rendered(path: Path) -> str:
    """The page as the site shows it: its ``<!-- results: ... -->`` markers replaced by the results files' tables."""
    hook = _hook()

    class Page:
        class file:
            src_uri = path.name

    return hook.on_page_markdown(path.read_text(), Page, {"docs_dir": str(ROOT / "docs")}, None)


@pytest.mark.parametrize("path", BENCHMARK_PAGES, ids=lambda p: p.name)
def test_every_benchmark_table_names_its_source(path):
    missing = tables_without_source(_rendered(path))
    assert not missing, (f"{path.name}: tables without a `Source: COMMAND -> RESULTS` line above them in their "
                         f"section (`python -m benchmarks render RESULTS.json` writes one): {missing}")


def test_every_results_marker_renders_the_tables_it_names():
    markers = 0
    for path in BENCHMARK_PAGES:
        text = path.read_text()
        for match in _hook().MARKER.finditer(text):
            markers += 1
            doc = json.loads((ROOT / "docs" / "benchmarks" / "results" / match[1]).read_text())
            for table in match[2].split():
                assert table in doc["tables"], f"{path.name}: {match[1]} has no table {table!r}"
        assert not _hook().MARKER.search(_rendered(path))
    assert markers >= 10  # the current figures come from results files, not pasted tables


def test_the_check_catches_a_table_without_source():
    text = "## A\n\nSource: `python -m benchmarks data`\n\n| a |\n|---|\n| 1 |\n\n## B\n\n| b |\n|---|\n| 2 |\n"
    assert tables_without_source(text) == ["| b |"]


def test_render_heads_every_table_with_command_and_file(all_tiny, capsys):
    out, _ = all_tiny
    path = out / "data" / "results.json"
    text = main(["render", str(path)])
    assert capsys.readouterr().out.strip() == text.strip()
    assert not tables_without_source(text)
    doc = json.loads(path.read_text())
    blocks = [b for b in text.split("#### ") if b.strip()]
    assert len(blocks) == len(doc["tables"]) == 1
    for block in blocks:
        source = next(line for line in block.splitlines() if line.startswith("Source:"))
        assert f"`{doc['command']}`" in source and f"`{path}`" in source and doc["machine"]["date"] in source
    rows = [line for line in text.splitlines() if line.startswith("| ") and "generator" not in line]
    assert [r.split("|")[1].strip() for r in rows] == [r["generator"] for r in doc["tables"]["generators"]["rows"]]


def test_render_of_the_combined_file_covers_every_suite_and_report_is_the_same_text(all_tiny):
    out, doc = all_tiny
    text = render([out / "results.json"])
    for name, one in doc["suites"].items():
        shown = [t for t, tab in one["tables"].items() if tab.get("in_report", True)]
        for table in shown:
            assert re.search(rf"^#### {re.escape(name)}: {re.escape(table)}\b", text, re.M), (name, table)
    path = out / "backward" / "results.json"
    assert (out / "backward" / "report.md").read_text() == render_document(json.loads(path.read_text()), str(path))


def test_render_refuses_a_file_that_is_not_a_results_file(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"schema": 1, "suite": "x"}))
    with pytest.raises(SystemExit) as exit_:
        main(["render", str(bad)])
    assert exit_.value.code == 2 and "is not a results file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", str(tmp_path / "missing.json")])
