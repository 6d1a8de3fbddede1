"""Results as strict JSON: a metric that is undefined (NaN, e.g. FG-ARI without masks) becomes ``null``.

``json.dumps`` writes ``NaN`` by default, which is not JSON: jq, JavaScript and most JSON readers
reject the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "finite_or_none"]


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float, at any depth of dicts and lists, replaced by ``None``.

    Args:
        value: a float, or dicts, lists and tuples nesting them; other objects pass through unchanged.

    Returns:
        A copy with the same structure (tuples become lists), non-finite floats as ``None``; ``value`` itself
            when it is neither a container nor a float.

    Examples:
        >>> finite_or_none({"mse": 0.5, "fg_ari": float("nan"), "curve": [1.0, float("inf")]})
        {'mse': 0.5, 'fg_ari': None, 'curve': [1.0, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite_or_none` (``allow_nan=False``: nothing non-standard gets through).

    Args:
        value: what to encode; NaN and infinite floats at any depth become ``null``.
        **kwargs: passed on to ``json.dumps`` (e.g. ``indent``); not ``allow_nan``.

    Returns:
        The strict JSON text.

    Raises:
        TypeError: from ``json.dumps``, for an object JSON cannot encode, or when ``kwargs`` contains ``allow_nan``
            (given twice).

    Examples:
        >>> dumps({"mse": 0.5, "fg_ari": float("nan")})
        '{"mse": 0.5, "fg_ari": null}'
        >>> import json
        >>> json.dumps({"fg_ari": float("nan")})  # what this avoids
        '{"fg_ari": NaN}'
    """
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)
