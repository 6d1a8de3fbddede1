"""``@solvers.implicit``: turn a function written as ONE step of an iteration into its fixed point."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence, Union

from .backward import BackwardMode
from .compile import Compile, as_compile
from .fixed_point import check_flag, check_options, check_states, fixed_point
from .forward import ForwardSolver

__all__ = ["implicit", "ImplicitFunction", "SolveOptions"]


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """The keyword arguments an :class:`ImplicitFunction` passes to :func:`solvers.fixed_point`.

    Validated when built, so a bad option fails at decoration time, not at the first call.

    Attributes:
        forward: "iterate" | "anderson" | "broyden" or a forward solver object.
        backward: "unrolled" | "implicit" | "neumann" | "onestep" | "phantom" or a backward mode object.
        tol: per-sample tolerance on the residual; None runs exactly ``max_iter`` evaluations.
        max_iter: most evaluations of the step in the forward solve (>= 1).
        stop_mode: "abs" or "rel".
        on_fail: "warn", "raise" or "ignore" for a solve that does not converge.
        nonfinite: "raise" or "best" when the step returns NaN/Inf.
        return_info: the call returns ``(z, info)`` instead of ``z``.
        compact: evaluate the step only on the samples still iterating (its batch-shaped arguments sliced).
        states: iterate numbers (1..max_iter) whose states land in ``info.states``; stored as a tuple.
        cache_weights: compute parametrized weights once per solve.
        compile: False, True (inductor) or a :class:`~solvers.Compile`.

    Raises:
        TypeError: for an option of the wrong type (e.g. ``max_iter=2.5``, ``compact=1``, ``states="5"``).
        ValueError: for an option out of range or an unknown name (e.g. ``tol=-1``, ``forward="newton"``,
            ``states=(0,)``).

    Examples:
        >>> import solvers
        >>> options = solvers.SolveOptions(forward="anderson", max_iter=20, states=[5, 10])
        >>> options.states, options.tol
        ((5, 10), 0.0001)
    """

    forward: Union[str, ForwardSolver] = "iterate"
    backward: Union[str, BackwardMode] = "implicit"
    tol: Optional[float] = 1e-4
    max_iter: int = 50
    stop_mode: str = "abs"
    on_fail: str = "warn"
    nonfinite: str = "raise"
    return_info: bool = False
    compact: bool = True
    states: Sequence[int] = ()
    cache_weights: bool = True
    compile: Union[bool, Compile] = False

    def __post_init__(self) -> None:
        check_options(self.forward, self.backward, self.tol, self.max_iter, self.stop_mode, self.on_fail,
                      self.nonfinite)
        check_flag("return_info", self.return_info)
        check_flag("compact", self.compact)
        check_flag("cache_weights", self.cache_weights)
        object.__setattr__(self, "states", check_states(self.states, self.max_iter))
        as_compile(self.compile)  # refuses what is neither a flag nor a Compile


class ImplicitFunction:
    """A one-step function whose call returns the fixed point of that step.

    ``step(z0, *context)`` solves ``z = step(z, *context)`` from ``z0``. On a class, the first argument
    after ``self`` is the state. The context arguments (positional and keyword) reach
    :func:`solvers.fixed_point` as ``args``: with ``compact`` (the default) its tensors that share the
    state's batch dimension are sliced to the samples still iterating. ``.step`` is the undecorated single
    step (the plain function: on a method, pass the instance, ``layer.step.step(layer, z, x)``) and
    ``.replace(**changes)`` returns a copy with other solve options (e.g. more iterations at evaluation).
    Usually made by the :func:`implicit` decorator rather than built directly.

    Args:
        step: the single step ``step(z, *context, **kw_context)`` (on a method: ``step(self, z, ...)``).
        options: the solve options passed to :func:`solvers.fixed_point` at each call.
        bound_to: the instance a method is bound to (set when accessed through an instance); None for a
            plain function.

    Examples:
        >>> import torch, solvers
        >>> @solvers.implicit(tol=1e-6, max_iter=100)
        ... def step(z, x):
        ...     return torch.tanh(0.5 * z + x)
        >>> type(step).__name__
        'ImplicitFunction'
        >>> x = torch.ones(2, 3)
        >>> z = step(torch.zeros(2, 3), x)
        >>> bool(torch.allclose(step.step(z, x), z, atol=1e-5))  # the fixed point of the plain step
        True
        >>> step.replace(max_iter=200).options.max_iter
        200
    """

    def __init__(self, step: Callable[..., Any], options: SolveOptions, bound_to: Any = None) -> None:
        self.step = step
        self.options = options
        self._bound_to = bound_to
        functools.update_wrapper(self, step)

    def __get__(self, instance: Any, owner: Optional[type] = None) -> "ImplicitFunction":
        if instance is None:
            return self
        return ImplicitFunction(self.step, self.options, bound_to=instance)

    def replace(self, **changes: Any) -> "ImplicitFunction":
        """A copy with some solve options changed (same names as :func:`implicit`'s keywords).

        Args:
            **changes: new values of fields of :class:`SolveOptions`, validated as at decoration.

        Returns:
            A new :class:`ImplicitFunction` with the same step (and bound instance); this one is unchanged.

        Raises:
            TypeError: if a keyword is not a solve option, or a value has the wrong type.
            ValueError: if a value is out of range or an unknown name.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(SolveOptions)}
        if unknown:
            raise TypeError(
                f"unknown solve option(s) {sorted(unknown)}; valid: "
                f"{', '.join(f.name for f in dataclasses.fields(SolveOptions))}"
            )
        return ImplicitFunction(self.step, dataclasses.replace(self.options, **changes), self._bound_to)

    def __call__(self, z0: Any, *context: Any, **kw_context: Any) -> Any:
        step, owner = self.step, self._bound_to
        n_pos, keys = len(context), tuple(kw_context)

        def one_step(z: Any, *values: Any) -> Any:
            kw = dict(zip(keys, values[n_pos:]))
            if owner is not None:
                return step(owner, z, *values[:n_pos], **kw)
            return step(z, *values[:n_pos], **kw)

        o = self.options
        z, info = fixed_point(one_step, z0, args=context + tuple(kw_context.values()), forward=o.forward,
                              backward=o.backward, tol=o.tol, max_iter=o.max_iter, stop_mode=o.stop_mode,
                              on_fail=o.on_fail, nonfinite=o.nonfinite, compact=o.compact, states=o.states,
                              cache_weights=o.cache_weights, compile=o.compile)
        return (z, info) if o.return_info else z


def implicit(
    step: Optional[Callable[..., Any]] = None,
    *,
    forward: Union[str, ForwardSolver] = "iterate",
    backward: Union[str, BackwardMode] = "implicit",
    tol: Optional[float] = 1e-4,
    max_iter: int = 50,
    stop_mode: str = "abs",
    on_fail: str = "warn",
    nonfinite: str = "raise",
    return_info: bool = False,
    compact: bool = True,
    states: Sequence[int] = (),
    cache_weights: bool = True,
    compile: Union[bool, Compile] = False,
) -> Any:
    """Decorate a function or method written as ONE step; calling it returns the fixed point.

    A module that looped ``for _ in range(T): z = self.step(z, x)`` becomes ``z = self.step(z0, x)``.
    The keywords are those of :func:`solvers.fixed_point`; ``return_info=True`` returns ``(z, info)``
    (``info.states`` holds the iterates asked for with ``states``). ``compact=True`` (default) evaluates
    the step on the samples still iterating only, slicing the step's tensor arguments whose leading
    dimension is the batch size; pass ``compact=False`` if the step reads batch-shaped tensors some other
    way (e.g. from ``self``), or takes a non-batch tensor whose leading size happens to equal the batch.

    Args:
        step: the function to decorate when used bare (``@implicit``); None when called with options
            (``@implicit(tol=...)``).
        forward: "iterate" | "anderson" | "broyden" or a forward solver object.
        backward: "unrolled" | "implicit" | "neumann" | "onestep" | "phantom" or a backward mode object.
        tol: per-sample tolerance on the residual; None runs exactly ``max_iter`` evaluations.
        max_iter: most evaluations of the step in the forward solve (>= 1).
        stop_mode: "abs" (||step(z) - z||) or "rel" (that over ||step(z)||).
        on_fail: a solve that does not converge: "warn", "raise" a :class:`~solvers.ConvergenceError`, or
            "ignore".
        nonfinite: "raise" a :class:`~solvers.NonFiniteError` when the step returns NaN/Inf, or "best".
        return_info: return ``(z, info)`` with a :class:`~solvers.SolveInfo` instead of ``z``.
        compact: evaluate the step on the samples still iterating only (see above).
        states: iterate numbers (1..max_iter) whose states to return in ``info.states``.
        cache_weights: compute parametrized weights once per solve instead of once per step.
        compile: ``torch.compile`` the solve: True (inductor) or a :class:`~solvers.Compile`.

    Returns:
        An :class:`ImplicitFunction` wrapping ``step``; without ``step``, a decorator that makes one.

    Raises:
        TypeError: if what is decorated is not callable, or an option has the wrong type.
        ValueError: if an option is out of range or an unknown name (raised when the decorator is applied,
            not at the first call).

    Examples:
        >>> import torch, solvers
        >>> class Layer(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin = torch.nn.Linear(4, 4)
        ...     @solvers.implicit(forward="anderson", backward="implicit", tol=1e-6)
        ...     def step(self, z, x):
        ...         return torch.tanh(0.5 * self.lin(z) + x)
        ...     def forward(self, x):
        ...         return self.step(torch.zeros_like(x), x)
        >>> Layer()(torch.randn(3, 4)).shape
        torch.Size([3, 4])
    """
    options = SolveOptions(forward, backward, tol, max_iter, stop_mode, on_fail, nonfinite, return_info, compact,
                           states, cache_weights, compile)

    def wrap(fn: Callable[..., Any]) -> ImplicitFunction:
        if not callable(fn):
            raise TypeError(f"@implicit decorates a function or method; got {type(fn).__name__}")
        return ImplicitFunction(fn, options)

    return wrap(step) if step is not None else wrap
