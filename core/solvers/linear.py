"""Matrix-free linear algebra for the homotopy solver: Jacobian products and batched solves.

At a state z (B, ...) the operator of interest is A = a I - c J with J = ∂f/∂z(z) block-diagonal
over the batch (samples are independent). ``JacobianAt`` evaluates f(z) once and then provides J v
either by reverse mode twice ("vjp": Jᵀu is linear in u, so J v = ∂(Jᵀu · v)/∂u, one backward pass per
product through a graph built once) or by forward-mode AD ("jvp": one extra forward call per product).
``solve_shifted`` solves (a I - c J) x = r per sample, by GMRES (Saad & Schultz 1986) or, for small
states, by building J densely from N vector-Jacobian products and a batched LU solve.
"""

from __future__ import annotations

import math

import torch
import torch.autograd.forward_ad as fwAD

from .base import CountedMap, batch_dot, wide_dtype

JACOBIAN_MODES = ("vjp", "jvp")
LINEAR_SOLVERS = ("auto", "gmres", "dense")


class JacobianAt:
    """f and its Jacobian products at one state.

    Attributes:
        z: (B, ...) the state (detached).
        fz: (B, ...) f(z), detached.
    """

    def __init__(self, f: CountedMap, z: torch.Tensor, mode: str = "vjp"):
        self.f, self.mode = f, mode
        self.z = z.detach()
        self.shape = z.shape
        with torch.enable_grad():
            zg = self.z.clone().requires_grad_(True)
            out = f(zg)
        self.fz = out.detach()
        self._zg, self._out = zg, out
        self._u: torch.Tensor | None = None
        self._jtu: torch.Tensor | None = None
        self.differentiable = out.requires_grad

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...) Jᵀ u."""
        if not self.differentiable:
            return torch.zeros_like(u)
        self.f.jac_products += 1
        (g,) = torch.autograd.grad(self._out, self._zg, u, retain_graph=True, allow_unused=True)
        return torch.zeros_like(u) if g is None else g

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...) J v."""
        if not self.differentiable:
            return torch.zeros_like(v)
        self.f.jac_products += 1
        if self.mode == "jvp":
            with torch.enable_grad(), fwAD.dual_level():
                out = self.f(fwAD.make_dual(self.z, v.reshape(self.shape)))
                tangent = fwAD.unpack_dual(out).tangent
            return torch.zeros_like(v) if tangent is None else tangent.detach()
        with torch.enable_grad():
            if self._jtu is None:
                # Jᵀu with a graph in u, built once per state: J v = d(Jᵀu · v)/du.
                self._u = torch.zeros_like(self._out, requires_grad=True)
                (self._jtu,) = torch.autograd.grad(
                    self._out, self._zg, self._u, retain_graph=True, create_graph=True, allow_unused=True
                )
                if self._jtu is None or not self._jtu.requires_grad:
                    self.differentiable = False
                    return torch.zeros_like(v)
            (jv,) = torch.autograd.grad(self._jtu, self._u, v.reshape(self.shape), retain_graph=True)
        return jv.detach()

    def dense(self) -> torch.Tensor:
        """(B, N, N) the Jacobian of every sample, from N vector-Jacobian products."""
        bsz = self.shape[0]
        n = self.z[0].numel()
        rows = []
        for i in range(n):
            e = torch.zeros(bsz, n, dtype=self.z.dtype, device=self.z.device)
            e[:, i] = 1
            # Block-diagonal J: one batched vjp with e_i in every sample gives row i of each J_b.
            rows.append(self.vjp(e.view(self.shape)).reshape(bsz, n))
        return torch.stack(rows, dim=1)


def solve_shifted(
    op: JacobianAt,
    rhs: torch.Tensor,
    a: float,
    c: float,
    method: str = "auto",
    dense_max: int = 64,
    tol: float = 1e-8,
    krylov_dim: int = 30,
    max_restarts: int = 5,
) -> torch.Tensor:
    """Solve (a I - c J) x = rhs per sample.

    Args:
        op: Jacobian products at the current state.
        rhs: (B, ...) right-hand side.
        a, c: the shift; the homotopy uses a = 1, c = λ (fixed-point homotopy) or c = 1 (Newton).
        method: "dense" (LU of the explicit Jacobian), "gmres", or "auto" (dense when N <= dense_max).
        tol: GMRES stopping rule ||A x - rhs|| <= tol ||rhs|| per sample.

    Returns:
        (B, ...) the solution x; NaN for a sample whose matrix is singular (dense method).
    """
    bsz = rhs.shape[0]
    n = rhs[0].numel()
    if method == "dense" or (method == "auto" and n <= dense_max):
        wide = wide_dtype(rhs.device)
        jac = op.dense().to(wide)
        eye = torch.eye(n, dtype=jac.dtype, device=jac.device)
        mat = a * eye - c * jac
        x, info = torch.linalg.solve_ex(mat, rhs.reshape(bsz, n, 1).to(wide))
        # A singular system (e.g. I - λJ where the homotopy path turns back) has no solution: NaN for that
        # sample, which the callers read as a path that cannot be followed, instead of an uncaught LinAlgError.
        x = torch.where((info != 0).view(bsz, 1, 1), torch.full_like(x, math.nan), x)
        return x.to(rhs.dtype).reshape(rhs.shape)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return a * v - c * op.jvp(v.view(rhs.shape)).reshape(bsz, n)

    x = gmres(matvec, rhs.reshape(bsz, n), tol=tol, krylov_dim=krylov_dim, max_restarts=max_restarts)
    return x.reshape(rhs.shape)


def gmres(matvec, b: torch.Tensor, tol: float, krylov_dim: int = 30, max_restarts: int = 5) -> torch.Tensor:
    """Restarted GMRES, batched: every sample has its own Krylov basis and least-squares problem.

    Args:
        matvec: (B, N) -> (B, N), the block-diagonal operator A.
        b: (B, N) right-hand sides.
        tol: stop when ||A x - b|| <= tol ||b|| for every sample.

    Returns:
        (B, N) x, the best solution found within ``max_restarts`` cycles of ``krylov_dim`` products.
    """
    bsz, n = b.shape
    m = max(1, min(krylov_dim, n))
    x = torch.zeros_like(b)
    b_norm = b.norm(dim=1)
    target = tol * b_norm
    tiny = torch.finfo(b.dtype).tiny
    for _ in range(max_restarts):
        r = b - matvec(x) if bool(x.any()) else b.clone()
        beta = r.norm(dim=1)
        if bool((beta <= target).all()):
            break
        basis = [r / beta.clamp_min(tiny)[:, None]]
        wide = wide_dtype(b.device)
        hess = torch.zeros(bsz, m + 1, m, dtype=wide, device=b.device)
        e1 = torch.zeros(bsz, m + 1, dtype=wide, device=b.device)
        e1[:, 0] = beta.to(wide)
        y = None
        k = 0
        for j in range(m):
            w = matvec(basis[j])
            for i in range(j + 1):  # modified Gram-Schmidt
                h = batch_dot(w, basis[i])
                hess[:, i, j] = h.to(wide)
                w = w - h[:, None] * basis[i]
            h_next = w.norm(dim=1)
            hess[:, j + 1, j] = h_next.to(wide)
            basis.append(torch.where(h_next[:, None] > tiny, w / h_next.clamp_min(tiny)[:, None], torch.zeros_like(w)))
            k = j + 1
            small = hess[:, : k + 1, :k]
            # The pseudo-inverse (SVD) handles rank-deficient Hessenbergs, e.g. a sample whose right-hand
            # side is already 0; lstsq's only CUDA driver assumes full rank.
            y = torch.linalg.pinv(small) @ e1[:, : k + 1, None]  # (B, k, 1)
            res = (e1[:, : k + 1, None] - small @ y).norm(dim=(1, 2))
            if bool((res <= target.to(wide)).all()):
                break
        coeff = y[:, :, 0].to(b.dtype)  # (B, k)
        x = x + torch.einsum("bk,kbn->bn", coeff, torch.stack(basis[:k]))
    return x
