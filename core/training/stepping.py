"""One optimisation step of :class:`core.training.Trainer`: batches, the forward pass under autocast, the
backward (direct or implicit, by the model), the step's figures (NFE, residual, memory), HomoODE's start
point on its own schedule, and the checks that turn a non-finite loss, a failed solve or an allocation
that failed into a :class:`Divergence` with advice."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import nn

from .. import data as data_lib
from ..models import ODEStepLimitError
from ..solvers import SolverError
from . import distributed
from .events import StepEvent
from .memory import SavedTensorMeter, peak_memory


class Divergence(RuntimeError):
    """A step produced a non-finite loss or the solver failed; carries advice for the user."""

    def __init__(self, message: str, advice: str):
        super().__init__(message)
        self.advice = advice


class Stepping:
    """The step half of :class:`Trainer` (it uses the attributes ``Trainer.__init__`` sets)."""

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
            with meter:
                out, loss_sum, total = self._training_loss(self.ddp or self.model, x, y, weight)
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

    def _training_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: float
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """(model output, cross-entropy summed over the batch, what is minimised: that × ``weight`` plus the
        DEQ's Jacobian regulariser) of a training step's forward pass, under autocast."""
        with self.autocast():
            out = model(x)
            loss_sum = nn.functional.cross_entropy(_at_least_fp32(out.logits), y, reduction="sum")
            total = loss_sum * weight  # what is minimised; events report the cross-entropy alone
            if out.stats.jac_loss is not None:
                total = total + self.config.model.deq.jac_reg * out.stats.jac_loss * (len(y) * weight)
        return out, loss_sum, total

    def graph_bytes(self, step: int = 0) -> tuple[int, float]:
        """(bytes, forward NFE) of a training step's forward pass on the batch of training step ``step`` with
        the model's current weights: what autograd keeps for backward (:class:`SavedTensorMeter`). Nothing is
        trained: no backward, the buffers (batch-norm statistics), the model's mode and the random streams
        (dropout masks drawn from a generator seeded by the run's seed and ``step``) are put back. Under
        torchrun every rank must call it (batch-norm and dopri5's error norm talk to the others); each
        measures its own shard of the batch."""
        x, y, n_global = self._batch(step)
        buffers = [b.detach().clone() for b in self.model.buffers()]
        mode = self.model.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed * 1_000_003 + step)
            self.model.train()
            try:
                with SavedTensorMeter() as meter:
                    out, _, _ = self._training_loss(self.model, x, y, self.world.size / n_global)
                return meter.nbytes, float(out.stats.nfe)
            finally:
                self._restore_buffers(buffers)
                self.model.train(mode)

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


def _out_of_memory(err: BaseException) -> bool:
    """A failed allocation, CUDA's or the CPU allocator's (torch raises RuntimeError for both)."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Autocast's bf16/fp16 logits in fp32 for the loss (fp32 and fp64 as they are)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
