"""mkdocs hook: the command-line reference (docs/cli.md) is written from the parsers at build time.

The page holds markers, ``<!-- cli: deqslots -->`` and ``<!-- cli: benchmarks -->``; each becomes the ``--help`` of
that command and of every subcommand, from :func:`deqslots.cli.build_parser` and
:func:`benchmarks.__main__.build_parser`, so the page cannot drift from the flags.
"""

from __future__ import annotations

import argparse
import os
import re

MARKER = re.compile(r"<!-- cli: (deqslots|benchmarks) -->")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of each subcommand, depth first, in the order they were added."""
    found = []
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
                found += [(f"{name} {n}", s) for n, s in _subcommands(sub)]
    return found


def _reference(which: str) -> str:
    if which == "deqslots":
        from deqslots.cli import build_parser
        parser, title = build_parser(), "deqslots"
    else:
        from benchmarks.__main__ import build_parser
        parser, title = build_parser(), "python -m benchmarks"
    sections = [f"```text\n{parser.format_help().rstrip()}\n```"]
    for name, sub in _subcommands(parser):
        sections.append(f"### `{title} {name}`\n\n```text\n{sub.format_help().rstrip()}\n```")
    return "\n\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs' hook signature)
    if not MARKER.search(markdown):
        return markdown
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: a fixed width gives the same page everywhere
    return MARKER.sub(lambda m: _reference(m[1]), markdown)
