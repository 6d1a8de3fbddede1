"""Stopping a run cleanly: SIGINT / SIGTERM become a request the loop honours between steps
(:class:`StopRequests`), after which it checkpoints and raises :class:`TrainingInterrupted`."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

__all__ = ["StopRequests", "TrainingInterrupted"]


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived: the step in progress was finished and checkpointed, then training stopped.

    Args:
        step: the number of steps done (the checkpoint's step); kept as ``self.step``.
        signum: the signal that asked for the stop (``signal.SIGINT`` or ``signal.SIGTERM``); kept as
            ``self.signum``.
        out: the run folder holding the checkpoint (named in the message); kept as ``self.out``.

    Examples:
        >>> import signal
        >>> from pathlib import Path
        >>> err = TrainingInterrupted(120, signal.SIGTERM, Path("runs/a"))
        >>> err.step, err.signum == signal.SIGTERM, err.out == Path("runs/a")
        (120, True, True)
        >>> print(err)
        stopped by SIGTERM after step 120; checkpoint saved in runs/a. Continue with the same command and --resume.
    """

    def __init__(self, step: int, signum: int, out: Path) -> None:
        self.step, self.signum, self.out = step, signum, out
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved in {out}. "
                         f"Continue with the same command and --resume.")


class StopRequests:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a stop never leaves a half-done step.

    A second signal of the same kind gets the default behaviour (e.g. Ctrl-C twice interrupts at once).
    Handlers can only be installed from the main thread; elsewhere signals keep their default behaviour.

    Args:
        absorb_repeats: ignore signals after the first (under torchrun, which forwards the signal it gets
            to its workers, so a terminal's Ctrl-C reaches each worker twice; torchrun kills workers still
            running after its --shutdown-timeout).

    Attributes:
        signal: the first signal received (``signal.SIGINT`` or ``signal.SIGTERM``), 0 while none came.

    Examples:
        >>> import signal
        >>> before = signal.getsignal(signal.SIGINT)
        >>> with StopRequests() as stop:
        ...     signal.raise_signal(signal.SIGINT)  # Ctrl-C during a step: noted, nothing interrupted
        ...     stop.signal == signal.SIGINT
        True
        >>> signal.getsignal(signal.SIGINT) is before  # the previous handlers are back on exit
        True
    """

    def __init__(self, absorb_repeats: bool = False) -> None:
        self.signal = 0
        self.absorb_repeats = absorb_repeats
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signal and self.absorb_repeats:
            return
        if self.signal:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        self.signal = signum

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
