"""The one training loop: a ``Trainer`` whose :meth:`Trainer.events` yields events one at a time.

    for event in Trainer(config, out_dir="runs/x").events():
        print(event.to_dict())

``events()`` is :meth:`Trainer.tick` (one step, then validation and a checkpoint when due) repeated, then
:meth:`Trainer.end`. The CLI consumes ``events()``; the app's worker thread calls ``tick`` and ``end``
itself, between the commands of its page (pause, step once, live changes). Either way every event is
recorded in the run folder by the trainer (:class:`RunDir`), so both write the same rows.

Adam with a cosine learning rate that is a pure function of progress (:meth:`Trainer.lr_at`), HomoODE's
start point on its own SGD schedule, optional gradient clipping; data order, augmentation and dropout
are seeded, and a checkpoint holds every piece of state, so a resumed run continues exactly where it
stopped.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data as data_lib
from ..models import ImplicitClassifier, ODEStepLimitError, build_model
from ..solvers import SolverError
from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig, config_changes
from .events import ChangeEvent, CheckpointEvent, ErrorEvent, EvalEvent, Event, FinishedEvent, StepEvent, json_safe
from .memory import SavedTensorMeter, peak_memory
from .rundir import RunDir
from .tensorboard_log import TensorBoardLog

#: What :meth:`Trainer.apply` may change while a run trains (everything else needs a new run).
LIVE_SETTINGS = ("lr", "grad_clip", "ode", "deq")


class Divergence(RuntimeError):
    """A step produced a non-finite loss or the solver failed; carries advice for the user."""

    def __init__(self, message: str, advice: str):
        super().__init__(message)
        self.advice = advice


#: How often a paused run (``Trainer.events(should_pause=...)``) looks whether it may go on.
PAUSE_POLL_SECONDS = 1.0


class Trainer:
    """Holds a model, its optimizers and data; ``step()`` advances exactly one optimisation step.

    Args:
        config: the run's configuration.
        out_dir: the run folder (see :class:`RunDir`; None: keep everything in memory). Its
            ``config.json`` is written here, and every event of :meth:`tick`, :meth:`apply` and
            :meth:`end` is appended to its ``metrics.jsonl``.
        resume: a checkpoint dict (from ``load_checkpoint``) to continue from.
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path | None = None, resume: dict | None = None):
        self.config = config
        self.world, self.device = distributed.setup(config.device)
        # Under torchrun only rank 0 writes the run folder; every rank computes the same figures.
        self.run_dir = RunDir(out_dir) if out_dir is not None and self.world.is_main else None
        if config.threads:
            torch.set_num_threads(config.threads)
        self.data = data_lib.load_dataset(
            config.dataset,
            data_dir=config.data_dir,
            val_fraction=config.val_fraction,
            split_seed=config.seed,
            augment=config.augment,
            download=config.download,
            train_limit=config.train_limit,  # the training split only: val and test stay whole
            toy_size=config.toy_size,
            toy_noise=config.toy_noise,
        )
        if self.data.input_kind != config.model.input_kind or self.data.num_classes != config.model.num_classes:
            raise ValueError(
                f"dataset {config.dataset!r} gives {self.data.input_kind} inputs with {self.data.num_classes} "
                f"classes, but the model is built for {config.model.input_kind} with "
                f"{config.model.num_classes} classes; pick a matching preset"
            )
        n = len(self.data.train.targets)
        if config.batch_size > n:  # refused before the data moves to a device or the model is built
            raise ValueError(
                f"batch size {config.batch_size:,} is larger than the training split ({n:,} examples); "
                f"use a batch size of at most {n:,}"
            )
        if config.batch_size < self.world.size:
            raise ValueError(
                f"--batch-size {config.batch_size} is the global batch, split across {self.world.size} processes: "
                f"it must be at least the number of processes"
            )
        splits = [self.data.train, self.data.val, self.data.test]
        tensors = [t for split in splits for t in (split.inputs, split.targets)]
        tensors[4:] = [t[: config.test_limit] for t in tensors[4:]]  # None keeps the whole test split
        if config.precision == "fp64":
            tensors = [t.double() if t.is_floating_point() else t for t in tensors]
        if self.device.type == "cuda" and sum(t.nbytes for t in tensors) < torch.cuda.mem_get_info(self.device)[0] / 4:
            # On a GPU the whole set lives there when it fits easily: no copy per step.
            tensors = [t.to(self.device) for t in tensors]
        self.train_x, self.train_y, self.val_x, self.val_y, self.test_x, self.test_y = tensors
        self.augmentation = self.data.train.augmentation
        n_train = len(self.train_y)
        self.batches_per_epoch = max(1, math.ceil(n_train / config.batch_size))
        if self.world.parallel and 0 < n_train % config.batch_size < self.world.size:
            self.batches_per_epoch = max(1, n_train // config.batch_size)  # a tail too small to share is dropped
        self.total_steps = config.steps or config.epochs * self.batches_per_epoch
        self.eval_every = config.eval_every or self.batches_per_epoch

        torch.manual_seed(config.seed)
        self.model: ImplicitClassifier = build_model(config.model).to(self.device)
        if config.precision == "fp64":
            self.model.double()
        self.memory_format = self._memory_format()
        if config.compile:
            self._compile()
        self.ddp = distributed.data_parallel(self.model, self.device) if self.world.parallel else None
        self.optimizer = torch.optim.Adam(self.model.main_parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # fp16 only: loss scaling keeps small gradients representable (bf16 has fp32's range).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        start_params = self.model.start_point_parameters()
        self.start_optimizer = torch.optim.SGD(start_params, lr=config.start_lr) if start_params else None
        self.step_count = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.nfe_sums = [0, 0]
        self.peak_graph_bytes = 0  # the largest graph_bytes of the run's steps
        self.unconverged_steps = 0  # DEQ steps whose forward or backward solve missed its tolerance
        self.last_checkpoint: str | None = None
        self.validated_at: int | None = None  # the step of the last validation
        self.unsaved = False  # steps or setting changes since the last checkpoint
        self.finished: FinishedEvent | None = None
        self.started = time.perf_counter()
        # Wall seconds of the run before this process resumed it, up to the checkpoint it resumes from: curves
        # stay continuous, and a time budget and its cosine go on where they were (see ``elapsed``).
        self.wall_offset = 0.0
        self.train_seconds = 0.0  # time inside step(), evaluation excluded; the run's, resumes included
        if resume is not None:
            self._load_state(resume)
        # The process's memory before the first step (model, optimizer, data; other runs in this process too).
        self.baseline_memory_bytes = peak_memory(self.device)[0]
        self.tensorboard: TensorBoardLog | None = None
        if self.run_dir is not None:
            self.run_dir.create().write_config(config)
            if resume is not None:
                self.run_dir.truncate_events(self.step_count)
            # Where the optional tensorboard package is installed: the same rows as an event file in the run
            # folder, written afresh from metrics.jsonl (None without the package).
            self.tensorboard = TensorBoardLog.open(self.run_dir, config.to_dict())

    # ------------------------------------------------------------------ the step

    @property
    def epoch(self) -> int:
        return self.step_count // self.batches_per_epoch

    @property
    def done(self) -> bool:
        return self.step_count >= self.total_steps

    def _batch_indices(self, step: int) -> torch.Tensor:
        # The order of an epoch is a pure function of (seed, epoch): resuming mid-epoch needs no saved sampler.
        epoch, k = divmod(step, self.batches_per_epoch)
        gen = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.train_y), generator=gen)
        return perm[k * self.config.batch_size : (k + 1) * self.config.batch_size]

    def _memory_format(self) -> torch.memory_format:
        if not self.config.channels_last:
            return torch.contiguous_format
        if self.config.model.input_kind == "points":
            warnings.warn("channels_last applies to image models; this points model keeps its layout", stacklevel=3)
            return torch.contiguous_format
        self.model.to(memory_format=torch.channels_last)
        return torch.channels_last

    def _compile(self) -> None:
        """``torch.compile`` the function the solvers call at every step (the ODE field or the DEQ cell), in
        place (the checkpoint's keys stay the same); tried once on a small batch, and undone with a warning
        when this machine cannot compile it."""
        block = self.model.block
        target = block.fn.field if hasattr(block, "fn") else block.cell
        target.compile()
        try:
            with torch.no_grad(), self.autocast():
                # Two training inputs: the split always has them (a batch is at least one), val may be empty.
                self.model.eval()(self.train_x[:2].to(self.device, memory_format=self._input_format(self.train_x)))
        except Exception as err:  # a missing compiler or an unsupported op: train eagerly instead
            target._compiled_call_impl = None  # what nn.Module.compile set: eager again
            warnings.warn(
                f"--compile: torch.compile failed here ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                "training without it",
                stacklevel=3,
            )
        finally:
            self.model.train()

    def _input_format(self, x: torch.Tensor) -> torch.memory_format:
        return self.memory_format if x.dim() == 4 else torch.contiguous_format

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's shard of the global batch of ``step`` and the global batch's size."""
        idx = self._batch_indices(step)
        x, y = self.train_x[idx.to(self.train_x.device)], self.train_y[idx.to(self.train_y.device)]
        if self.augmentation is not None:
            # Seeded by (seed, step) over the global batch: a resumed run, and any number of ranks, see the
            # same crops and flips.
            gen = torch.Generator().manual_seed(self.config.seed * 7_919 + step)
            aug = self.augmentation
            x = data_lib.random_crop_flip(x, aug.pad, aug.flip, torch.tensor(aug.fill), gen)
        part = distributed.shard(len(idx), self.world)
        x = x[part].to(self.device, non_blocking=True, memory_format=self._input_format(x))
        return x, y[part].to(self.device, non_blocking=True), len(idx)

    def autocast(self) -> torch.autocast:
        """The precision context of forward passes: ``torch.autocast`` in bf16/fp16, a no-op in fp32."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def step(self) -> StepEvent:
        """One optimisation step; raises :class:`Divergence` and leaves the model as it was before the step.

        Divergence is detected before the optimizer steps (a non-finite state, loss or gradient), so the
        parameters and the optimizer's state are untouched by a failed step: only the buffers a forward pass
        updates (batch-norm statistics) are copied beforehand and put back. The hot path reads the device
        twice (the forward check, the gradient norm) and once more for the event's figures.

        Under torchrun every rank computes its shard of the global batch; each rank's loss is its shard's
        sum / global batch size x ranks, so DDP's mean of the ranks' gradients is the gradient of the global
        batch's mean loss, and the ranks agree on a divergence before anyone steps.
        """
        cfg = self.config
        t0 = time.perf_counter()
        x, y, n_global = self._batch(self.step_count)
        weight = self.world.size / n_global
        self.model.train()
        lr = self._set_lr()
        buffers = [b.detach().clone() for b in self.model.buffers()]
        meter = SavedTensorMeter()
        self.optimizer.zero_grad(set_to_none=True)
        out = loss_sum = None
        failure: Divergence | None = None
        try:
            # The forward pass and the loss only: backward (implicit, adjoint) runs its own autograd.
            with meter, self.autocast():
                out = (self.ddp or self.model)(x)
                loss_sum = nn.functional.cross_entropy(_at_least_fp32(out.logits), y, reduction="sum")
                total = loss_sum * weight  # what is minimised; events report the cross-entropy alone
                if out.stats.jac_loss is not None:
                    total = total + cfg.model.deq.jac_reg * out.stats.jac_loss * (len(y) * weight)
            residual = out.stats.rel_residual
            finite = [torch.isfinite(total)] + ([] if residual is None else [torch.isfinite(residual).all()])
            ok = torch.stack(finite).all()
        except (ODEStepLimitError, SolverError) as err:
            failure = Divergence(str(err), "lower the learning rate, loosen rtol/atol, or use a fixed-step ODE method")
            ok = torch.zeros((), dtype=torch.bool, device=self.device)
        except (RuntimeError, MemoryError) as err:
            if not _out_of_memory(err):
                raise
            failure = self._memory_divergence(err)
            out = None
            ok = torch.zeros((), dtype=torch.bool, device=self.device)
        if not distributed.everywhere(ok, self.world):
            self._restore_buffers(buffers)
            if failure is None and out is not None and not bool(ok):
                failure = self._forward_divergence(residual, loss_sum, total)
            raise failure or Divergence(
                f"another process of this run diverged at step {self.step_count}",
                "see rank 0's message; lower the learning rate (lr) or use a tighter solver tol",
            )
        self._backward(total, buffers)
        # fp16: an overflowing step is skipped by the scaler (which lowers its scale), not a divergence.
        self.scaler.step(self.optimizer)
        self.scaler.update()
        nfe_backward = self.model.nfe_backward
        start_loss = None
        if self.start_optimizer is not None and (self.step_count + 1) % cfg.start_every == 0:
            start_loss = self._update_start_point(len(y) * weight)
        self.step_count += 1
        self.unsaved = True
        graph_bytes = meter.nbytes
        self.peak_graph_bytes = max(self.peak_graph_bytes, graph_bytes)
        loss_value, correct_total, nfe_f, nfe_b, worst, worst_back, solved = self._figures(
            loss_sum, out, y, nfe_backward
        )
        if solved is False:
            self.unconverged_steps += 1
        self.nfe_sums[0] += nfe_f
        self.nfe_sums[1] += nfe_b
        mem, _ = peak_memory(self.device)
        now = time.perf_counter()
        self.train_seconds += now - t0
        return StepEvent(
            step=self.step_count,
            epoch=self.epoch,
            loss=loss_value / n_global,
            train_acc=correct_total / n_global,
            nfe_forward=round(nfe_f) if nfe_f.is_integer() else nfe_f,
            nfe_backward=round(nfe_b) if nfe_b.is_integer() else nfe_b,
            residual=worst,
            backward_residual=worst_back,
            solves_converged=solved,
            start_loss=start_loss,
            lr=lr,
            peak_memory_bytes=mem,
            graph_bytes=graph_bytes,
            step_seconds=now - t0,
            wall_seconds=self.wall_offset + now - self.started,
        )

    def _backward(self, total: torch.Tensor, buffers: list[torch.Tensor]) -> None:
        """Gradients of ``total`` (unscaled, all-reduced under DDP) and their check; on failure the buffers are
        put back and :class:`Divergence` raised, before the optimizer has touched anything."""
        cfg = self.config
        try:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            if cfg.grad_clip is not None:
                norm = nn.utils.clip_grad_norm_(self.model.main_parameters(), cfg.grad_clip)
            else:
                norm = nn.utils.get_total_norm([p.grad for p in self.model.main_parameters() if p.grad is not None])
            # After DDP's all-reduce every rank holds the same gradient, so they agree on this check.
            if not self.scaler.is_enabled() and not bool(torch.isfinite(norm)):
                raise Divergence(
                    f"non-finite gradients at step {self.step_count}",
                    "lower the learning rate (lr), enable gradient clipping (grad_clip), or add solver damping",
                )
        except (ODEStepLimitError, SolverError) as err:  # an adjoint solve that failed in the backward pass
            self._restore_buffers(buffers)
            raise Divergence(
                str(err), "lower the learning rate, loosen rtol/atol, or use a fixed-step ODE method"
            ) from err
        except (RuntimeError, MemoryError) as err:
            if not _out_of_memory(err):
                raise
            self._restore_buffers(buffers)
            self.optimizer.zero_grad(set_to_none=True)
            raise self._memory_divergence(err) from None
        except Divergence:
            self._restore_buffers(buffers)
            raise

    def _figures(
        self, loss_sum: torch.Tensor, out: Any, y: torch.Tensor, nfe_backward: int
    ) -> tuple[float, float, float, float, float | None, float | None, bool | None]:
        """The event's figures in two read-backs at most (two all-reduces under torchrun): the global batch's
        loss sum and correct count, NFE averaged over ranks; for a DEQ, the worst forward and backward residuals
        of any rank and whether every rank's root solves met their tolerance (None for the ODE families)."""
        residual = out.stats.rel_residual  # set for a DEQ, with its solver's statistics
        forward = out.stats.solver
        backward = self.model.backward_solver_stats
        correct = (out.logits.argmax(1) == y).sum()
        dev = correct.device
        figures = torch.stack(
            [
                loss_sum.detach().double(),
                correct.double(),
                torch.tensor(float(out.stats.nfe), dtype=torch.float64, device=dev),
                torch.tensor(float(nfe_backward), dtype=torch.float64, device=dev),
            ]
        )
        loss_value, correct_total, nfe_f, nfe_b = distributed.all_sum(figures).tolist()
        worst = worst_back = solved = None
        if forward is not None:
            # The residuals and the statuses (host values already: the solvers read them back to stop) in one
            # all-reduce and one read-back.
            failed = not forward.converged or (backward is not None and not backward.converged)
            zero = torch.zeros((), dtype=torch.float64, device=dev)
            maxima = torch.stack(
                [
                    residual.max().double().to(dev),
                    zero if backward is None else backward.rel_residual.max().double().to(dev),
                    zero + float(failed),
                ]
            )
            worst, back_value, any_failed = distributed.all_max(maxima).tolist()
            worst_back = back_value if backward is not None else None
            solved = not any_failed
        return loss_value, correct_total, nfe_f / self.world.size, nfe_b / self.world.size, worst, worst_back, solved

    def _update_start_point(self, weight: float) -> float:
        """One SGD step of HomoODE's start point on SmoothL1(z0, stop_grad(z(1))) of the global batch:
        each rank's loss weighted by its share, the gradients summed over ranks."""
        opt = self.start_optimizer
        opt.zero_grad(set_to_none=True)
        loss = self.model.start_point_loss() * weight
        loss.backward()
        if self.world.parallel:
            for p in self.model.start_point_parameters():
                p.grad = distributed.all_sum(p.grad) / self.world.size
        opt.step()
        return float(distributed.all_sum(loss.detach())) / self.world.size

    def _forward_divergence(self, residual: torch.Tensor | None, loss: torch.Tensor, total: torch.Tensor) -> Divergence:
        """Why a forward pass failed, with the setting to change (read back only on this rare path)."""
        if residual is not None and not torch.isfinite(residual).all():
            return Divergence(
                f"the equilibrium solver produced a non-finite state at step {self.step_count}",
                "lower the learning rate (lr), add damping (beta < 1) or use a tighter solver tol",
            )
        if torch.isfinite(loss):
            return Divergence(
                f"the loss became {float(total.detach())} at step {self.step_count}",
                "the Jacobian regulariser is not finite: lower jac_reg (or the learning rate)",
            )
        return Divergence(
            f"the loss became {float(total.detach())} at step {self.step_count}",
            "lower the learning rate (lr), enable gradient clipping (grad_clip), or use a tighter solver tol",
        )

    def _memory_divergence(self, err: BaseException) -> Divergence:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        return Divergence(
            f"out of memory at step {self.step_count} (batch {self.config.batch_size:,}): {first}",
            "use a smaller --batch-size, the adjoint (--adjoint: memory flat in the ODE steps), fewer ODE steps, "
            "or --precision bf16",
        )

    def _restore_buffers(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for buf, value in zip(self.model.buffers(), saved):
                buf.copy_(value)

    def lr_at(self, progress: float) -> float:
        """The learning rate at ``progress`` in [0, 1] of the run: cosine from ``lr`` down to ``lr_min``,
        lr_min + (lr - lr_min) (1 + cos(pi p)) / 2. The one place the rate is defined (as in nanoGPT's
        ``get_lr``): a live change of ``lr`` or a time budget changes its inputs, never a stored copy."""
        cfg = self.config
        p = min(max(progress, 0.0), 1.0)
        return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * p)) / 2

    @property
    def progress(self) -> float:
        """How far the run is: the share of its steps done, or of its time budget spent (:attr:`elapsed`,
        so a resumed run goes on along its cosine)."""
        budget = self.config.time_budget
        if budget is None:
            return self.step_count / self.total_steps
        spent = self.elapsed / budget
        if self.world.parallel:  # every rank must step with the same rate: the furthest clock decides
            spent = float(distributed.all_max(torch.tensor([spent], device=self.device, dtype=torch.float64)))
        return spent

    def _set_lr(self) -> float:
        lr = self.lr_at(self.progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, split: str = "val", max_batches: int | None = None) -> tuple[float, float, float]:
        """(loss, accuracy, mean forward NFE) on ``split`` ('val' or 'test') in eval mode: batches of the
        global batch size; under torchrun each rank evaluates its shard of every batch and the sums are
        all-reduced, so the figures are those of the whole split."""
        x_all, y_all = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        self.model.eval()
        bs = self.config.batch_size
        sums = torch.zeros(3, dtype=torch.float64)  # loss, correct, NFE (summed over this rank's batches)
        batches = 0
        for start in range(0, len(y_all), bs):
            if max_batches is not None and batches >= max_batches:
                break
            part = distributed.shard(min(bs, len(y_all) - start), self.world)
            x = x_all[start : start + bs][part].to(self.device, memory_format=self._input_format(x_all))
            y = y_all[start : start + bs][part].to(self.device)
            batches += 1
            if not len(y):  # a last batch smaller than the number of ranks
                continue
            with self.autocast():
                out = self.model(x)
            loss = nn.functional.cross_entropy(_at_least_fp32(out.logits), y, reduction="sum")
            correct = (out.logits.argmax(1) == y).sum()
            sums += torch.tensor([float(loss), float(correct), float(out.stats.nfe)], dtype=torch.float64)
        loss_sum, correct_sum, nfe_sum = distributed.all_sum(sums.to(self.device)).tolist()
        n = min(len(y_all), batches * bs)
        return loss_sum / max(n, 1), correct_sum / max(n, 1), nfe_sum / max(batches * self.world.size, 1)

    def validate(self) -> EvalEvent:
        t0 = time.perf_counter()
        loss, acc, nfe = self.evaluate("val", self.config.eval_batches)
        self.validated_at = self.step_count
        is_best = self.best_val is None or acc > self.best_val
        if is_best:
            self.best_val, self.best_step = acc, self.step_count
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return EvalEvent(
            step=self.step_count,
            epoch=self.epoch,
            split="val",
            loss=loss,
            accuracy=acc,
            nfe_forward=nfe,
            is_best=is_best,
            seconds=time.perf_counter() - t0,
        )

    def finish(self, stopped: bool) -> FinishedEvent:
        """Measure test accuracy once, on the model selected by validation (restored afterwards)."""
        test_loss = test_acc = None
        if self.step_count > 0:
            current = None
            if self.best_state is not None:
                current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.model.load_state_dict(self.best_state)
            test_loss, test_acc, _ = self.evaluate("test")
            if current is not None:
                self.model.load_state_dict(current)
        mem, measure = peak_memory(self.device)
        steps = max(self.step_count, 1)
        return FinishedEvent(
            step=self.step_count,
            epoch=self.epoch,
            test_accuracy=test_acc,
            test_loss=test_loss,
            best_val_accuracy=self.best_val,
            best_step=self.best_step,
            params=self.model.num_parameters(),
            mean_nfe_forward=self.nfe_sums[0] / steps,
            mean_nfe_backward=self.nfe_sums[1] / steps,
            peak_memory_bytes=mem,
            memory_measure=measure,
            peak_graph_bytes=self.peak_graph_bytes,
            seconds=self.elapsed,
            stopped=stopped,
        )

    def check_changes(self, **changes: Any) -> TrainConfig:
        """The config that :meth:`apply` would give (ValueError naming the setting for a bad one); changes
        nothing, so a front end can check a user's input in its own thread before queueing it.

        ``ode`` changes apply only to the ODE families and ``deq`` only to a DEQ: one control panel can
        drive models of several families. A new ``lr`` lowers ``lr_min`` to it when that was above."""
        unknown = sorted(set(changes) - set(LIVE_SETTINGS))
        if unknown:
            raise ValueError(
                f"cannot change {', '.join(unknown)} while training; changeable: {', '.join(LIVE_SETTINGS)}"
            )
        is_deq = self.config.model.family == "deq"
        model_changes = {k: changes[k] for k in ("ode", "deq") if k in changes and (k == "deq") == is_deq}
        rest = {k: changes[k] for k in ("lr", "grad_clip") if k in changes}
        if isinstance(rest.get("lr"), (int, float)):
            rest["lr_min"] = min(self.config.lr_min, rest["lr"])
        new_model = self.config.model.replace(**model_changes) if model_changes else self.config.model
        return self.config.replace(model=new_model, **rest)  # validates everything

    def apply(self, **changes: Any) -> ChangeEvent:
        """Change settings between steps, without a reset (see :meth:`check_changes`); returns what changed.

        The learning rate follows at once (``lr_at`` with the new base keeps the run's place on the
        cosine); the model gets its new solver settings. A change is recorded in the run folder: a
        ``change`` event in ``metrics.jsonl`` (the history) and the new ``config.json`` (the settings in
        force, which a resume continues with). A ValueError leaves the trainer as it was.

        Returns:
            a :class:`ChangeEvent` at the current step, with old and new value of every setting that
            differs (``changes`` is empty when nothing did).
        """
        config = self.check_changes(**changes)
        event = ChangeEvent(step=self.step_count, epoch=self.epoch, changes=config_changes(self.config, config))
        if not event.changes:
            return event
        if config.model.ode != self.config.model.ode and self.config.model.family != "deq":
            self.model.set_ode(config.model.ode)
        if config.model.deq != self.config.model.deq and self.config.model.family == "deq":
            self.model.set_solver(config.model.deq)
        self.config = config
        self._set_lr()
        self.unsaved = True
        self._record(event)
        if self.run_dir is not None:
            self.run_dir.write_config(config)
        return event

    def summary(self, event: FinishedEvent) -> dict[str, Any]:
        """The run's ``summary.json``: what the CLI and the app write when a run ends."""
        config = self.config
        epochs = self.step_count / self.batches_per_epoch
        n_val = len(self.val_y)
        val_measured = n_val if config.eval_batches is None else min(n_val, config.eval_batches * config.batch_size)
        fields = {
            "model": config.model.family,
            "dataset": config.dataset,
            "params": event.params,
            "steps": event.step,
            "test_accuracy": event.test_accuracy,
            "best_val_accuracy": event.best_val_accuracy,
            "best_step": event.best_step,
            "mean_nfe_forward": event.mean_nfe_forward,
            "mean_nfe_backward": event.mean_nfe_backward,
            "peak_memory_bytes": event.peak_memory_bytes,
            "memory_measure": event.memory_measure,
            "peak_graph_bytes": event.peak_graph_bytes,
            "baseline_memory_bytes": self.baseline_memory_bytes,
            "seconds": event.seconds,
            "train_seconds": self.train_seconds,
            "epochs": epochs,
            "seconds_per_epoch": self.train_seconds / epochs if epochs else None,
            "device": str(self.device),
            "stopped": event.stopped,
            # What limited the figures above, so a quick run's accuracy is never read as a full one's: the
            # training subset, the validation cap, the time budget, and the examples each split really had.
            "train_limit": config.train_limit,
            "test_limit": config.test_limit,
            "eval_batches": config.eval_batches,
            "time_budget": config.time_budget,
            "train_examples": len(self.train_y),
            "val_examples": n_val,
            "val_examples_measured": val_measured,
            "test_examples": len(self.test_y),
            # DEQ: steps whose forward or backward root solve missed its tolerance (approximate gradients).
            "unconverged_steps": self.unconverged_steps if config.model.family == "deq" else None,
        }
        return json_safe(fields)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": json.dumps(self.config.to_dict()),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "start_optimizer": None if self.start_optimizer is None else self.start_optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),  # fp16's loss scale ({} otherwise)
            "step": self.step_count,
            "split_seed": self.config.seed,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "validated_at": self.validated_at,
            "best_model": self.best_state,
            "nfe_sums": list(self.nfe_sums),
            "peak_graph_bytes": self.peak_graph_bytes,
            "unconverged_steps": self.unconverged_steps,
            "wall_seconds": self.elapsed,
            "train_seconds": self.train_seconds,
            "rng": torch.get_rng_state(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.start_optimizer is not None and state.get("start_optimizer") is not None:
                self.start_optimizer.load_state_dict(state["start_optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            # Right format, wrong contents (an edited file, or weights of another model): one clear line.
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"the checkpoint's weights do not fit the model its config describes ({first}); "
                "it was changed after it was written, or belongs to another model"
            ) from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step_count = int(state["step"])
        self.best_val, self.best_step = state.get("best_val"), state.get("best_step")
        self.validated_at = state.get("validated_at")  # a resumed run does not validate that step twice
        self.best_state = state.get("best_model")
        self.nfe_sums = list(state.get("nfe_sums", [0, 0]))
        self.peak_graph_bytes = int(state.get("peak_graph_bytes", 0))  # 0 in checkpoints older than the field
        self.unconverged_steps = int(state.get("unconverged_steps", 0))
        # Checkpoints older than these fields count the time before them as 0 (as they always did): a guess
        # from the step count would need the old process's speed, which the file does not hold.
        self.wall_offset = float(state.get("wall_seconds", 0.0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["rng"])

    def save(self) -> str | None:
        """Checkpoint into the run folder (None without one)."""
        if self.run_dir is None:
            return None
        path = self.run_dir.checkpoint
        save_checkpoint(path, self.state_dict())
        self.last_checkpoint = str(path)
        self.unsaved = False
        return str(path)

    # ------------------------------------------------------------------ the event stream

    def _record(self, event: Event) -> Event:
        """Append ``event`` to the run folder at once: a row is on disk before the checkpoint that follows
        it, so a run killed after a checkpoint never resumes without the rows up to it. The one place events
        are recorded: the same row goes to the TensorBoard event file where that is written."""
        if self.run_dir is not None:
            row = event.to_dict()
            self.run_dir.append(row)
            if self.tensorboard is not None:
                self.tensorboard.write(row)
        return event

    def tick(self) -> list[Event]:
        """One step and what follows it, each event recorded in the run folder:
        ``[StepEvent]``, plus ``[EvalEvent, CheckpointEvent]`` when validation is due (every ``eval_every``
        steps and at the last step), or ``[ErrorEvent]`` when the step diverged. A diverged step was rolled
        back, so the run can go on after a settings change (the app's ▶ does; the CLI stops)."""
        try:
            events: list[Event] = [self._record(self.step())]
        except Divergence as err:
            error = ErrorEvent(
                step=self.step_count,
                epoch=self.epoch,
                message=str(err),
                advice=err.advice,
                checkpoint=self.last_checkpoint,
            )
            return [self._record(error)]
        if self.step_count % self.eval_every == 0 or self.done:
            events += self._validate_and_save()
        return events

    def end(self, stopped: bool = False) -> list[Event]:
        """End the run (once): validate and checkpoint the last step if not yet done, measure test accuracy
        (:meth:`finish`), write ``summary.json``. Returns the events, recorded; [] when already ended."""
        if self.finished is not None:
            return []
        events: list[Event] = []
        if self.step_count and self.validated_at != self.step_count:
            events += self._validate_and_save()
        # Saved again when the budget ran out right after a checkpoint: the checkpoint's clock must say the
        # budget is spent, or resuming this ended run would train on (from the earlier save's time).
        elif (self.unsaved or self.out_of_time) and self.step_count and self.save() is not None:
            events.append(
                self._record(CheckpointEvent(step=self.step_count, epoch=self.epoch, path=self.last_checkpoint))
            )
        self.finished = self.finish(stopped or not (self.done or self.out_of_time))
        events.append(self._record(self.finished))
        if self.run_dir is not None:
            self.run_dir.write_summary(self.summary(self.finished))
        if self.tensorboard is not None:
            self.tensorboard.close()  # a later row (a change after the end) opens a new file of the same run
        return events

    def events(
        self,
        should_stop: Callable[[], bool] | threading.Event | None = None,
        should_pause: Callable[[], bool] | None = None,
    ) -> Iterator[Event]:
        """Train to the planned number of steps (or ``time_budget``), yielding every event as it happens.

        ``should_stop`` is checked between steps; when it says stop, the run ends as a stopped one (last
        step validated and checkpointed, test accuracy, summary). A divergence ends the stream with its
        :class:`ErrorEvent` (the last good checkpoint is kept; no summary is written). ``should_pause`` is
        checked between steps too: while it says pause the run waits, and its clock stops (no step's time,
        ``wall_seconds`` or time budget counts the wait). One process only: under torchrun every rank would
        have to see the same answer.
        """
        stop = should_stop.is_set if isinstance(should_stop, threading.Event) else should_stop
        self.started = time.perf_counter()
        stopped = False
        while not self.done:
            if should_pause is not None and should_pause():
                waited = time.perf_counter()
                while should_pause() and not (stop is not None and stop()):
                    time.sleep(PAUSE_POLL_SECONDS)
                self.started += time.perf_counter() - waited  # the run's clock stood still
            # Under torchrun the ranks decide together (a clock or a signal seen by one rank stops all).
            out_of_time, stopped = distributed.any_rank(
                self.world, self.device, self.out_of_time, stop is not None and stop()
            )
            if out_of_time or stopped:
                break
            batch = self.tick()
            yield from batch
            if isinstance(batch[-1], ErrorEvent):
                return
        yield from self.end(stopped)

    @property
    def elapsed(self) -> float:
        """Wall seconds of the run so far: this process's since it started training, plus what the processes
        before a resume had spent up to the checkpoint it continues from. The clock of ``time_budget``, of the
        cosine under a budget (:attr:`progress`), and of ``wall_seconds`` in the events and the checkpoint."""
        return self.wall_offset + time.perf_counter() - self.started

    @property
    def out_of_time(self) -> bool:
        budget = self.config.time_budget
        return budget is not None and self.elapsed >= budget

    def _validate_and_save(self) -> list[Event]:
        events: list[Event] = [self._record(self.validate())]
        path = self.save()
        if path is not None:
            events.append(self._record(CheckpointEvent(step=self.step_count, epoch=self.epoch, path=path)))
        return events


def train(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    should_stop: Callable[[], bool] | threading.Event | None = None,
) -> Iterator[Event]:
    """Run training from scratch, yielding :mod:`events`."""
    yield from Trainer(config, out_dir).events(should_stop)


def resume(out_dir: str | Path, should_stop: Callable[[], bool] | threading.Event | None = None) -> Iterator[Event]:
    """Continue the run saved in ``out_dir`` (its ``checkpoint.pt``)."""
    run = RunDir(out_dir)
    trainer = load_trainer(run.checkpoint_file(), out_dir=out_dir)
    yield from trainer.events(should_stop)


def load_trainer(path: str | Path, out_dir: str | Path | None = None, **overrides: Any) -> Trainer:
    """Rebuild a trainer (config, model, optimizers, step) from a checkpoint file.

    ``overrides`` replace settings of the saved config that belong to this machine rather than to the
    run (e.g. ``device="cpu", threads=None`` to inspect a GPU run on a laptop). Where the data comes from
    is never taken from the file: ``download`` is False and ``data_dir`` None (this machine's default
    folder) unless ``overrides`` say otherwise (the command line's ``--download``, ``--data-dir``). A
    checkpoint may come from elsewhere; opening one must not create folders or reach the network."""
    state = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(json.loads(state["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds no valid training config: {err}") from None
    config = config.replace(**{"download": False, "data_dir": None, **overrides})
    return Trainer(config, out_dir=out_dir, resume=state)


def _out_of_memory(err: BaseException) -> bool:
    """A failed allocation, CUDA's or the CPU allocator's (torch raises RuntimeError for both)."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Autocast's bf16/fp16 logits in fp32 for the loss (fp32 and fp64 as they are)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
