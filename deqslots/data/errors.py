"""The error raised when data on disk is unreadable or has the wrong layout."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file is corrupt, unsupported, or holds arrays of the wrong shape or dtype.

    Subclasses ``ValueError`` so that callers catching bad-input errors generically still catch it.
    The message always names the offending file (and key, for HDF5).
    """
