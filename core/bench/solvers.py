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
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from ..solvers import METHODS, CountedMap, JacobianAt, batch_norm, make_options, solve
from ..training import atomic_write_json
from .problems import FAMILIES, Problem, problem_specs, select

#: Methods whose ``max_iter`` is an iteration budget (for homotopy it caps the final Newton corrector).
ITERATIVE = ("anderson", "broyden", "fixed_point")


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
