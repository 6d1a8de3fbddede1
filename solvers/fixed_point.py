"""The one entry point: solve z* = f(z*) and attach the chosen gradient."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch.nn.utils import parametrize

from ._compact import CompactMap
from .compile import Compile, as_compile
from ._options import check_choice, check_positive_int, check_tolerance
from ._scope import solve_scope
from ._state import State, StateSpec
from .backward import BackwardMode, Implicit, Neumann, OneStep, Phantom, Unrolled
from .errors import ConvergenceError, ConvergenceWarning, NonFiniteError, user_stacklevel
from .forward import Anderson, Broyden, ForwardSolver, Iterate
from .forward._progress import nonfinite_step_error, residual_from_step
from .info import SolveInfo

__all__ = ["fixed_point", "check_options", "check_states", "check_flag", "as_forward", "as_backward",
           "FORWARD_SOLVERS", "BACKWARD_MODES"]

FORWARD_SOLVERS = ("iterate", "anderson", "broyden")
BACKWARD_MODES = ("unrolled", "implicit", "neumann", "onestep", "phantom")


def as_forward(forward: Union[str, ForwardSolver]) -> ForwardSolver:
    """Turn a shorthand string into a forward solver object (objects pass through).

    Args:
        forward: "iterate" | "anderson" | "broyden" (the solver with its default options), or a
            :class:`~solvers.ForwardSolver`, returned as it is.

    Returns:
        The forward solver object.

    Raises:
        ValueError: if ``forward`` is neither one of :data:`FORWARD_SOLVERS` nor a solver object.

    Examples:
        >>> import solvers
        >>> solvers.as_forward("anderson")
        Anderson(memory=5, ridge=1e-08, damping=1.0)
        >>> solvers.as_forward(solvers.Iterate(keep="last"))
        Iterate(damping=1.0, keep='last')
    """
    if isinstance(forward, ForwardSolver):
        return forward
    table: dict[str, Callable[[], ForwardSolver]] = {"iterate": Iterate, "anderson": Anderson, "broyden": Broyden}
    if isinstance(forward, str) and forward in table:
        return table[forward]()
    raise ValueError(
        f"unknown forward solver {forward!r}; pass one of {', '.join(map(repr, FORWARD_SOLVERS))} or an object "
        "such as solvers.Anderson(memory=5)"
    )


def as_backward(backward: Union[str, BackwardMode]) -> BackwardMode:
    """Turn a shorthand string into a backward mode object (objects pass through).

    Args:
        backward: "unrolled" | "implicit" | "neumann" | "onestep" | "phantom" (the mode with its default
            options), or a :class:`~solvers.BackwardMode`, returned as it is.

    Returns:
        The backward mode object.

    Raises:
        ValueError: if ``backward`` is neither one of :data:`BACKWARD_MODES` nor a mode object.

    Examples:
        >>> import solvers
        >>> solvers.as_backward("neumann")
        Neumann(terms=5)
        >>> solvers.as_backward(solvers.Phantom(steps=2))
        Phantom(steps=2, damping=0.5)
    """
    if isinstance(backward, BackwardMode):
        return backward
    table: dict[str, Callable[[], BackwardMode]] = {"unrolled": Unrolled, "implicit": Implicit, "neumann": Neumann,
                                                    "onestep": OneStep, "phantom": Phantom}
    if isinstance(backward, str) and backward in table:
        return table[backward]()
    raise ValueError(
        f"unknown backward mode {backward!r}; pass one of {', '.join(map(repr, BACKWARD_MODES))} or an object "
        "such as solvers.Implicit(solver='gmres') or solvers.Neumann(terms=3)"
    )


def check_options(forward: Union[str, ForwardSolver], backward: Union[str, BackwardMode], tol: Optional[float],
                  max_iter: int, stop_mode: str, on_fail: str, nonfinite: str) -> tuple[ForwardSolver, BackwardMode]:
    """Validate :func:`fixed_point`'s options (raising what to pass instead); returns the solver objects.

    Args:
        forward: forward solver name or object (see :func:`as_forward`).
        backward: backward mode name or object (see :func:`as_backward`).
        tol: tolerance, a finite number >= 0, or None (fixed number of steps).
        max_iter: most evaluations of the map, an int >= 1.
        stop_mode: "abs" or "rel".
        on_fail: "warn", "raise" or "ignore".
        nonfinite: "raise" or "best".

    Returns:
        ``(forward, backward)`` as solver and mode objects.

    Raises:
        TypeError: if ``tol`` is not a number (nor None) or ``max_iter`` is not an int (bools are refused).
        ValueError: if ``tol`` is negative or infinite, ``max_iter`` < 1, ``stop_mode``, ``on_fail`` or
            ``nonfinite`` is not one of its choices, or ``forward`` / ``backward`` is an unknown name.

    Examples:
        >>> from solvers.fixed_point import check_options
        >>> check_options("iterate", "onestep", 1e-4, 50, "abs", "warn", "raise")
        (Iterate(damping=1.0, keep='best'), OneStep())
        >>> check_options("iterate", "onestep", -1.0, 50, "abs", "warn", "raise")
        Traceback (most recent call last):
        ...
        ValueError: tol must be a finite number >= 0 (or None to run exactly max_iter steps); got -1.0
    """
    check_tolerance("tol", tol)
    check_positive_int("max_iter", max_iter)
    check_choice("stop_mode", stop_mode, ("abs", "rel"))
    check_choice("on_fail", on_fail, ("warn", "raise", "ignore"))
    check_choice("nonfinite", nonfinite, ("raise", "best"))
    return as_forward(forward), as_backward(backward)


def check_states(states: Sequence[int], max_iter: int) -> tuple[int, ...]:
    """Validate ``states`` (iterate numbers in 1..max_iter); returns them as a tuple.

    Args:
        states: iterate numbers k whose states :func:`fixed_point` returns in ``info.states``.
        max_iter: the solve's ``max_iter``, the largest valid k.

    Returns:
        ``states`` as a tuple of ints, in the given order.

    Raises:
        TypeError: if ``states`` is a string or not a sequence, or holds something other than ints.
        ValueError: if an iterate number lies outside 1..``max_iter``.

    Examples:
        >>> from solvers.fixed_point import check_states
        >>> check_states([5, 10], max_iter=10)
        (5, 10)
        >>> check_states((12,), max_iter=10)
        Traceback (most recent call last):
        ...
        ValueError: states must lie in 1..max_iter=10; got 12 (raise max_iter or pick an earlier iterate)
    """
    if isinstance(states, (str, bytes)) or not isinstance(states, Sequence):
        raise TypeError(f"states must be a sequence of iterate numbers such as (5, 10); got {states!r}")
    for k in states:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"states must hold ints (iterate numbers); got {k!r}")
        if not 1 <= k <= max_iter:
            raise ValueError(f"states must lie in 1..max_iter={max_iter}; got {k} (raise max_iter or pick an "
                             "earlier iterate)")
    return tuple(states)


def check_flag(name: str, value: Any, allow_none: bool = False) -> None:
    """Raise unless ``value`` is True or False (or None where allowed).

    Args:
        name: the option's name, for the message.
        value: the value to check.
        allow_none: accept None too.

    Raises:
        TypeError: if ``value`` is not a bool (nor None with ``allow_none``); 0 and 1 are refused too.

    Examples:
        >>> from solvers.fixed_point import check_flag
        >>> check_flag("compact", None, allow_none=True)
        >>> check_flag("compact", 1)
        Traceback (most recent call last):
        ...
        TypeError: compact must be True or False; got 1
    """
    if not (isinstance(value, bool) or (allow_none and value is None)):
        raise TypeError(f"{name} must be True or False{' (or None)' if allow_none else ''}; got {value!r}")


def fixed_point(
    f: Callable[..., State],
    z0: State,
    *,
    args: Sequence[Any] = (),
    forward: Union[str, ForwardSolver] = "iterate",
    backward: Union[str, BackwardMode] = "implicit",
    tol: Optional[float] = 1e-4,
    max_iter: int = 50,
    stop_mode: str = "abs",
    on_fail: str = "warn",
    nonfinite: str = "raise",
    compact: Optional[bool] = None,
    states: Sequence[int] = (),
    cache_weights: bool = True,
    compile: Union[bool, Compile] = False,
) -> tuple[State, SolveInfo]:
    """Find z* = f(z*) for a batch and make z* differentiable with the chosen backward mode.

    Args:
        f: maps a state to a state of the same structure, called as ``f(z, *args)``. Tensors it closes
            over or takes in ``args`` (inputs, module parameters) receive gradients. Rows of the batch
            must not interact.
        z0: initial state: a tensor [B, ...] or a tuple/list/dict of tensors sharing dimension B.
        args: extra arguments of ``f``; with ``compact``, the tensors among them whose leading dimension is
            B are sliced with the state.
        forward: "iterate" | "anderson" | "broyden" or a solver object.
        backward: "unrolled" | "implicit" | "neumann" | "onestep" | "phantom" or a mode object.
        tol: per-sample tolerance on the residual; None runs exactly ``max_iter`` evaluations.
        max_iter: most evaluations of ``f`` in the forward solve (>= 1).
        stop_mode: "abs" (||f(z) - z||) or "rel" (that over ||f(z)||), per sample.
        on_fail: what a non-converged solve (forward or adjoint) does: "warn" (default), "raise" a
            :class:`ConvergenceError`, or "ignore" (statistics still say so).
        nonfinite: "raise" a :class:`NonFiniteError` naming the step when f returns NaN/Inf, or "best"
            to return each failing sample's best finite iterate, flagged not converged.
        compact: evaluate ``f`` only on the samples still iterating (converged samples stop costing
            compute); then every batch-shaped tensor ``f`` uses must come through ``args``, not a closure.
            None (default) means: on when ``args`` is given. Results, ``nfe`` and residuals are those of
            the uncompacted solve; a stopped sample's column of ``info.trace`` repeats its last residual.
        states: iterate numbers k (1..max_iter) whose states to return in ``info.states``, each the state
            the solve would have returned after k steps, with the gradient of the chosen backward mode
            (applied at that state, so it carries the mode's extra application of ``f``): a
            fixed-point-correction loss is ``sum(loss(s) for s in info.states)``.
        cache_weights: compute parametrized weights (``torch.nn.utils.parametrize``: weight or spectral
            normalisation) once per solve instead of once per call of ``f``: once for the forward solve and
            once for the backward mode's application(s) of ``f``.
        compile: ``torch.compile`` the solve: True (inductor) or a :class:`Compile` with its options. Every
            evaluation of ``f`` runs compiled and, where the loop's length is fixed (``Iterate(keep="last")``,
            ``tol=None``, no ``states``, ``nonfinite="raise"``), the whole ``max_iter``-step loop is one graph
            without breaks (see :class:`Compile`). Same results as eager to rounding.

    Returns:
        ``(z, info)``: the fixed point with the structure of ``z0`` and a :class:`SolveInfo`. Modes other
        than "unrolled" return ``f`` applied once more at the solution (phantom: k damped steps), which
        carries the graph; they do so under ``torch.no_grad`` too (one evaluation of ``f`` beyond
        ``info.nfe``), so the value never depends on the grad mode. ``z`` requires grad exactly when a
        tensor ``f`` uses does (or ``z0``, for "unrolled").

    Raises:
        TypeError: if ``f`` is not callable, ``args`` is not a sequence (a dict or string included), or an
            option has the wrong type (see :func:`check_options`, :func:`check_states`, :func:`check_flag`).
        ValueError: if an option is out of range or an unknown name.
        NonFiniteError: if ``z0`` holds NaN/Inf, or (``nonfinite="raise"``) ``f`` returns NaN/Inf during the
            solve or at the solution.
        ConvergenceError: with ``on_fail="raise"``, if some sample stays above ``tol`` after ``max_iter``
            evaluations (an adjoint solve that does not converge raises it in the backward pass).

    Under ``torch.autocast`` only ``f`` runs in the lower precision: its output is cast back to the dtype of
    ``z0`` and the solver's own arithmetic (residuals, Anderson's least squares, Broyden's low-rank
    updates) stays in that dtype, since bfloat16 rounding there would stall or derail the solve.

    Examples:
        >>> import torch, solvers
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> w = 0.3 * torch.randn(8, 8) / 8 ** 0.5
        >>> x = torch.randn(4, 8, requires_grad=True)
        >>> z, info = solvers.fixed_point(lambda z: torch.tanh(z @ w + x), torch.zeros(4, 8),
        ...                               forward="broyden", backward="implicit", tol=1e-6)
        >>> bool(info.converged.all()), tuple(z.shape)
        (True, (4, 8))
        >>> z.sum().backward()
        >>> x.grad.shape
        torch.Size([4, 8])

        Batch-shaped inputs passed through ``args`` let the solver skip converged samples:

        >>> z, info = solvers.fixed_point(lambda z, x: torch.tanh(z @ w + x), torch.zeros(4, 8), args=(x,),
        ...                               forward="anderson", tol=1e-6)
        >>> bool(info.converged.all())
        True
    """
    if not callable(f):
        raise TypeError(f"f must be callable (a function of the state); got {type(f).__name__}")
    fwd, bwd = check_options(forward, backward, tol, max_iter, stop_mode, on_fail, nonfinite)
    if isinstance(args, (str, bytes, dict)) or not isinstance(args, Sequence):
        raise TypeError(f"args must be a tuple of extra arguments of f, e.g. args=(x,); got {type(args).__name__}")
    check_flag("compact", compact, allow_none=True)
    check_flag("cache_weights", cache_weights)
    snapshots = check_states(states, max_iter)
    compiling = as_compile(compile)
    extra = tuple(args)
    options = _Run(fwd, bwd, tol, max_iter, stop_mode, on_fail, nonfinite,
                   bool(extra) if compact is None else compact, snapshots, cache_weights, compiling)

    spec = StateSpec.of(z0)
    device_type = spec.device.type
    exact: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if torch.is_autocast_enabled(device_type):
        f = _autocast_map(f, device_type, torch.get_autocast_dtype(device_type), spec.dtype)
        exact = torch.autocast(device_type, enabled=False)
    with exact:
        if compiling is not None and compiling.loop and _fixed_length(options):
            return _solve_loop(f, extra, z0, spec, options, compiling)
        if compiling is not None:
            f = compiling.wrap(f)
        return _solve(f, extra, z0, spec, options)


@dataclasses.dataclass(frozen=True)
class _Run:
    """The validated options of one call of :func:`fixed_point`."""

    fwd: ForwardSolver
    bwd: BackwardMode
    tol: Optional[float]
    max_iter: int
    stop_mode: str
    on_fail: str
    nonfinite: str
    compact: bool
    snapshots: tuple[int, ...]
    cache_weights: bool
    compile: Optional[Compile] = None


def _autocast_map(f: Callable[..., State], device_type: str, dtype: torch.dtype,
                  state_dtype: torch.dtype) -> Callable[..., State]:
    """``f`` under autocast, its floating outputs cast back to the state's dtype."""

    def cast(out: Any) -> Any:
        if isinstance(out, torch.Tensor):
            return out.to(state_dtype) if out.is_floating_point() else out
        if isinstance(out, dict):
            return {k: cast(v) for k, v in out.items()}
        if isinstance(out, (tuple, list)):
            return type(out)(cast(v) for v in out)
        return out  # not a state: flat_map's check reports it

    def autocast_f(z: State, *args: Any) -> State:
        with torch.autocast(device_type, dtype=dtype):
            out = f(z, *args)
        return cast(out)

    return autocast_f


def _weights_cached(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    # parametrize.cached() computes each parametrized tensor once while it is open; it is opened separately
    # for the forward solve (often under no_grad) and for the backward mode's applications of f (with grad),
    # so the latter's weights carry a graph to the parameters.
    return parametrize.cached() if enabled else contextlib.nullcontext()


def _solve(f: Callable[..., State], args: tuple[Any, ...], z0: State, spec: StateSpec, run: _Run
           ) -> tuple[State, SolveInfo]:
    one_arg = f if not args else (lambda z: f(z, *args))
    flat_f = spec.flat_map(one_arg)
    z0_flat = spec.flatten(z0)
    _check_finite_start(z0_flat)
    track = torch.is_grad_enabled()
    fwd, bwd = run.fwd, run.bwd

    with solve_scope(spec.batch_size) as scope:
        solve_f = CompactMap(f, spec, args, flat_f, scope) if run.compact else flat_f
        with _weights_cached(run.cache_weights):
            if track and bwd.differentiates_solver:
                z_flat, info = fwd.solve(solve_f, z0_flat, run.tol, run.max_iter, run.stop_mode, run.nonfinite,
                                         run.snapshots)
            else:
                with torch.no_grad():
                    z_flat, info = fwd.solve(solve_f, z0_flat.detach(), run.tol, run.max_iter, run.stop_mode,
                                             run.nonfinite, run.snapshots)
        _report_forward(info, run.on_fail)
        snapshots: list[torch.Tensor] = info.states
        if not bwd.differentiates_solver:
            # Under no_grad too: the value must not depend on the grad mode (a model trained with T + 1
            # applications of f is evaluated with T + 1), only the graph does.
            with _weights_cached(run.cache_weights):
                z_flat = _attach(flat_f, z_flat, info, run)
                snapshots = [_attach(flat_f, s, info, run) for s in snapshots]
    info.states = [spec.unflatten(s) for s in snapshots]
    return spec.unflatten(z_flat), info


def _attach(flat_f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, info: SolveInfo, run: _Run
            ) -> torch.Tensor:
    """The backward mode's application(s) of ``f`` at the detached state ``z``, which carry the gradient (NaN/Inf
    handled by ``run.nonfinite``); the caller opens the weight cache."""
    z_star = z.detach()
    return _finite_or_fallback(run.bwd.attach(flat_f, z_star, info, run.on_fail), z_star, run.bwd, run.nonfinite)


def _fixed_length(run: _Run) -> bool:
    """Whether the solve is exactly ``max_iter`` plain steps, so the whole loop can be one compiled graph."""
    return (isinstance(run.fwd, Iterate) and run.fwd.keep == "last" and run.tol is None and not run.snapshots
            and run.nonfinite == "raise")


def _solve_loop(f: Callable[..., State], args: tuple[Any, ...], z0: State, spec: StateSpec, run: _Run,
                compiling: Compile) -> tuple[State, SolveInfo]:
    """``for _ in range(max_iter): z = f(z)`` as one compiled graph, per-step residuals computed inside it (no
    host synchronisation per step), then the backward mode's application(s) of the compiled ``f``."""
    assert isinstance(run.fwd, Iterate)
    damping, steps, stop_mode = float(run.fwd.damping), run.max_iter, run.stop_mode

    def loop(z: torch.Tensor, *extra: Any) -> tuple[torch.Tensor, torch.Tensor]:
        one = spec.flat_map(f if not extra else (lambda state: f(state, *extra)))
        residuals = []
        for _ in range(steps):
            fz = one(z)
            g = fz - z
            residuals.append(residual_from_step(g, fz, stop_mode))
            z = fz if damping == 1.0 else z + damping * g
        return z, torch.stack(residuals)

    compiled_loop, compiled_f = compiling.wrap(loop), compiling.wrap(f)
    flat_f = spec.flat_map(compiled_f if not args else (lambda z: compiled_f(z, *args)))
    z0_flat = spec.flatten(z0)
    _check_finite_start(z0_flat)
    track = torch.is_grad_enabled()
    with solve_scope(spec.batch_size):
        with _weights_cached(run.cache_weights):
            if track and run.bwd.differentiates_solver:
                z_flat, trace = compiled_loop(z0_flat, *args)
            else:
                with torch.no_grad():
                    z_flat, trace = compiled_loop(z0_flat.detach(), *args)
        bad = ~torch.isfinite(trace)
        if bool(bad.any()):  # the one host synchronisation of the solve
            step = int(bad.any(dim=1).nonzero()[0]) + 1
            raise nonfinite_step_error(step, bad[step - 1].nonzero().flatten().tolist())
        batch = trace.shape[1]
        info = SolveInfo(solver=run.fwd.name, nfe=steps, steps=steps, residual=trace[-1].detach(),
                         converged=torch.ones(batch, dtype=torch.bool, device=trace.device), trace=trace.detach(),
                         stop_mode=stop_mode, tol=None,
                         nonfinite=torch.zeros(batch, dtype=torch.bool, device=trace.device))
        if not run.bwd.differentiates_solver:  # under no_grad too, as in _solve
            with _weights_cached(run.cache_weights):
                z_flat = _attach(flat_f, z_flat, info, run)
    return spec.unflatten(z_flat), info


def _check_finite_start(z0_flat: torch.Tensor) -> None:
    """Refuse an initial state holding NaN/Inf (the map's first output would otherwise be blamed)."""
    finite = torch.isfinite(z0_flat).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise NonFiniteError(
            f"the initial state z0 holds NaN/Inf in batch sample(s) {bad[:10]}{' ...' if len(bad) > 10 else ''}; "
            "start from finite values (e.g. torch.zeros_like) and check what produced z0"
        )


def _finite_or_fallback(z_out: torch.Tensor, z_star: torch.Tensor, bwd: BackwardMode, nonfinite: str) -> torch.Tensor:
    """Guard the backward mode's extra application(s) of f at the solution against NaN/Inf."""
    finite = torch.isfinite(z_out).all(dim=1)
    if bool(finite.all()):
        return z_out
    if nonfinite == "raise":
        bad = torch.nonzero(~finite).flatten().tolist()
        raise NonFiniteError(
            f"the map returned NaN/Inf when backward mode {bwd.name!r} applied it at the solution, for batch "
            f"sample(s) {bad[:10]}; pass nonfinite='best' to keep the solution (without gradient) for them"
        )
    # nonfinite="best": those samples keep their best finite iterate, without a gradient path.
    return torch.where(finite.unsqueeze(1), z_out, z_star)


def _report_forward(info: SolveInfo, on_fail: str) -> None:
    if on_fail == "ignore" or info.all_converged:
        return
    failed = int((~info.converged).sum())
    nonfinite = int(info.nonfinite.sum())
    worst = float(info.residual[~info.converged].max()) if failed else 0.0
    others = " or ".join(repr(name) for name in ("anderson", "broyden") if name != info.solver)
    message = (
        f"{info.solver} left {failed} of {info.converged.numel()} samples above tol={info.tol} "
        f"({info.stop_mode}) after {info.nfe} evaluations (worst residual {worst:.3g}"
        f"{f'; {nonfinite} hit NaN/Inf' if nonfinite else ''}). Raise max_iter, try forward={others}, "
        "loosen tol, or pass tol=None to run a fixed number of steps."
    )
    if on_fail == "raise":
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=user_stacklevel())
