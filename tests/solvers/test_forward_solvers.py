"""Forward solvers: known answers, per-sample semantics, batched = solo, stop modes, structures."""

import math

import pytest
import torch

import solvers
from solvers.forward._progress import residual_norm

from .problems import tanh_deq

SOLVERS = [solvers.Iterate(), solvers.Anderson(), solvers.Broyden(), solvers.Broyden(line_search=True)]
IDS = ["iterate", "anderson", "broyden", "broyden-ls"]


def linear_problem(batch=4, dim=6, rho=0.7, seed=1):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = rho * a / torch.linalg.matrix_norm(a, ord=2)
    b = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(dim, dtype=torch.float64) - a, b.T).T
    return (lambda z: z @ a.T + b), exact


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_linear_map_reaches_closed_form(solver):
    f, exact = linear_problem()
    z, info = solvers.fixed_point(f, torch.zeros_like(exact), forward=solver, backward="onestep",
                                  tol=1e-12, max_iter=300)
    assert info.converged.all()
    # onestep returns f(z*), one more contraction of the error
    assert torch.allclose(z, exact, atol=1e-11)


def test_cos_fixed_point_and_anderson_acceleration():
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    _, it = solvers.fixed_point(torch.cos, z0, forward="iterate", backward="onestep", tol=1e-10, max_iter=500)
    z, an = solvers.fixed_point(torch.cos, z0, forward="anderson", backward="onestep", tol=1e-10, max_iter=500)
    assert abs(z.item() - 0.7390851332151607) < 1e-9
    # Walker & Ni: plain iteration needs many times more evaluations than Anderson on x = cos x
    assert it.nfe > 50 and an.nfe <= 15


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_batched_equals_solo(solver):
    contraction = torch.tensor([0.3, 0.95, 0.6, 0.9, 0.1])
    f_batch, z0, w, x = tanh_deq(batch=5, dim=12, contraction=contraction, requires_grad=False)
    with torch.no_grad():
        z_b, info_b = solver.solve(f_batch, z0, 1e-9, 200)
        for i in range(5):
            def f_i(z, i=i):
                return torch.tanh(contraction[i] * (z @ w.T) + x[i:i + 1])
            z_i, info_i = solver.solve(f_i, z0[i:i + 1], 1e-9, 200)
            assert torch.allclose(z_b[i:i + 1], z_i, atol=1e-12, rtol=0)
            assert info_b.trace[: info_i.steps, i].tolist() == pytest.approx(info_i.trace[:, 0].tolist(), abs=1e-12)
    # the easiest sample needs far fewer steps than the hardest: per-sample stopping
    first_converged = (info_b.trace <= 1e-9).float().argmax(dim=0)
    assert first_converged[4] < first_converged[1]


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_converged_sample_stops_changing(solver):
    contraction = torch.tensor([0.1, 0.95])
    f, z0, _, _ = tanh_deq(batch=2, dim=8, contraction=contraction, requires_grad=False)
    seen = []

    def spy(z):
        seen.append(z[0].clone())
        return f(z)

    with torch.no_grad():
        _, info = solver.solve(spy, z0, 1e-8, 200)
    steps0 = int((info.trace[:, 0] <= 1e-8).float().argmax())
    later = seen[steps0 + 1:]
    assert len(later) > 0
    for z in later:
        assert torch.equal(z, seen[steps0 + 1])


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_returned_residual_is_the_lowest_and_matches(solver):
    f, z0, _, _ = tanh_deq(batch=4, dim=8, contraction=0.99, requires_grad=False)
    with torch.no_grad():
        z, info = solver.solve(f, z0, 1e-14, 12)
    assert torch.allclose(info.residual, info.trace.min(dim=0).values)
    if not isinstance(solver, solvers.Iterate):
        # the returned iterate is the point whose residual is reported
        assert torch.allclose(residual_norm(z, f(z), "abs"), info.residual, atol=1e-12)


def test_tol_none_runs_exactly_max_iter_and_equals_loop():
    f, z0, _, _ = tanh_deq(requires_grad=False)
    z, info = solvers.fixed_point(f, z0, forward=solvers.Iterate(keep="last"), backward="unrolled",
                                  tol=None, max_iter=7)
    loop = z0
    for _ in range(7):
        loop = f(loop)
    assert info.nfe == 7 and info.steps == 7 and info.trace.shape == (7, z0.shape[0])
    assert torch.equal(z, loop)
    assert info.converged.all()
    for name in ("anderson", "broyden"):
        _, info = solvers.fixed_point(f, z0, forward=name, backward="onestep", tol=None, max_iter=9)
        assert info.nfe == 9


def test_damped_iteration():
    f, exact = linear_problem(rho=0.5)
    z, info = solvers.fixed_point(f, torch.zeros_like(exact), forward=solvers.Iterate(damping=0.5),
                                  backward="onestep", tol=1e-12, max_iter=500)
    assert torch.allclose(z, exact, atol=1e-11)


def test_stop_modes_abs_and_rel():
    scale = 1000.0
    f = lambda z: 0.5 * z + scale  # noqa: E731  fixed point 2 * scale
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    _, abs_info = solvers.fixed_point(f, z0, forward="iterate", backward="onestep", tol=1e-3, max_iter=200)
    _, rel_info = solvers.fixed_point(f, z0, forward="iterate", backward="onestep", tol=1e-3, max_iter=200,
                                      stop_mode="rel")
    assert rel_info.stop_mode == "rel" and rel_info.nfe < abs_info.nfe
    assert (abs_info.residual <= 1e-3).all()
    # rel residual = ||f(z)-z|| / ||f(z)||, as torchdeq defines it
    z = torch.full((1, 3), 1000.0, dtype=torch.float64)
    expected = 500.0 * math.sqrt(3) / (1500.0 * math.sqrt(3) + 1e-9)
    assert residual_norm(z, f(z), "rel").item() == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["tuple", "list", "dict"])
def test_structured_states(kind):
    a = torch.full((3, 2), 0.5, dtype=torch.float64)

    def f(state):
        if kind == "dict":
            u, v = state["u"], state["v"]
        else:
            u, v = state
        new_u, new_v = 0.5 * v + 1.0, 0.25 * u.sum(dim=1, keepdim=True).expand(-1, 4) * 0.1
        if kind == "dict":
            return {"u": new_u[:, :2], "v": new_v}
        out = (new_u[:, :2], new_v)
        return out if kind == "tuple" else list(out)

    b = torch.zeros(3, 4, dtype=torch.float64)
    z0 = {"u": a, "v": b} if kind == "dict" else (a, b)
    if kind == "list":
        z0 = list(z0)
    z, info = solvers.fixed_point(f, z0, forward="broyden", backward="implicit", tol=1e-12, max_iter=50)
    assert info.converged.all()
    assert type(z) is type(z0)
    out = f(z)
    parts = (z["u"], z["v"], out["u"], out["v"]) if kind == "dict" else (z[0], z[1], out[0], out[1])
    assert torch.allclose(parts[0], parts[2], atol=1e-10) and torch.allclose(parts[1], parts[3], atol=1e-10)


def test_broyden_float32_stable_on_hard_problem():
    f, z0, _, _ = tanh_deq(batch=16, dim=128, contraction=0.99, dtype=torch.float32, requires_grad=False)
    z, info = solvers.fixed_point(f, z0, forward="broyden", backward="onestep", tol=1e-4, max_iter=60)
    assert torch.isfinite(z).all()
    assert info.converged.all()
    _, it = solvers.fixed_point(f, z0, forward="iterate", backward="onestep", tol=1e-4, max_iter=60, on_fail="ignore")
    assert info.nfe < it.nfe


def test_broyden_solves_non_contractive_map_that_iteration_cannot():
    # f(z) = 2 - 1.5 z has fixed point 0.8 but |f'| = 1.5: plain iteration diverges.
    f = lambda z: 2.0 - 1.5 * z  # noqa: E731
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    z, info = solvers.fixed_point(f, z0, forward="broyden", backward="onestep", tol=1e-10, max_iter=20)
    assert info.converged.all() and info.nfe <= 4
    with pytest.warns(solvers.ConvergenceWarning):
        solvers.fixed_point(f, z0, forward="iterate", backward="onestep", tol=1e-10, max_iter=20)


def test_anderson_does_not_crash_on_singular_system():
    # f(z) = z + 1 has no fixed point: every residual difference is zero, the LS system is singular.
    f = lambda z: z + 1.0  # noqa: E731
    z0 = torch.zeros(3, 4)
    for ridge in (0.0, 1e-4):
        with pytest.warns(solvers.ConvergenceWarning):
            z, info = solvers.fixed_point(f, z0, forward=solvers.Anderson(ridge=ridge), backward="onestep",
                                          tol=1e-6, max_iter=20)
        assert torch.isfinite(z).all() and not info.converged.any()
    # constant map: converges at once, then only zero differences
    z, info = solvers.fixed_point(lambda z: torch.ones_like(z), z0, forward=solvers.Anderson(ridge=0.0),
                                  backward="onestep", tol=1e-6, max_iter=20)
    assert info.converged.all() and torch.equal(z, torch.ones_like(z))


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("solver", [solvers.Anderson(), solvers.Anderson(ridge=0.0),
                                    solvers.Anderson(memory=3, damping=0.5)], ids=["default", "ridge0", "damped"])
def test_anderson_host_small_system_equals_torch_path(solver, dtype, atol):
    # Without autograd on the CPU the m x m systems are solved in NumPy; under autograd (backward="unrolled")
    # in torch. Same iterates, same stopping, on a batch whose samples converge at different speeds.
    torch.manual_seed(0)
    batch, dim = 16, 24
    w = (torch.randn(dim, dim) * 0.9 / dim ** 0.5).to(dtype)
    x = torch.randn(batch, dim, dtype=dtype)
    scale = torch.linspace(0.2, 1.0, batch, dtype=dtype).unsqueeze(1)
    f = lambda z: torch.tanh(scale * (z @ w) + x)  # noqa: E731
    z0 = torch.zeros(batch, dim, dtype=dtype)
    with torch.no_grad():
        # unrolled under no_grad: the solver's own iterate, without the extra application of the other modes
        z_host, info_host = solvers.fixed_point(f, z0, forward=solver, backward="unrolled", tol=1e-7, max_iter=40)
    z_torch, info_torch = solvers.fixed_point(f, z0.clone().requires_grad_(), forward=solver, backward="unrolled",
                                              tol=1e-7, max_iter=40)
    assert info_host.nfe == info_torch.nfe and torch.equal(info_host.converged, info_torch.converged)
    assert torch.allclose(z_host, z_torch.detach(), atol=atol, rtol=0)


@pytest.mark.filterwarnings("ignore::solvers.ConvergenceWarning")  # the expansive map does not converge
@pytest.mark.parametrize("gain", [1.0, 3.0], ids=["contraction", "expansive"])
@pytest.mark.parametrize("solver", [solvers.Broyden(), solvers.Broyden(memory=4)], ids=["full", "memory4"])
def test_broyden_host_tests_equal_torch_path(solver, gain):
    # Without autograd on the CPU the blow-up and usable-update tests run in NumPy and the common step skips
    # the masks; under autograd (backward="unrolled") everything stays in torch. Same iterates and stopping,
    # also where the map is not a contraction (restarts, unusable updates).
    torch.manual_seed(0)
    batch, dim = 16, 24
    w = torch.randn(dim, dim, dtype=torch.float64) * 0.9 / dim ** 0.5
    x = torch.randn(batch, dim, dtype=torch.float64)
    scale = gain * torch.linspace(0.2, 1.0, batch, dtype=torch.float64).unsqueeze(1)
    f = lambda z: torch.tanh(scale * (z @ w) + x)  # noqa: E731
    z0 = torch.zeros(batch, dim, dtype=torch.float64)
    with torch.no_grad():
        z_host, info_host = solvers.fixed_point(f, z0, forward=solver, backward="unrolled", tol=1e-9, max_iter=40,
                                                nonfinite="best")
    z_torch, info_torch = solvers.fixed_point(f, z0.clone().requires_grad_(), forward=solver, backward="unrolled",
                                              tol=1e-9, max_iter=40, nonfinite="best")
    assert info_host.nfe == info_torch.nfe and torch.equal(info_host.converged, info_torch.converged)
    assert torch.allclose(z_host, z_torch.detach(), atol=1e-12, rtol=0)


def test_anderson_memory_one_and_damping():
    f, exact = linear_problem(rho=0.9)
    for solver in (solvers.Anderson(memory=1), solvers.Anderson(memory=3, damping=0.7)):
        z, info = solvers.fixed_point(f, torch.zeros_like(exact), forward=solver, backward="onestep",
                                      tol=1e-11, max_iter=400)
        assert info.converged.all() and torch.allclose(z, exact, atol=1e-9)


def test_anderson_linear_matches_gmres_like_convergence():
    # untruncated Anderson on a linear map of dimension d terminates in about d + 1 steps
    f, exact = linear_problem(batch=2, dim=5, rho=0.95)
    z, info = solvers.fixed_point(f, torch.zeros_like(exact), forward=solvers.Anderson(memory=10, ridge=0.0),
                                  backward="onestep", tol=1e-9, max_iter=100)
    assert info.converged.all() and info.nfe <= 8


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_large_state_per_sample_freezing_path(solver):
    # >= 65536 elements select frozen rows with index_copy instead of where: same answers as solo
    contraction = torch.tensor([0.2, 0.9, 0.5, 0.95])
    dim = 20000
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, dim, generator=gen, dtype=torch.float64)

    def f(z):
        return torch.tanh(contraction[:, None] * torch.roll(z, 1, dims=1) + x)

    with torch.no_grad():
        z_b, info = solver.solve(f, torch.zeros(4, dim, dtype=torch.float64), 1e-9, 200)
        assert info.converged.all()
        for i in range(4):
            z_i, _ = solver.solve(lambda z, i=i: torch.tanh(contraction[i] * torch.roll(z, 1, dims=1) + x[i:i + 1]),
                                  torch.zeros(1, dim, dtype=torch.float64), 1e-9, 200)
            assert torch.allclose(z_b[i:i + 1], z_i, atol=1e-12, rtol=0)


def test_unrolled_anderson_past_convergence_has_finite_gradients():
    f, z0, w, x = tanh_deq(batch=3, dim=6, contraction=0.3)
    z, _ = solvers.fixed_point(f, z0, forward="anderson", backward="unrolled", tol=None, max_iter=60)
    z.sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(x.grad).all()


def test_broyden_line_search_ignores_stopped_samples():
    contraction = torch.tensor([0.1, 0.1, 0.97])
    f, z0, _, _ = tanh_deq(batch=3, dim=10, contraction=contraction, requires_grad=False)
    with torch.no_grad():
        _, plain = solvers.Broyden().solve(f, z0, 1e-9, 100)
        _, searched = solvers.Broyden(line_search=True).solve(f, z0, 1e-9, 100)
    assert searched.converged.all()
    # stopped samples must not trigger backtracking evaluations
    assert searched.nfe <= plain.nfe + 3


def test_broyden_float32_restarts_instead_of_nan_on_non_contractive_slot_attention_step():
    from benchmarks.problems import slot_attention_map

    f, z0, _ = slot_attention_map(32, torch.float32)
    with torch.no_grad():
        z, info = solvers.fixed_point(f, z0, forward="broyden", backward="onestep", tol=1e-4, max_iter=100,
                                      on_fail="ignore")
    # before the restart guard this raised NonFiniteError at step 77 (a bounded memory of 30 also
    # left 28 of 32 samples unconverged); torchdeq's Broyden converges 31 of 32 here
    assert torch.isfinite(z).all() and not info.nonfinite.any()
    assert int(info.converged.sum()) >= 30
