"""Flattening structured states (tensor, tuple, list or dict of tensors) into one [B, D] matrix.

Every solver works on a flat batch matrix; the structure is restored around each call of the user's map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, cast

import torch

__all__ = ["StateSpec", "State"]

State = Any  # torch.Tensor | tuple[Tensor, ...] | list[Tensor] | dict[str, Tensor]


def _describe(state: Any) -> str:
    if isinstance(state, torch.Tensor):
        return f"Tensor{tuple(state.shape)}"
    if isinstance(state, dict):
        return "dict(" + ", ".join(f"{k}={_describe(v)}" for k, v in state.items()) + ")"
    if isinstance(state, (tuple, list)):
        return type(state).__name__ + "(" + ", ".join(_describe(v) for v in state) + ")"
    return type(state).__name__


@dataclass(frozen=True)
class StateSpec:
    """The structure, shapes and dtype of a state; converts between it and a flat [B, D] tensor."""

    kind: str  # "tensor" | "tuple" | "list" | "dict"
    keys: tuple[Any, ...]
    shapes: tuple[torch.Size, ...]
    dtype: torch.dtype
    device: torch.device

    @property
    def batch_size(self) -> int:
        return self.shapes[0][0]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(torch.Size(s[1:]).numel()) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    @staticmethod
    def of(state: State) -> "StateSpec":
        """Describe ``state``, checking it is a supported structure of batched tensors."""
        keys: tuple[Any, ...]
        if isinstance(state, torch.Tensor):
            kind, keys, leaves = "tensor", (None,), [state]
        elif isinstance(state, dict):
            kind, keys, leaves = "dict", tuple(state.keys()), list(state.values())
        elif isinstance(state, (tuple, list)):
            kind = "tuple" if isinstance(state, tuple) else "list"
            keys, leaves = tuple(range(len(state))), list(state)
        else:
            raise TypeError(
                f"a state must be a tensor or a tuple/list/dict of tensors; got {type(state).__name__}"
            )
        if not leaves:
            raise ValueError("a state must hold at least one tensor; got an empty container")
        for key, leaf in zip(keys, leaves):
            if not isinstance(leaf, torch.Tensor):
                raise TypeError(
                    f"every part of a state must be a tensor; part {key!r} is {type(leaf).__name__} "
                    "(nested containers are not supported: flatten them into one tuple or dict)"
                )
            if leaf.dim() < 1:
                raise ValueError(
                    f"state part {key!r} is a scalar; states need a leading batch dimension (use x[None])"
                )
            if not leaf.is_floating_point():
                raise TypeError(f"state part {key!r} has dtype {leaf.dtype}; fixed points need floating tensors")
        first = leaves[0]
        for key, leaf in zip(keys, leaves):
            if leaf.shape[0] != first.shape[0]:
                raise ValueError(
                    f"all state parts must share the batch dimension; got {_describe(state)}"
                )
            if leaf.dtype != first.dtype or leaf.device != first.device:
                raise TypeError(
                    f"all state parts must share dtype and device; part {key!r} is {leaf.dtype} on "
                    f"{leaf.device}, the first is {first.dtype} on {first.device}"
                )
        if any(leaf.numel() == 0 for leaf in leaves):
            raise ValueError(
                f"the state is empty ({_describe(state)}): a fixed point needs at least one sample with at least one "
                "entry; skip the call for an empty batch (e.g. `if z0.shape[0] == 0: return z0`)"
            )
        return StateSpec(kind, keys, tuple(leaf.shape for leaf in leaves), first.dtype, first.device)

    def with_batch(self, batch: int) -> "StateSpec":
        """The same structure with batch size ``batch`` (the rows a compacted evaluation covers)."""
        shapes = tuple(torch.Size((batch, *s[1:])) for s in self.shapes)
        return StateSpec(self.kind, self.keys, shapes, self.dtype, self.device)

    def leaves(self, state: State) -> list[torch.Tensor]:
        if self.kind == "tensor":
            return [state]
        if self.kind == "dict":
            return [state[k] for k in self.keys]
        return list(state)

    def flatten(self, state: State) -> torch.Tensor:
        """Concatenate the parts of ``state`` into a [B, D] tensor."""
        leaves = self.leaves(state)
        if len(leaves) == 1:
            return leaves[0].reshape(self.batch_size, -1)
        return torch.cat([leaf.reshape(self.batch_size, -1) for leaf in leaves], dim=1)

    def unflatten(self, flat: torch.Tensor) -> State:
        """Inverse of :meth:`flatten`."""
        if self.kind == "tensor":
            return flat.reshape(self.shapes[0])
        parts = torch.split(flat, list(self.sizes), dim=1)
        leaves = [p.reshape(s) for p, s in zip(parts, self.shapes)]
        if self.kind == "dict":
            return dict(zip(self.keys, leaves))
        return tuple(leaves) if self.kind == "tuple" else leaves

    def check_same(self, other: State, what: str) -> None:
        """Raise if ``other`` does not have exactly this structure (the map changed it)."""
        try:
            spec = StateSpec.of(other)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{what}: {err}") from None
        if spec.kind == "dict" == self.kind and spec.keys != self.keys and set(spec.keys) == set(self.keys):
            # the same keys in another order: compare by key (flatten reads a dict in this spec's key order)
            order = [spec.keys.index(k) for k in self.keys]
            spec = replace(spec, keys=self.keys, shapes=tuple(spec.shapes[i] for i in order))
        if spec.kind != self.kind or spec.keys != self.keys or spec.shapes != self.shapes:
            raise ValueError(
                f"{what} must have the same structure and shapes as the state it was given; "
                f"expected {self._summary()}, got {spec._summary()}. A fixed-point map must return "
                "a state shaped like its input."
            )
        if spec.dtype != self.dtype or spec.device != self.device:
            raise TypeError(
                f"{what} changed dtype/device from {self.dtype} on {self.device} to {spec.dtype} on {spec.device}; "
                "return the state in the dtype and on the device it came in (e.g. out.to(z)), or start from "
                "a z0 of the dtype the map produces"
            )

    def _summary(self) -> str:
        if self.kind == "tensor":
            return f"Tensor{tuple(self.shapes[0])}"
        inner = ", ".join(f"{k}: {tuple(s)}" for k, s in zip(self.keys, self.shapes))
        return f"{self.kind}({inner})"

    def flat_map(self, f: Callable[[State], State]) -> Callable[[torch.Tensor], torch.Tensor]:
        """Wrap ``f`` so it maps a flat [B, D] tensor to a flat [B, D] tensor, checking its output."""
        counter = [0]

        if self.kind == "tensor":
            # Fast path for plain tensor states (the solvers call this once per step): the same checks
            # as check_same, without building a StateSpec for the output.
            shape, dtype, device, batch = self.shapes[0], self.dtype, self.device, self.batch_size
            flat = len(shape) == 2  # already [B, D]: no reshapes (each a dispatcher call, a few us a step)

            def flat_tensor_f(z: torch.Tensor) -> torch.Tensor:
                counter[0] += 1
                # (not while torch.compile traces: the version counter is not part of a graph)
                version = None if torch.compiler.is_compiling() else z._version
                out = f(z if flat else z.reshape(shape))
                if version is not None and z._version != version:
                    raise _in_place_error(counter[0])
                if not (isinstance(out, torch.Tensor) and out.shape == shape and out.dtype == dtype
                        and out.device == device):
                    self.check_same(out, f"the map's output at evaluation {counter[0]}")
                return cast(torch.Tensor, out) if flat else cast(torch.Tensor, out).reshape(batch, -1)

            return flat_tensor_f

        def flat_f(z: torch.Tensor) -> torch.Tensor:
            counter[0] += 1
            # the unflattened parts are views of z: they share its version counter (unchecked under compile)
            version = None if torch.compiler.is_compiling() else z._version
            out = f(self.unflatten(z))
            if version is not None and z._version != version:
                raise _in_place_error(counter[0])
            self.check_same(out, f"the map's output at evaluation {counter[0]}")
            return self.flatten(out)

        return flat_f


def _in_place_error(evaluation: int) -> RuntimeError:
    """The error for a map that wrote into the state it was given (its version counter moved)."""
    return RuntimeError(
        f"the map modified its input state in place at evaluation {evaluation} (e.g. an in-place op such as "
        "z.mul_() or nn.ReLU(inplace=True) applied to the state): the solvers compare f(z) with z and keep earlier "
        "iterates, so the residuals and the result would be wrong (and z0 may have been overwritten). Make f "
        "return a new tensor: use out-of-place ops on the state, or start f with z = z.clone()"
    )
