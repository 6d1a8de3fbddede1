"""``fixed_point(..., compile=...)``: torch.compile of the map, and of the whole loop when its length is fixed."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from ._options import options

__all__ = ["Compile", "as_compile"]


@options
class Compile:
    """How :func:`solvers.fixed_point` compiles a solve with ``torch.compile``.

    Two levels. Every evaluation of the map ``f`` (by the forward solver and by the backward mode) runs
    compiled, so the solver's per-step decisions (stopping, Anderson's and Broyden's updates) stay in Python
    and split the graph between calls of ``f``. And where the loop's length is fixed (``forward`` is
    :class:`~solvers.Iterate` with ``keep="last"``, ``tol=None``, no ``states`` and ``nonfinite="raise"``)
    the whole loop ``for _ in range(max_iter): z = f(z)`` is one compiled graph without breaks: with
    ``backward="unrolled"`` forward and backward through all the steps, otherwise the forward loop under
    ``no_grad`` followed by the backward mode's application(s) of the compiled ``f``. Per-step residuals are
    computed inside that graph, so :class:`~solvers.SolveInfo` is the same as without compilation, and
    NaN/Inf is checked once at the end (the error still names the first step that produced it).

    Dynamo caches the compiled code by the code object of ``f``, so a fresh ``lambda`` per call (the usual way
    to close over the layer's inputs) reuses the compilation as long as shapes and dtypes stay the same.

    Attributes:
        backend: ``torch.compile``'s backend (``"inductor"`` generates fused kernels; ``"aot_eager"`` only
            traces, which is what the tests use) or a backend callable.
        mode: ``torch.compile``'s mode, e.g. ``"reduce-overhead"`` (CUDA graphs) or ``"max-autotune"``.
        dynamic: ``torch.compile``'s ``dynamic`` (None: decide after a shape changes).
        loop: compile the whole fixed-length loop as one graph where it applies (False: the map only).

    Raises:
        TypeError: if ``backend`` is neither a string nor callable, ``mode`` is neither None nor a string,
            ``dynamic`` is neither None nor a bool, ``loop`` is not a bool, or an unknown option is passed.

    Examples:
        >>> import torch, solvers
        >>> z, info = solvers.fixed_point(lambda z: torch.tanh(0.5 * z) + 1.0, torch.zeros(2, 3),
        ...                               forward=solvers.Iterate(keep="last"), backward="onestep", tol=None,
        ...                               max_iter=5, compile=solvers.Compile(backend="aot_eager"))
        >>> info.nfe, tuple(info.trace.shape)
        (5, (5, 2))
    """

    backend: Union[str, Callable[..., Any]] = "inductor"
    mode: Optional[str] = None
    dynamic: Optional[bool] = None
    loop: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.backend, str) or callable(self.backend)):
            raise TypeError(f"Compile backend must be a torch.compile backend name such as 'inductor' or "
                            f"'aot_eager', or a backend callable; got {self.backend!r}")
        if self.mode is not None and not isinstance(self.mode, str):
            raise TypeError(f"Compile mode must be None or a torch.compile mode name; got {self.mode!r}")
        for name in ("dynamic",):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"Compile {name} must be True, False or None; got {value!r}")
        if not isinstance(self.loop, bool):
            raise TypeError(f"Compile loop must be True or False; got {self.loop!r}")

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` compiled with these options.

        Args:
            fn: the function (or module) to compile.

        Returns:
            ``torch.compile(fn, backend=..., mode=..., dynamic=...)``; compiles lazily, at its first call.
        """
        return torch.compile(fn, backend=self.backend, mode=self.mode, dynamic=self.dynamic)


def as_compile(value: Union[bool, None, Compile]) -> Optional[Compile]:
    """``compile=``'s shorthands: False / None = eager, True = ``Compile()`` (inductor), or a :class:`Compile`.

    Args:
        value: ``fixed_point``'s ``compile`` argument.

    Returns:
        None for eager (False or None), ``Compile()`` for True, or ``value`` itself when it is a :class:`Compile`.

    Raises:
        TypeError: if ``value`` is anything else (e.g. a backend name string).

    Examples:
        >>> from solvers.compile import Compile, as_compile
        >>> as_compile(False) is None
        True
        >>> as_compile(True)
        Compile(backend='inductor', mode=None, dynamic=None, loop=True)
        >>> as_compile(Compile(backend="aot_eager", loop=False))
        Compile(backend='aot_eager', mode=None, dynamic=None, loop=False)
    """
    if value is None or value is False:
        return None
    if value is True:
        return Compile()
    if isinstance(value, Compile):
        return value
    raise TypeError(f"compile must be True, False or a solvers.Compile(...) (e.g. Compile(backend='aot_eager')); "
                    f"got {value!r}")
