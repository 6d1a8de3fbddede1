"""Converged samples stop costing compute: f runs on the samples still iterating, with the same results."""

import pytest
import torch

import solvers

D = torch.float64


def _mixed(batch=8, dim=10, seed=0):
    """tanh DEQ whose samples contract at very different rates (half fast, half slow)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=D)
    w = (w / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    x = torch.randn(batch, dim, generator=gen, dtype=D).requires_grad_()
    scale = torch.tensor([0.01] * (batch // 2) + [0.95] * (batch - batch // 2), dtype=D).unsqueeze(1)
    return w, x, scale


class Rows:
    """Wraps a map and records how many samples each call covers."""

    def __init__(self, f):
        self.f, self.sizes = f, []

    def __call__(self, z, *args):
        self.sizes.append(z.shape[0])
        return self.f(z, *args)


@pytest.mark.parametrize("forward", ["iterate", "anderson", "broyden"])
@pytest.mark.parametrize("backward", ["implicit", "onestep", "unrolled", "phantom"])
def test_same_results_and_gradients_as_without_compaction(forward, backward):
    w, x, scale = _mixed()
    results = {}
    for compact in (False, True):
        f = Rows(lambda z, x, s: torch.tanh(s * (z @ w.T) + x))
        z, info = solvers.fixed_point(f, torch.zeros_like(x), args=(x, scale), forward=forward, backward=backward,
                                      tol=1e-9, max_iter=100, compact=compact)
        assert info.converged.all()
        z.pow(2).sum().backward()
        results[compact] = (z.detach(), w.grad.clone(), x.grad.clone(), info, f.sizes)
        w.grad = x.grad = None
    (z0, w0, x0, i0, s0), (z1, w1, x1, i1, s1) = results[False], results[True]
    assert torch.allclose(z0, z1, atol=1e-6, rtol=0) and torch.allclose(w0, w1, atol=1e-6, rtol=0)
    assert torch.allclose(x0, x1, atol=1e-6, rtol=0)
    assert i0.nfe == i1.nfe and torch.equal(i0.converged, i1.converged)
    assert torch.allclose(i0.residual, i1.residual, atol=1e-12, rtol=1e-6)
    # the fast half converged in a few steps; afterwards only the slow half is evaluated
    forward0, forward1 = s0[:i0.nfe], s1[:i1.nfe]  # the backward modes' own evaluations are full-batch
    assert min(forward1) <= 4 and sum(forward1) < 0.75 * sum(forward0), (s0, s1)


def test_structured_state_kwargs_and_decorator_default():
    w, x, scale = _mixed()
    sizes = []

    @solvers.implicit(forward="anderson", backward="implicit", tol=1e-10, max_iter=100, return_info=True)
    def step(s, x, *, scale):
        sizes.append(s["a"].shape[0])
        return {"a": torch.tanh(scale * (s["b"] @ w.T) + x), "b": 0.5 * s["a"]}

    z0 = {"a": torch.zeros_like(x), "b": torch.zeros_like(x)}
    z, info = step(z0, x, scale=scale)
    assert min(sizes) < x.shape[0]  # compaction is on by default in the decorator
    n_compact = sum(sizes)
    sizes.clear()
    ref, info_ref = step.replace(compact=False)(z0, x, scale=scale)
    assert set(sizes) == {x.shape[0]} and sum(sizes) > n_compact
    assert torch.allclose(z["a"], ref["a"], atol=1e-9) and torch.allclose(z["b"], ref["b"], atol=1e-9)
    assert info.nfe == info_ref.nfe


def test_dropout_rows_follow_compaction():
    w, x, scale = _mixed()
    drop = solvers.SolveDropout(0.3)
    out = {}
    for compact in (False, True):
        torch.manual_seed(0)
        z, _ = solvers.fixed_point(lambda z, x, s: torch.tanh(s * (drop(z) @ w.T) + x), torch.zeros_like(x),
                                   args=(x, scale), forward="anderson", backward="onestep", tol=1e-10, max_iter=100,
                                   compact=compact)
        out[compact] = z.detach()
    assert torch.allclose(out[False], out[True], atol=1e-9)


def test_non_batch_arguments_pass_unsliced_and_compact_without_args():
    w, x, scale = _mixed()
    z, info = solvers.fixed_point(lambda z, w, s: torch.tanh(s * (z @ w.T) + 0.1), torch.zeros_like(x),
                                  args=(w, 0.5 * scale), tol=1e-10, max_iter=100)  # w is [10, 10], B = 8
    assert info.converged.all()
    z2, _ = solvers.fixed_point(torch.cos, torch.zeros(4, 3, dtype=D), compact=True, tol=1e-10, max_iter=200)
    assert torch.allclose(z2, torch.full_like(z2, 0.7390851332151607))


def test_closing_over_a_batch_tensor_with_compaction_says_what_to_do():
    w, x, scale = _mixed()
    with pytest.raises((RuntimeError, ValueError), match="through args"):
        solvers.fixed_point(lambda z: torch.tanh(scale * (z @ w.T) + x), torch.zeros_like(x), compact=True,
                            tol=1e-9, max_iter=100)
    with pytest.raises(TypeError, match="compact must be True or False"):
        solvers.fixed_point(torch.cos, torch.zeros(1, 1), compact="yes")
    with pytest.raises(TypeError, match="args must be a tuple"):
        solvers.fixed_point(torch.cos, torch.zeros(1, 1), args=torch.zeros(1, 1))


@pytest.mark.parametrize("forward", [solvers.Iterate(keep="last"), solvers.Iterate(damping=0.7),
                                     solvers.Broyden(line_search=True), solvers.Broyden(memory=3),
                                     solvers.Anderson(damping=0.5, memory=2)])
def test_solver_options_states_and_trace_match_without_compaction(forward):
    w, x, scale = _mixed()
    out = {}
    for compact in (False, True):
        z, info = solvers.fixed_point(lambda z, x, s: torch.tanh(s * (z @ w.T) + x), torch.zeros_like(x),
                                      args=(x, scale), forward=forward, backward="onestep", tol=1e-8, max_iter=80,
                                      compact=compact, states=(2, 10, 30))
        out[compact] = (z.detach(), info)
    (z0, i0), (z1, i1) = out[False], out[True]
    assert torch.allclose(z0, z1, atol=1e-9) and i0.nfe == i1.nfe and torch.equal(i0.converged, i1.converged)
    for a, b in zip(i0.states, i1.states):
        assert torch.allclose(a, b, atol=1e-9)
    assert i0.trace.shape == i1.trace.shape
    # the whole trace agrees: after a sample stopped, its column repeats its last residual with compaction
    # (it is no longer evaluated) and without (it is evaluated where it stopped; Broyden used to go back to the
    # iterate before its last step and record that one's larger residual)
    assert torch.allclose(i0.trace, i1.trace, rtol=1e-6, atol=1e-12)


def test_nonfinite_best_with_compaction():
    w, x, scale = _mixed()
    poison = torch.zeros(x.shape[0], 1, dtype=D)
    poison[5] = 1.0  # sample 5 returns NaN once its state moved away from zero

    def f(z, x, s, poison):
        out = torch.tanh(s * (z @ w.T) + x)
        return torch.where((poison > 0) & (z.abs().sum(1, keepdim=True) > 0), torch.nan, out)

    out = {}
    for compact in (False, True):
        z, info = solvers.fixed_point(f, torch.zeros_like(x), args=(x, scale, poison), forward="anderson",
                                      backward="onestep", tol=1e-9, max_iter=100, nonfinite="best",
                                      compact=compact, on_fail="ignore")
        out[compact] = (z.detach(), info)
    (z0, i0), (z1, i1) = out[False], out[True]
    assert torch.equal(i0.nonfinite, i1.nonfinite) and bool(i1.nonfinite[5]) and int(i1.nonfinite.sum()) == 1
    ok = ~i0.nonfinite
    assert torch.allclose(z0[ok], z1[ok], atol=1e-9) and torch.equal(i0.converged, i1.converged)
