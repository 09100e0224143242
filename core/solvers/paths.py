"""Solver paths seen in a few dimensions: one PCA basis fitted on the states every solver visited.

A DEQ's state has thousands of dimensions (6,272 for a 28 x 28 image model); fitting one basis on every
solver's states and projecting each path on it draws them all in the same coordinates, so two solvers'
routes to the same equilibrium can be compared. Numpy only: the states come in as (N, D) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PCABasis:
    """A frozen PCA basis of P axes: ``mean`` (D,), ``components`` (P, D), ``explained`` (P,) variance shares."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray

    def project(self, states: np.ndarray) -> np.ndarray:
        """(..., D) -> (..., P)."""
        states = np.asarray(states, dtype=np.float64)
        return ((states - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(states: np.ndarray, dims: int = 2) -> PCABasis:
    """Fit the basis once on all states (N, D) of all solvers (numpy: SVD, or the eigenvectors of the Gram
    matrix when N < D), so every path is drawn in the same coordinates. Fewer than ``dims`` directions of
    variance are padded with zeros."""
    x = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    if x.shape[0] == 0:
        raise ValueError("fit_pca needs at least one state")
    mean = x.mean(axis=0)
    xc = x - mean
    if x.shape[0] < x.shape[1]:
        # Few states of a large dimension (e.g. 130 x 6272): the N x N Gram matrix has the same non-zero
        # spectrum and is ~30x cheaper to decompose than the N x D matrix itself.
        w, u = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(w)[::-1]
        w, u = np.clip(w[order], 0, None), u[:, order]
        s = np.sqrt(w)
        keep = s > s.max() * 1e-12 if len(s) and s.max() > 0 else np.zeros(len(s), bool)
        vt = (u[:, keep].T @ xc) / s[keep, None]
        s = s[keep]
    else:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
    comps = np.zeros((dims, x.shape[1]))
    k = min(dims, vt.shape[0])
    comps[:k] = vt[:k]
    # Fix each axis's sign so the picture does not flip between redraws of the same data.
    for i in range(k):
        j = np.argmax(np.abs(comps[i]))
        if comps[i, j] < 0:
            comps[i] = -comps[i]
    var = s**2
    total = var.sum()
    explained = np.zeros(dims)
    explained[:k] = var[:k] / total if total > 0 else 0.0
    return PCABasis(mean, comps, explained)
