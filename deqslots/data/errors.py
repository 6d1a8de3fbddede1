"""The error raised when data on disk is unreadable or has the wrong layout."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file is corrupt, unsupported, or holds arrays of the wrong shape or dtype.

    Subclasses ``ValueError`` so that callers catching bad-input errors generically still catch it.
    The message always names the offending file (and key, for HDF5).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from deqslots.data import HDF5Dataset
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "notes.h5").write_text("not HDF5")
        ...     try:
        ...         HDF5Dataset(Path(tmp) / "notes.h5")
        ...     except ValueError as err:  # DataError is a ValueError
        ...         print(type(err).__name__, "notes.h5: cannot open as HDF5" in str(err))
        DataError True
    """
