"""Bad input to the solvers, as a catalogue (docs/bad-input.md), and low precision.

Non-finite maps, non-finite starts, maps that change the state's structure, shape or dtype; then
float32 / bfloat16-autocast / bfloat16-state solves of a slot-attention-like map, and CUDA variants.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import solvers
from deqslots import SlotAttention

from .problems import tanh_deq

FORWARD = ["iterate", "anderson", "broyden"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- non-finite values --------------------------------------------------------------------------------------

def nan_after(calls: int, base):
    """``base``, except that sample 1 becomes NaN from evaluation ``calls`` on."""
    count = [0]

    def f(z):
        count[0] += 1
        out = base(z)
        if count[0] >= calls:
            out = torch.cat([out[:1], out[1:2] * math.nan, out[2:]])
        return out

    return f


@pytest.mark.parametrize("forward, step", [("iterate", 3), ("anderson", 3), ("broyden", 4)])
def test_nonfinite_map_output_raises_naming_step_and_sample(forward, step):
    """Broyden first undoes the step and retries a plain one (its own update may have caused the NaN)."""
    f, z0, _, _ = tanh_deq(batch=3, requires_grad=False)
    with pytest.raises(solvers.NonFiniteError, match=rf"NaN/Inf at step {step} for batch sample\(s\) \[1\]; .*"
                                                     r"nonfinite='best'"):
        solvers.fixed_point(nan_after(3, f), z0, forward=forward, backward="onestep", tol=1e-10, max_iter=30)


@pytest.mark.parametrize("forward", FORWARD)
def test_nonfinite_best_keeps_the_others_and_flags_the_sample(forward):
    f, z0, _, _ = tanh_deq(batch=3, requires_grad=False)
    reference, _ = solvers.fixed_point(f, z0, forward=forward, backward="onestep", tol=1e-10, max_iter=60)
    with pytest.warns(solvers.ConvergenceWarning, match="left 1 of 3 samples above tol.*1 hit NaN/Inf"):
        z, info = solvers.fixed_point(nan_after(3, f), z0, forward=forward, backward="onestep", tol=1e-10,
                                      max_iter=60, nonfinite="best")
    assert torch.isfinite(z).all()
    assert info.nonfinite.tolist() == [False, True, False] and info.converged.tolist() == [True, False, True]
    assert torch.allclose(z[[0, 2]], reference[[0, 2]], atol=1e-9)


def test_nonfinite_when_the_backward_mode_applies_the_map_again():
    f, z0, weight, _ = tanh_deq(batch=3)
    # tol=None, max_iter=4: the solve makes 4 evaluations, onestep's extra one at the solution is the 5th
    with pytest.raises(solvers.NonFiniteError, match=r"backward mode 'onestep' applied it at the solution, for "
                                                     r"batch sample\(s\) \[1\]"):
        solvers.fixed_point(nan_after(5, f), z0, backward="onestep", tol=None, max_iter=4)
    reference, _ = solvers.fixed_point(f, z0, backward="onestep", tol=None, max_iter=4)
    z, _ = solvers.fixed_point(nan_after(5, f), z0, backward="onestep", tol=None, max_iter=4, nonfinite="best")
    assert torch.isfinite(z).all() and torch.equal(z[[0, 2]].detach(), reference[[0, 2]].detach())
    assert (z[1] - reference[1]).abs().max() < 0.1  # the failing sample keeps its solution (before f)
    # ... but a NaN inside f's graph reaches the shared parameters' gradient in backward (0 * NaN): the
    # documented recovery is to skip that update (deqslots train --on-nonfinite skip)
    z.sum().backward()
    assert not torch.isfinite(weight.grad).all()


def test_nonfinite_initial_state_is_blamed_on_z0():
    z0 = torch.zeros(4, 3)
    z0[2, 1] = math.inf
    with pytest.raises(solvers.NonFiniteError, match=r"initial state z0 holds NaN/Inf in batch sample\(s\) \[2\]; "
                                                     r"start from finite values"):
        solvers.fixed_point(torch.cos, z0, backward="onestep")


# --- the map changes the state's structure --------------------------------------------------------------------

TUPLE = (torch.zeros(2, 3), torch.zeros(2, 1))
DICT = {"slots": torch.zeros(2, 3), "attn": torch.zeros(2, 1)}


@pytest.mark.parametrize("z0, f, error, pattern", [
    (TUPLE, lambda s: (s[0], s[1], s[1]), ValueError,
     r"evaluation 1 must have the same structure and shapes .*expected tuple\(0: \(2, 3\), 1: \(2, 1\)\), got "
     r"tuple\(0: \(2, 3\), 1: \(2, 1\), 2: \(2, 1\)\)"),
    (TUPLE, lambda s: list(s), ValueError, r"expected tuple\(.*got list\("),
    (DICT, lambda s: {"slots": s["slots"], "mask": s["attn"]}, ValueError,
     r"expected dict\(slots: \(2, 3\), attn: \(2, 1\)\), got dict\(slots: \(2, 3\), mask: \(2, 1\)\)"),
    (DICT, lambda s: s["slots"], ValueError, r"expected dict\(.*got Tensor\(2, 3\)"),
    (torch.zeros(2, 3), lambda z: z[:, :2], ValueError, r"expected Tensor\(2, 3\), got Tensor\(2, 2\).*a state "
                                                         r"shaped like its input"),
    (torch.zeros(2, 3), lambda z: None, TypeError, r"output at evaluation 1: a state must be a tensor .*got NoneType"),
    (torch.zeros(2, 3), lambda z: (z, (z, z)), TypeError, r"nested containers are not supported"),
    (TUPLE, lambda s: (s[0].double(), s[1].double()), TypeError,
     r"changed dtype/device from torch.float32 on cpu to torch.float64 on cpu; return the state in the dtype"),
])
def test_map_changing_the_state_structure_is_refused(z0, f, error, pattern):
    with pytest.raises(error, match=pattern):
        solvers.fixed_point(f, z0, backward="onestep", max_iter=3)


def test_nested_initial_state_is_refused():
    with pytest.raises(TypeError, match=r"part 1 is tuple \(nested containers are not supported: flatten them"):
        solvers.fixed_point(lambda s: s, (torch.zeros(2, 3), (torch.zeros(2, 1),)))


def test_structure_change_late_in_the_solve_names_the_evaluation():
    count = [0]

    def f(z):
        count[0] += 1
        return torch.cos(z) if count[0] < 4 else torch.cos(z)[:1]

    with pytest.raises(ValueError, match=r"the map's output at evaluation 4 must have the same structure"):
        solvers.fixed_point(f, torch.zeros(2, 3), forward="anderson", backward="onestep", tol=1e-12, max_iter=20)


# --- float32 and bfloat16 -----------------------------------------------------------------------------------

def slot_attention_map(dtype=torch.float32, seed=0):
    """One step of a randomly initialised slot attention on random inputs (a realistic, non-contractive map)."""
    torch.manual_seed(seed)
    sa = SlotAttention(in_dim=32, slot_dim=32, num_slots=5, iters=3).to(dtype)
    inputs = sa.norm_inputs(torch.randn(6, 48, 32, dtype=dtype))
    k, v = sa.to_k(inputs).detach(), sa.to_v(inputs).detach()
    return (lambda s: sa.step(s, k, v)), sa.initial_slots(6).detach(), sa


def solve(f, z0, forward, autocast=False, device="cpu"):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", solvers.ConvergenceWarning)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            return solvers.fixed_point(f, z0, forward=forward, backward="onestep", tol=None, max_iter=30,
                                       stop_mode="rel")


@pytest.mark.parametrize("forward", ["anderson", "broyden", solvers.Broyden(memory=8)])
def test_bf16_autocast_solves_stay_finite_and_reach_the_float32_residual(forward):
    f, z0, _ = slot_attention_map()
    z32, info32 = solve(f, z0, forward)
    z16, info16 = solve(f, z0, forward, autocast=True)
    assert z16.dtype == torch.float32 and torch.isfinite(z16).all() and torch.isfinite(info16.trace).all()
    assert not info16.nonfinite.any()
    # the map's own bfloat16 rounding sets the floor: the solve gets 10x below where it started, and
    # to within 0.05 of the float32 residual
    assert float(info16.residual.max()) < 0.1 * float(info16.trace[0].max())
    assert float(info16.residual.max()) < float(info32.residual.max()) + 0.05
    assert (z16 - z32).abs().max() < 0.5


@pytest.mark.parametrize("forward", ["anderson", "broyden"])
def test_bf16_state_solves_stay_finite(forward):
    f, z0, _ = slot_attention_map(torch.bfloat16)
    z, info = solve(f, z0, forward)
    assert z.dtype == torch.bfloat16 and torch.isfinite(z).all() and not info.nonfinite.any()
    assert float(info.residual.float().max()) < 0.1 * float(info.trace[0].float().max())


def test_bf16_autocast_gradients_are_finite_for_every_variant():
    f, z0, sa = slot_attention_map()
    for name in ("vanilla", "IN", "BN", "BB", "IB"):
        forward, backward = solvers.variant(name)
        if isinstance(backward, solvers.Implicit):  # as SlotAttention runs it: a few adjoint steps
            backward = solvers.Implicit(solver=backward.solver, tol=None, max_iter=5)
        sa.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z, _ = solvers.fixed_point(f, z0, forward=forward, backward=backward, tol=None, max_iter=5)
        z.float().pow(2).sum().backward()
        grads = [p.grad for p in sa.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name


# --- CUDA ------------------------------------------------------------------------------------------------------

@cuda
@pytest.mark.parametrize("forward", FORWARD)
def test_cuda_solve_matches_cpu(forward):
    f, z0, weight, x = tanh_deq(batch=4, requires_grad=False)
    z_cpu, _ = solvers.fixed_point(f, z0, forward=forward, backward="onestep", tol=1e-10, max_iter=100)
    weight, x = weight.cuda(), x.cuda()
    z_gpu, info = solvers.fixed_point(lambda z: torch.tanh(z @ weight.T + x), z0.cuda(), forward=forward,
                                      backward="onestep", tol=1e-10, max_iter=100)
    assert z_gpu.is_cuda and info.converged.all() and info.residual.is_cuda
    assert torch.allclose(z_gpu.cpu(), z_cpu, atol=1e-9)


@cuda
@pytest.mark.parametrize("adjoint", ["broyden", "gmres"])
def test_cuda_implicit_gradient_matches_cpu(adjoint):
    grads = []
    for device in ("cpu", "cuda"):
        f, z0, weight, x = tanh_deq(batch=4)
        w, xd = weight.detach().to(device).requires_grad_(), x.detach().to(device).requires_grad_()
        z, _ = solvers.fixed_point(lambda z, w=w, xd=xd: torch.tanh(z @ w.T + xd), z0.to(device), forward="broyden",
                                   backward=solvers.Implicit(solver=adjoint, tol=1e-10, max_iter=100), tol=1e-11,
                                   max_iter=100)
        z.pow(2).sum().backward()
        grads.append((w.grad.cpu(), xd.grad.cpu()))
    for cpu_grad, gpu_grad in zip(*grads):
        assert torch.allclose(cpu_grad, gpu_grad, atol=1e-8)


@cuda
@pytest.mark.parametrize("forward", ["anderson", "broyden"])
def test_cuda_bf16_autocast_solve_stays_finite(forward):
    f, z0, sa = slot_attention_map()
    sa.cuda()
    inputs = sa.norm_inputs(torch.randn(6, 48, 32, device="cuda"))
    k, v = sa.to_k(inputs).detach(), sa.to_v(inputs).detach()
    z, info = solve(lambda s: sa.step(s, k, v), z0.cuda(), forward, autocast=True, device="cuda")
    assert z.is_cuda and torch.isfinite(z).all() and not info.nonfinite.any()
    assert float(info.residual.max()) < 0.1 * float(info.trace[0].max())


@pytest.mark.parametrize("forward", ["iterate", "anderson", "broyden"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_a_map_that_writes_into_its_input_is_refused(forward, grad):
    # z.mul_(0.5).add_(1.0) returns z itself: f(z) - z is 0 and the solve "converged" at once to a wrong answer
    # (1.0; the fixed point is 2.0), overwriting the caller's z0. Now it is an error that says what to do.
    z0 = torch.zeros(2, 3)
    with torch.set_grad_enabled(grad), pytest.raises(RuntimeError, match="modified its input state in place"):
        solvers.fixed_point(lambda z: z.mul_(0.5).add_(1.0), z0, forward=forward, backward="onestep", tol=1e-6)
    with pytest.raises(RuntimeError, match="out-of-place ops"):  # tuple states: the parts are views of one tensor
        solvers.fixed_point(lambda s: (s[0].relu_(), 0.5 * s[1]), (torch.randn(2, 3), torch.randn(2, 2)),
                            forward=forward, backward="onestep", tol=1e-6)
    # in-place ops on tensors the map made itself are fine
    z, info = solvers.fixed_point(lambda z: torch.relu(z * 0.5 + 1.0).mul_(1.0), z0, forward=forward,
                                  backward="onestep", tol=1e-6, max_iter=100)
    assert bool(info.converged.all()) and torch.allclose(z, torch.full((2, 3), 2.0), atol=1e-5)


def test_empty_states_and_option_types():
    for z0 in (torch.zeros(0, 3), torch.zeros(2, 0), (torch.zeros(0, 2), torch.zeros(0, 1))):
        with pytest.raises(ValueError, match="the state is empty .* skip the call for an empty batch"):
            solvers.fixed_point(torch.cos, z0)
    # NumPy scalars are numbers: accepted where a Python number is
    z, info = solvers.fixed_point(torch.cos, torch.zeros(2, 1, dtype=torch.float64), tol=np.float32(1e-8),
                                  max_iter=np.int64(100), forward=solvers.Anderson(damping=np.float64(0.5)))
    assert bool(info.converged.all()) and z[0, 0].item() == pytest.approx(0.7390851332, abs=1e-7)
    bad = [(lambda: solvers.Iterate(damping="a"), TypeError, "Iterate damping must be a number; got 'a'"),
           (lambda: solvers.Anderson(damping="0.5"), TypeError, "Anderson damping must be a number"),
           (lambda: solvers.Anderson(ridge=math.inf), ValueError, r"Anderson ridge must be >= 0 \(finite\)"),
           (lambda: solvers.Anderson(ridge=-1.0), ValueError, "Anderson ridge must be >= 0"),
           (lambda: solvers.Phantom(damping=0.0), ValueError, r"Phantom damping must be in \(0, 1\]"),
           (lambda: solvers.Iterate(damping=True), TypeError, "Iterate damping must be a number")]
    for make, error, message in bad:
        with pytest.raises(error, match=message):
            make()


def test_a_dict_state_may_come_back_in_another_key_order():
    z0 = {"a": torch.zeros(2, 1, dtype=torch.float64), "b": torch.zeros(2, 3, dtype=torch.float64)}
    z, info = solvers.fixed_point(lambda s: {"b": 0.5 * s["b"] + 1.0, "a": torch.cos(s["a"])}, z0, tol=1e-10,
                                  max_iter=200, forward="anderson")
    assert list(z) == ["a", "b"] and bool(info.converged.all())
    assert torch.allclose(z["a"], torch.full((2, 1), 0.7390851332151607, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(z["b"], torch.full((2, 3), 2.0, dtype=torch.float64), atol=1e-9)
    with pytest.raises(ValueError, match="same structure and shapes"):  # other keys are still refused
        solvers.fixed_point(lambda s: {"b": s["b"], "c": s["a"]}, z0)
