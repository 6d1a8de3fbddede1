"""Atomic checkpoints: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["save_atomic", "load_checkpoint"]


def save_atomic(obj: Any, path: Union[str, Path]) -> None:
    """Write ``obj`` with torch.save to a temporary file in the same folder, then rename it into place.

    ``os.replace`` is atomic on POSIX and Windows, so readers see the old file or the new one, never a
    partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Union[str, Path]) -> dict:
    """Load a checkpoint written by :func:`save_atomic` with ``weights_only=True`` (no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (deqslots train ... --out {path.parent})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} could not be read ({type(err).__name__}: {err}); it may be "
                         "corrupt or from an incompatible version") from err
