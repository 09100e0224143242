"""What a :class:`core.training.Trainer` keeps: its summary, its state as a checkpoint (every piece, so a
resumed run continues exactly), loading it back, and recording each event in the run folder."""

from __future__ import annotations

import json
from typing import Any

import torch

from .checkpoint import CheckpointError, save_checkpoint
from .events import Event, FinishedEvent, json_safe


class Persistence:
    """Saving and recording for :class:`Trainer` (it uses the attributes ``Trainer.__init__`` sets)."""

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
