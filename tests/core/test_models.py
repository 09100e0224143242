"""Models: shapes, presets, input validation, and gradients checked three ways."""

from __future__ import annotations

import dataclasses
import doctest

import pytest
import torch
from torch import nn

import core
from core.models import DEQConfig, ModelConfig, ODEConfig, build_model, preset
from core.models.layers import ConvField

torch.set_num_threads(2)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# ---------------------------------------------------------------- construction, presets, shapes


@pytest.mark.parametrize("kind", ["points", "image28", "image32"])
def test_presets_match_parameter_counts_within_ten_percent(kind):
    counts = {fam: build_model(preset(f"{kind}-{fam}")).num_parameters() for fam in core.FAMILIES}
    ref = counts["homoode"]
    for fam, n in counts.items():
        assert abs(n - ref) <= 0.10 * ref, (fam, n, ref)


def test_paper_cifar10_preset_has_the_official_parameter_count():
    model = build_model(preset("paper-cifar10"))
    assert model.num_parameters(include_start=False) == 132_938
    assert sum(p.numel() for p in model.start_point_parameters()) == 192
    assert model.num_parameters() == 132_938 + 192


@pytest.mark.parametrize("name", ["points-node", "points-anode", "points-deq", "points-homoode", "image28-anode"])
def test_forward_returns_logits_and_stats(name):
    cfg = preset(name)
    model = build_model(cfg).eval()
    x = torch.randn((3, *cfg.input_shape))
    out = model(x, trajectory=5)
    assert out.logits.shape == (3, cfg.num_classes)
    assert out.stats.family == cfg.family
    assert out.stats.nfe > 0
    assert out.stats.trajectory is not None and out.stats.trajectory.shape[1] == 3
    assert out.stats.times.shape[0] == out.stats.trajectory.shape[0] <= 5
    if cfg.family == "deq":
        assert out.stats.rel_residual.shape == (3,)
        assert float(out.stats.rel_residual.max()) <= cfg.deq.solver_options["tol"]
    else:
        assert out.stats.rel_residual is None
        # ODE trajectories start at z(0) and end at the returned state's t = 1.
        assert float(out.stats.times[0]) == 0.0 and float(out.stats.times[-1]) == 1.0


def test_build_is_seeded():
    a, b = build_model(preset("points-deq")), build_model(preset("points-deq"))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = build_model(preset("points-deq").replace(seed=1))
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_anode_state_carries_extra_zero_channels():
    model = build_model(preset("points-anode")).eval()
    out = model(torch.randn(4, 2), trajectory=3)
    z0 = out.stats.trajectory[0]
    assert z0.shape == (4, 3)
    assert torch.all(z0[:, 2] == 0)


def test_homoode_start_point_is_shared_and_fixed_alternating():
    model = build_model(preset("image28-homoode").replace(width=4, head_dim=4)).eval()
    out = model(torch.randn(2, 1, 28, 28), trajectory=2)
    z0 = out.stats.trajectory[0]
    assert torch.equal(z0[0], z0[1])
    # -1, +1, -1, ... over channels: the official code's fixed start.
    assert torch.all(z0[:, 0] == -1) and torch.all(z0[:, 1] == 1) and torch.all(z0[:, 2] == -1)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "name,shape,expected",
    [
        ("image28-homoode", (2, 3, 28, 28), "(B, 1, 28, 28)"),
        ("image32-deq", (2, 1, 28, 28), "(B, 3, 32, 32)"),
        ("points-node", (2, 3), "(B, 2)"),
        ("image28-node", (1, 28, 28), "(B, 1, 28, 28)"),
    ],
)
def test_wrong_input_shape_names_the_expected_shape(name, shape, expected):
    model = build_model(preset(name))
    with pytest.raises(ValueError) as err:
        model(torch.randn(shape))
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(family="resnet"), "family must be one of"),
        (dict(input_kind="image64"), "input_kind must be one of"),
        (dict(width=0), "width must be an integer >= 1"),
        (dict(dropout=1.0), "dropout"),
        (dict(family="anode", augment_dim=0), "augment_dim"),
        (dict(family="anode", width=8, augment_dim=8), "augment_dim"),
        (dict(start="random"), "start must be one of"),
    ],
)
def test_bad_model_config(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**kwargs)


def test_bad_solver_settings_are_rejected_on_construction():
    with pytest.raises(ValueError, match="expected one of anderson, broyden, fixed_point, homotopy"):
        DEQConfig(solver="andersen")
    with pytest.raises(ValueError, match="tol must be a positive number"):
        DEQConfig(solver_options={"tol": -1.0})
    with pytest.raises(ValueError, match="ode method must be one of"):
        ODEConfig(method="rk45")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("cifar-homoode")


def test_config_round_trips_through_a_dict():
    cfg = preset("paper-cifar10")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({**cfg.to_dict(), "widht": 3})


# ---------------------------------------------------------------- HomoODE gradients


def _homoode_points(adjoint: bool) -> nn.Module:
    ode = ODEConfig(method="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint)
    cfg = ModelConfig(family="homoode", input_kind="points", num_classes=3, width=4, hidden=8, ode=ode, seed=3)
    return build_model(cfg).double()


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    x = x.clone().requires_grad_(True)
    model.zero_grad()
    out = model(x)
    nn.functional.cross_entropy(out.logits, y).backward()
    return [p.grad.clone() for p in model.parameters()], x.grad.clone(), model.nfe_backward


def test_homoode_adjoint_matches_direct_backprop_points():
    torch.manual_seed(0)
    x, y = torch.randn(16, 2, dtype=torch.float64), torch.randint(0, 3, (16,))
    direct, adjoint = _homoode_points(False), _homoode_points(True)
    adjoint.load_state_dict(direct.state_dict())
    g_direct, gx_direct, nfe_b_direct = _grads(direct, x, y)
    g_adj, gx_adj, nfe_b_adj = _grads(adjoint, x, y)
    for a, b in zip(g_adj, g_direct):
        assert rel_err(a, b) < 1e-3
    assert rel_err(gx_adj, gx_direct) < 1e-3  # the condition's gradient reaches the input
    assert nfe_b_direct == 0 and nfe_b_adj > 0


class _SmoothConvField(ConvField):
    """The conv field with tanh for ReLU and the output GroupNorm: smooth, so forward and adjoint
    integrations converge quickly to the same gradient (ReLU/GroupNorm kinks make the real field's
    tolerance-convergence slow: a few 1e-3 apart even at rtol 1e-8, at ~700 NFE)."""

    def forward(self, z, x=None):
        h = self.conv2(torch.tanh(self.norm1(self.conv1(z))))
        return torch.tanh(self.drop(h) + x)


def test_homoode_adjoint_gradient_reaches_the_feature_extractor():
    base = ModelConfig(family="homoode", input_kind="image28", width=4, head_dim=4, num_classes=3, seed=1)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2])
    grads = {}
    for adjoint in (False, True):
        model = build_model(base.replace(ode=ODEConfig(method="dopri5", rtol=1e-7, atol=1e-7, adjoint=adjoint)))
        torch.manual_seed(2)  # a draw whose tiny 4-channel head is not all dead ReLUs (zero gradients)
        model.block.fn.field = _SmoothConvField(4)
        model = model.double().eval()
        model.zero_grad()
        nn.functional.cross_entropy(model(x).logits, y).backward()
        grads[adjoint] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    features = [n for n in grads[False] if n.startswith("features")]
    assert features and all(float(grads[True][n].abs().sum()) > 0 for n in features)
    for name, direct in grads[False].items():
        assert rel_err(grads[True][name], direct) < 1e-4, name


# ---------------------------------------------------------------- DEQ gradients


def _deq_points(backward: str = "implicit", **solver) -> nn.Module:
    opts = {"tol": 1e-12, "max_iter": 300, **solver}
    deq = DEQConfig(
        solver="anderson",
        solver_options=opts,
        backward=backward,
        backward_solver="anderson",
        backward_options={"tol": 1e-12, "max_iter": 300},
    )
    cfg = ModelConfig(family="deq", input_kind="points", num_classes=3, width=4, hidden=6, deq=deq, seed=5)
    model = build_model(cfg).double()
    with torch.no_grad():  # a stronger (still contractive) map, so implicit differs visibly from 1-step
        model.block.cell.field.out.weight.mul_(3.0)
    return model


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x).logits, y)


def test_deq_implicit_gradient_matches_finite_differences_and_unrolled_backprop():
    torch.manual_seed(0)
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randint(0, 3, (8,))
    model = _deq_points()
    model.zero_grad()
    _loss(model, x, y).backward()
    implicit = [p.grad.clone() for p in model.parameters()]
    assert model.nfe_backward > 0
    assert model.block.last_backward_stats.converged

    # Unrolled: backprop through 200 plain iterations from z = 0 (the map is contractive).
    cell = model.block.cell
    model.zero_grad()
    z = torch.zeros(8, 4, dtype=torch.float64)
    for _ in range(200):
        z = cell(z, x)
    nn.functional.cross_entropy(model.head(z), y).backward()
    unrolled = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(implicit, unrolled):
        if b.norm() > 0:
            assert rel_err(a, b) < 1e-6

    # Central finite differences on every entry of the cell's output weight.
    w = cell.field.out.weight
    fd = torch.zeros_like(w)
    h = 1e-6
    with torch.no_grad():
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in w.shape]):
            i = tuple(idx.tolist())
            w[i] += h
            lp = _loss(model, x, y)
            w[i] -= 2 * h
            lm = _loss(model, x, y)
            w[i] += h
            fd[i] = (lp - lm) / (2 * h)
    grad_w = implicit[[n for n, _ in model.named_parameters()].index("block.cell.field.out.weight")]
    assert rel_err(grad_w, fd) < 1e-6


def test_phantom_gradient_differs_from_implicit_and_counts_no_backward_nfe():
    torch.manual_seed(0)
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randint(0, 3, (8,))
    implicit, phantom = _deq_points("implicit"), _deq_points("phantom")
    grads = {}
    for name, model in (("implicit", implicit), ("phantom", phantom)):
        model.zero_grad()
        _loss(model, x, y).backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert phantom.nfe_backward == 0
    # One step approximates (I - J)^-1 by I: close in direction, not equal.
    assert 1e-4 < rel_err(grads["phantom"], grads["implicit"]) < 1.0


def test_deq_gradcheck_on_a_tiny_problem():
    model = _deq_points().eval()
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: model(inp).logits, (x,), eps=1e-6, atol=1e-6)


def test_homoode_gradcheck_on_a_tiny_problem():
    model = _homoode_points(adjoint=True).eval()
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: model(inp).logits, (x,), eps=1e-6, atol=1e-5)


def test_deq_with_homotopy_forward_solver_finds_the_same_equilibrium():
    torch.manual_seed(0)
    x = torch.randn(5, 2, dtype=torch.float64)
    a = _deq_points().eval()
    b = _deq_points().eval()
    b.set_solver(DEQConfig(solver="homotopy", solver_options={"tol": 1e-12}))
    with torch.no_grad():
        za, zb = a(x, trajectory=4), b(x, trajectory=4)
    assert zb.stats.solver.method == "homotopy" and zb.stats.solver.converged
    assert torch.allclose(za.logits, zb.logits, atol=1e-9)
    assert zb.stats.times[0] == 0 and zb.stats.times[-1] == 1  # the homotopy path over λ


class _LinearCell(nn.Module):
    """f(z; x) = z Aᵀ + x: its Jacobian is A for every sample."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return z @ self.a.T + x


def test_jacobian_loss_is_the_hutchinson_estimate_with_its_exact_gradient():
    from core.models.blocks import DEQBlock

    gen = torch.Generator().manual_seed(0)
    a = 0.3 * torch.randn(6, 6, generator=gen, dtype=torch.float64)
    block = DEQBlock(_LinearCell(a.clone()), DEQConfig(jac_reg=1.0), (6,))
    z = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    loss = block.jacobian_loss(z, x)
    torch.manual_seed(1)
    eps = torch.randn(4, 6, dtype=torch.float64)  # the same draw
    assert torch.allclose(loss, (eps @ a).pow(2).sum() / eps.numel(), rtol=1e-12)
    loss.backward()
    # d/dA sum((eps A)^2) / n = 2 epsᵀ (eps A) / n
    assert torch.allclose(block.cell.a.grad, 2 * eps.T @ (eps @ a) / eps.numel(), rtol=1e-12)
    # Unbiased: over many samples the mean is ||A||_F^2 / d.
    many = torch.zeros(20000, 6, dtype=torch.float64)
    estimate = block.jacobian_loss(many, torch.zeros_like(many)).detach()
    assert abs(float(estimate) / float(a.pow(2).sum() / 6) - 1) < 0.03


def test_jacobian_regulariser_is_returned_in_training_and_reaches_the_loss():
    from core.training import TrainConfig, Trainer

    cfg = preset("points-deq")
    assert build_model(cfg).train()(torch.randn(3, 2)).stats.jac_loss is None  # off by default
    reg = cfg.replace(deq=dataclasses.replace(cfg.deq, jac_reg=5.0))
    model = build_model(reg)
    out = model.train()(torch.randn(3, 2))
    assert out.stats.jac_loss is not None and out.stats.jac_loss.requires_grad and out.stats.jac_loss.item() > 0
    with torch.no_grad():
        assert model.eval()(torch.randn(3, 2)).stats.jac_loss is None  # evaluation pays nothing
    # Same data, seed and init: one step with the regulariser moves the parameters differently.
    moved = []
    for model_cfg in (cfg, reg):
        trainer = Trainer(TrainConfig(model=model_cfg, dataset="circles", steps=1, batch_size=32, seed=0))
        before = [p.detach().clone() for p in trainer.model.parameters()]
        idx = trainer._batch_indices(0)
        with torch.no_grad():
            ce = nn.functional.cross_entropy(trainer.model.train()(trainer.train_x[idx]).logits, trainer.train_y[idx])
        event = trainer.step()
        moved.append(torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)]))
        assert event.loss == pytest.approx(float(ce), rel=1e-5)  # the reported loss is the cross-entropy alone
    assert rel_err(moved[0], moved[1]) > 1e-3
    with pytest.raises(ValueError, match="jac_reg must be a number from 0"):
        DEQConfig(jac_reg=-1.0)


def test_a_non_finite_jacobian_regulariser_rolls_the_step_back(monkeypatch):
    from core.models.blocks import DEQBlock
    from core.training import Divergence, TrainConfig, Trainer

    cfg = preset("points-deq")
    reg = cfg.replace(deq=dataclasses.replace(cfg.deq, jac_reg=1.0))
    trainer = Trainer(TrainConfig(model=reg, dataset="circles", steps=3, batch_size=32, seed=0))
    trainer.step()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    monkeypatch.setattr(DEQBlock, "jacobian_loss", lambda self, z, x, cell=None: torch.tensor(float("inf")))
    with pytest.raises(Divergence) as err:
        trainer.step()
    assert "lower jac_reg" in err.value.advice and trainer.step_count == 1
    assert all(torch.equal(p, b) for p, b in zip(trainer.model.parameters(), before))


# ---------------------------------------------------------------- learnable start point


class _Relaxation(nn.Module):
    """F(z; x) = -4 (z - (W x + 3)): z(1) is pulled toward a condition-dependent point near 3."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 4)
        with torch.no_grad():
            self.lin.bias.fill_(3.0)

    def forward(self, z, x):
        return -4.0 * (z - self.lin(x))


def test_learnable_start_moves_toward_mean_equilibrium_and_lowers_dopri5_nfe():
    torch.manual_seed(0)
    ode = ODEConfig(method="dopri5", rtol=1e-3, atol=1e-3)
    cfg = ModelConfig(
        family="homoode", input_kind="points", num_classes=2, width=4, hidden=8, start="learnable", ode=ode
    )
    model = build_model(cfg)
    model.block.fn.field = _Relaxation()
    main_before = [p.clone() for p in model.main_parameters()]
    x = torch.randn(64, 2)
    opt = torch.optim.SGD(model.start_point_parameters(), lr=0.5)

    def measure():
        with torch.no_grad():
            out = model(x)
        return out.stats.nfe, float((model.block.start_point() - model.block.last_z1.mean(0)).norm())

    nfe0, dist0 = measure()
    for _ in range(100):
        model(x)
        model.update_start_point(opt)
    nfe1, dist1 = measure()
    assert dist1 < 0.05 * dist0
    assert nfe1 < nfe0
    # The start-point update touches nothing else.
    for a, b in zip(main_before, model.main_parameters()):
        assert torch.equal(a, b)


def test_classification_loss_never_reaches_the_start_point():
    model = build_model(preset("points-homoode").replace(start="learnable"))
    nn.functional.cross_entropy(model(torch.randn(4, 2)).logits, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is None for p in model.start_point_parameters())
    fixed = build_model(preset("points-homoode"))
    with pytest.raises(ValueError, match="start='learnable'"):
        fixed.start_point_loss()


def test_models_doctest():
    import core.models

    result = doctest.testmod(core.models)
    assert result.attempted > 0 and result.failed == 0


def test_point_field_depth_adds_hidden_layers_and_keeps_depth_one_unchanged():
    base = core.preset("points-homoode")
    shallow, deep = core.build_model(base), core.build_model(base.replace(depth=3))
    h = base.hidden
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(deep) - n(shallow) == 2 * (h * h + h)  # two more hidden layers V h + c
    # depth 1 is the model every earlier checkpoint holds: the same parameter names.
    assert not any(".mid." in k for k in shallow.state_dict())
    for family in ("node", "anode", "deq"):
        cfg = core.preset(f"points-{family}").replace(depth=2)
        out = core.build_model(cfg)(torch.randn(5, 2))
        assert out.logits.shape == (5, 2) and torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match="depth must be at most 8"):
        base.replace(depth=9)


def test_fixed_point_map_is_the_deq_forward_problem_and_homotopy_solves_it():
    """The public map of a DEQ: every solver (homotopy continuation included) finds the equilibrium the
    model's own forward finds, and the head reads the same logits from it."""
    torch.manual_seed(0)
    x = torch.randn(8, 2, dtype=torch.float64)
    model = _deq_points().eval()
    with torch.no_grad():
        logits = model(x).logits
        f, z0 = model.fixed_point_map(x)
        assert z0.shape == (8, 4) and float(z0.abs().max()) == 0.0
        for method in ("fixed_point", "anderson", "broyden", "homotopy"):
            z, stats = core.solve(f, z0, method=method, tol=1e-10, max_iter=300)
            assert stats.converged, method
            assert rel_err(f(z), z) < 1e-9, method
            assert rel_err(model.head(z), logits) < 1e-8, method
    with pytest.raises(ValueError, match="only deq"):
        build_model(preset("points-homoode")).fixed_point_map(x.float())


def test_vector_field_is_what_the_node_integrates():
    model = build_model(preset("points-node").replace(ode=ODEConfig(method="euler", n_steps=1))).eval()
    x = torch.randn(5, 2)
    with torch.no_grad():
        out = model(x, trajectory=2)
        # One Euler step over [0, 1]: z(1) = z(0) + F(z(0)).
        assert torch.allclose(out.stats.trajectory[-1], x + model.vector_field(x), atol=1e-6)
    assert out.stats.nfe == 1  # the extra call to vector_field was not counted
    with pytest.raises(ValueError, match="node and anode do"):
        build_model(preset("points-deq")).vector_field(x)


def test_the_homoode_field_follows_the_official_order():
    # Official Homofunc: x is added after the first conv block (before conv2); dropout acts on conv2's output.
    torch.manual_seed(0)
    field = ConvField(4, dropout=0.5).train()
    z, x = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    field.drop.new_mask(z)
    assert field.drop.mask is not None and bool((field.drop.mask == 0).any())
    expected = field.norm2(field.conv2(torch.relu(field.norm1(field.conv1(z))) + x) * field.drop.mask)
    torch.testing.assert_close(field(z, x), expected, rtol=0, atol=0)
    # The other order (ours once) differs: the test can tell them apart.
    other = field.norm2(field.conv2(torch.relu(field.norm1(field.conv1(z)))) * field.drop.mask + x)
    assert float((field(z, x) - other).detach().abs().max()) > 1e-2
    # Unconditioned (NODE / ANODE): no condition, no dropout.
    plain = ConvField(4)
    torch.testing.assert_close(plain(z), plain.norm2(plain.conv2(torch.relu(plain.norm1(plain.conv1(z))))))


# ---------------------------------------------------------------- the contractive DEQ cell


def _conv_norm_by_power_iteration(weight: torch.Tensor, size: int, iters: int = 300) -> float:
    """The true operator norm of the zero-padded conv on (C, size, size) inputs, by power iteration on KᵀK."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn((1, weight.shape[1], size, size), generator=gen, dtype=weight.dtype)
    for _ in range(iters):
        v = nn.functional.conv_transpose2d(nn.functional.conv2d(v, weight, padding=1), weight, padding=1)
        v = v / v.norm()
    return float(nn.functional.conv2d(v, weight, padding=1).norm() / v.norm())


@pytest.mark.parametrize("channels, size", [(4, 5), (8, 14), (32, 14)])
def test_conv_operator_norm_is_a_tight_upper_bound(channels, size):
    from core.models.layers import conv_operator_norm

    torch.manual_seed(channels)
    weight = torch.randn(channels, channels, 3, 3, dtype=torch.float64) / channels
    true = _conv_norm_by_power_iteration(weight, size)
    bound = float(conv_operator_norm(weight, size))
    assert true <= bound * (1 + 1e-9) and bound <= 1.1 * true, (true, bound)
    # torch's spectral_norm normalises the reshaped (Cout, Cin k k) matrix, which is no bound on the conv
    if channels == 32:
        assert float(torch.linalg.matrix_norm(weight.reshape(channels, -1), ord=2)) < 0.8 * true


def test_contractive_cell_is_a_contraction_whatever_its_weights():
    from core.models.layers import ContractiveConvCell

    torch.manual_seed(0)
    cell = ContractiveConvCell(8, 6, gamma=0.9).double()
    with torch.no_grad():  # weights far too large for a contraction before the normalisation
        cell.conv1.weight.mul_(40.0)
        cell.conv2.weight.mul_(40.0)
    x = torch.randn(16, 8, 6, 6, dtype=torch.float64)
    z, z2 = torch.randn_like(x), torch.randn_like(x)
    with torch.no_grad():
        ratio = (cell(z, x) - cell(z2, x)).flatten(1).norm(dim=1) / (z - z2).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 0.9
    # the spectral norm of J = ∂f/∂z at a point (power iteration with JᵀJ) is below gamma too
    zz = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    v = torch.randn_like(zz)
    for _ in range(100):
        _, jv = torch.func.jvp(lambda t: cell(t, x[:1]), (zz,), (v,))
        _, vjp = torch.func.vjp(lambda t: cell(t, x[:1]), zz)
        v = vjp(jv)[0]
        v = v / v.norm()
    _, jv = torch.func.jvp(lambda t: cell(t, x[:1]), (zz,), (v,))
    assert 0.1 < float(jv.norm().detach()) <= 0.9  # detached: the weights carry grad
    # bind() is the same map with the normalised weights computed once
    assert torch.equal(cell.bind()(z, x), cell(z, x))


def test_contractive_cell_reuses_its_normalised_weights_until_they_change(monkeypatch):
    from core.models import layers
    from core.models.layers import ContractiveConvCell

    calls = []
    real = layers.conv_operator_norm
    monkeypatch.setattr(layers, "conv_operator_norm", lambda w, n: calls.append(1) or real(w, n))
    torch.manual_seed(0)
    cell = ContractiveConvCell(4, 6)
    x = torch.randn(2, 4, 6, 6)
    fresh = lambda: cell._normalize(cell.conv1.weight, cell.conv2.weight)  # noqa: E731
    with torch.no_grad():
        first = cell.normalized_weights()
        assert cell.normalized_weights() is first and len(calls) == 2  # computed once for both convs
    # with gradients on, each forward builds its own graph to the weights
    w1, _ = cell.normalized_weights()
    assert w1.requires_grad and len(calls) == 4
    # an optimiser step changes the weights in place: the next inference uses the new ones
    opt = torch.optim.Adam(cell.parameters(), lr=0.1)
    cell(torch.randn_like(x), x).sum().backward()
    opt.step()
    with torch.no_grad():
        after = cell.normalized_weights()
        assert after is not first and all(torch.equal(a, b) for a, b in zip(after, fresh(), strict=True))
        cell.load_state_dict(ContractiveConvCell(4, 6).state_dict())  # a load too
        assert all(torch.equal(a, b) for a, b in zip(cell.normalized_weights(), fresh(), strict=True))


def test_contractive_deq_implicit_gradient_matches_unrolled_backprop():
    cfg = preset("image28-deq").replace(width=4, head_dim=8, seed=3)
    tight = {"tol": 1e-11, "max_iter": 400}
    deq = dataclasses.replace(cfg.deq, solver_options=tight, backward_options=tight)
    model = build_model(cfg.replace(deq=deq)).double().eval()  # eval: BatchNorm's running statistics, fixed
    torch.manual_seed(0)
    x, y = torch.rand(3, 1, 28, 28, dtype=torch.float64), torch.tensor([0, 3, 7])
    model.zero_grad()
    out = model(x)
    assert out.stats.solver.converged
    nn.functional.cross_entropy(out.logits, y).backward()
    assert model.block.last_backward_stats.converged
    implicit = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    feat = model.features(x)
    z = torch.zeros_like(feat)
    for _ in range(300):  # rate <= 0.9: 0.9^300 ~ 2e-14
        z = model.block.cell(z, feat)
    nn.functional.cross_entropy(model.head(z), y).backward()
    for name, p in model.named_parameters():
        if p.grad is not None and p.grad.norm() > 0:
            assert rel_err(implicit[name], p.grad) < 1e-7, name
    assert implicit["block.cell.conv1.weight"].norm() > 0  # the normalisation's own gradient is in there


@pytest.mark.slow
def test_the_default_deq_converges_on_every_training_step_of_a_short_run():
    """The image DEQ's default (contractive cell, Anderson, tol 1e-4, cap 30) meets both tolerances on every
    step of 25 steps of batch 64 on digits; the GroupNorm cell misses them within the same run length
    (measured over 1,000 steps in docs/benchmarks.md)."""
    from core.training import TrainConfig, Trainer

    def run(model):
        config = TrainConfig(model=model, dataset="digits", steps=25, batch_size=64, lr=2e-3, train_limit=1600)
        trainer = Trainer(config)
        events = [trainer.step() for _ in range(25)]
        return [e.solves_converged for e in events], [e.nfe_forward for e in events]

    converged, nfe = run(preset("image28-deq"))
    assert all(converged) and max(nfe) <= 31
    converged, _ = run(preset("image28-deq").replace(cell="groupnorm"))
    assert not all(converged)


def test_configs_saved_before_the_contractive_cell_load_the_groupnorm_cell():
    data = preset("image28-deq").to_dict()
    del data["cell"], data["contraction"]
    assert ModelConfig.from_dict(data).cell == "groupnorm"
    assert ModelConfig.from_dict(preset("image28-deq").to_dict()).cell == "contractive"
    with pytest.raises(ValueError, match="contraction must be in"):
        preset("image28-deq").replace(contraction=1.0)
    with pytest.raises(ValueError, match="cell"):
        preset("image28-deq").replace(cell="mdeq")


# ----------------------------------------------------------------------------------------------- solver budgets


def test_a_budget_sets_the_nfe_it_names_and_the_model_gets_its_settings_back():
    """Fixed steps cost exactly what they say (rk4: 4 per step, euler: 1, a DEQ's fixed-point cap: one per
    iteration), each budget starts from the model's own settings, and the model has them again afterwards."""
    from core.models import accuracy_and_nfe, budget_curve, budgets, solver_settings

    torch.manual_seed(0)
    x = torch.randn(32, 2)
    y = (x[:, 0] > 0).long()
    for family, curves, per_step in (
        ("node", ("rk4", "euler"), {"rk4": 4, "euler": 1}),
        ("deq", ("fixed_point",), {"fixed_point": 1}),
    ):
        model = build_model(preset(f"points-{family}")).eval()
        before = solver_settings(model)
        points = budget_curve(model, budgets("steps", (1, 2, 3), curves), lambda: accuracy_and_nfe(model, x, y, 16))
        assert [(p.curve, p.value, got["nfe"]) for p, got in points] == [
            (c, n, float(per_step[c] * n)) for c in curves for n in (1, 2, 3)
        ]
        assert all(0.0 <= got["accuracy"] <= 1.0 for _, got in points)
        assert solver_settings(model) == before


def test_a_budget_that_cannot_integrate_the_model_is_an_error_record_not_an_exception():
    from core.models import Budget, accuracy_and_nfe, budget_curve, solver_settings

    model = build_model(preset("points-node")).eval()
    before = solver_settings(model)
    x = torch.randn(8, 2)
    [(point, got)] = budget_curve(
        model, [Budget("dopri5", "tol", 1e-12)], lambda: accuracy_and_nfe(model, x, x[:, 0] > 0, 8)
    )
    assert point.label("node") == "1e-12" and "max_num_steps" in got["error"]
    assert solver_settings(model) == before
    with pytest.raises(ValueError, match="sweep must be one of tol, steps"):
        Budget("rk4", "iterations", 2)
