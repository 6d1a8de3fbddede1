"""mkdocs hook: benchmark tables rendered from the results files kept in docs/benchmarks/results/.

A page holds ``<!-- results: FILE TABLE [TABLE ...] -->``; it becomes those tables of that results.json of
``python -m benchmarks``, each headed by the command, machine and date that produced it, as
``python -m benchmarks render FILE --table TABLE`` prints them: the figures on the page are the file's, not pasted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MARKER = re.compile(r"<!-- results: (\S+\.json)((?: [\w-]+)+) -->")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs' hook signature)
    from benchmarks.__main__ import render

    docs = Path(config["docs_dir"])

    def tables(match: re.Match) -> str:
        path = docs / "benchmarks" / "results" / match[1]
        if not path.is_file():
            raise FileNotFoundError(f"{page.file.src_uri}: no results file {path}")
        return render([os.path.relpath(path)], tables=match[2].split())  # the source line names it so

    return MARKER.sub(tables, markdown)
