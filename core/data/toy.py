"""Seeded 2-D toy classification sets: circles, moons, spirals and the 1-D crossing problem.

Every set has two balanced classes (class 0 gets the extra point when n is odd) and comes back shuffled,
as ``X`` float32 (N, 2) and ``y`` int64 (N,). The same (name, n, noise, seed) always gives the same arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Radii of the concentric-annuli set of Dupont et al., "Augmented Neural ODEs" (2019), Sec. 3:
#: class 0 is the disk ||x|| <= R_INNER, class 1 the ring R_RING_IN <= ||x|| <= R_RING_OUT.
R_INNER, R_RING_IN, R_RING_OUT = 0.5, 1.0, 1.5

#: name -> (default Gaussian noise std, class names, one-line description)
TOY_SETS: dict[str, tuple[float, tuple[str, str], str]] = {
    "circles": (
        0.0,
        ("inner disk", "outer ring"),
        "disk r<=0.5 (class 0) inside a ring 1<=r<=1.5 (class 1): a 2-D NODE cannot separate them",
    ),
    "moons": (0.1, ("upper moon", "lower moon"), "two interleaved half circles"),
    "spirals": (0.05, ("spiral A", "spiral B"), "two interleaved spirals, 1.5 turns each"),
    "crossing": (
        0.1,
        ("x=+1 (g=-1)", "x=-1 (g=+1)"),
        "1-D g(-1)=1, g(1)=-1 embedded as points (x, 0); class 0 for x>0, class 1 for x<0",
    ),
}


def _split_counts(n: int) -> tuple[int, int]:
    return (n + 1) // 2, n // 2


def _make_circles(n0: int, n1: int, rng: np.random.Generator) -> np.ndarray:
    # Uniform in area (radius = sqrt of a uniform r²), so neither class crowds its centre.
    r0 = R_INNER * np.sqrt(rng.uniform(0.0, 1.0, n0))
    r1 = np.sqrt(rng.uniform(R_RING_IN**2, R_RING_OUT**2, n1))
    radius = np.concatenate([r0, r1])
    angle = rng.uniform(0.0, 2 * math.pi, n0 + n1)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _make_moons(n0: int, n1: int, rng: np.random.Generator) -> np.ndarray:
    # The two half circles of sklearn.datasets.make_moons, shifted so their centre is the origin.
    t0 = rng.uniform(0.0, math.pi, n0)
    t1 = rng.uniform(0.0, math.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    return np.concatenate([upper, lower]) - np.array([0.5, 0.25])


def _make_spirals(n0: int, n1: int, rng: np.random.Generator) -> np.ndarray:
    # Radius grows linearly with the angle (Archimedean spiral, max radius 1); the second arm is the
    # first turned by π, so neighbouring windings of the two arms are 0.3 apart.
    t = rng.uniform(0.0, 1.0, n0 + n1)
    radius = 0.1 + 0.9 * t
    angle = 3 * math.pi * t + math.pi * np.r_[np.zeros(n0), np.ones(n1)]
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _make_crossing(n0: int, n1: int, rng: np.random.Generator) -> np.ndarray:
    # Inputs ±1 (class 0 at +1, class 1 at -1); noise is applied to |x| and clipped so that x never
    # changes sign: the label is always "x > 0" vs "x < 0".
    sign = np.r_[np.ones(n0), -np.ones(n1)]
    return np.stack([sign, np.zeros(n0 + n1)], axis=1)


_MAKERS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "circles": _make_circles,
    "moons": _make_moons,
    "spirals": _make_spirals,
    "crossing": _make_crossing,
}


def make_toy(
    name: str, n: int = 1000, noise: float | None = None, seed: int | list[int] = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a seeded 2-D toy set.

    ``crossing`` is the 1-D problem g(-1) = 1, g(1) = -1 that a 1-D NODE cannot fit (its trajectories
    cannot cross). The models take 2-D ``points``, so it comes as points (x, 0) near x = ±1 with class 0
    for x > 0 and class 1 for x < 0 (regression target g = -sign(x) = 2y - 1). Note that embedding in 2-D
    is exactly ANODE's one extra dimension, so a 2-D NODE *can* solve it: train on X[:, :1] to see the
    1-D failure.

    Args:
        name: circles, moons, spirals or crossing.
        n: number of points (>= 1); classes get ceil(n/2) and floor(n/2).
        noise: std of Gaussian noise added to the coordinates (crossing: to |x|); None uses the set's
            default (circles 0, moons 0.1, spirals 0.05, crossing 0.1). With noise > 0 the circles'
            gap between r = 0.5 and r = 1 blurs.
        seed: seed (or list of ints) of a ``numpy.random.default_rng``.

    Returns:
        X float32 (n, 2) and y int64 (n,), shuffled.
    """
    if name not in _MAKERS:
        raise ValueError(f"unknown toy set {name!r}; expected one of {', '.join(TOY_SETS)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    noise = TOY_SETS[name][0] if noise is None else noise
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    n0, n1 = _split_counts(n)
    X = _MAKERS[name](n0, n1, rng)
    y = np.r_[np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)]
    if noise > 0:
        if name == "crossing":
            magnitude = np.maximum(1.0 + noise * rng.standard_normal(n), 1e-3)
            X[:, 0] = np.sign(X[:, 0]) * magnitude
        else:
            X = X + noise * rng.standard_normal(X.shape)
    order = rng.permutation(n)
    return X[order].astype(np.float32), y[order]
