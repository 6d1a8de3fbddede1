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
    """A solve stopped at ``max_iter`` with some samples above the tolerance.

    Warned with ``on_fail="warn"`` (the default), by the forward solve and by an adjoint solve of the
    implicit backward mode; its message says which samples failed and what to change.

    Examples:
        >>> import warnings, torch, solvers
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = solvers.fixed_point(torch.cos, torch.zeros(1, 1), backward="onestep", tol=1e-12, max_iter=3)
        >>> [w.category.__name__ for w in caught]
        ['ConvergenceWarning']
    """


class ConvergenceError(RuntimeError):
    """A solve did not converge and the caller asked for ``on_fail="raise"``.

    A :class:`RuntimeError`. Raised by the forward solve, or in the backward pass by an implicit mode's adjoint
    solve.

    Examples:
        >>> import torch, solvers
        >>> try:
        ...     solvers.fixed_point(torch.cos, torch.zeros(1, 1), backward="onestep", tol=1e-12, max_iter=3,
        ...                         on_fail="raise")
        ... except solvers.ConvergenceError as err:
        ...     print(str(err)[:40])
        iterate left 1 of 1 samples above tol=1e
    """


class NonFiniteError(FloatingPointError):
    """The map returned NaN or Inf during a solve (``nonfinite="raise"``).

    A :class:`FloatingPointError`. Also raised for an initial state holding NaN/Inf; the message names the
    step and the batch samples.

    Examples:
        >>> import torch, solvers
        >>> try:
        ...     solvers.fixed_point(lambda z: z / 0.0, torch.ones(2, 1), backward="onestep")
        ... except solvers.NonFiniteError as err:
        ...     print(type(err).__name__)
        NonFiniteError
    """


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised here point at the caller's own line.

    Counts the frames above the caller of this function that lie in ``solvers/`` (fixed_point, the decorator)
    or in torch (``loss.backward()`` reaching an adjoint solve), so a warning names the user's call however
    deep the library's own stack is.

    Returns:
        The ``stacklevel`` to pass to ``warnings.warn`` from the function that calls this one (>= 1).

    Examples:
        Inside the library: ``warnings.warn(message, ConvergenceWarning, stacklevel=user_stacklevel())``.
        Called from a frame outside ``solvers/`` and torch, it is 1 (that frame's own line):

        >>> from solvers.errors import user_stacklevel
        >>> user_stacklevel()
        1
    """
    level = 1
    frame = sys._getframe(1)  # the function that warns (stacklevel 1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
