"""The documentation site: every Python block of its pages runs and prints what the page says it prints."""

import contextlib
import io
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "```python" in p.read_text())


def run_python_blocks(page: pathlib.Path) -> dict:
    """Run a Markdown file's Python blocks in order in one namespace (returned); a block followed by
    "prints `...`" must print exactly that."""
    namespace: dict = {}
    for match in re.finditer(r"```python\n(.*?)```(?:\n\nprints `([^`]*)`)?", page.read_text(), re.S):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(match[1], str(page), "exec"), namespace)
        if match[2] is not None:
            assert printed.getvalue().strip() == match[2], (page.name, printed.getvalue())
    return namespace


def test_pages_have_python_examples():
    assert PAGES, "no page of docs/ has a Python example"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_run_and_print_what_the_page_says(page):
    """Each page's blocks run in order in one namespace; a block followed by "prints `...`" must print that."""
    run_python_blocks(page)


def test_the_gallery_shows_every_shipped_model():
    """docs/pretrained-gallery.md (written by docs/scripts/gallery.py) has a section and a figure per shipped model:
    rerun the script after exporting one."""
    from deqslots.pretrained import PRETRAINED

    page = (DOCS / "pretrained-gallery.md").read_text()
    for name, entry in PRETRAINED.items():
        assert f"## `{name}`" in page and (DOCS / "images" / "pretrained" / f"{name}.png").is_file(), name
        assert f"FG-ARI {entry.fg_ari:.3f}" in page, name
