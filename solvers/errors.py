"""Warnings and errors raised by the fixed-point solvers."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "ConvergenceError", "NonFiniteError"]


class ConvergenceWarning(UserWarning):
    """A solve stopped at ``max_iter`` with some samples above the tolerance."""


class ConvergenceError(RuntimeError):
    """A solve did not converge and the caller asked for ``on_fail="raise"``."""


class NonFiniteError(FloatingPointError):
    """The map returned NaN or Inf during a solve (``nonfinite="raise"``)."""
