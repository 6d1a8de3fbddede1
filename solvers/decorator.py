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
    """The keyword arguments an :class:`ImplicitFunction` passes to :func:`solvers.fixed_point`."""

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
        """A copy with some solve options changed (same names as :func:`implicit`'s keywords)."""
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
