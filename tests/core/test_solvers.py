"""Tests of core.solvers against exact roots (problems.py), with the stats contract checked on every solve."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
import torch

import core
import core.solvers
from core.bench import problems as P
from core.solvers.base import REL_EPS
from core.solvers.linear import JacobianAt, gmres, solve_shifted

METHODS = core.METHODS
#: dtype -> (solver tol, accepted relative error of the root)
ACCURACY = {torch.float64: (1e-11, 1e-8), torch.float32: (1e-6, 1e-4)}


def rel_error(z: torch.Tensor, root: torch.Tensor) -> float:
    """Worst sample's ||z - z*|| / ||z*||, computed in float64."""
    diff = (z.double() - root.double()).reshape(z.shape[0], -1).norm(dim=1)
    return float((diff / root.double().reshape(z.shape[0], -1).norm(dim=1)).max())


def check_stats(f, z0: torch.Tensor, z: torch.Tensor, stats: core.SolverStats, method: str) -> None:
    """The contract every solve must keep, whatever its status."""
    bsz = z0.shape[0]
    assert z.shape == z0.shape and z.dtype == z0.dtype and z.device == z0.device
    assert not z.requires_grad
    assert stats.method == method
    assert stats.abs_residual.shape == (bsz,) and stats.rel_residual.shape == (bsz,)
    k = len(stats.trace_nfe)
    assert k >= 1
    assert stats.trace_abs.shape == (k, bsz) and stats.trace_rel.shape == (k, bsz)
    assert stats.trace_nfe.dtype == torch.long
    assert bool((torch.diff(stats.trace_nfe) > 0).all()), stats.trace_nfe
    assert 1 <= int(stats.trace_nfe[0]) and int(stats.trace_nfe[-1]) <= stats.nfe
    assert stats.n_steps >= 1 and stats.seconds >= 0
    # Best-iterate bookkeeping: the reported residual is the smallest one the trace saw, per sample (a
    # diverged solve may have seen smaller ones on states that ran away, which are never the answer).
    if stats.status is core.Status.DIVERGED:
        assert bool((stats.residual.cpu() >= stats.trace.min(dim=0).values).all())
    else:
        torch.testing.assert_close(stats.residual.cpu(), stats.trace.min(dim=0).values, rtol=0, atol=0)
    # ... and it is the residual of the returned z, recomputed here.
    with torch.no_grad():
        fz = f(z)
    abs_res = (fz - z).reshape(bsz, -1).norm(dim=1)
    rel_res = abs_res / (fz.reshape(bsz, -1).norm(dim=1) + REL_EPS)
    atol = 100 * torch.finfo(z.dtype).eps * (1 + float(z.abs().max()))
    torch.testing.assert_close(stats.abs_residual, abs_res, rtol=1e-5, atol=atol)
    torch.testing.assert_close(stats.rel_residual, rel_res, rtol=1e-5, atol=atol)
    if stats.status is core.Status.CONVERGED:
        assert float(stats.residual.max()) <= stats.tol
    else:
        assert float(stats.residual.max()) > stats.tol
    if method != "homotopy":
        assert stats.path is None
    json.dumps(stats.summary())  # JSON-ready


def solve_checked(f, z0, method, **options):
    z, stats = core.solve(f, z0, method=method, **options)
    check_stats(f, z0, z, stats, method)
    return z, stats


class Counter:
    """f with a call counter of its own, independent of the solver's."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, z):
        self.calls += 1
        return self.f(z)


# ----------------------------------------------------------------------------------------------
# Every method on closed-form problems


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", ["cos", "cos_1d", "sqrt2", "linear", "multidim", "tanh"])
@pytest.mark.parametrize("method", METHODS)
def test_exact_root(method, name, dtype):
    p = P.make(name, dtype=dtype)
    tol, accuracy = ACCURACY[dtype]
    z, stats = solve_checked(p.f, p.z0, method, tol=tol, max_iter=200)
    assert stats.status is core.Status.CONVERGED, stats.summary()
    assert rel_error(z, p.root) <= accuracy, (rel_error(z, p.root), stats.summary())


def test_problem_roots_are_distinct_per_sample():
    # Guards the batch tests: a batch of identical samples would hide per-sample bookkeeping bugs.
    for name in ["linear", "multidim", "tanh"]:
        root = P.make(name).root
        assert float((root[0] - root[1]).abs().max()) > 0.1


def test_cos_known_value_and_1d_shape():
    z, stats = solve_checked(torch.cos, torch.zeros(5), "broyden", tol=1e-12)
    assert z.shape == (5,)
    assert torch.allclose(z, torch.full((5,), 0.7390851332151607), atol=1e-6)  # float32 default dtype
    assert stats.converged


def test_different_start_points_reach_same_root():
    # Regression: samples that hit residual 0 early and then wobbled at round-off (2e-16 > 1e4 * 0)
    # made Anderson report the whole batch 'diverged'.
    p = P.make("sqrt2", batch=4)
    z0 = torch.tensor([[0.5], [1.0], [3.0], [10.0]], dtype=torch.float64)
    for method in METHODS:
        z, stats = solve_checked(p.f, z0, method, tol=1e-12, max_iter=100)
        assert stats.converged, (method, stats.summary())
        assert rel_error(z, p.root) <= 1e-10, method


def test_sample_already_at_its_root_stays_there():
    # Sample 0 starts exactly at its root: zero residual, zero right-hand sides in every linear solve.
    shift = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    root = torch.tensor([[0.0, 0.0], [2.0, -2.0]], dtype=torch.float64)
    z0 = torch.zeros(2, 2, dtype=torch.float64)
    cases = [(m, {}) for m in METHODS] + [
        ("homotopy", {"linear_solver": "gmres"}),
        ("homotopy", {"linear_solver": "gmres", "homotopy": "newton", "ode_method": "dopri5"}),
    ]
    for method, options in cases:
        z, stats = solve_checked(lambda z: 0.5 * z + shift, z0, method, tol=1e-12, max_iter=100, **options)
        assert stats.converged, (method, options, stats.summary())
        assert torch.equal(z[0], root[0]) and float(stats.abs_residual[0]) == 0.0
        assert float((z[1] - root[1]).abs().max()) <= 1e-10


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_device_and_dtype_are_kept(device, dtype):
    tol, accuracy = ACCURACY[dtype]
    cases = [(m, {}) for m in METHODS] + [
        ("homotopy", {"linear_solver": "gmres", "jacobian": "jvp"}),
        ("homotopy", {"homotopy": "newton", "ode_method": "dopri5"}),
    ]
    for name in ["multidim", "tanh"]:
        p = P.make(name, dtype=dtype, device=device)
        for method, options in cases:
            z, stats = solve_checked(p.f, p.z0, method, tol=tol, max_iter=200, **options)
            assert stats.converged and rel_error(z, p.root) <= accuracy, (name, method, options, stats.summary())
            assert stats.abs_residual.device == p.z0.device
            if stats.path is not None:
                assert stats.path.states.device == p.z0.device and stats.path.states.dtype == dtype


def test_stop_mode_abs():
    p = P.linear(scale=1e3)
    for method in METHODS:
        z, stats = solve_checked(p.f, p.z0, method, tol=1e-6, stop_mode="abs", max_iter=200)
        assert stats.converged and stats.stop_mode == "abs"
        assert float(stats.abs_residual.max()) <= 1e-6
        assert float((z - p.root).abs().max()) <= 1e-5


# ----------------------------------------------------------------------------------------------
# Non-contractive maps, and homotopy vs Broyden


def test_fixed_point_diverges_on_noncontractive_map():
    p = P.make("noncontractive")
    z, stats = solve_checked(p.f, p.z0, "fixed_point", max_iter=500)
    assert stats.status is core.Status.DIVERGED
    assert stats.n_steps < 50 and stats.nfe < 50  # divergence_ratio 1e4 at growth 2x per step: ~15 steps
    with pytest.raises(core.SolverError) as info:
        core.solve(p.f, p.z0, method="fixed_point", max_iter=500, throw=True)
    assert "beta" in str(info.value) and info.value.stats.status is core.Status.DIVERGED


def test_damped_fixed_point_converges_on_noncontractive_map():
    # |1 - β + βμ| < 1 for μ in [-2, -1.5] when β = 0.5.
    p = P.make("noncontractive")
    z, stats = solve_checked(p.f, p.z0, "fixed_point", beta=0.5, tol=1e-12, max_iter=200)
    assert stats.converged and rel_error(z, p.root) <= 1e-10


@pytest.mark.parametrize("name", ["noncontractive", "rotation", "linear", "multidim"])
def test_broyden_and_anderson_accelerate(name):
    # Where plain iteration diverges, the quasi-Newton methods still converge, with default settings.
    p = P.make(name)
    for method in ["broyden", "anderson"]:
        z, stats = solve_checked(p.f, p.z0, method, tol=1e-10, max_iter=200)
        assert stats.converged and rel_error(z, p.root) <= 1e-8, (method, stats.summary())


@pytest.mark.parametrize("name", ["noncontractive", "rotation", "linear"])
def test_finite_termination_on_linear_maps(name):
    # On z = A z + b in exact arithmetic, Broyden's good method ends within 2N steps (Gay 1979) and
    # unregularised Anderson with N differences is GMRES (Walker & Ni 2011): N + 1 steps.
    p = P.make(name)
    n = p.z0[0].numel()
    z, stats = solve_checked(p.f, p.z0, "broyden", tol=1e-10, max_iter=200)
    assert stats.converged and stats.nfe <= 2 * n + 2, stats.nfe
    z, stats = solve_checked(p.f, p.z0, "anderson", window=n + 1, reg=0.0, tol=1e-10, max_iter=200)
    assert stats.converged and stats.nfe <= n + 3, stats.nfe
    assert rel_error(z, p.root) <= 1e-8


def test_anderson_window_one_is_damped_fixed_point():
    p = P.make("noncontractive")
    za, sa = solve_checked(p.f, p.z0, "anderson", window=1, beta=0.5, tol=1e-10, max_iter=200)
    zf, sf = solve_checked(p.f, p.z0, "fixed_point", beta=0.5, tol=1e-10, max_iter=200)
    assert sa.nfe == sf.nfe
    torch.testing.assert_close(za, zf, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sa.trace_abs, sf.trace_abs, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("ode_method", ["rk4", "dopri5"])
@pytest.mark.parametrize("linear_solver", ["dense", "gmres"])
@pytest.mark.parametrize("homotopy", ["fixed_point", "newton"])
@pytest.mark.parametrize("name", ["noncontractive", "rotation"])
def test_homotopy_solves_noncontractive_map(name, homotopy, linear_solver, ode_method):
    p = P.make(name)
    z, stats = solve_checked(
        p.f, p.z0, "homotopy", homotopy=homotopy, linear_solver=linear_solver, ode_method=ode_method, tol=1e-12
    )
    assert stats.converged, stats.summary()
    assert rel_error(z, p.root) <= 1e-10
    assert stats.path is not None and float(stats.path.lambdas[-1]) == 1.0


@pytest.mark.parametrize("name", ["cos", "sqrt2", "half_cos", "linear", "multidim", "tanh"])
def test_homotopy_endpoint_equals_broyden_root(name):
    p = P.make(name)
    zb, sb = solve_checked(p.f, p.z0, "broyden", tol=1e-12, max_iter=100)
    zh, sh = solve_checked(p.f, p.z0, "homotopy", tol=1e-12)
    assert sb.converged and sh.converged
    assert rel_error(zh, zb) <= 1e-10
    assert rel_error(zh, p.root) <= 1e-10


def test_homotopy_gmres_with_restarts_on_larger_state():
    # N = 18 > krylov_dim: GMRES must restart to reach its tolerance.
    p = P.make("multidim")
    z, stats = solve_checked(
        p.f, p.z0, "homotopy", linear_solver="gmres", krylov_dim=4, krylov_restarts=20, krylov_tol=1e-10, tol=1e-12
    )
    assert stats.converged and rel_error(z, p.root) <= 1e-10


# ----------------------------------------------------------------------------------------------
# Convergence order of the fixed-step integrators along the homotopy path


def fitted_order(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(1 / n_steps)."""
    x = torch.tensor([math.log(1.0 / n) for n in steps], dtype=torch.float64)
    y = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


@pytest.mark.parametrize("ode_method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.parametrize("homotopy", ["fixed_point", "newton"])
@pytest.mark.parametrize("name", ["half_cos", "tanh"])
def test_fixed_step_convergence_order(name, homotopy, ode_method, order):
    # A batch of 2 keeps these 48 solves quick on a loaded 2-core CPU.
    p = P.make(name, batch=2)
    steps = [4, 8, 16, 32]
    errors = []
    for n in steps:
        z, stats = solve_checked(
            p.f, p.z0, "homotopy", homotopy=homotopy, ode_method=ode_method, n_steps=n, corrector="none"
        )
        assert stats.path is not None and stats.path.states.shape[0] == n + 1
        assert stats.nfe == n * {"euler": 1, "midpoint": 2, "rk4": 4}[ode_method] + 1 + (homotopy == "newton")
        errors.append(rel_error(stats.path.states[-1], p.root))  # the integrator's endpoint z(1)
    assert errors[-1] > 1e-13, "rounding would dominate; use fewer steps"
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert abs(fitted_order(steps, errors) - order) <= 0.4, errors


def test_step_size_is_n_steps():
    p = P.make("half_cos")
    z1, s1 = solve_checked(p.f, p.z0, "homotopy", n_steps=4, corrector="none")
    z2, s2 = solve_checked(p.f, p.z0, "homotopy", step_size=0.25, corrector="none")
    assert s1.nfe == s2.nfe and torch.equal(z1, z2)
    _, s3 = solve_checked(p.f, p.z0, "homotopy", step_size=0.3, corrector="none")
    assert s3.path.states.shape[0] == 5  # ceil(1 / 0.3) = 4 steps


def test_adaptive_integrator_respects_rtol():
    p = P.make("half_cos")

    def endpoint_error(rtol, atol):
        _, stats = solve_checked(p.f, p.z0, "homotopy", ode_method="dopri5", rtol=rtol, atol=atol, corrector="none")
        return rel_error(stats.path.states[-1], p.root)

    loose, tight = endpoint_error(1e-3, 1e-4), endpoint_error(1e-9, 1e-11)
    assert tight <= 1e-7 and tight < loose


# ----------------------------------------------------------------------------------------------
# NFE and Jacobian-product accounting


NFE_CASES = [
    ("fixed_point", {}),
    ("anderson", {}),
    ("broyden", {}),
    ("homotopy", {"jacobian": "vjp"}),
    ("homotopy", {"jacobian": "jvp"}),
    ("homotopy", {"jacobian": "vjp", "linear_solver": "gmres"}),
    ("homotopy", {"jacobian": "jvp", "linear_solver": "gmres"}),
    ("homotopy", {"ode_method": "dopri5", "homotopy": "newton"}),
]


@pytest.mark.parametrize("method,options", NFE_CASES, ids=[f"{m}-{'-'.join(o.values())}" for m, o in NFE_CASES])
def test_nfe_counts_every_call(method, options):
    p = P.make("tanh")
    f = Counter(p.f)
    z, stats = core.solve(f, p.z0, method=method, tol=1e-10, max_iter=100, **options)
    check_stats(p.f, p.z0, z, stats, method)
    assert stats.converged
    assert stats.nfe == f.calls
    if method == "homotopy":
        assert stats.n_jac > 0
    else:
        assert stats.n_jac == 0


def test_jvp_mode_calls_f_once_per_product():
    # With GMRES every Jacobian product is a jvp: forward mode calls f once more per product, reverse does not.
    p = P.make("tanh")
    _, rev = core.solve(p.f, p.z0, method="homotopy", linear_solver="gmres", jacobian="vjp", tol=1e-10)
    _, fwd = core.solve(p.f, p.z0, method="homotopy", linear_solver="gmres", jacobian="jvp", tol=1e-10)
    assert rev.n_jac == fwd.n_jac > 0
    assert fwd.nfe == rev.nfe + fwd.n_jac


def test_prebuilt_counted_map_keeps_counting():
    p = P.make("cos")
    f = core.solvers.CountedMap(p.f)
    _, s1 = core.solve(f, p.z0, method="broyden")
    _, s2 = core.solve(f, p.z0, method="broyden")
    assert s2.nfe == f.calls == 2 * s1.nfe


# ----------------------------------------------------------------------------------------------
# Option validation


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        core.solve(torch.cos, torch.zeros(2, 1), method="andersen")
    message = str(info.value)
    assert "andersen" in message
    for name in METHODS:
        assert name in message


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        core.solve(torch.cos, torch.zeros(2, 1), method="anderson", windw=3)
    message = str(info.value)
    assert "windw" in message and "window" in message and "max_iter" in message


BAD_OPTIONS = [
    ("fixed_point", {"tol": 0.0}),
    ("fixed_point", {"tol": -1e-3}),
    ("fixed_point", {"tol": float("nan")}),
    ("fixed_point", {"tol": float("inf")}),
    ("fixed_point", {"tol": "1e-4"}),
    ("fixed_point", {"max_iter": 0}),
    ("fixed_point", {"max_iter": 1.5}),
    ("fixed_point", {"max_iter": True}),
    ("fixed_point", {"stop_mode": "relative"}),
    ("fixed_point", {"divergence_ratio": 1.0}),
    ("fixed_point", {"divergence_ratio": "big"}),
    ("fixed_point", {"beta": 0.0}),
    ("fixed_point", {"beta": 1.5}),
    ("fixed_point", {"beta": float("nan")}),
    ("anderson", {"window": 0}),
    ("anderson", {"window": 2.0}),
    ("anderson", {"beta": -0.5}),
    ("anderson", {"reg": -1.0}),
    ("broyden", {"memory": 0}),
    ("homotopy", {"homotopy": "arclength"}),
    ("homotopy", {"ode_method": "rk45"}),
    ("homotopy", {"linear_solver": "cg"}),
    ("homotopy", {"jacobian": "fd"}),
    ("homotopy", {"corrector": "broyden"}),
    ("homotopy", {"n_steps": 0}),
    ("homotopy", {"step_size": 0.0}),
    ("homotopy", {"step_size": 2.0}),
    ("homotopy", {"rtol": 0.0}),
    ("homotopy", {"atol": -1.0}),
    ("homotopy", {"max_ode_steps": 0}),
    ("homotopy", {"krylov_dim": 0}),
    ("homotopy", {"krylov_tol": 0.0}),
    ("homotopy", {"path_max_points": 1}),
]


BAD_IDS = [f"{m}-{k}={v!r}" for m, o in BAD_OPTIONS for k, v in o.items()]


@pytest.mark.parametrize("method,options", BAD_OPTIONS, ids=BAD_IDS)
def test_bad_option_value(method, options):
    (name,) = options
    with pytest.raises(ValueError, match=name):
        core.make_options(method, **options)
    with pytest.raises(ValueError):
        core.solve(torch.cos, torch.zeros(2, 1), method=method, **options)


def test_options_object_or_kwargs():
    opts = core.make_options("anderson", tol=1e-8)
    z, stats = core.solve(torch.cos, torch.zeros(2, 1, dtype=torch.float64), method="anderson", options=opts)
    assert stats.converged and stats.tol == 1e-8
    with pytest.raises(ValueError, match="not both"):
        core.solve(torch.cos, torch.zeros(2, 1), method="anderson", options=opts, tol=1e-3)
    with pytest.raises(ValueError, match="AndersonOptions.*broyden"):
        core.solve(torch.cos, torch.zeros(2, 1), method="broyden", options=opts)
    with pytest.raises(ValueError, match="andersen"):
        core.solve(torch.cos, torch.zeros(2, 1), method="andersen", options=opts)
    with pytest.raises(Exception):  # frozen
        opts.tol = 1.0


@pytest.mark.parametrize(
    "z0",
    [torch.zeros(3, 2, dtype=torch.long), torch.zeros(0, 2), torch.tensor(1.0), "not a tensor"],
    ids=["integer", "empty-batch", "scalar", "str"],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_z0(method, z0):
    with pytest.raises(ValueError, match="z0"):
        core.solve(torch.cos, z0, method=method)


# ----------------------------------------------------------------------------------------------
# Non-finite maps and throw=True


def nan_after(calls: int, value: float):
    """half_cos's map, which returns ``value`` (nan or inf) from call ``calls + 1`` on."""
    counter = Counter(lambda z: 0.5 * torch.cos(z) + 0.3)

    def f(z):
        out = counter(z)
        return out + value if counter.calls > calls else out

    return f, counter


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("method", METHODS)
def test_non_finite_map_stops_with_best_finite_iterate(method, value):
    f, counter = nan_after(3, value)
    z0 = torch.zeros(3, 2, dtype=torch.float64)
    z, stats = core.solve(f, z0, method=method, tol=1e-12, max_iter=100)
    assert stats.status is core.Status.NON_FINITE
    assert counter.calls == stats.nfe <= 5
    assert bool(torch.isfinite(z).all())
    assert bool(torch.isfinite(stats.abs_residual).all())
    # The returned z is one the solver evaluated (finite residual) and the best of those.
    fz = 0.5 * torch.cos(z) + 0.3
    torch.testing.assert_close(stats.abs_residual, (fz - z).norm(dim=1))
    assert float(stats.residual.max()) < float(stats.trace[0].max())
    with pytest.raises(core.SolverError) as info:
        core.solve(nan_after(3, value)[0], z0, method=method, tol=1e-12, throw=True)
    assert info.value.stats.status is core.Status.NON_FINITE


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_on_first_call_returns_z0(method):
    z0 = torch.full((2, 3), 0.25)
    z, stats = core.solve(lambda z: z * float("nan"), z0, method=method)
    assert stats.status is core.Status.NON_FINITE
    assert torch.equal(z, z0) and stats.nfe <= 2


@pytest.mark.parametrize(
    "method,options,setting",
    [
        ("fixed_point", {"max_iter": 3}, "max_iter"),
        ("anderson", {"max_iter": 2}, "max_iter"),
        ("broyden", {"max_iter": 2}, "max_iter"),
        ("homotopy", {"max_iter": 1, "n_steps": 1, "tol": 1e-14}, "max_iter"),
        ("homotopy", {"ode_method": "dopri5", "max_ode_steps": 1, "tol": 1e-14}, "max_ode_steps"),
    ],
)
def test_throw_names_the_setting(method, options, setting):
    p = P.make("cos")
    z, stats = core.solve(p.f, p.z0, method=method, **options)
    assert stats.status is core.Status.MAX_ITER
    with pytest.raises(core.SolverError) as info:
        core.solve(p.f, p.z0, method=method, throw=True, **options)
    assert setting in str(info.value) and method in str(info.value)
    assert isinstance(info.value.stats, core.SolverStats)
    assert info.value.stats.status is core.Status.MAX_ITER and info.value.stats.nfe == stats.nfe


def test_throw_is_silent_on_success():
    p = P.make("cos")
    for method in METHODS:
        _, stats = core.solve(p.f, p.z0, method=method, throw=True, max_iter=100)
        assert stats.converged


# ----------------------------------------------------------------------------------------------
# The homotopy path


def homotopy_residual(p: P.Problem, lam: float, z: torch.Tensor, kind: str) -> float:
    """max |H(z, λ)| of the fixed-point or Newton homotopy."""
    if kind == "fixed_point":
        h = z - lam * p.f(z) - (1 - lam) * p.z0
    else:
        h = (z - p.f(z)) - (1 - lam) * (p.z0 - p.f(p.z0))
    return float(h.abs().max())


@pytest.mark.parametrize("ode_method", ["rk4", "dopri5"])
@pytest.mark.parametrize("homotopy", ["fixed_point", "newton"])
def test_path_is_the_homotopy_path(homotopy, ode_method):
    p = P.make("tanh")
    z, stats = solve_checked(
        p.f, p.z0, "homotopy", homotopy=homotopy, ode_method=ode_method, n_steps=20, rtol=1e-8, atol=1e-10, tol=1e-12
    )
    path = stats.path
    lambdas = path.lambdas
    assert float(lambdas[0]) == 0.0 and float(lambdas[-1]) == 1.0
    assert bool((torch.diff(lambdas) >= 0).all())
    assert path.states.shape == (lambdas.shape[0], *p.z0.shape)
    assert path.states.dtype == p.z0.dtype
    assert torch.equal(path.states[0], p.z0)
    if ode_method == "rk4":
        assert lambdas.shape[0] == 21 and stats.n_steps >= 20
    for lam, state in zip(lambdas.tolist(), path.states):
        assert homotopy_residual(p, lam, state, homotopy) <= 1e-6, lam
    assert rel_error(path.states[-1], p.root) <= 1e-6  # the ODE endpoint, before the corrector
    assert rel_error(z, p.root) <= 1e-10


@pytest.mark.parametrize("ode_method", ["rk4", "dopri5"])
def test_path_subsampling(ode_method):
    p = P.make("half_cos")
    options = dict(ode_method=ode_method, n_steps=40, rtol=1e-9, atol=1e-11)
    _, full = solve_checked(p.f, p.z0, "homotopy", **options)
    _, sub = solve_checked(p.f, p.z0, "homotopy", path_max_points=5, **options)
    assert full.path.lambdas.shape[0] > 5 >= sub.path.lambdas.shape[0] >= 2
    assert sub.path.states.shape[0] == sub.path.lambdas.shape[0]
    assert float(sub.path.lambdas[0]) == 0.0 and float(sub.path.lambdas[-1]) == 1.0
    assert bool((torch.diff(sub.path.lambdas) > 0).all())
    # A subsample of the full path, not a different one.
    for lam, state in zip(sub.path.lambdas, sub.path.states):
        (i,) = torch.nonzero(full.path.lambdas == lam)[0]
        assert torch.equal(state, full.path.states[i])
    _, none = solve_checked(p.f, p.z0, "homotopy", record_path=False, **options)
    assert none.path is None


def test_path_float32():
    p = P.make("tanh", dtype=torch.float32)
    z, stats = solve_checked(p.f, p.z0, "homotopy", ode_method="dopri5", tol=1e-6)
    assert stats.path.states.dtype == torch.float32 and stats.path.lambdas.dtype == torch.float32
    assert rel_error(z, p.root) <= 1e-4


@pytest.mark.parametrize("stop_mode", ["rel", "abs"])
@pytest.mark.parametrize("ode_method", ["dopri5", "bosh3"])
def test_adaptive_step_cap_ends_as_max_iter(ode_method, stop_mode):
    # On this path the absolute residual rises before it falls: a cut-short path is max_iter, not diverged.
    p = P.make("rotation")
    f = Counter(p.f)
    z, stats = core.solve(f, p.z0, method="homotopy", ode_method=ode_method, max_ode_steps=2, stop_mode=stop_mode)
    check_stats(p.f, p.z0, z, stats, "homotopy")
    assert stats.status is core.Status.MAX_ITER
    assert stats.n_steps <= 2 and f.calls == stats.nfe <= 20
    # With a budget it converges: the cap, not the problem, stopped it.
    z, stats = solve_checked(p.f, p.z0, "homotopy", ode_method=ode_method, stop_mode=stop_mode, tol=1e-10)
    assert stats.converged and rel_error(z, p.root) <= 1e-8


def test_stiff_path_with_tiny_step_cap_returns_quickly():
    # Stiff-ish: a steep tanh layer with strongly negative slope; tight tolerances force small steps.
    x = torch.linspace(-1, 1, 3, dtype=torch.float64)[:, None]
    f = Counter(lambda z: 2 * torch.tanh(-50 * z + 3 * x) - 0.5 * z)
    z0 = torch.zeros(3, 1, dtype=torch.float64)
    z, stats = core.solve(f, z0, method="homotopy", ode_method="dopri5", max_ode_steps=2, rtol=1e-10, atol=1e-12)
    assert stats.status is core.Status.MAX_ITER and f.calls <= 20 and stats.n_steps <= 2
    assert bool(torch.isfinite(z).all())


def test_fixed_step_methods_are_not_capped_by_max_ode_steps():
    p = P.make("half_cos")
    z, stats = solve_checked(p.f, p.z0, "homotopy", ode_method="rk4", n_steps=8, max_ode_steps=3, tol=1e-12)
    assert float(stats.path.lambdas[-1]) == 1.0 and stats.path.states.shape[0] == 9
    assert stats.converged and rel_error(z, p.root) <= 1e-10


# ----------------------------------------------------------------------------------------------
# Scale


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_anderson_defaults_work_across_scales(dtype):
    nfes = []
    for scale in [1e-6, 1.0, 1e6]:
        p = P.linear(scale=scale, dtype=dtype)
        z, stats = solve_checked(p.f, p.z0, "anderson")
        assert stats.converged, (scale, stats.summary())
        # rel residual <= 1e-4 and ||A|| = 0.6 bound the error by 1e-4 / (1 - 0.6).
        assert rel_error(z, p.root) <= 3e-4, scale
        nfes.append(stats.nfe)
    assert len(set(nfes)) == 1, nfes  # the relative regulariser makes Anderson scale-invariant


# ----------------------------------------------------------------------------------------------
# Linear algebra under the homotopy


def test_jacobian_products_of_a_linear_map():
    p = P.make("multidim")
    # The map is affine: column i of each sample's matrix is f(e_i) - f(0).
    eye = torch.eye(18, dtype=torch.float64)
    f0 = p.f(p.z0).reshape(3, 18)
    a = torch.stack([p.f(eye[i].expand(3, 18).reshape(p.z0.shape)).reshape(3, 18) - f0 for i in range(18)], dim=2)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(p.z0.shape, generator=gen, dtype=torch.float64)
    for mode in ["vjp", "jvp"]:
        op = JacobianAt(core.solvers.CountedMap(p.f), p.root, mode)
        torch.testing.assert_close(op.fz, p.f(p.root))
        torch.testing.assert_close(op.jvp(v).reshape(3, 18), (a @ v.reshape(3, 18, 1))[..., 0])
        torch.testing.assert_close(op.vjp(v).reshape(3, 18), (a.transpose(1, 2) @ v.reshape(3, 18, 1))[..., 0])
        torch.testing.assert_close(op.dense(), a)


@pytest.mark.parametrize("method", ["dense", "gmres"])
def test_solve_shifted(method):
    p = P.make("noncontractive")
    op = JacobianAt(core.solvers.CountedMap(p.f), p.z0)
    a = op.dense()
    rhs = torch.randn(p.z0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for shift_a, shift_c in [(1.0, 0.3), (1.0, 1.0), (2.0, -0.5)]:
        x = solve_shifted(op, rhs, shift_a, shift_c, method=method, tol=1e-12)
        mat = shift_a * torch.eye(4, dtype=torch.float64) - shift_c * a
        torch.testing.assert_close((mat @ x[..., None])[..., 0], rhs, rtol=1e-9, atol=1e-10)


def test_gmres_restarts_reach_tolerance():
    gen = torch.Generator().manual_seed(4)
    bsz, n = 3, 40
    noise = torch.randn(bsz, n, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
    mats = torch.eye(n, dtype=torch.float64) + 0.4 * noise  # well conditioned, not symmetric
    b = torch.randn(bsz, n, generator=gen, dtype=torch.float64)
    exact = torch.linalg.solve(mats, b)
    x = gmres(lambda v: (mats @ v[..., None])[..., 0], b, tol=1e-11, krylov_dim=5, max_restarts=30)
    assert float(((x - exact).norm(dim=1) / exact.norm(dim=1)).max()) <= 1e-9
    # Too few products for the tolerance: still a partial solution, better than x = 0.
    x1 = gmres(lambda v: (mats @ v[..., None])[..., 0], b, tol=1e-11, krylov_dim=2, max_restarts=1)
    r1 = (b - (mats @ x1[..., None])[..., 0]).norm(dim=1)
    assert bool((r1 < b.norm(dim=1)).all())


# ----------------------------------------------------------------------------------------------
# The module's docstring example


def test_docstring_example():
    result = doctest.testmod(core.solvers, verbose=False)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize("method", ["fixed_point", "anderson", "broyden"])
def test_sample_nfe_is_what_each_sample_costs_alone(method):
    # Samples of different difficulty: contraction about a_b, from 0.1 to 0.9, on a nonlinear map.
    a = torch.tensor([0.1, 0.5, 0.8, 0.9], dtype=torch.float64)[:, None]
    c = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)

    def f(z, a=a, c=c):
        return a * z + 0.05 * torch.tanh(z + c) + c

    z0 = torch.zeros(4, 3, dtype=torch.float64)
    _, stats = core.solve(f, z0, method=method, tol=1e-8, max_iter=500)
    alone = [
        core.solve(
            lambda z, i=i: f(z, a[i : i + 1], c[i : i + 1]), z0[i : i + 1], method=method, tol=1e-8, max_iter=500
        )[1]
        for i in range(4)
    ]
    assert stats.sample_nfe.tolist() == [float(s.nfe) for s in alone]
    assert stats.sample_nfe.max() == stats.nfe
    if method == "fixed_point":  # the easy samples need far fewer evaluations than the batch
        assert stats.sample_nfe[0] < stats.sample_nfe[3] / 4


def test_sample_nfe_of_a_sample_that_never_converges_is_the_batch_nfe():
    a = torch.tensor([0.5, 1.5], dtype=torch.float64)[:, None]  # the second diverges
    _, stats = core.solve(
        lambda z: a * z + 1, torch.zeros(2, 2, dtype=torch.float64), method="fixed_point", max_iter=20
    )
    assert not stats.converged and stats.sample_nfe[1] == stats.nfe and stats.sample_nfe[0] < stats.nfe


@pytest.mark.parametrize("method", ["fixed_point", "anderson", "broyden", "homotopy"])
def test_a_map_that_breaks_the_contract_is_named_not_solved(method):
    z0 = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"f returned shape \(4, 1\) for a state of shape \(4, 3\)"):
        core.solve(lambda z: z.mean(1, keepdim=True), z0, method=method)  # broadcasts: used to "converge"
    with pytest.raises(ValueError, match="f must return one tensor of the state's shape .4, 3., got tuple"):
        core.solve(lambda z: (z, z), z0, method=method)
    with pytest.raises(ValueError, match="f returned torch.float64 for a torch.float32 state"):
        core.solve(lambda z: z.double() * 0.5, z0, method=method)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_residuals_do_not_underflow_to_zero(dtype):
    # z = 0.5 z + 1e-4 has its root at 2e-4; in float16 the squares of such residuals underflow, so a
    # norm taken in float16 read exactly 0 and the solve "converged" at once.
    z0 = torch.zeros(2, 64, dtype=dtype)
    z, stats = core.solve(lambda z: 0.5 * z + 1e-4, z0, method="fixed_point", tol=1e-12, max_iter=5)
    assert stats.abs_residual.dtype == torch.float32
    assert float(stats.abs_residual.min()) > 0 and not stats.converged
    z, stats = core.solve(lambda z: 0.5 * z + 1e-4, z0, method="fixed_point", tol=1e-2, max_iter=60)
    assert stats.converged and float((z.float() - 2e-4).abs().max()) < 2e-5


# ----------------------------------------------------------------------------------------------
# Honesty: a failure is never reported as a success

NO_FIXED_POINT = {"2z+1 (root -1, path singular at λ=1/2)": lambda z: 2 * z + 1, "z+1 (no root)": lambda z: z + 1}


@pytest.mark.parametrize("name", list(NO_FIXED_POINT))
@pytest.mark.parametrize("ode_method", ["rk4", "dopri5"])
def test_homotopy_through_a_singular_path_reports_diverged_instead_of_raising(name, ode_method):
    # I - λJ = (1 - 2λ) I or (1 - λ) I is singular on the path: the dense solve used to raise LinAlgError.
    f = NO_FIXED_POINT[name]
    z0 = torch.zeros(4, 2)
    z, stats = core.solve(f, z0, method="homotopy", ode_method=ode_method)
    check_stats(f, z0, z, stats, "homotopy")
    assert stats.status is core.Status.DIVERGED
    with pytest.raises(core.SolverError, match="diverged.*newton"):
        core.solve(f, z0, method="homotopy", ode_method=ode_method, throw=True)


def test_a_singular_dense_system_gives_nan_for_that_sample_only():
    f = core.solvers.base.CountedMap(lambda z: z * torch.tensor([[1.0], [0.5]]))  # J = I, then J = I/2
    op = JacobianAt(f, torch.ones(2, 3))
    x = solve_shifted(op, torch.ones(2, 3), 1.0, 1.0, method="dense")  # (I - J) x = 1
    assert bool(torch.isnan(x[0]).all())
    torch.testing.assert_close(x[1], torch.full((3,), 2.0))


@pytest.mark.parametrize("method", ["fixed_point", "anderson", "broyden"])
@pytest.mark.parametrize("name", ["z+1", "-z+1"])
def test_a_map_without_reachable_fixed_point_is_never_converged_and_stops_early(method, name):
    # z+1 has no fixed point: the relative residual 1/||f(z)|| falls by running away (anderson used to
    # report "converged" after 30,563 iterations at ||z|| = 14,141); -z+1 makes plain iteration oscillate
    # between 0 and 1 (it used to run all max_iter iterations).
    f = {"z+1": lambda z: z + 1, "-z+1": lambda z: -z + 1}[name]
    z0 = torch.zeros(2, 2)
    z, stats = core.solve(f, z0, method=method, max_iter=100_000)
    check_stats(f, z0, z, stats, method)
    if name == "-z+1" and method != "fixed_point":
        # Anderson and Broyden solve the linear map exactly (root 1/2).
        assert stats.converged and torch.allclose(z, torch.full_like(z, 0.5))
        return
    assert stats.status is core.Status.STALLED
    assert stats.nfe <= 2 * core.solvers.SolverOptions().patience + 10
    assert float(stats.abs_residual.min()) == pytest.approx(math.sqrt(2), rel=1e-5)
    with pytest.raises(core.SolverError, match="stalled.*no fixed point"):
        core.solve(f, z0, method=method, max_iter=100_000, throw=True)


def test_relative_convergence_needs_the_absolute_residual_to_fall():
    # Already a fixed point at the start: converged at once, nothing to fall from.
    _, stats = core.solve(lambda z: 0.5 * z + 1, torch.full((1, 2), 2.0), method="fixed_point")
    assert stats.converged and stats.nfe == 1
    # A slow contraction (root 1000 from 0): tol is met only once the residual has really fallen.
    z, stats = core.solve(
        lambda z: 0.99 * z + 10, torch.zeros(1, 1, dtype=torch.float64), method="fixed_point", max_iter=5000
    )
    assert stats.converged
    assert float(stats.abs_residual[0]) <= 0.5 * 10.0
    assert float(stats.rel_residual[0]) <= 1e-4
    assert abs(float(z) - 1000.0) <= 1e-4 * 1000.0 / (1 - 0.99)  # the residual bound on the error


def test_stall_patience_is_an_option_with_a_checked_range():
    _, stats = core.solve(lambda z: -z + 1, torch.zeros(1, 2), method="fixed_point", max_iter=1000, patience=5)
    assert stats.status is core.Status.STALLED and stats.nfe == 6
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        core.solve(lambda z: z, torch.zeros(1, 2), patience=0)


# ----------------------------------------------------------------------------------------------- paths in a PCA basis


def test_pca_gram_path_matches_svd():
    from core.solvers import fit_pca

    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 300)) @ np.diag(np.linspace(3, 0.1, 300))  # N < D: the Gram route
    basis = fit_pca(x)
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    for i in range(2):
        assert abs(abs(basis.components[i] @ vt[i]) - 1) < 1e-8  # same axes (up to sign)
    np.testing.assert_allclose(basis.explained, (s[:2] ** 2) / (s**2).sum(), rtol=1e-8)
