"""mkdocs hook: the Sphinx roles of the docstrings (``:func:`x```, ``:class:`~a.b.C```) read as plain code.

The docstrings are Google-style with Sphinx cross-reference roles, which mkdocstrings renders literally
(":func:" before the code span). This drops the role and a leading "~" (Sphinx's "show the last name only", which
keeps the last dotted component), so the API pages read as the source does.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match) -> str:
    name = match[2]
    return f"<code>{name.rsplit('.', 1)[-1] if match[1] else name}</code>"


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs' hook signature)
    return ROLE.sub(_plain, html)
