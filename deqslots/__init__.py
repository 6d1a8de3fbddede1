"""deqslots: implicit slot attention and SLATE on top of the `solvers` library."""

__all__: list[str] = []
