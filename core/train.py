"""Command line training: ``python -m core.train --model homoode --dataset digits --epochs 3 --out runs/h``.

Writes the run folder DIR (config.json, metrics.jsonl with one JSON line per event, summary.json,
checkpoint.pt: see ``core.training.RunDir``); ``python -m core.train --resume DIR`` continues a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
from pathlib import Path
from typing import Any

import torch

from . import data as data_lib
from .checks import OneLineParser, setting_arg
from .models import DEQ_CELLS, FAMILIES, PRESETS, ModelConfig, preset, preset_name
from .solvers import METHODS, ODE_METHODS
from .training import (
    DEVICES,
    PRECISIONS,
    CheckpointError,
    ErrorEvent,
    EvalEvent,
    Event,
    FinishedEvent,
    RunDir,
    StepEvent,
    TrainConfig,
    Trainer,
    load_trainer,
)

#: The defaults the flags show: TrainConfig's own (one place).
DEFAULTS = TrainConfig(model=ModelConfig())


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m core.train",
        description="Train an implicit model (NODE, ANODE, DEQ, HomoODE) and record its metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run = p.add_argument_group("run")
    run.add_argument("--model", choices=FAMILIES, default="homoode", help="model family")
    run.add_argument("--dataset", default="digits", help=f"dataset: {', '.join(data_lib.DATASET_NAMES)}")
    run.add_argument("--preset", choices=sorted(PRESETS), help="start from a named model preset (default: by dataset)")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=setting_arg("epochs"), help="passes over the training split (default 1)")
    length.add_argument("--steps", type=setting_arg("steps"), help="optimisation steps (instead of --epochs)")
    run.add_argument("--time-budget", type=float, help="stop after this many seconds (cosine lr over the budget)")
    run.add_argument("--out", type=Path, help="run folder for config, metrics, summary and checkpoint")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the run saved in DIR")
    run.add_argument(
        "--overwrite", action="store_true", help="start afresh in an --out folder that already holds a run"
    )
    run.add_argument("--device", choices=DEVICES, default=DEFAULTS.device, help="auto: CUDA when present")
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULTS.precision,
        help="fp32, or mixed precision (torch.autocast) in bf16 or fp16 (with loss scaling): the layers run in "
        "low precision; the implicit state, the ODE step-size control and the solver residuals stay fp32. A DEQ "
        "in bf16/fp16 cannot reach a residual below about 3e-3 (its map is rounded there): raise --tol. fp64: "
        "everything in float64 (slow; for checks to rounding level)",
    )
    run.add_argument(
        "--channels-last", action="store_true", help="channels-last memory layout for image models (GPUs, bf16)"
    )
    run.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the ODE field / DEQ cell (falls back to eager, with a warning, where it cannot)",
    )
    run.add_argument("--threads", type=int, help="torch CPU threads")
    run.add_argument(
        "--seed", type=setting_arg("seed"), default=DEFAULTS.seed, help="data order, split, augmentation and init seed"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    d = p.add_argument_group("data")
    d.add_argument("--data-dir", help="folder with standard dataset files (on --resume too: never taken from the run)")
    d.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download a missing dataset (on --resume too: never taken from the run)",
    )
    d.add_argument("--augment", action="store_true", help="random crop + flip (32x32 colour sets)")
    d.add_argument("--val-fraction", type=float, help="share of train held out for validation (default: per dataset)")
    d.add_argument(
        "--train-limit",
        type=setting_arg("train_limit"),
        help="use only this many training examples (validation and test stay whole)",
    )
    d.add_argument(
        "--test-limit",
        type=int,
        help="measure test accuracy on this many test examples (a stratified sample; recorded in summary.json)",
    )

    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=setting_arg("batch_size"), default=DEFAULTS.batch_size)
    o.add_argument(
        "--lr", type=setting_arg("lr"), default=DEFAULTS.lr, help="Adam learning rate (cosine decay per step)"
    )
    o.add_argument("--lr-min", type=float, default=DEFAULTS.lr_min, help="final learning rate of the cosine decay")
    o.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    o.add_argument("--grad-clip", type=float, help="clip the gradient norm")
    o.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every, help="validate every N steps (0: each epoch)")
    o.add_argument("--eval-batches", type=int, help="cap on validation batches")

    m = p.add_argument_group("model")
    m.add_argument("--width", type=int, help="state channels (images) or dimension (points)")
    m.add_argument("--dropout", type=float, help="HomoODE variational dropout")
    m.add_argument(
        "--start-point",
        "--start",
        dest="start",
        choices=("fixed", "learnable"),
        help="HomoODE start point (--start-point, not --start, under torchrun: it takes --start as its own)",
    )
    m.add_argument("--start-lr", type=float, default=DEFAULTS.start_lr, help="SGD lr of the learnable start point")
    m.add_argument("--start-every", type=int, default=DEFAULTS.start_every, help="update the start point every N steps")

    ode = p.add_argument_group("ODE (node, anode, homoode)")
    ode.add_argument("--ode-method", choices=ODE_METHODS, help="torchdiffeq method")
    ode.add_argument("--rtol", type=setting_arg("tol"), help="adaptive methods' relative tolerance")
    ode.add_argument("--atol", type=setting_arg("tol"), help="adaptive methods' absolute tolerance")
    ode.add_argument("--n-steps", type=setting_arg("n_steps"), help="fixed-step methods' number of steps")
    ode.add_argument("--adjoint", action="store_true", help="backward by the adjoint method")

    deq = p.add_argument_group("DEQ")
    deq.add_argument(
        "--cell",
        choices=DEQ_CELLS,
        help="image DEQ cell: contractive (Lipschitz <= --contraction by construction: its solves converge) or "
        "groupnorm (the DEQ tutorials' residual GroupNorm cell: not a contraction)",
    )
    deq.add_argument("--contraction", type=float, help="the contractive cell's Lipschitz bound, in (0, 1)")
    deq.add_argument("--solver", choices=METHODS, help="forward root solver")
    deq.add_argument("--tol", type=setting_arg("tol"), help="forward solver tolerance (relative residual)")
    deq.add_argument("--max-iter", type=setting_arg("max_iter"), help="forward solver iteration cap")
    deq.add_argument("--backward", choices=("implicit", "phantom"), help="gradient: implicit or 1-step phantom")
    deq.add_argument(
        "--jac-reg", type=float, help="weight of the Jacobian regulariser ||df/dz||_F^2 / d at z* (0: off)"
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the TrainConfig the flags describe (ValueError on a bad value or combination)."""
    info = data_lib.dataset_info(args.dataset)
    name = args.preset or preset_name(args.model, info.input_kind)
    model: ModelConfig = preset(name)
    if model.input_kind != info.input_kind:
        raise ValueError(
            f"preset {name!r} is for {model.input_kind} inputs but dataset {args.dataset!r} gives {info.input_kind}"
        )
    changes: dict[str, Any] = {"num_classes": info.num_classes, "seed": args.seed}
    for flag in ("width", "dropout", "start", "cell", "contraction"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    ode_changes = {
        k: v
        for k, v in (("method", args.ode_method), ("rtol", args.rtol), ("atol", args.atol), ("n_steps", args.n_steps))
        if v is not None
    }
    if args.adjoint:
        ode_changes["adjoint"] = True
    if ode_changes:
        changes["ode"] = dataclasses.replace(model.ode, **ode_changes)
    if any(v is not None for v in (args.solver, args.tol, args.max_iter, args.backward, args.jac_reg)):
        options = {k: v for k, v in (("tol", args.tol), ("max_iter", args.max_iter)) if v is not None}
        deq = model.deq.with_forward(args.solver, **options)
        backward = {k: v for k, v in (("backward", args.backward), ("jac_reg", args.jac_reg)) if v is not None}
        changes["deq"] = dataclasses.replace(deq, **backward)
    model = model.replace(**changes)
    return TrainConfig(
        model=model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        # With only a time budget, the budget ends the run.
        epochs=args.epochs if args.epochs is not None else (1_000_000 if args.time_budget and not args.steps else 1),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_min=args.lr_min,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        start_lr=args.start_lr,
        start_every=args.start_every,
        val_fraction=args.val_fraction,
        augment=args.augment,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        threads=args.threads,
        time_budget=args.time_budget,
    )


class _Progress:
    """The terminal's view of the event stream: a progress bar and the advice of an error (the trainer
    records the events in the run folder itself)."""

    def __init__(self, trainer: Trainer, quiet: bool):
        self.bar = None
        self.speaks = trainer.world.is_main  # under torchrun, rank 0 speaks for all
        if not quiet and self.speaks:
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.total_steps, initial=trainer.step_count, unit="step", dynamic_ncols=True)
        self.last_val: float | None = None
        self.unconverged = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent) and event.solves_converged is False and self.speaks:
            # Every such step is flagged in metrics.jsonl; the terminal says it once, then counts.
            self.unconverged += 1
            if self.unconverged == 1:
                back = "" if event.backward_residual is None else f", backward {event.backward_residual:.2g}"
                self._print(
                    f"warning: step {event.step}: the DEQ's root solve did not reach its tolerance (relative "
                    f"residual forward {event.residual:.2g}{back}), so this step's gradient is approximate; "
                    "raise --max-iter, loosen --tol, or add --jac-reg. Such steps are counted in the progress "
                    "bar and summary.json (unconverged_steps) and flagged in metrics.jsonl (solves_converged)"
                )
        if isinstance(event, StepEvent) and self.bar is not None:
            post = {
                "loss": f"{event.loss:.3f}",
                "acc": f"{event.train_acc:.3f}",
                "nfe": f"{event.nfe_forward}/{event.nfe_backward}",
            }
            if self.last_val is not None:
                post["val"] = f"{self.last_val:.3f}"
            if self.unconverged:
                post["unconverged"] = self.unconverged
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        elif isinstance(event, EvalEvent):
            self.last_val = event.accuracy
        elif isinstance(event, ErrorEvent) and self.speaks:
            self._print(f"error at step {event.step}: {event.message}\n  advice: {event.advice}")
            if event.checkpoint:
                self._print(f"  last good checkpoint kept: {event.checkpoint}")

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.resume is not None:
            run = RunDir(args.resume)
            if run.state() == "finished":  # all its steps done: no new rows, no new summary
                print(
                    f"the run in {run.path} has finished all its steps; nothing to resume (train a new one with --out)"
                )
                return 0
            # The data's source comes from this command line (or the defaults), never from the saved run.
            trainer = load_trainer(
                run.checkpoint_file(), out_dir=args.resume, data_dir=args.data_dir, download=args.download
            )
        else:
            config = config_from_args(args)
            if args.out is not None and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 only
                _prepare_out(RunDir(args.out), args.overwrite)
            trainer = Trainer(config, out_dir=args.out)
    except (ValueError, CheckpointError, data_lib.DatasetUnavailable) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except OSError as err:  # a run folder that cannot be made or written
        where = err.filename or args.out or args.resume
        parser.exit(2, f"{parser.prog}: error: cannot write the run folder {where}: {err.strerror or err}\n")
    parallel = trainer.world.parallel and torch.distributed.is_initialized()
    try:
        code = _train(trainer, quiet=args.quiet)
        if parallel:
            # Every rank leaves together: rank 0 writes the summary last, and a rank that tore its process
            # group down while the other still used it aborted at exit now and then (SIGABRT in gloo's threads).
            torch.distributed.barrier()
        return code
    finally:
        if parallel:
            del trainer  # the DDP model and its reducer go before the process group they talk through
            gc.collect()
            torch.distributed.destroy_process_group()


def _prepare_out(run: RunDir, overwrite: bool) -> None:
    """Refuse to start a run in a folder that is not empty, unless told (--overwrite).

    A finished run's checkpoint, config and summary would be replaced and its ``metrics.jsonl`` would get a
    second run's rows; a folder holding anything else (a run killed before its ``config.json``, other files)
    is no place to start silently either."""
    if run.path.exists() and not run.path.is_dir():
        raise ValueError(f"--out {run.path} is a file, not a folder; pick another path")
    if not overwrite and run.path.is_dir() and any(run.path.iterdir()):
        holds = "a run" if run.has_config() else "files"
        raise ValueError(
            f"{run.path} already holds {holds}: --resume {run.path} continues a run, --overwrite starts afresh "
            "there (the run's files are replaced), or pick another --out"
        )
    run.create()
    if overwrite:
        run.clear()


def _train(trainer: Trainer, quiet: bool) -> int:
    """Consume the trainer's events with a progress bar; under torchrun only rank 0 shows and says anything."""
    progress = _Progress(trainer, quiet)
    final: Event | None = None
    try:
        for event in trainer.events():
            progress(event)
            final = event
    except KeyboardInterrupt:
        progress.close()
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    progress.close()
    if isinstance(final, FinishedEvent) and trainer.world.is_main:
        acc = "n/a" if final.test_accuracy is None else f"{100 * final.test_accuracy:.2f} %"
        print(
            f"test accuracy {acc} (model of step {final.best_step}, selected on validation); "
            f"mean NFE forward {final.mean_nfe_forward:.1f}, backward {final.mean_nfe_backward:.1f}; "
            f"{final.seconds:.1f} s"
        )
        return 0
    return 0 if isinstance(final, FinishedEvent) else 1


if __name__ == "__main__":
    sys.exit(main())
