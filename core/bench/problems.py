"""Fixed-point problems z* = f(z*) with known roots, for the solver benchmark and the solver tests: one registry.

- Closed forms, any batch, dtype and device (``make(name, dtype=..., device=..., batch=...)``): z = cos z,
  Heron's z = (z + 2/z) / 2, z = 0.5 cos z + 0.3, z = A z + b (one contraction, or one per sample, on a
  multi-dimensional state), a one-layer tanh DEQ; and two on which plain iteration diverges (a reflected
  and a rotated-and-stretched linear map). Roots without an elementary closed form (cos, tanh) are computed
  independently of ``core``: scalar Newton in Python floats, or Picard iteration of a map whose contraction
  factor bounds the error. Random data is drawn on the CPU in float64 from a fixed seed, then cast and
  moved, so a problem is the same on every device and in every dtype.
- The benchmark's families (``problem_specs``): the closed forms at fixed starts, DEQ-sized contractive
  convolutions, and non-contractive linear and conv maps, each with Jacobian facts at its root.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..solvers import Map, batch_norm

Device = torch.device | str

FAMILIES = ("closed_form", "contractive_conv", "non_contractive")
#: Spectral-radius window the non-contractive problems must fall into (checked on construction).
NC_RHO_RANGE = (1.5, 3.0)


@dataclass(frozen=True)
class Problem:
    """One batched problem: find z with z = f(z) from z0.

    Attributes:
        name: registry key / benchmark name.
        f: (B, ...) -> (B, ...) map; samples independent.
        z0: (B, ...) start point.
        root: (B, ...) exact root, same dtype as z0, or None when unknown.
        family: one of :data:`FAMILIES`.
        contractive: ||∂f/∂z|| < 1 everywhere that matters (plain iteration converges).
        info: JSON-ready facts (sizes, spectral radius, construction parameters).
    """

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    z0: torch.Tensor
    root: torch.Tensor | None
    family: str = "closed_form"
    contractive: bool = True
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Closed forms, any dtype and device

#: The Dottie number, the root of z = cos z.
DOTTIE = 0.7390851332151607


def _scalar_newton(g: Callable[[float], float], dg: Callable[[float], float], x: float) -> float:
    for _ in range(100):
        step = g(x) / dg(x)
        x -= step
        if abs(step) < 1e-17:
            break
    return x


def _orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _linear_map(a: torch.Tensor, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> A z + b with a shared A (N, N) or per-sample A (B, N, N); b and z of shape (B, ...)."""

    def f(z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(z.shape[0], -1, 1)
        out = (a @ flat).squeeze(-1) if a.dim() == 3 else flat.squeeze(-1) @ a.T
        return out.reshape(z.shape) + b

    return f


def _linear_root(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(I - A)^-1 b per sample, in float64."""
    n = a.shape[-1]
    eye = torch.eye(n, dtype=torch.float64)
    rhs = b.reshape(b.shape[0], n, 1).double()
    mat = (eye - a.double()).expand(b.shape[0], n, n)
    return torch.linalg.solve(mat, rhs).reshape(b.shape)


def cos(
    batch: int = 3,
    dtype: torch.dtype = torch.float64,
    device: Device = "cpu",
    flat: bool = False,
    starts: Sequence[float] | None = None,
) -> Problem:
    """z = cos z, root 0.7390851332 (Dottie number); z0 = 0 (or one sample per value of ``starts``), shape
    (B, 1) or (B,) when ``flat``."""
    batch = len(starts) if starts is not None else batch
    shape = (batch,) if flat else (batch, 1)
    z0 = torch.zeros(shape) if starts is None else torch.tensor(starts, dtype=torch.float64).reshape(shape)
    return Problem(
        "cos_1d" if flat else "cos",
        torch.cos,
        z0.to(dtype=dtype, device=device),
        torch.full(shape, DOTTIE, dtype=dtype, device=device),
    )


def sqrt2(
    batch: int = 3, dtype: torch.dtype = torch.float64, device: Device = "cpu", starts: Sequence[float] | None = None
) -> Problem:
    """Heron's map z = (z + 2/z) / 2 from z0 = 1 (or one sample per value of ``starts``); root sqrt(2), where
    f'(z*) = 0."""
    batch = len(starts) if starts is not None else batch
    z0 = torch.ones(batch, 1) if starts is None else torch.tensor(starts, dtype=torch.float64).reshape(batch, 1)
    return Problem(
        "sqrt2",
        lambda z: 0.5 * (z + 2.0 / z),
        z0.to(dtype=dtype, device=device),
        torch.full((batch, 1), math.sqrt(2.0), dtype=dtype, device=device),
    )


def half_cos(batch: int = 2, dtype: torch.dtype = torch.float64, device: Device = "cpu") -> Problem:
    """z = 0.5 cos z + 0.3 from z0 = 0: a smooth, nonlinear homotopy path (for convergence order)."""
    root = _scalar_newton(lambda x: x - 0.5 * math.cos(x) - 0.3, lambda x: 1 + 0.5 * math.sin(x), 0.5)
    return Problem(
        "half_cos",
        lambda z: 0.5 * torch.cos(z) + 0.3,
        torch.zeros(batch, 1, dtype=dtype, device=device),
        torch.full((batch, 1), root, dtype=dtype, device=device),
    )


def linear(
    batch: int = 4,
    n: int = 6,
    dtype: torch.dtype = torch.float64,
    device: Device = "cpu",
    norm: float = 0.6,
    scale: float = 1.0,
    seed: int = 0,
) -> Problem:
    """z = A z + s b with ||A||_2 = ``norm`` (< 1) shared by the batch, a different b per sample, s = ``scale``."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = norm * a / torch.linalg.matrix_norm(a, ord=2)
    b = scale * torch.randn(batch, n, generator=gen, dtype=torch.float64)
    return Problem(
        "linear",
        _linear_map(a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)),
        torch.zeros(batch, n, dtype=dtype, device=device),
        _linear_root(a, b).to(dtype=dtype, device=device),
        info={"spectral_radius_exact": float(torch.linalg.eigvals(a).abs().max())},
    )


def multidim(
    batch: int = 3,
    shape: tuple[int, ...] = (2, 3, 3),
    dtype: torch.dtype = torch.float64,
    device: Device = "cpu",
    seed: int = 1,
) -> Problem:
    """State (B, 2, 3, 3): a different contraction A_b (||A_b||_2 in [0.3, 0.8]) and b_b per sample."""
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    a = torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    norms = torch.linspace(0.3, 0.8, batch, dtype=torch.float64)
    a = a * (norms / torch.linalg.matrix_norm(a, ord=2))[:, None, None]
    b = torch.randn(batch, *shape, generator=gen, dtype=torch.float64)
    return Problem(
        "multidim",
        _linear_map(a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)),
        torch.zeros(batch, *shape, dtype=dtype, device=device),
        _linear_root(a, b).to(dtype=dtype, device=device),
    )


def noncontractive(
    batch: int = 3, n: int = 4, dtype: torch.dtype = torch.float64, device: Device = "cpu", seed: int = 2
) -> Problem:
    """z = A z + b, A = Q diag(-2 .. -1.5) Qᵀ: plain iteration diverges, I - A is well conditioned."""
    gen = torch.Generator().manual_seed(seed)
    q = _orthogonal(n, gen)
    a = q @ torch.diag(torch.linspace(-2.0, -1.5, n, dtype=torch.float64)) @ q.T
    b = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    return Problem(
        "noncontractive",
        _linear_map(a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)),
        torch.zeros(batch, n, dtype=dtype, device=device),
        _linear_root(a, b).to(dtype=dtype, device=device),
        contractive=False,
    )


def rotation(batch: int = 2, dtype: torch.dtype = torch.float64, device: Device = "cpu") -> Problem:
    """z = A z + b, A = 3 R(60°) (eigenvalues 3 e^{±iπ/3}): plain iteration diverges, and along the
    fixed-point homotopy path from z0 = 0 the absolute residual first rises (bᵀA b > |b|²) before it falls.
    """
    th = math.pi / 3
    a = 3.0 * torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
    b = torch.eye(2, dtype=torch.float64).repeat(batch, 1)[:batch]
    return Problem(
        "rotation",
        _linear_map(a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)),
        torch.zeros(batch, 2, dtype=dtype, device=device),
        _linear_root(a, b).to(dtype=dtype, device=device),
        contractive=False,
    )


def tanh(
    batch: int = 3, n: int = 5, d: int = 3, dtype: torch.dtype = torch.float64, device: Device = "cpu", seed: int = 3
) -> Problem:
    """A one-layer DEQ z = tanh(W z + U x) with ||W||_2 = 0.5 and a different x per sample.

    tanh is 1-Lipschitz, so f is a 0.5-contraction: 200 Picard iterations in float64 leave an error
    below 0.5^200, far under float64 rounding; that is the reference root.
    """
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n, generator=gen, dtype=torch.float64)
    w = 0.5 * w / torch.linalg.matrix_norm(w, ord=2)
    u = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = torch.randn(batch, d, generator=gen, dtype=torch.float64)
    ux = x @ u.T

    def f64(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ w.T + ux)

    root = torch.zeros(batch, n, dtype=torch.float64)
    for _ in range(200):
        root = f64(root)
    w_t, ux_t = w.T.to(dtype=dtype, device=device), ux.to(dtype=dtype, device=device)
    return Problem(
        "tanh",
        lambda z: torch.tanh(z @ w_t + ux_t),
        torch.zeros(batch, n, dtype=dtype, device=device),
        root.to(dtype=dtype, device=device),
    )


#: name -> builder(dtype=...) -> Problem, for the problems every method must solve.
PROBLEMS: dict[str, Callable[..., Problem]] = {
    "cos": cos,
    "cos_1d": lambda **kw: cos(flat=True, **kw),
    "sqrt2": sqrt2,
    "half_cos": half_cos,
    "linear": linear,
    "multidim": multidim,
    "tanh": tanh,
}


#: Problems on which plain fixed-point iteration diverges.
NONCONTRACTIVE: dict[str, Callable[..., Problem]] = {"noncontractive": noncontractive, "rotation": rotation}


def make(name: str, **kwargs) -> Problem:
    """Build a registered problem (``dtype=``, ``device=``, ``batch=`` and the builder's own keywords).

    Random data is drawn on the CPU in float64 from a fixed seed, then cast and moved, so a problem is
    the same on every device and in every dtype.
    """
    return {**PROBLEMS, **NONCONTRACTIVE}[name](**kwargs)


# ----------------------------------------------------------------------------------------------
# The benchmark's problem set


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
    return Problem(name, f, z0, root, family=family, info={**_size_info(z0), **facts, **info})


# --- closed form -----------------------------------------------------------------------------


def cos_problem() -> Problem:
    """:func:`cos` from 4 starts in [0, 2], float64."""
    p = cos(starts=(0.0, 0.5, 1.0, 2.0))
    return _finish("cos", "closed_form", p.f, p.z0, p.root, torch.Generator().manual_seed(0))


def babylon_problem() -> Problem:
    """:func:`sqrt2` (Newton for z² = 2) from 4 starts in [0.5, 4], float64."""
    p = sqrt2(starts=(0.5, 1.0, 2.0, 4.0))
    return _finish("babylon_sqrt2", "closed_form", p.f, p.z0, p.root, torch.Generator().manual_seed(0))


def linear_contractive_problem(seed: int, n: int = 16, batch: int = 4, norm: float = 0.9) -> Problem:
    """:func:`linear` with ||A||_2 = ``norm``; float64."""
    p = linear(batch=batch, n=n, norm=norm, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    return _finish(f"linear_contractive_n{n}", "closed_form", p.f, p.z0, p.root, gen, seed=seed, a_norm=norm, **p.info)


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
