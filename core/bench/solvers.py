"""The solver benchmark: every root solver on closed-form, contractive-conv and non-contractive problems.

    python -m core.bench solvers --json runs/bench_solvers.json [--quick] [--problems PATTERN ...]
        [--methods NAME ...] [--option METHOD.KEY=VALUE ...] [--tol 1e-4] [--max-iter 200]
        [--seed 0] [--threads 2] [--repeat N]

``solvers`` runs every method of :data:`core.METHODS` on a fixed, seeded set of root problems
z* = f(z*) with batched states (B, ...) and records, per (problem, method), the status, the number of
evaluations of f (NFE), the wall time, the worst sample's residuals

    abs = max_b ||f(z_b) - z_b||,    rel = max_b ||f(z_b) - z_b|| / (||f(z_b)|| + eps)

and, where the root is known, the worst sample's error ||z_b - z*_b|| / ||z*_b||. Three families:

- ``closed_form``: z = cos z, z = (z + 2/z) / 2, z = A z + b with ||A||_2 = 0.9.
- ``contractive_conv``: f(z) = tanh(W * z + x) on DEQ-sized states (32 x 32 x 14 x 14), W a 3x3 conv
  scaled to ||W||_2 = L in {0.9, 0.95} (a global contraction, slow for plain iteration).
- ``non_contractive``: f(z) = A z + b with A = Q M Qᵀ, M holding negative reals or complex pairs in the
  left half-plane, and f(z) = -s tanh(W * z + x) with W + Wᵀ positive definite; both with spectral
  radius 1.5 - 3 at the root and no real eigenvalue >= 1, so plain iteration cannot converge while
  the fixed-point homotopy path (I - λ J regular for λ in [0, 1]) exists.

Conv problems plant their root: z* is drawn first and x chosen so that f(z*) = z*, so the root is exact
and the Jacobian at the root, J = diag(φ'(·)) W, is known; its spectral radius and norm are measured by
power iteration and recorded.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import fnmatch
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..solvers import METHODS, CountedMap, JacobianAt, Map, batch_norm, make_options, solve
from ..training import atomic_write_json

FAMILIES = ("closed_form", "contractive_conv", "non_contractive")
#: Methods whose ``max_iter`` is an iteration budget (for homotopy it caps the final Newton corrector).
ITERATIVE = ("anderson", "broyden", "fixed_point")
#: Spectral-radius window the non-contractive problems must fall into (checked on construction).
NC_RHO_RANGE = (1.5, 3.0)


# ----------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: find z with z = f(z) from z0.

    Attributes:
        name: unique name (what ``--problems`` matches).
        family: one of :data:`FAMILIES`.
        f: batched map (B, ...) -> (B, ...).
        z0: (B, ...) start point.
        root: (B, ...) the exact root, or ``None`` when unknown.
        info: JSON-ready facts about the problem (sizes, spectral radius, construction parameters).
    """

    name: str
    family: str
    f: Map
    z0: torch.Tensor
    root: torch.Tensor | None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProblemSpec:
    """A problem that is built only if selected (building conv problems runs power iterations)."""

    name: str
    family: str
    build: Callable[[], Problem]


def _jvp(f: Map, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, ...) J v with J = ∂f/∂z at z (forward mode)."""
    return torch.func.jvp(f, (z,), (v,))[1]


def spectral_radius(
    jvp: Callable[[torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    dtype: torch.dtype,
    gen: torch.Generator,
    iters: int = 200,
) -> torch.Tensor:
    """(B,) per-sample spectral radius ρ(J_b) by power iteration.

    ρ is the asymptotic growth rate of ||J^k v||, so it is estimated as the geometric mean of the
    per-step growth over the second half of the run; unlike a Rayleigh quotient this also works when
    the dominant eigenvalues are a complex pair or ±ρ (the iterate then rotates but grows at rate ρ).
    """
    v = torch.randn(tuple(shape), generator=gen, dtype=dtype)
    logs = []
    for _ in range(iters):
        u = jvp(v)
        n = batch_norm(u).clamp_min(torch.finfo(dtype).tiny)
        logs.append(n.double().log())
        v = u / n.view((-1,) + (1,) * (u.dim() - 1))
    return torch.stack(logs[iters // 2 :]).mean(0).exp()


def spectral_norm(f: Map, z: torch.Tensor, gen: torch.Generator, iters: int = 100) -> torch.Tensor:
    """(B,) per-sample ||J_b||_2 at z by power iteration on Jᵀ J."""
    _, vjp_fn = torch.func.vjp(f, z)
    v = torch.randn(z.shape, generator=gen, dtype=z.dtype)
    v = v / batch_norm(v).view((-1,) + (1,) * (z.dim() - 1))
    sigma = torch.zeros(z.shape[0], dtype=torch.float64)
    for _ in range(iters):
        jv = _jvp(f, z, v)
        sigma = batch_norm(jv).double()
        (w,) = vjp_fn(jv)
        v = w / batch_norm(w).clamp_min(1e-30).view((-1,) + (1,) * (z.dim() - 1))
    return sigma


def _jacobian_facts(f: Map, root: torch.Tensor, gen: torch.Generator) -> dict[str, float]:
    """Spectral radius and norm of ∂f/∂z at the root (worst and best sample)."""
    # ρ(Jᵀ) = ρ(J), and a reverse-mode product through a graph built once costs about one call of f,
    # several times less than a forward-mode product on the CPU.
    _, vjp_fn = torch.func.vjp(f, root)
    rho = spectral_radius(lambda u: vjp_fn(u)[0], root.shape, root.dtype, gen)
    norm = spectral_norm(f, root, gen)
    return {
        "spectral_radius": float(rho.max()),
        "spectral_radius_min": float(rho.min()),
        "jac_norm": float(norm.max()),
    }


def _size_info(z0: torch.Tensor) -> dict[str, Any]:
    return {
        "batch": int(z0.shape[0]),
        "state_shape": list(z0.shape[1:]),
        "numel": int(z0[0].numel()),
        "dtype": str(z0.dtype).removeprefix("torch."),
    }


def _finish(
    name: str, family: str, f: Map, z0: torch.Tensor, root: torch.Tensor | None, gen: torch.Generator, **info: Any
) -> Problem:
    """Attach sizes and Jacobian facts at the root, and check the root really is one."""
    facts: dict[str, Any] = {}
    if root is not None:
        facts.update(_jacobian_facts(f, root, gen))
        with torch.no_grad():
            res = batch_norm(f(root) - root) / (batch_norm(root) + 1e-12)
        # A planted root that is not a root would make every root error meaningless.
        if float(res.max()) > 1e-5:
            raise RuntimeError(f"benchmark bug: planted root of {name} has relative residual {float(res.max()):.2e}")
    return Problem(name, family, f, z0, root, {**_size_info(z0), **facts, **info})


# --- closed form -----------------------------------------------------------------------------


def cos_problem() -> Problem:
    """z = cos z, z* = 0.7390851332151607 (the Dottie number); 4 starts in [0, 2], float64."""
    z0 = torch.tensor([[0.0], [0.5], [1.0], [2.0]], dtype=torch.float64)
    root = torch.full_like(z0, 0.7390851332151607)
    return _finish("cos", "closed_form", torch.cos, z0, root, torch.Generator().manual_seed(0))


def babylon_problem() -> Problem:
    """z = (z + 2/z) / 2 (Newton for z² = 2), z* = √2, f'(z*) = 0; 4 starts in [0.5, 4], float64."""
    z0 = torch.tensor([[0.5], [1.0], [2.0], [4.0]], dtype=torch.float64)
    root = torch.full_like(z0, math.sqrt(2.0))
    return _finish(
        "babylon_sqrt2", "closed_form", lambda z: 0.5 * (z + 2.0 / z), z0, root, torch.Generator().manual_seed(0)
    )


def _linear_map(a: torch.Tensor, b: torch.Tensor) -> Map:
    """f(z) = A z + b per sample: (B, N) -> (B, N) with one A (N, N) and b (B, N)."""
    return lambda z: z @ a.T + b


def linear_contractive_problem(seed: int, n: int = 16, batch: int = 4, norm: float = 0.9) -> Problem:
    """z = A z + b, A Gaussian scaled to ||A||_2 = ``norm``; z* = (I - A)^-1 b; float64."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = norm * a / torch.linalg.matrix_norm(a, ord=2)
    b = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    root = torch.linalg.solve(torch.eye(n, dtype=a.dtype) - a, b.T).T
    return _finish(
        f"linear_contractive_n{n}",
        "closed_form",
        _linear_map(a, b),
        torch.zeros_like(b),
        root,
        gen,
        seed=seed,
        a_norm=norm,
        spectral_radius_exact=float(torch.linalg.eigvals(a).abs().max()),
    )


# --- non-contractive linear ------------------------------------------------------------------


def linear_nc_problem(seed: int, n: int, kind: str, rho: float, batch: int = 4) -> Problem:
    """z = A z + b with A = Q M Qᵀ (Q orthogonal, so A is normal and ρ(A) = ||A||_2 = ``rho``).

    ``kind="complex"``: M is block-diagonal with 2x2 blocks r [[cos θ, -sin θ], [sin θ, cos θ]],
    θ in (0.55π, 0.95π), i.e. pairs r e^{±iθ} in the left half-plane; ``kind="negative"``: M diagonal
    with entries in [-rho, -0.1]. Either way every eigenvalue has real part < 0 < 1.
    """
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    m = torch.zeros(n, n, dtype=dt)
    radii = 0.2 + (rho - 0.2) * torch.rand(n, generator=gen, dtype=dt)
    radii[0] = rho  # the dominant eigenvalue(s) sit exactly at the requested radius
    if kind == "complex":
        thetas = math.pi * (0.55 + 0.4 * torch.rand(n, generator=gen, dtype=dt))
        for k in range(n // 2):
            r, th = radii[k], thetas[k]
            i = 2 * k
            m[i, i], m[i, i + 1] = r * torch.cos(th), -r * torch.sin(th)
            m[i + 1, i], m[i + 1, i + 1] = r * torch.sin(th), r * torch.cos(th)
        if n % 2:
            m[n - 1, n - 1] = -radii[n // 2]
    elif kind == "negative":
        m = torch.diag(-radii.clamp(min=0.1))
    else:
        raise ValueError(f"unknown kind {kind!r}; expected 'complex' or 'negative'")
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dt))
    a = q @ m @ q.T
    b = torch.randn(batch, n, generator=gen, dtype=dt)
    root = torch.linalg.solve(torch.eye(n, dtype=dt) - a, b.T).T
    eig = torch.linalg.eigvals(a)
    return _check_nc(
        _finish(
            f"linear_nc_{kind}_n{n}_s{seed}",
            "non_contractive",
            _linear_map(a, b),
            torch.zeros_like(b),
            root,
            gen,
            seed=seed,
            kind=kind,
            rho_target=rho,
            spectral_radius_exact=float(eig.abs().max()),
            max_real_eig=float(eig.real.max()),
        )
    )


def _check_nc(p: Problem) -> Problem:
    """The non-contractive set is only meaningful if every instance really has ρ in range."""
    lo, hi = NC_RHO_RANGE
    if not (lo <= p.info["spectral_radius_min"] and p.info["spectral_radius"] <= hi):
        raise RuntimeError(
            f"benchmark bug: {p.name} has spectral radius {p.info['spectral_radius_min']:.3f}"
            f"..{p.info['spectral_radius']:.3f}, outside [{lo}, {hi}]"
        )
    return p


# --- conv maps ---------------------------------------------------------------------------------


def _conv(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(z, w, padding=1)


def _adjoint_kernel(w: torch.Tensor) -> torch.Tensor:
    """Kernel of the adjoint of a 3x3, padding-1 conv: swap in/out channels and flip space."""
    return w.transpose(0, 1).flip(2, 3)


def _identity_kernel(c: int, dtype: torch.dtype) -> torch.Tensor:
    w = torch.zeros(c, c, 3, 3, dtype=dtype)
    w[range(c), range(c), 1, 1] = 1.0
    return w


def conv_norm(w: torch.Tensor, hw: int, gen: torch.Generator, iters: int = 500) -> float:
    """||W||_2 of the zero-padded 3x3 conv on C x hw x hw, by power iteration on Wᵀ W.

    Many iterations: self-adjoint kernels have clustered top singular values (±λ), and 100 steps
    still underestimated the norm by ~1 %, which would let "||W|| = 0.95" exceed 0.95.
    """
    v = torch.randn(1, w.shape[1], hw, hw, generator=gen, dtype=w.dtype)
    for _ in range(iters):
        v = F.conv_transpose2d(_conv(v, w), w, padding=1)
        v = v / v.norm()
    return float(_conv(v, w).norm())


def _unit_kernel(c: int, hw: int, gen: torch.Generator, kind: str = "plain") -> torch.Tensor:
    """A random 3x3 kernel with operator norm 1: ``plain``, ``sym`` (self-adjoint) or ``skew``."""
    w = torch.randn(c, c, 3, 3, generator=gen, dtype=torch.float32)
    if kind == "sym":
        w = 0.5 * (w + _adjoint_kernel(w))
    elif kind == "skew":
        w = 0.5 * (w - _adjoint_kernel(w))
    return w / conv_norm(w, hw, gen)


def conv_contractive_problem(
    seed: int, lip: float, asym: float, batch: int = 32, channels: int = 32, hw: int = 14
) -> Problem:
    """f(z) = tanh(W * z + x), z (B, C, hw, hw) float32, with ||W||_2 = ``lip`` < 1 (tanh is 1-Lipschitz,
    so f is a global contraction with constant <= lip).

    W = S + asym N (S self-adjoint, N plain, both of norm 1) rescaled to norm ``lip``: the self-adjoint
    part makes ρ(J) close to ||J||, i.e. slow for plain iteration, as in trained DEQs whose Jacobian
    spectra approach 1. Root planted at z* = 0.3 tanh(ξ), x = atanh(z*) - W * z*.
    """
    gen = torch.Generator().manual_seed(seed)
    w = _unit_kernel(channels, hw, gen, "sym") + asym * _unit_kernel(channels, hw, gen)
    w = lip * w / conv_norm(w, hw, gen)
    root = 0.3 * torch.tanh(torch.randn(batch, channels, hw, hw, generator=gen))
    x = torch.atanh(root) - _conv(root, w)
    return _finish(
        f"conv_tanh_L{lip:.2f}_{'asym' if asym else 'sym'}_s{seed}",
        "contractive_conv",
        lambda z: torch.tanh(_conv(z, w) + x),
        torch.zeros_like(root),
        root,
        gen,
        seed=seed,
        lipschitz_bound=conv_norm(w, hw, gen),
        asym=asym,
    )


def conv_nc_problem(seed: int, rho: float, kind: str, batch: int = 32, channels: int = 32, hw: int = 14) -> Problem:
    """f(z) = -s tanh(W * z + x), z (B, C, hw, hw) float32, s calibrated so ρ(∂f/∂z(z*)) = ``rho``.

    W = I + 0.8 R (+ 1.5 K for ``kind="complex"``) with R of norm 1 (``"real"``: self-adjoint;
    ``"nonsym"``/``"complex"``: R plain resp. self-adjoint, K skew-adjoint). The symmetric part of W is
    then >= 0.2 I, so for any positive diagonal D every eigenvalue of D W has real part >= 0.2 min(D):
    the Jacobian J = -s D W (D = 1 - tanh²) has its whole spectrum in the left half-plane, everywhere,
    and I - λ J is never singular, so the fixed-point homotopy path exists. Plain iteration oscillates
    (ρ > 1). Root planted at z* = s u, u = 0.5 tanh(ξ), x = atanh(-u) - W * z*.
    """
    gen = torch.Generator().manual_seed(seed)
    eye = _identity_kernel(channels, torch.float32)
    if kind == "real":
        w = eye + 0.8 * _unit_kernel(channels, hw, gen, "sym")
    elif kind == "nonsym":
        w = eye + 0.8 * _unit_kernel(channels, hw, gen)
    elif kind == "complex":
        w = eye + 0.8 * _unit_kernel(channels, hw, gen, "sym") + 1.5 * _unit_kernel(channels, hw, gen, "skew")
    else:
        raise ValueError(f"unknown kind {kind!r}; expected 'real', 'nonsym' or 'complex'")
    u = 0.5 * torch.tanh(torch.randn(batch, channels, hw, hw, generator=gen))
    d = 1 - u**2
    # J is linear in s for a root planted at s u (D does not depend on s): one power iteration calibrates.
    base = float(spectral_radius(lambda v: d * _conv(v, w), u.shape, u.dtype, gen).max())
    s = rho / base
    root = s * u
    x = torch.atanh(-u) - _conv(root, w)
    return _check_nc(
        _finish(
            f"conv_nc_{kind}_{channels}x{hw}x{hw}_s{seed}",
            "non_contractive",
            lambda z: -s * torch.tanh(_conv(z, w) + x),
            torch.zeros_like(root),
            root,
            gen,
            seed=seed,
            kind=kind,
            rho_target=rho,
            scale=s,
            # Re λ(J) <= -s min(D) λ_min(sym W) <= -0.2 s min(D) < 0 (see docstring).
            max_real_eig_bound=-0.2 * s * float(d.min()),
        )
    )


def problem_specs(seed: int = 0, quick: bool = False) -> list[ProblemSpec]:
    """The fixed problem set (``quick``: a small smoke set of the same families, a few seconds)."""
    specs: list[ProblemSpec] = []

    def add(name: str, family: str, build: Callable[[], Problem]) -> None:
        specs.append(ProblemSpec(name, family, build))

    add("cos", "closed_form", cos_problem)
    add("babylon_sqrt2", "closed_form", babylon_problem)
    add("linear_contractive_n16", "closed_form", lambda: linear_contractive_problem(seed))
    if quick:
        small = {"batch": 4, "channels": 8, "hw": 8}
        add(
            f"conv_tanh_L0.90_sym_s{seed}",
            "contractive_conv",
            lambda: conv_contractive_problem(seed, 0.9, 0.0, **small),
        )
        add(f"linear_nc_complex_n8_s{seed}", "non_contractive", lambda: linear_nc_problem(seed, 8, "complex", 2.0))
        add(f"conv_nc_complex_8x8x8_s{seed}", "non_contractive", lambda: conv_nc_problem(seed, 2.0, "complex", **small))
        return specs
    # Contractive conv, DEQ-sized (B = 32, C = 32, 14 x 14): two Lipschitz bounds, with and without
    # a non-self-adjoint part (complex spectrum).
    for i, (lip, asym) in enumerate([(0.9, 0.0), (0.9, 0.3), (0.95, 0.0), (0.95, 0.3)]):
        s = seed + i
        name = f"conv_tanh_L{lip:.2f}_{'asym' if asym else 'sym'}_s{s}"
        add(name, "contractive_conv", lambda s=s, lip=lip, asym=asym: conv_contractive_problem(s, lip, asym))
    # Non-contractive linear: 4 sizes x 2 spectrum kinds; n = 256 > dense_max makes homotopy use GMRES.
    rhos = (1.6, 2.0, 2.5, 2.9)
    i = 0
    for n in (2, 16, 64, 256):
        for kind in ("complex", "negative"):
            s, rho = seed + i, rhos[i % len(rhos)]
            add(
                f"linear_nc_{kind}_n{n}_s{s}",
                "non_contractive",
                lambda s=s, n=n, kind=kind, rho=rho: linear_nc_problem(s, n, kind, rho),
            )
            i += 1
    # Non-contractive conv: three DEQ-sized, three small; real, non-symmetric and strongly complex spectra.
    conv_nc = [
        ("real", 2.5, {}),
        ("nonsym", 1.6, {}),
        ("complex", 2.9, {}),
        ("real", 2.0, {"batch": 8, "channels": 16, "hw": 8}),
        ("nonsym", 2.9, {"batch": 8, "channels": 16, "hw": 8}),
        ("complex", 1.6, {"batch": 8, "channels": 16, "hw": 8}),
    ]
    for j, (kind, rho, size) in enumerate(conv_nc):
        s, c, hw = seed + j, size.get("channels", 32), size.get("hw", 14)
        add(
            f"conv_nc_{kind}_{c}x{hw}x{hw}_s{s}",
            "non_contractive",
            lambda s=s, rho=rho, kind=kind, size=size: conv_nc_problem(s, rho, kind, **size),
        )
    return specs


def select(specs: list[ProblemSpec], patterns: Sequence[str] | None) -> list[ProblemSpec]:
    """Keep the specs whose name or family matches any glob pattern (all when ``patterns`` is empty)."""
    if not patterns:
        return specs
    return [
        s for s in specs if any(fnmatch.fnmatchcase(s.name, p) or fnmatch.fnmatchcase(s.family, p) for p in patterns)
    ]


# ----------------------------------------------------------------------------------------------
# Running


def method_options(
    method: str, tol: float, max_iter: int, overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Options per method: core.solve's defaults, but one tol for all and one iteration budget for the
    iterative methods (the default 50 would cut plain iteration off on slow contractions), then the
    user's ``--option METHOD.KEY=VALUE`` overrides."""
    opts: dict[str, Any] = {"tol": tol}
    if method in ITERATIVE:
        opts["max_iter"] = max_iter
    opts.update((overrides or {}).get(method, {}))
    return opts


def _median_ms(fn: Callable[[], Any], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * sorted(times)[len(times) // 2]


def _cost_info(p: Problem) -> dict[str, float]:
    """Median cost of one f call and of one homotopy Jacobian product (reverse mode twice, as the
    solver does it), so NFE and n_jac can be turned into seconds. Also warms up the kernels."""
    z = p.root if p.root is not None else p.z0
    with torch.no_grad():
        f_ms = _median_ms(lambda: p.f(z))
    op = JacobianAt(CountedMap(p.f), z, "vjp")
    v = torch.randn_like(z)
    op.jvp(v)  # builds the graph of Jᵀu once, as the solver does per state
    return {"f_ms": f_ms, "jvp_ms": _median_ms(lambda: op.jvp(v))}


def run_problem(
    p: Problem, options: dict[str, dict[str, Any]], repeat: int = 1, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Solve ``p`` with every method of ``options`` (method -> keyword options); one record per method.

    With ``repeat > 1`` every solve runs that many times and ``seconds`` is the median (the counts do
    not change between runs; the wall time on a shared machine does). A solver that raises is recorded
    (``status="error"``) rather than aborting the benchmark: a crash is a finding, like non-convergence.
    """
    base = {"problem": p.name, "family": p.family, **p.info, **_cost_info(p)}
    records = []
    for method, opts in options.items():
        rec: dict[str, Any] = {**base, "method": method, "options": opts}
        runs = []
        try:
            for _ in range(repeat):
                z, stats = solve(p.f, p.z0.clone(), method=method, **opts)
                runs.append(stats.seconds)
        except Exception as err:
            rec.update(status="error", converged=False, error=f"{type(err).__name__}: {err}")
            records.append(rec)
            if log is not None:
                log(f"  {method:<12} error: {rec['error']}")
            continue
        summary = stats.summary()
        rec.update(
            converged=stats.converged,
            status=summary["status"],
            nfe=summary["nfe"],
            n_jac=summary["n_jac"],
            n_steps=summary["n_steps"],
            seconds=sorted(runs)[len(runs) // 2],
            seconds_runs=runs,
            abs_residual=summary["abs_residual"],
            rel_residual=summary["rel_residual"],
        )
        # Recomputed outside the solver: the benchmark should not just trust the solver's own report.
        with torch.no_grad():
            fz = p.f(z)
            rel = batch_norm(fz - z) / (batch_norm(fz) + 1e-9)
        rec["rel_residual_check"] = float(torch.nan_to_num(rel, nan=math.inf).max())
        if p.root is not None:
            err = batch_norm(z - p.root) / batch_norm(p.root).clamp_min(1e-12)
            rec["root_error"] = float(torch.nan_to_num(err, nan=math.inf).max())
        records.append(rec)
        if log is not None:
            log(
                f"  {method:<12} {rec['status']:<10} nfe {rec['nfe']:>4}  n_jac {rec['n_jac']:>5}  "
                f"{rec['seconds']:7.2f} s  rel {rec['rel_residual']:.1e}"
            )
    return records


# ----------------------------------------------------------------------------------------------
# Targets and reporting


def evaluate_targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each PASS / MISS (or n/a when its problems were not run).

    1. contractive conv: anderson and broyden reach tol with NFE <= fixed_point's NFE / 2 on every
       problem (if fixed_point did not converge its NFE is the budget, so the ratio is an upper bound);
    2. non-contractive: homotopy converges on >= 90 % of the instances;
    3. non-contractive: fixed_point converges on none.
    """
    by = {(r["problem"], r["method"]): r for r in records}
    targets = []
    conv = sorted({r["problem"] for r in records if r["family"] == "contractive_conv"})
    for method in ("anderson", "broyden"):
        pairs = [
            (n, by[(n, "fixed_point")], by[(n, method)]) for n in conv if (n, method) in by and (n, "fixed_point") in by
        ]
        rows, ok = [], True
        for name, fp, m in pairs:
            if "nfe" not in m or "nfe" not in fp:  # a solver raised
                ok = False
                rows.append(f"{name}: error")
                continue
            ratio = m["nfe"] / max(fp["nfe"], 1)
            ok = ok and m["converged"] and ratio <= 0.5
            rows.append(f"{name}: {m['nfe']}/{fp['nfe']} = {ratio:.2f}{'' if m['converged'] else ' (not converged)'}")
        targets.append(
            {
                "target": f"contractive conv: {method} converges with <= 0.5x fixed_point NFE",
                "result": "n/a" if not pairs else ("PASS" if ok else "MISS"),
                "detail": "; ".join(rows),
            }
        )
    nc = sorted({r["problem"] for r in records if r["family"] == "non_contractive"})
    for method, want in (("homotopy", ">= 90 %"), ("fixed_point", "0 %")):
        runs = [by[(n, method)] for n in nc if (n, method) in by]
        n_conv = sum(bool(r["converged"]) for r in runs)
        frac = n_conv / len(runs) if runs else float("nan")
        ok = frac >= 0.9 if method == "homotopy" else n_conv == 0
        failed = [r["problem"] for r in runs if bool(r["converged"]) != (method == "homotopy")]
        targets.append(
            {
                "target": f"non-contractive: {method} converges on {want} of instances",
                "result": "n/a" if not runs else ("PASS" if ok else "MISS"),
                "detail": f"{n_conv}/{len(runs)} converged"
                + (f"; against target: {', '.join(failed)}" if failed else ""),
            }
        )
    return targets


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown_table(records: list[dict[str, Any]]) -> str:
    """One row per (problem, method); residuals and errors are the worst sample's."""
    head = (
        "| problem | family | B x state | ρ(J*) | method | status | nfe | n_jac | seconds "
        "| rel res | abs res | root err |\n"
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in records:
        size = f"{r['batch']} x {'x'.join(map(str, r['state_shape']))}"
        lines.append(
            f"| {r['problem']} | {r['family']} | {size} | {_fmt(r.get('spectral_radius'), '.2f')} | {r['method']} "
            f"| {r['status']} | {_fmt(r.get('nfe'), 'd')} | {_fmt(r.get('n_jac'), 'd')} "
            f"| {_fmt(r.get('seconds'), '.2f')} | {_fmt(r.get('rel_residual'), '.1e')} "
            f"| {_fmt(r.get('abs_residual'), '.1e')} | {_fmt(r.get('root_error'), '.1e')} |"
        )
    return "\n".join(lines)


def targets_text(targets: list[dict[str, Any]]) -> str:
    return "\n".join(f"- **{t['result']}** {t['target']} ({t['detail']})" for t in targets)


def _git_describe() -> str | None:
    """The checkout's commit (``-dirty`` with local changes), so a record names the code it measured."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip()


def machine_info(threads: int) -> dict[str, Any]:
    """What a benchmark record says of the machine it ran on (every benchmark of core.bench uses this)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # The machine may be shared: the load average tells how far the timings can be trusted.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ----------------------------------------------------------------------------------------------
# CLI


def parse_option(text: str) -> tuple[str, str, Any]:
    """``"homotopy.n_steps=4"`` -> ("homotopy", "n_steps", 4); values are Python literals or strings."""
    key, sep, raw = text.partition("=")
    method, dot, name = key.partition(".")
    if not sep or not dot or not name:
        raise ValueError(f"--option expects METHOD.KEY=VALUE, e.g. homotopy.n_steps=4; got {text!r}")
    if method not in METHODS:
        raise ValueError(f"unknown solver {method!r} in --option; expected one of {', '.join(METHODS)}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as euler
    return method, name, value


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_solvers(args: argparse.Namespace) -> int:
    """The ``solvers`` subcommand; returns the exit status."""
    torch.set_num_threads(args.threads)
    specs = select(problem_specs(args.seed, args.quick), args.problems)
    if not specs:
        names = ", ".join(s.name for s in problem_specs(args.seed, args.quick))
        _log(f"no problem matches {args.problems}; problems are: {names}; families: {', '.join(FAMILIES)}")
        return 2
    options = {m: method_options(m, args.tol, args.max_iter, args.overrides) for m in args.methods}
    start = time.perf_counter()
    load_start = machine_info(args.threads)["load_average"]
    records: list[dict[str, Any]] = []
    problems = []
    for spec in specs:
        t = time.perf_counter()
        p = spec.build()
        if p.name != spec.name:
            raise RuntimeError(f"benchmark bug: spec {spec.name} built problem {p.name}")
        rho = p.info.get("spectral_radius", float("nan"))
        _log(f"{p.name} ({p.family}, built in {time.perf_counter() - t:.1f} s, ρ(J*) = {rho:.3f})")
        problems.append({"problem": p.name, "family": p.family, **p.info})
        records.extend(run_problem(p, options, args.repeat, _log))
    targets = evaluate_targets(records)
    total = time.perf_counter() - start
    machine = machine_info(args.threads)
    machine["load_average_start"] = load_start
    payload = {
        "benchmark": "solvers",
        "command": args.command_line,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "git": _git_describe(),
        "settings": {
            "tol": args.tol,
            "max_iter": args.max_iter,
            "seed": args.seed,
            "quick": args.quick,
            "repeat": args.repeat,
            "options": options,
        },
        "methods": list(args.methods),
        "problems": problems,
        "records": records,
        "targets": targets,
        "seconds_total": total,
    }
    if args.json:
        atomic_write_json(args.json, payload)
    print(markdown_table(records))
    print()
    print("Targets:")
    print(targets_text(targets))
    print()
    if args.quick:
        print("(quick smoke set: the targets are meant for the full set)")
    print(f"total {total:.1f} s on {args.threads} thread(s), torch {torch.__version__}")
    return 0


def _add_solvers_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solvers",
        help="every root solver on closed-form, contractive-conv and non-contractive problems",
        description="Run every method in core.METHODS on a fixed, seeded problem set; print a markdown table.",
    )
    p.add_argument("--json", metavar="PATH", help="write the records here (atomically)")
    p.add_argument("--quick", action="store_true", help="small smoke set (seconds)")
    p.add_argument("--tol", type=float, default=1e-4, help="relative residual tolerance (default 1e-4)")
    p.add_argument(
        "--max-iter",
        type=int,
        default=200,
        help="iteration budget of fixed_point, anderson and broyden (default 200); homotopy keeps its own defaults",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed of the problem set (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument(
        "--problems",
        nargs="+",
        metavar="PATTERN",
        help="glob patterns on problem names or families, e.g. 'conv_*' non_contractive",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        metavar="METHOD",
        help=f"solvers to run (default all: {', '.join(METHODS)})",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="override one solver option, e.g. homotopy.ode_method=euler (repeatable)",
    )
    p.add_argument("--repeat", type=int, default=1, help="run each solve N times, report the median time")
    p.set_defaults(func=run_solvers, check=_check_solvers_args, parser=p)


def _check_solvers_args(args: argparse.Namespace) -> str | None:
    """Validate before any work; returns an error message or None."""
    if args.tol <= 0 or args.max_iter < 1 or args.threads < 1 or args.repeat < 1:
        return "--tol must be > 0; --max-iter, --threads and --repeat >= 1"
    args.overrides = {}
    try:
        for text in args.option:
            method, key, value = parse_option(text)
            args.overrides.setdefault(method, {})[key] = value
        for m in args.methods:
            make_options(m, **method_options(m, args.tol, args.max_iter, args.overrides))
    except ValueError as err:
        return str(err)
    return None


SUBCOMMANDS = (_add_solvers_parser,)
