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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .. import data as data_lib
from ..models import ImplicitClassifier, build_model
from . import distributed
from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig, config_changes
from .evaluation import Evaluation
from .events import ChangeEvent, CheckpointEvent, ErrorEvent, Event, FinishedEvent
from .memory import peak_memory
from .persistence import Persistence
from .rundir import RunDir
from .stepping import Divergence, Stepping
from .tensorboard_log import TensorBoardLog

#: What :meth:`Trainer.apply` may change while a run trains (everything else needs a new run).
LIVE_SETTINGS = ("lr", "grad_clip", "ode", "deq")


#: How often a paused run (``Trainer.events(should_pause=...)``) looks whether it may go on.
PAUSE_POLL_SECONDS = 1.0


class Trainer(Stepping, Evaluation, Persistence):
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

    # ------------------------------------------------------------------ state

    # ------------------------------------------------------------------ the event stream

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
