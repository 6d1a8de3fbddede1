"""Copying frozen config dataclasses with changed fields, refusing unknown names."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["replace_fields"]

T = TypeVar("T")


def replace_fields(config: T, what: str, **changes: Any) -> T:
    """``dataclasses.replace`` that names the valid fields when a change names an unknown one.

    Args:
        config: a dataclass instance.
        what: how the error message names it, e.g. "config".
        **changes: new field values.
    """
    valid = {f.name for f in dataclasses.fields(config)}
    unknown = set(changes) - valid
    if unknown:
        raise TypeError(f"unknown {what} field(s) {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    return dataclasses.replace(config, **changes)
