"""The autograd node that replaces the incoming gradient by an adjoint computation at the fixed point."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..info import BackwardInfo, SolveInfo

__all__ = ["attach_adjoint", "graph_sources"]

# adjoint(vjp, v) -> (g, BackwardInfo without calls)
AdjointFn = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], tuple[torch.Tensor, BackwardInfo]]


class _AdjointGradient(torch.autograd.Function):
    """Identity in forward; in backward maps v to g = adjoint(v), e.g. g solving g = J^T g + v.

    The node sits on ``fz = f(z_leaf)`` with ``z_leaf`` the detached fixed point, so the g it returns
    flows on through ``f``'s own graph into the parameters: dL/dtheta = g^T df/dtheta. No hooks are
    registered, so nothing is left behind under ``torch.no_grad`` or after the graph is freed.
    """

    @staticmethod
    def forward(ctx: Any, fz: torch.Tensor, z_leaf: torch.Tensor, adjoint: AdjointFn, info: SolveInfo) -> torch.Tensor:
        ctx.save_for_backward(fz, z_leaf)
        ctx.adjoint = adjoint
        ctx.info = info
        return fz.clone()

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "double backward (create_graph=True) through an implicit/neumann backward mode is not "
                "supported: the adjoint solve is not itself differentiable. Use backward='onestep', "
                "'phantom' or 'unrolled' where second derivatives are needed."
            )
        fz, z_leaf = ctx.saved_tensors

        def vjp(g: torch.Tensor) -> torch.Tensor:
            # J^T g at the fixed point, reusing the graph of the one application of f.
            jtg: torch.Tensor = torch.autograd.grad(fz, z_leaf, g, retain_graph=True)[0]
            return jtg

        # the adjoint solve's arithmetic stays in the gradient's dtype even if backward() is called under autocast
        with torch.autocast(v.device.type, enabled=False):
            g, stats = ctx.adjoint(vjp, v)
        previous = ctx.info.backward
        stats.calls = previous.calls + 1 if previous is not None and previous.method == stats.method else 1
        ctx.info.backward = stats
        return g, None, None, None


def attach_adjoint(f: Callable[[torch.Tensor], torch.Tensor], z_star: torch.Tensor, adjoint: AdjointFn,
                   info: SolveInfo) -> torch.Tensor:
    """Apply ``f`` once at ``z_star`` and route its incoming gradient through ``adjoint``."""
    if not torch.is_grad_enabled():  # the value only (fixed_point applies the mode under no_grad too)
        return f(z_star.detach())
    z_leaf = z_star.detach().requires_grad_()
    with torch.enable_grad():
        fz = f(z_leaf)
    if not fz.requires_grad:
        return fz.detach()
    other, uses_state = graph_sources(fz, z_leaf)
    if not other:
        # Only the detached fixed point requires grad: nothing the map closes over can receive a
        # gradient, so the output must not require one either (z.numpy() works as for any constant).
        return fz.detach()
    if not uses_state:
        # J = 0: the adjoint is v itself, and f's own graph already gives v^T df/dtheta.
        return fz
    out: torch.Tensor = _AdjointGradient.apply(fz, z_leaf, adjoint, info)  # type: ignore[no-untyped-call]
    return out


def graph_sources(out: torch.Tensor, z_leaf: torch.Tensor) -> tuple[bool, bool]:
    """Whether ``out``'s autograd graph reaches a leaf other than ``z_leaf``, and whether it reaches ``z_leaf``.

    A breadth-first walk over ``grad_fn`` nodes that stops as soon as both answers are known; the
    parameters of a map typically sit a few nodes from its output, so the walk is short in training.
    """
    root = out.grad_fn
    if root is None:
        return out is not z_leaf and out.requires_grad, out is z_leaf
    other = uses_state = False
    seen = {root}
    frontier = [root]
    while frontier and not (other and uses_state):
        nxt = []
        for node in frontier:
            for child, _ in node.next_functions:
                if child is None or child in seen:
                    continue
                seen.add(child)
                variable = getattr(child, "variable", None)
                if variable is not None:  # AccumulateGrad: a leaf tensor
                    if variable is z_leaf:
                        uses_state = True
                    else:
                        other = True
                else:
                    nxt.append(child)
        frontier = nxt
    return other, uses_state
