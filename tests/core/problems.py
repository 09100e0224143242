"""Closed-form fixed-point problems z* = f(z*) for the solver tests.

Every problem is built by ``make(name, dtype=..., batch=...)`` and carries the map, a start point and
the exact root (computed in float64 from its closed form, then cast). Roots that have no elementary
closed form (cos, tanh) are computed independently of ``core``: scalar Newton in Python floats, or
plain Picard iteration of a map whose contraction factor bounds the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Device = torch.device | str

#: The Dottie number, the root of z = cos z.
DOTTIE = 0.7390851332151607


@dataclass(frozen=True)
class Problem:
    """One batched problem.

    Attributes:
        name: registry key.
        f: (B, ...) -> (B, ...) map; samples independent.
        z0: (B, ...) start point.
        root: (B, ...) exact root, same dtype as z0.
        contractive: ||∂f/∂z|| < 1 everywhere that matters (plain iteration converges).
    """

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    z0: torch.Tensor
    root: torch.Tensor
    contractive: bool = True


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


def cos(batch: int = 3, dtype: torch.dtype = torch.float64, device: Device = "cpu", flat: bool = False) -> Problem:
    """z = cos z, root 0.7390851332 (Dottie number); z0 = 0, shape (B, 1) or (B,) when ``flat``."""
    shape = (batch,) if flat else (batch, 1)
    return Problem(
        "cos_1d" if flat else "cos",
        torch.cos,
        torch.zeros(shape, dtype=dtype, device=device),
        torch.full(shape, DOTTIE, dtype=dtype, device=device),
    )


def sqrt2(batch: int = 3, dtype: torch.dtype = torch.float64, device: Device = "cpu") -> Problem:
    """Heron's map z = (z + 2/z) / 2 from z0 = 1; root sqrt(2), where f'(z*) = 0."""
    return Problem(
        "sqrt2",
        lambda z: 0.5 * (z + 2.0 / z),
        torch.ones(batch, 1, dtype=dtype, device=device),
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
