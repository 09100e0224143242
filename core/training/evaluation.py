"""Evaluation in :class:`core.training.Trainer`: accuracy and loss on a split (eval mode, no grad, under
autocast), validation with the best model kept, and the end of a run (test accuracy, the summary)."""

from __future__ import annotations

import time

import torch
from torch import nn

from . import distributed
from .events import EvalEvent, FinishedEvent
from .memory import peak_memory
from .stepping import _at_least_fp32


class Evaluation:
    """The evaluation half of :class:`Trainer` (it uses the attributes ``Trainer.__init__`` sets)."""

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
