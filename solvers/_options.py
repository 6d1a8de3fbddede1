"""Frozen option objects whose constructors reject unknown keywords with a helpful message."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
from typing import TYPE_CHECKING, Any, Callable, TypeVar, cast

T = TypeVar("T")

if TYPE_CHECKING:  # tells type checkers that @options makes a (frozen) dataclass: its fields are keywords
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[T], T]:
        return lambda decorated: decorated

__all__ = ["options", "check_choice", "check_positive_int", "check_tolerance"]


@dataclass_transform(frozen_default=True)
def options(cls: type[T]) -> type[T]:
    """Turn ``cls`` into a frozen dataclass whose ``__init__`` names the valid fields on a typo.

    torchdeq silently drops unknown config keys (its issue #12); a misspelt option here is an error
    that lists what the class accepts and the closest valid name.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    init = cls.__init__
    valid = [f.name for f in dataclasses.fields(cast(Any, cls))]

    @functools.wraps(init)
    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, valid, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(
                f"{cls.__name__} got unknown option(s) {', '.join(hints)}; "
                f"valid options are: {', '.join(valid) or '(none)'}"
            )
        if len(args) > len(valid):
            raise TypeError(f"{cls.__name__} takes at most {len(valid)} options ({', '.join(valid)})")
        init(self, *args, **kwargs)

    cls.__init__ = checked_init  # type: ignore[method-assign]
    return cls


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


def check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raise unless ``value`` is an integer >= ``minimum`` (Python or NumPy; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")


def check_tolerance(name: str, value: Any, allow_none: bool = True) -> None:
    """Raise unless ``value`` is a finite float >= 0 (or None where allowed)."""
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} must be a number >= 0, not None")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number >= 0 or None; got {value!r}")
    if not float(value) >= 0 or float(value) == math.inf:
        raise ValueError(f"{name} must be a finite number >= 0 (or None to run exactly max_iter steps); got {value}")


def check_real(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    """Raise unless ``value`` is a real number (not a bool or a string) in [low, high] ((low, high] if ``low_open``);
    ``high`` may be ``inf`` (the value itself must be finite)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and (x > low if low_open else x >= low) and x <= high):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g} (finite)"
        raise ValueError(f"{name} must be {'in ' if math.isfinite(high) else ''}{bounds}; got {value!r}")
