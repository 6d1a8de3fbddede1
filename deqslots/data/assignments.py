"""``KEY=VALUE,KEY=VALUE`` text (command-line settings) to a dict of Python literals."""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["parse_assignments"]


def parse_assignments(text: str, example: str) -> dict[str, Any]:
    """Parse ``KEY=VALUE,KEY=VALUE``; values are Python literals where they parse (``3``, ``0.5``, ``'x'``),
    ``true`` / ``false`` in any case are booleans (as a shell user writes them), anything else a bare string.
    An empty text is an empty dict.

    Args:
        text: the settings.
        example: shown in the error, e.g. ``"same-hue@min_objects=6,max_objects=8"``.

    Returns:
        A new dict from each stripped key to its value, in the order given (a repeated key keeps its last value).

    Raises:
        ValueError: a part without ``=`` or with an empty key.

    Examples:
        >>> parse_assignments("iters=7,mask_source=decoder,one_colour=true", "x")
        {'iters': 7, 'mask_source': 'decoder', 'one_colour': True}
    """
    settings: dict[str, Any] = {}
    for part in text.split(",") if text else ():
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"settings must read KEY=VALUE,KEY=VALUE (e.g. {example}); got {part!r} in {text!r}")
        if value.strip().lower() in ("true", "false"):
            settings[key.strip()] = value.strip().lower() == "true"
            continue
        try:
            settings[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            settings[key.strip()] = value.strip()
    return settings
