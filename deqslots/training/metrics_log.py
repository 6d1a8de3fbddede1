"""metrics.csv: one row per training step, written by rank 0 and flushed as it goes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional

__all__ = ["MetricsLog"]


class MetricsLog:
    """A run's metrics.csv as a context manager; :meth:`write` adds a row.

    A new run starts the file with its header; a resumed one keeps the rows up to its checkpoint's step and drops
    those logged after it (they will be redone). Only one process writes (``enabled``); elsewhere every call is a
    no-op.

    Args:
        path: the file.
        columns: its header (the model kind's ``metric_columns``).
        resume_at: the checkpoint's step on ``--resume``; 0 for a new run.
        enabled: False on the ranks that do not write.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> for resume_at, steps in ((0, (1, 2, 3)), (2, (3,))):  # a run stopped after step 3, resumed from 2
        ...     with MetricsLog(path, ["step", "loss"], resume_at=resume_at) as log:
        ...         for step in steps:
        ...             log.write({"step": step, "loss": 1.0 / step})
        >>> path.read_text().split()
        ['step,loss', '1,1.0', '2,0.5', '3,0.3333333333333333']
    """

    def __init__(self, path: Path, columns: list[str], resume_at: int = 0, enabled: bool = True) -> None:
        self.path, self.columns, self.resume_at, self.enabled = Path(path), columns, resume_at, enabled
        self._handle: Any = None
        self._writer: Optional[csv.DictWriter] = None

    def __enter__(self) -> "MetricsLog":
        if self.enabled:
            self._restart()
            self._handle = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._handle, self.columns)
        return self

    def _restart(self) -> None:
        rows = []
        if self.resume_at and self.path.exists():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= self.resume_at]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row`` and flush: one small write per step keeps the file current for anyone watching it.

        Args:
            row: column -> value; columns it lacks stay empty.

        Raises:
            ValueError: from ``csv.DictWriter``, for a key that is not one of ``columns``.
        """
        if self._writer is not None:
            self._writer.writerow(row)
            self._handle.flush()

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = self._writer = None
