"""Warnings and errors raised by the fixed-point solvers."""

from __future__ import annotations

import os
import sys

import torch

__all__ = ["ConvergenceWarning", "ConvergenceError", "NonFiniteError", "user_stacklevel"]

# Frames in these folders are the library's (or torch's autograd engine calling an adjoint solve), not the user's.
_INTERNAL = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
             os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)


class ConvergenceWarning(UserWarning):
    """A solve stopped at ``max_iter`` with some samples above the tolerance."""


class ConvergenceError(RuntimeError):
    """A solve did not converge and the caller asked for ``on_fail="raise"``."""


class NonFiniteError(FloatingPointError):
    """The map returned NaN or Inf during a solve (``nonfinite="raise"``)."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised here point at the caller's own line.

    Counts the frames above the caller of this function that lie in ``solvers/`` (fixed_point, the decorator)
    or in torch (``loss.backward()`` reaching an adjoint solve), so a warning names the user's call however
    deep the library's own stack is.
    """
    level = 1
    frame = sys._getframe(1)  # the function that warns (stacklevel 1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
