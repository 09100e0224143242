"""Model configuration: one frozen dataclass that every front end (CLI, app, tests) builds.

Validation happens on construction, so a bad value never reaches a half-built model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..checks import check_choice, check_positive_int, check_positive_number, fail, from_fields
from ..solvers import ADAPTIVE_METHODS, METHODS, ODE_METHODS, make_options

FAMILIES = ("node", "anode", "deq", "homoode")
#: Each family's name as people write it (every message, menu and legend uses these).
FAMILY_NAMES = {"node": "NODE", "anode": "ANODE", "deq": "DEQ", "homoode": "HomoODE"}

#: input kind -> (input shape without batch, human name)
INPUT_KINDS: dict[str, tuple[tuple[int, ...], str]] = {
    "points": ((2,), "2-D points"),
    "image28": ((1, 28, 28), "1x28x28 greyscale images (MNIST, Fashion-MNIST)"),
    "image32": ((3, 32, 32), "3x32x32 colour images (CIFAR, SVHN)"),
}

DEQ_BACKWARDS = ("implicit", "phantom")
#: A DEQ's default forward iteration cap (the presets', the app's).
DEQ_MAX_ITER = 30
#: Options every root solver has (``SolverOptions``): they carry over when the solver changes.
COMMON_SOLVER_OPTIONS = ("tol", "max_iter")
START_POINTS = ("fixed", "learnable")
#: The image DEQ's cells: "contractive" (Lipschitz <= ``contraction`` by construction, the default) and
#: "groupnorm" (the residual GroupNorm cell of the DEQ tutorials: not a contraction, kept for the Solver lab).
DEQ_CELLS = ("contractive", "groupnorm")


@dataclass(frozen=True)
class ODEConfig:
    """How an ODE block integrates t (or λ) from 0 to 1.

    Attributes:
        method: torchdiffeq method: fixed-step (euler, midpoint, rk4) or adaptive (dopri5, ...).
        rtol, atol: tolerances of adaptive methods (the official HomoODE uses dopri5 at 1e-3).
        n_steps: equal steps of fixed-step methods.
        max_steps: attempted-step cap of adaptive methods: a stiff field raises instead of hanging.
        adjoint: backward by torchdiffeq's ``odeint_adjoint`` (memory flat in NFE) instead of
            backprop through the solver's operations.
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    n_steps: int = 4
    max_steps: int = 1000
    adjoint: bool = False

    def __post_init__(self) -> None:
        check_choice(self.method, "ode method", ODE_METHODS)
        check_positive_number(self.rtol, "rtol")
        check_positive_number(self.atol, "atol")
        check_positive_int(self.n_steps, "n_steps")
        check_positive_int(self.max_steps, "max_steps")

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS


@dataclass(frozen=True)
class DEQConfig:
    """How a DEQ finds and differentiates its equilibrium.

    Attributes:
        solver: forward root solver, any of ``core.METHODS`` (homotopy included).
        solver_options: options of that solver (tol, max_iter, window, ...).
        backward: "implicit" (solve g = Jᵀg + dL/dz* with ``backward_solver``) or "phantom"
            (backprop through ``phantom_steps`` unrolled steps from z*).
        backward_solver / backward_options: the linear fixed-point solve of the implicit backward.
        phantom_steps: unrolled steps of the phantom gradient.
        jac_reg: weight γ of the Jacobian regulariser (Bai, Koltun & Kolter 2021) added to the training
            loss: γ ||εᵀ ∂f/∂z||² / d at z*, ε ~ N(0, I), an unbiased one-sample estimate of ||∂f/∂z||_F² / d.
            It keeps f contractive as training goes, so the solvers' NFE stays low; 0 turns it off. Its
            evaluation of f counts in the forward NFE (one more per training step).
    """

    solver: str = "anderson"
    solver_options: dict[str, Any] = field(default_factory=lambda: {"tol": 1e-4, "max_iter": DEQ_MAX_ITER})
    backward: str = "implicit"
    backward_solver: str = "anderson"
    backward_options: dict[str, Any] = field(default_factory=lambda: {"tol": 1e-4, "max_iter": DEQ_MAX_ITER})
    phantom_steps: int = 1
    jac_reg: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.backward, "backward", DEQ_BACKWARDS)
        if not isinstance(self.jac_reg, (int, float)) or isinstance(self.jac_reg, bool) or not 0 <= self.jac_reg < 1e6:
            fail(f"jac_reg must be a number from 0 (off) to 1e6, got {self.jac_reg!r}")
        if self.solver not in METHODS:
            fail(f"unknown solver {self.solver!r}; expected one of {', '.join(METHODS)}")
        make_options(self.solver, **self.solver_options)  # validates, raises ValueError
        if self.backward_solver not in METHODS:
            fail(f"unknown backward solver {self.backward_solver!r}; expected one of {', '.join(METHODS)}")
        make_options(self.backward_solver, **self.backward_options)
        check_positive_int(self.phantom_steps, "phantom_steps")

    def with_forward(self, solver: str | None = None, **options: Any) -> DEQConfig:
        """This config with another forward solver and/or options (ValueError for a bad one). A new solver
        keeps the options every solver has (tol, max_iter) and drops the old one's own (e.g. a window)."""
        solver = self.solver if solver is None else solver
        kept = (
            self.solver_options
            if solver == self.solver
            else {k: v for k, v in self.solver_options.items() if k in COMMON_SOLVER_OPTIONS}
        )
        return dataclasses.replace(self, solver=solver, solver_options={**kept, **options})


MAX_DEPTH = 8  # hidden layers of a point field: deeper tanh MLPs only slow the solvers down


@dataclass(frozen=True)
class ModelConfig:
    """Everything ``build_model`` needs.

    Attributes:
        family: node, anode, deq or homoode.
        input_kind: points (2,), image28 (1x28x28) or image32 (3x32x32).
        num_classes: classifier outputs.
        width: channels of the implicit state (images) or its dimension (points; NODE keeps 2 there).
        hidden: hidden units of the MLP fields (points only).
        depth: hidden layers of the MLP fields (points only; 1: F(z) = W2 tanh(W1 z + U x + b1) + b2).
        augment_dim: extra zero channels of ANODE (images: taken out of ``width`` so the state keeps
            ``width`` channels; points: added to the 2 input dimensions).
        head_dim: channels of the 1x1 conv in the image head.
        head_pool: spatial size the image head average-pools to (1 = global pooling).
        dropout: channel-wise (variational) dropout in HomoODE's field, one mask per solve.
        start: HomoODE start point, "fixed" (±1 alternating by channel) or "learnable" (shared).
        cell: the image DEQ's cell, one of ``DEQ_CELLS`` (point DEQs have one MLP cell).
        contraction: the contractive cell's Lipschitz bound γ in (0, 1).
        ode: integration settings of NODE / ANODE / HomoODE.
        deq: solver settings of DEQ.
        seed: parameter initialisation seed (None: leave torch's RNG alone).
    """

    family: str = "homoode"
    input_kind: str = "image28"
    num_classes: int = 10
    width: int = 32
    hidden: int = 32
    depth: int = 1
    augment_dim: int = 0
    head_dim: int = 64
    head_pool: int = 1
    dropout: float = 0.0
    start: str = "fixed"
    cell: str = "contractive"
    contraction: float = 0.9
    ode: ODEConfig = field(default_factory=ODEConfig)
    deq: DEQConfig = field(default_factory=DEQConfig)
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_choice(self.family, "family", FAMILIES)
        check_choice(self.input_kind, "input_kind", tuple(INPUT_KINDS))
        check_positive_int(self.num_classes, "num_classes", minimum=2)
        check_positive_int(self.width, "width")
        check_positive_int(self.hidden, "hidden")
        check_positive_int(self.depth, "depth")
        if self.depth > MAX_DEPTH:
            fail(f"depth must be at most {MAX_DEPTH}, got {self.depth!r}")
        check_positive_int(self.augment_dim, "augment_dim", minimum=0)
        check_positive_int(self.head_dim, "head_dim")
        check_positive_int(self.head_pool, "head_pool")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            fail(f"dropout must be in [0, 1), got {self.dropout!r}")
        check_choice(self.start, "start", START_POINTS)
        check_choice(self.cell, "cell", DEQ_CELLS)
        if (
            not isinstance(self.contraction, (int, float))
            or isinstance(self.contraction, bool)
            or not (0 < self.contraction < 1)
        ):
            fail(f"contraction must be in (0, 1) (the cell's Lipschitz bound), got {self.contraction!r}")
        if not isinstance(self.ode, ODEConfig):
            fail("ode must be an ODEConfig")
        if not isinstance(self.deq, DEQConfig):
            fail("deq must be a DEQConfig")
        if self.input_kind != "points" and self.family == "anode" and self.augment_dim >= self.width:
            fail(f"augment_dim ({self.augment_dim}) must be smaller than width ({self.width}) for images")
        if self.family == "anode" and self.augment_dim == 0:
            fail("an ANODE needs augment_dim >= 1 (with 0 it is a NODE)")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return INPUT_KINDS[self.input_kind][0]

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def with_solver_settings(
        self,
        tol: float | None = None,
        ode_method: str | None = None,
        n_steps: int | None = None,
        deq_solver: str | None = None,
    ) -> ModelConfig:
        """This config with the solver settings a person picks (None: keep). One tolerance means both kinds of
        solve: the ODE's rtol = atol (adaptive methods) and the DEQ forward solver's relative residual; a new
        DEQ solver keeps the options every solver has (``DEQConfig.with_forward``)."""
        ode: dict[str, Any] = {} if tol is None else {"rtol": tol, "atol": tol}
        if ode_method is not None:
            ode["method"] = ode_method
        if n_steps is not None:
            ode["n_steps"] = n_steps
        deq = self.deq.with_forward(deq_solver, **({} if tol is None else {"tol": tol}))
        return self.replace(ode=dataclasses.replace(self.ode, **ode), deq=deq)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys raise ValueError naming the valid ones."""
        data = dict(data)
        if "cell" not in data and data.get("family") == "deq" and data.get("input_kind") != "points":
            data["cell"] = "groupnorm"  # saved before the contractive cell existed: the only cell there was
        for key, sub in (("ode", ODEConfig), ("deq", DEQConfig)):
            if isinstance(data.get(key), dict):
                data[key] = from_fields(sub, data[key])
        return from_fields(cls, data)
