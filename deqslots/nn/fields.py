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

    Returns:
        A new instance of the same class with ``changes`` applied (its ``__post_init__`` checks run again);
        ``config`` is unchanged.

    Raises:
        TypeError: if a change names no field of ``config``'s class (the message lists the valid ones).

    Examples:
        >>> import dataclasses
        >>> from deqslots.nn.fields import replace_fields
        >>> @dataclasses.dataclass(frozen=True)
        ... class Config:
        ...     width: int = 64
        ...     depth: int = 2
        >>> replace_fields(Config(), "config", depth=4)
        Config(width=64, depth=4)
        >>> replace_fields(Config(), "config", dpth=4)
        Traceback (most recent call last):
        ...
        TypeError: unknown config field(s) ['dpth']; valid: depth, width
    """
    valid = {f.name for f in dataclasses.fields(config)}
    unknown = set(changes) - valid
    if unknown:
        raise TypeError(f"unknown {what} field(s) {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    return dataclasses.replace(config, **changes)
