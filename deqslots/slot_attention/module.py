"""Slot Attention (Locatello et al. 2020) as a fixed-point map, in the five variants of Chang et al. 2022."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

import solvers

__all__ = ["SlotAttention", "VARIANTS", "SLOT_INITS", "ATTENTION_RETURNED"]

VARIANTS = solvers.VARIANTS
# How the initial slots are made: "gaussian" = sampled from one learned Gaussian shared by all slots
# (Slot Attention); "learned" = one learned vector per slot, no noise (BO-QSA, Jia et al. 2023).
SLOT_INITS = ("gaussian", "learned")
# Which attention ``return_attn`` gives: "last_step" = the attention the last application of the map computed,
# from the slots it was given (what SLATE's and Slot Attention's code return: the last iteration's attention,
# before that iteration's update); "final_slots" = the attention of the returned slots, computed once more.
ATTENTION_RETURNED = ("last_step", "final_slots")


class SlotAttention(nn.Module):
    """Slot Attention whose iteration is solved by :mod:`solvers` in one of the paper's variants.

    One iteration (:meth:`step`) is written once; the variant picks the (forward solver, backward mode)
    pair from :func:`solvers.variant` and :func:`solvers.fixed_point` runs it:

    - ``vanilla``: ``iters`` unrolled iterations, backprop through all of them;
    - ``IN``: ``iters`` iterations without a graph, then one more with it (first-order Neumann; the
      paper's "implicit slot attention");
    - ``BN`` / ``BB``: Broyden capped at ``iters`` evaluations, then one-step / exact implicit gradient;
    - ``IB``: plain iteration, then an exact implicit gradient by a Broyden adjoint solve.

    Under ``vanilla`` the learned initial-slot mean and log-sigma get gradients through the
    reparameterisation; under the implicit variants the fixed point does not depend on them, so they
    get none (the paper's detach has the same effect).

    With ``init="learned"`` every slot starts from its own learned vector (BO-QSA's queries): slot k can
    specialise (say, on the background) and the result no longer depends on sampling noise. Under the
    implicit variants those vectors get a straight-through gradient: the fixed point's gradient is passed
    to them as if ``slots* = init + constant`` (BO-QSA passes it through one more step instead), without
    which they would never be trained.

    Args:
        in_dim: feature size of the inputs.
        slot_dim: slot size (64 in Slot Attention, 192 in SLATE).
        num_slots: number of slots K.
        iters: iterations T used in training (Broyden: f evaluations).
        mlp_hidden: hidden size of the residual MLP.
        variant: "vanilla" | "IN" | "BN" | "BB" | "IB".
        eps: added to the attention before the weighted mean.
        eval_iters: iterations in eval mode (default: ``iters``).
        backward_max_iter: cap of the adjoint Broyden solve for BB / IB (the paper caps both at 7).
        init: ``"gaussian"`` (Slot Attention: shared learned Gaussian, sampled) or ``"learned"`` (one learned
            vector per slot, deterministic; the slot count is then fixed by the weights).
        layer_norm_eps: epsilon of the three LayerNorms (PyTorch's 1e-5; Keras, so Slot Attention's code, 1e-3).
        attention: which attention ``return_attn`` returns (:data:`ATTENTION_RETURNED`): ``"last_step"`` (the
            one the last application of the map computed from its input slots, as the authors' code returns
            it: under vanilla the T-th iteration's, under IN the differentiated step's from the detached fixed
            point) or ``"final_slots"`` (recomputed from the returned slots).
        compile: ``torch.compile`` the solve (``solvers.fixed_point``'s ``compile``: True or a
            ``solvers.Compile``); vanilla / IN / IB iterate a fixed number of times, so their whole loop is
            one graph. A run-time choice (the attribute ``compile``), not part of the weights.

    Raises:
        ValueError: ``in_dim``, ``slot_dim``, ``num_slots``, ``iters``, ``mlp_hidden`` or ``backward_max_iter``
            is not a positive int, ``eval_iters`` is neither None nor a positive int, ``variant``, ``init`` or
            ``attention`` is not one of its choices, or ``layer_norm_eps`` is not a number > 0.

    Examples:
        >>> import torch
        >>> from deqslots import SlotAttention
        >>> sa = SlotAttention(in_dim=32, slot_dim=16, num_slots=4, variant="IN")
        >>> slots, attn = sa(torch.randn(2, 50, 32), return_attn=True)
        >>> tuple(slots.shape), tuple(attn.shape)
        ((2, 4, 16), (2, 4, 50))
    """

    def __init__(self, in_dim: int, slot_dim: int = 64, num_slots: int = 7, iters: int = 3,
                 mlp_hidden: int = 128, variant: str = "vanilla", eps: float = 1e-8,
                 eval_iters: Optional[int] = None, backward_max_iter: int = 7, init: str = "gaussian",
                 compile: Union[bool, solvers.Compile] = False, layer_norm_eps: float = 1e-5,
                 attention: str = "final_slots") -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("slot_dim", slot_dim), ("num_slots", num_slots),
                            ("iters", iters), ("mlp_hidden", mlp_hidden), ("backward_max_iter", backward_max_iter)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SlotAttention {name} must be a positive int; got {value!r}")
        if eval_iters is not None and (not isinstance(eval_iters, int) or eval_iters < 1):
            raise ValueError(f"SlotAttention eval_iters must be a positive int or None; got {eval_iters!r}")
        if variant not in VARIANTS:
            raise ValueError(f"SlotAttention variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        if init not in SLOT_INITS:
            raise ValueError(f"SlotAttention init must be one of {', '.join(SLOT_INITS)}; got {init!r}")
        if attention not in ATTENTION_RETURNED:
            raise ValueError(f"SlotAttention attention must be one of {', '.join(ATTENTION_RETURNED)}; "
                             f"got {attention!r}")
        if isinstance(layer_norm_eps, bool) or not isinstance(layer_norm_eps, (int, float)) or not layer_norm_eps > 0:
            raise ValueError(f"SlotAttention layer_norm_eps must be a number > 0; got {layer_norm_eps!r}")
        self.in_dim, self.slot_dim, self.num_slots = in_dim, slot_dim, num_slots
        self.iters, self.eval_iters, self.variant, self.eps = iters, eval_iters, variant, eps
        self.backward_max_iter, self.init, self.attention_returned = backward_max_iter, init, attention
        # torch.compile of the solve (solvers.Compile); a run-time choice, not saved with the weights
        self.compile = compile
        # (start, global batch) in multi-process training: see initial_slots. Not saved with the weights.
        self.noise_shard: Optional[tuple[int, int]] = None
        self.norm_inputs = nn.LayerNorm(in_dim, eps=layer_norm_eps)
        self.to_k = nn.Linear(in_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(in_dim, slot_dim, bias=False)
        self.norm_slots = nn.LayerNorm(slot_dim, eps=layer_norm_eps)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim, eps=layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(slot_dim, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, slot_dim))
        # Shared Gaussian over initial slots, Xavier-uniform initialised as in the reference implementation.
        bound = math.sqrt(6.0 / (1 + slot_dim))
        if init == "gaussian":
            self.slots_mu = nn.Parameter(torch.empty(1, 1, slot_dim).uniform_(-bound, bound))
            self.slots_log_sigma = nn.Parameter(torch.empty(1, 1, slot_dim).uniform_(-bound, bound))
        else:
            # Xavier-uniform over (num_slots, slot_dim) as BO-QSA's queries: distinct from the first step
            bound = math.sqrt(6.0 / (num_slots + slot_dim))
            self.slots_init = nn.Parameter(torch.empty(1, num_slots, slot_dim).uniform_(-bound, bound))

    def solve_options(self, iters: Optional[int] = None) -> dict:
        """The keyword arguments passed to :func:`solvers.fixed_point` for this variant.

        Args:
            iters: the forward iteration cap (Broyden: f evaluations) for this solve; None = ``iters`` in
                training mode, ``eval_iters`` (or ``iters`` when that is None) in eval mode.

        Returns:
            ``forward`` and ``backward`` (the variant's pair from :func:`solvers.variant`; an implicit backward
            capped at ``backward_max_iter`` with no tolerance), ``tol=None`` (a fixed iteration count),
            ``max_iter`` and ``compile``.
        """
        forward, backward = solvers.variant(self.variant)
        if isinstance(backward, solvers.Implicit):
            backward = solvers.Implicit(solver=backward.solver, tol=None, max_iter=self.backward_max_iter)
        if iters is None:
            iters = self.iters if self.training or self.eval_iters is None else self.eval_iters
        # A fixed iteration count, as in Slot Attention and the paper (tol=None never warns).
        return dict(forward=forward, backward=backward, tol=None, max_iter=iters, compile=self.compile)

    def initial_slots(self, batch: int, generator: Optional[torch.Generator] = None,
                      shard: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Sample slots ~ N(mu, sigma^2) with the reparameterisation trick (so mu, sigma get gradients).

        With ``init="learned"`` the learned per-slot vectors, repeated over the batch (no noise is drawn,
        so ``generator`` and ``shard`` change nothing).

        Args:
            batch: number of samples.
            generator: RNG to draw from (default: torch's global one).
            shard: ``(start, global_batch)``: draw the noise of a whole global batch and return rows
                ``start .. start + batch - 1``. Every process of a multi-process run draws the same global
                noise from the same RNG state, so each sample gets exactly the noise it would get in a
                single-process run of the global batch, and the RNG stays identical on every rank.

        Returns:
            Initial slots [batch, num_slots, slot_dim].

        Raises:
            ValueError: ``shard`` does not hold ``batch`` rows (``start < 0`` or ``start + batch >
                global_batch``); only checked with ``init="gaussian"``.
        """
        if self.init == "learned":
            return self.slots_init.expand(batch, -1, -1)
        rows = batch if shard is None else shard[1]
        if shard is not None and not (0 <= shard[0] and shard[0] + batch <= shard[1]):
            raise ValueError(f"noise shard {shard} (start, global batch) does not hold {batch} samples")
        noise = torch.randn(rows, self.num_slots, self.slot_dim, generator=generator,
                            device=self.slots_mu.device, dtype=self.slots_mu.dtype)
        if shard is not None:
            noise = noise[shard[0]:shard[0] + batch]
        return self.slots_mu + self.slots_log_sigma.exp() * noise

    def attention(self, slots: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention of slots over inputs, softmaxed over slots then + eps: [B, K, N].

        Args:
            slots: current slots [B, K, slot_dim] (LayerNormed and projected to queries here).
            k: keys [B, N, slot_dim] of the LayerNormed inputs.

        Returns:
            Attention [B, K, N]: softmax over the K slots of the scaled dot products, plus ``eps``.
        """
        q = self.to_q(self.norm_slots(slots)) * self.slot_dim ** -0.5
        logits = torch.bmm(q, k.transpose(1, 2))  # [B, K, N]
        return logits.softmax(dim=1) + self.eps

    def step(self, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             record: Optional[list] = None) -> torch.Tensor:
        """ONE slot-attention iteration: the map whose fixed point the variants find.

        Args:
            slots: slots [B, K, slot_dim] the iteration starts from.
            k: keys [B, N, slot_dim] of the LayerNormed inputs.
            v: values [B, N, slot_dim] of the LayerNormed inputs.
            record: a list whose only item becomes this call's attention [B, K, N] (softmax over slots, before
                eps), so that after a solve it holds the last application's; None records nothing.

        Returns:
            The updated slots [B, K, slot_dim]: a GRU update by the attention-weighted mean of ``v``, then a
            residual MLP.
        """
        attn = self.attention(slots, k)
        if record is not None:
            record[:] = [attn - self.eps]
        weights = attn / attn.sum(dim=2, keepdim=True)  # weighted mean over inputs
        updates = torch.bmm(weights, v)  # [B, K, D]
        batch = slots.shape[0]
        slots = self.gru(updates.reshape(-1, self.slot_dim), slots.reshape(-1, self.slot_dim))
        slots = slots.reshape(batch, self.num_slots, self.slot_dim)
        return slots + self.mlp(self.norm_mlp(slots))

    def forward(self, inputs: torch.Tensor, return_attn: bool = False, iters: Optional[int] = None,
                slots: Optional[torch.Tensor] = None, return_info: bool = False
                ) -> Union[torch.Tensor, tuple]:
        """Group ``inputs`` [B, N, in_dim] into slots [B, num_slots, slot_dim].

        Args:
            inputs: features [B, N, in_dim].
            return_attn: also return the attention [B, num_slots, N] over the inputs (softmax over slots), the
                masks the paper visualises: the last step's or the returned slots' (the ``attention`` argument).
            iters: override the number of iterations for this call.
            slots: initial slots [B, num_slots, slot_dim] instead of sampling them.
            return_info: also return the :class:`solvers.SolveInfo` of the solve.

        Returns:
            ``slots``, or a tuple ``(slots, attn?, info?)`` in that order.

        Raises:
            ValueError: ``inputs`` is not [B, N, in_dim], or ``slots`` is not [B, num_slots, slot_dim].
        """
        if inputs.dim() != 3 or inputs.shape[-1] != self.in_dim:
            raise ValueError(
                f"SlotAttention expects inputs [batch, n_inputs, {self.in_dim}]; got {tuple(inputs.shape)}"
            )
        inputs = self.norm_inputs(inputs)
        k, v = self.to_k(inputs), self.to_v(inputs)
        sampled = slots is None
        if sampled:
            # the shard applies to training only: evaluation runs the full batch on one process
            slots = self.initial_slots(inputs.shape[0], shard=self.noise_shard if self.training else None)
        elif slots.shape != (inputs.shape[0], self.num_slots, self.slot_dim):
            raise ValueError(
                f"initial slots must be [{inputs.shape[0]}, {self.num_slots}, {self.slot_dim}]; "
                f"got {tuple(slots.shape)}"
            )
        start = slots if sampled else None
        # the last application's attention is kept only when it is asked for
        record: Optional[list] = [] if return_attn and self.attention_returned == "last_step" else None
        slots, info = solvers.fixed_point(lambda s: self.step(s, k, v, record), slots, **self.solve_options(iters))
        if start is not None and self.init == "learned" and self.variant != "vanilla" and start.requires_grad:
            slots = slots + (start - start.detach())  # straight-through: see the class docstring
        out: list = [slots]
        if return_attn:
            out.append(record[0] if record else self.attention(slots, k) - self.eps)
        if return_info:
            out.append(info)
        return out[0] if len(out) == 1 else tuple(out)
