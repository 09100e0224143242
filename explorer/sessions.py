"""Per-browser-session state and the training worker the page only reads.

Gradio's ``gr.State`` deep-copies its values, and a Cancel button only stops a generator between yields;
neither fits a model that trains while the page redraws. So each browser session (``session_hash``) owns
a :class:`Session` in a server-side :class:`SessionRegistry`, and each training runs in a
:class:`SessionTrainer`: one worker thread that checks its commands between optimisation steps (play,
pause, step one, reset, stop, live setting changes) and appends to a lock-protected metrics buffer. The
page's timer copies that buffer and redraws; a slow redraw never slows training, and training never waits
for the page.

The training itself is core's: each tick calls ``Trainer.tick()`` (a step, then validation and a
checkpoint when due), a stop calls ``Trainer.end()``, a live change ``Trainer.apply()``; the trainer
records every event in its run folder, so a run from this page writes what ``python -m core.train`` does.
Around it this module keeps: the page's commands and their order, a gate capping the trainings running at
once (``TrainingGate``), the run folders still being written (``live_run_dirs``), and each tab's sessions,
closed when the tab goes (``SessionRegistry``). What the page reads is ``explorer.pagebuffer``; the worker
thread's loop is ``explorer.worker``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.checks import short_repr
from core.models import ModelConfig
from core.training import TrainConfig, Trainer

from .pagebuffer import PageBuffer, Snapshot
from .worker import (
    PAUSED,
    READY,
    RUNNING,
    WorkerLoop,
    _add_live_dirs,
)

#: Seconds after a page last asked for a picture (:meth:`SessionTrainer.want_visual`) that it still counts as
#: pulling them: a few of an animation's frame intervals, so a frame that is late does not bring back the
#: timed pictures.
PULL_LAPSE = 2.0


class CapacityError(RuntimeError):
    """The server already runs its maximum number of trainings."""


class TrainingGate:
    """Server-wide cap on concurrently *running* trainings (paused ones hold no slot).

    Args:
        limit: slots.
        full_message: what a user is told when every slot is taken: what they can do about it, in words
            that fit the tab they are on (format fields: ``{limit}``).
    """

    def __init__(self, limit: int, full_message: str | None = None):
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"the training cap must be an integer >= 1, got {short_repr(limit)}")
        self.limit = limit
        self.full_message = full_message or (
            "this server already runs {limit} training(s) at once (the cap protects the CPU); try again when one "
            "finishes"
        )
        self._holders: set[int] = set()
        self._lock = threading.Lock()

    def acquire(self, owner: object) -> None:
        with self._lock:
            if id(owner) in self._holders:
                return
            if len(self._holders) >= self.limit:
                raise CapacityError(self.full_message.format(limit=self.limit))
            self._holders.add(id(owner))

    def release(self, owner: object) -> None:
        with self._lock:
            self._holders.discard(id(owner))

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._holders)


@dataclass(frozen=True)
class Lane:
    """One model trained by a :class:`SessionTrainer`: a display name, its config, and where its files go
    (None: in memory only)."""

    name: str
    config: TrainConfig
    out_dir: Path | None = None


class SessionTrainer(WorkerLoop):
    """Trains one or more models side by side in one worker thread; the page only reads its buffer.

    Every model ("lane") takes one step per tick, so their step counters stay equal and their curves
    comparable. Commands (play, pause, step one, reset, stop, apply) are queued under a condition
    variable and honoured between steps: a pause never interrupts a step, and ``step_once`` advances
    exactly one.

    Args:
        lanes: the models to train.
        gate: server-wide cap on running trainings (None: no cap).
        visual: ``visual(trainer) -> object`` computed in the worker (it owns the model) every
            ``visual_every`` seconds while running and after each manual step, reset or change;
            the page reads the last result.
        steps_per_second: throttle (None: as fast as possible). The toy Playground uses it so that
            the animation is watchable and the CPU stays free for the page.
        max_points: keep at most this many step rows per lane (older rows are thinned by half).
        idle_pause: pause by itself (freeing its slot) when the page has not called :meth:`seen` for this
            many seconds, and play again on the next ``seen`` (None: never). The Playground uses it: its
            page only polls while it is visible, so a hidden tab holds no slot and burns no CPU.
    """

    def __init__(
        self,
        lanes: list[Lane],
        gate: TrainingGate | None = None,
        visual: Callable[[Trainer], Any] | None = None,
        visual_every: float = 0.3,
        steps_per_second: float | None = None,
        max_points: int = 20_000,
        idle_pause: float | None = None,
    ):
        if not lanes:
            raise ValueError("a SessionTrainer needs at least one model")
        self.lanes = lanes
        self.gate = gate
        self.visual = visual
        self.visual_every = visual_every
        self.steps_per_second = steps_per_second
        self.idle_pause = idle_pause
        self._last_seen = time.monotonic()
        self._auto_paused = False  # paused by idle_pause (not by the user): the next seen() plays again
        self._cond = threading.Condition()
        self.model_lock = threading.RLock()  # held by the worker during each step; taken to copy a model
        self._playing = False
        self._pending_steps = 0
        self._steps_done = 0  # manual steps completed (for step_once's wait)
        self._busy = False  # the worker is inside a tick
        self._halt = False  # the worker should exit after its step
        self._finish_on_halt = True  # ... and finish the run (not when reset throws it away)
        self._stopped = False  # stop() was called: the run is over
        self._changes: list[dict[str, Any]] = []
        self._visual_wanted = False  # a page asked for a picture newer than the last (want_visual)
        self._last_want = -math.inf  # when it last asked (monotonic seconds)
        self._state = READY
        self._message = ""
        self._thread: threading.Thread | None = None
        self._rate = 0.0
        self.trainers: list[Trainer] = []
        self.buffer = PageBuffer(len(lanes), max_points)
        self._live = False  # this trainer's folders are in the live set (see live_run_dirs)
        self._build()

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        """(Re)build every lane's Trainer (model, optimizer, data; its run folder) from its config; errors
        propagate."""
        trainers = [Trainer(lane.config, out_dir=lane.out_dir) for lane in self.lanes]
        with self.model_lock:
            self.trainers = trainers
        self.buffer = PageBuffer(len(self.lanes), self.buffer.max_points)
        if not self._live:
            _add_live_dirs(lane.out_dir for lane in self.lanes)
            self._live = True
        self.refresh_visual()

    # ------------------------------------------------------------------ commands (any thread)

    def play(self) -> None:
        """Start or resume; raises :class:`CapacityError` when the server's cap is reached."""
        with self._cond:
            if self._stopped:
                raise ValueError("this run was stopped; start a new one")
            if self.done:
                return
            if self.gate is not None:
                self.gate.acquire(self)
            self._playing = True
            self._auto_paused = False
            self._last_seen = time.monotonic()
            self._state = RUNNING
            self._message = ""
            self.buffer.clear_errors()  # a diverged lane (rolled back) gets another try, e.g. after a lower lr
            self._cond.notify_all()
        self._ensure_thread()

    def pause(self, timeout: float = 60.0) -> None:
        """Pause after the step in progress (waits for it); the step counter then stays put."""
        with self._cond:
            self._playing = False
            self._auto_paused = False
            if self._state == RUNNING:
                self._state = PAUSED
            self._cond.notify_all()
            if threading.current_thread() is not self._thread:
                self._cond.wait_for(lambda: not self._busy, timeout=timeout)
            self._release_if_idle()

    def _release_if_idle(self) -> None:
        """Under ``_cond``: give the slot back unless a play() got in first. Releasing outside the lock let
        a play() between the two re-acquire nothing (the slot was still held) and then lose it."""
        if not self._playing and self.gate is not None:
            self.gate.release(self)

    def step_once(self, timeout: float = 60.0) -> int:
        """Pause, then advance exactly one step (every lane); returns the step count after it."""
        self.pause()
        with self._cond:
            if self.done or self._stopped:
                return self.step_count
            self.buffer.clear_errors()
            target = self._steps_done + 1
            self._pending_steps += 1
            self._cond.notify_all()
        self._ensure_thread()
        with self._cond:
            self._cond.wait_for(lambda: self._steps_done >= target or self._halt, timeout=timeout)
        return self.step_count

    def reset(self, lanes: list[Lane] | None = None, timeout: float = 60.0) -> None:
        """Rebuild every model from its config (or from new ``lanes``): step 0, fresh weights, paused."""
        self.pause()
        self._halt_worker(finish=False, timeout=timeout)
        old_lanes = self.lanes
        if lanes is not None:
            self.lanes = lanes
        with self._cond:
            self._halt = self._stopped = False
            self._pending_steps = 0
            self._changes.clear()
            self._state = READY
            self._message = ""
        try:
            self._build()
        except Exception:
            self.lanes = old_lanes  # a bad new config leaves the old run in place
            self._build()
            raise

    def apply(self, **changes: Any) -> None:
        """Change ``core.training.LIVE_SETTINGS`` without a reset: checked now (a bad value raises here, in
        the caller), applied between steps."""
        for trainer in self.trainers:
            trainer.check_changes(**changes)
        with self._cond:
            self._changes.append(dict(changes))
            self._cond.notify_all()
        if self._thread is None or not self._thread.is_alive():
            self._drain_changes()  # no worker: apply now, so a paused run shows the change
            self.refresh_visual()

    def stop(self, wait: bool = True, timeout: float = 120.0) -> None:
        """End the run: the worker finishes (test accuracy, final checkpoint for saved runs) and exits."""
        with self._cond:
            already = self._stopped
            self._stopped = True
            self._playing = False
        if self.gate is not None:
            self.gate.release(self)
        if already:
            return
        if self._thread is None or not self._thread.is_alive():
            self._finish_all(stopped=True)
        else:
            self._halt_worker(finish=True, timeout=timeout if wait else 0.0)

    def close(self) -> None:
        """Stop without waiting (the tab closed); the worker ends after its current step."""
        self.stop(wait=False)

    def join(self, timeout: float = 120.0) -> None:
        """Wait for the worker thread to end (after :meth:`stop` or :meth:`close`)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def seen(self) -> None:
        """The page is looking (its visible tab polled): keep playing, or play again if :attr:`idle_pause`
        paused the run while nobody looked. A full server leaves it paused, saying why."""
        with self._cond:  # atomic with pause(): a user's ❚❚ between the check and play() is never undone
            self._last_seen = time.monotonic()
            if not self._auto_paused:
                return
            try:
                self.play()
            except (CapacityError, ValueError) as err:
                self._message = str(err)

    def want_visual(self) -> None:
        """A page wants a picture newer than the last one: the worker draws one after its next step. While
        pages ask (an animation pulls frames), pictures come at their pace, never faster than the steps, and
        the timed ``visual_every`` pictures stop (a slow page gets fewer pictures and costs less CPU)."""
        with self._cond:
            self._visual_wanted = True
            self._last_want = time.monotonic()

    @property
    def pulled(self) -> bool:
        """True while a page pulls pictures (:meth:`want_visual` in the last ``PULL_LAPSE`` seconds)."""
        return time.monotonic() - self._last_want < PULL_LAPSE

    # ------------------------------------------------------------------ reading (any thread)

    @property
    def step_count(self) -> int:
        return min((t.step_count for t in self.trainers), default=0)

    @property
    def total_steps(self) -> int:
        return max((t.total_steps for t in self.trainers), default=0)

    @property
    def done(self) -> bool:
        return all(t.done for t in self.trainers)

    @property
    def state(self) -> str:
        return self._state

    @property
    def running(self) -> bool:
        return self._state == RUNNING

    def read_pictures(self) -> Snapshot:
        """A :class:`Snapshot` with the pictures, each lane's last step and accuracy, but no curves (empty
        ``metrics``): cheap enough for every frame of an animation."""
        return Snapshot(
            state=self._state,
            step=self.step_count,
            total_steps=self.total_steps,
            metrics={},
            finished={},
            steps_per_second=self._rate,
            message=self._message,
            **self.buffer.pictures([lane.name for lane in self.lanes]),
        )

    def read(self) -> Snapshot:
        """Copy the buffer (cheap: lists to arrays) for one redraw. A model trained by direct backprop has no
        backward solve: its curves carry no backward NFE (a line at 0 would say it solved in no steps; its
        ``last`` keeps the 0, which the table shows as "backprop (no solve)")."""
        gradients = {lane.name: gradient_method(lane.config.model) for lane in self.lanes}
        copied = self.buffer.copy([lane.name for lane in self.lanes])
        for name, gradient in gradients.items():
            if gradient == "direct":
                copied["metrics"][name].pop("nfe_backward", None)
        return Snapshot(
            state=self._state,
            step=self.step_count,
            total_steps=self.total_steps,
            steps_per_second=self._rate,
            message=self._message,
            gradients=gradients,
            **copied,
        )

    def clone_model(self, lane: int = 0):
        """A deep copy of a lane's model, taken between steps, for analysis that must not race training."""
        with self.model_lock:
            return copy.deepcopy(self.trainers[lane].model)

    # ------------------------------------------------------------------ the worker


def gradient_method(model: ModelConfig) -> str:
    """How a model's gradient is computed: a DEQ's backward (implicit or phantom), an ODE's adjoint, or
    direct backprop through the solver's operations (no backward solve, so its backward NFE is 0)."""
    if model.family == "deq":
        return model.deq.backward
    return "adjoint" if model.ode.adjoint else "direct"


def backward_cell(nfe_backward: float, gradient: str) -> str:
    """What a page shows for a step's backward NFE: a number, or what 0 means for direct backprop."""
    return "backprop (no solve)" if gradient == "direct" else f"{nfe_backward:.0f}"


# ----------------------------------------------------------------------------------------------
# Sessions


@dataclass
class Session:
    """Everything one browser tab owns: its trainers and the Solver lab's last results."""

    key: str
    created: float = field(default_factory=time.time)
    playground: SessionTrainer | None = None
    playground_settings: Any = None
    train: SessionTrainer | None = None
    train_runs: dict[int, SessionTrainer] = field(default_factory=dict)  # image runs by id, newest last
    next_run_id: int = 0
    run_dirs: list[Path] = field(default_factory=list)  # folders of every image run this tab started
    lab: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # tab -> curves_figure options
    page_base: str = ""  # the page's address without its query: share links are whole URLs
    lock: threading.RLock = field(default_factory=threading.RLock)

    def trainers(self) -> list[SessionTrainer]:
        found = [self.playground, self.train, *self.train_runs.values()]
        unique: list[SessionTrainer] = []
        for t in found:
            if t is not None and all(t is not u for u in unique):
                unique.append(t)
        return unique

    def add_run(self, trainer: SessionTrainer, keep: int = 3) -> int:
        """Remember an image run under a new id; older ones beyond ``keep`` leave memory (their data and
        model) but stay on disk, where the Solver lab finds them as saved runs."""
        run_id = self.next_run_id
        self.next_run_id += 1
        self.train_runs[run_id] = trainer
        for old in list(self.train_runs)[:-keep]:
            finished = self.train_runs.pop(old)
            if finished is not self.train:
                finished.close()
        return run_id

    def close(self, wait: bool = False) -> None:
        """Stop every training of this tab; ``wait`` for their workers to end (at server shutdown: a worker
        thread still inside torch when the interpreter exits aborts the process)."""
        trainers = self.trainers()
        for trainer in trainers:
            with contextlib.suppress(Exception):  # closing must not fail half-way
                trainer.close()
        for trainer in trainers if wait else ():
            trainer.join()


class SessionRegistry:
    """Server-side dict of sessions keyed by ``gr.Request.session_hash``, created lazily.

    Args:
        max_trainings: server-wide cap on image trainings (and memory measurements) running at once.
        max_sessions: oldest sessions are closed beyond this many (tabs that vanished without unload).
        max_playgrounds: server-wide cap on Playgrounds animating at once (their own budget).
    """

    def __init__(self, max_trainings: int = 4, max_sessions: int = 64, max_playgrounds: int = 8):
        # Two budgets: a user's image run must never be blocked by Playground previews in other tabs (tiny,
        # throttled, and paused by themselves when their page is hidden), and the reverse.
        self.gate = TrainingGate(
            max_trainings,
            "this server already trains {limit} image model(s) at once (the cap protects the CPU; Playground "
            "previews do not count): wait for one to finish, or pause or stop your own run in the Train tab",
        )
        self.playground_gate = TrainingGate(
            max_playgrounds,
            "{limit} Playgrounds are animating on this server right now: press ▶ Play again in a moment (a "
            "Playground pauses by itself while its page is hidden)",
        )
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str | None) -> Session:
        if not key:
            raise ValueError("no session: reload the page")
        evicted: list[Session] = []
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session(key)
                while len(self._sessions) > self.max_sessions:
                    oldest = min(self._sessions.values(), key=lambda s: s.created)
                    evicted.append(self._sessions.pop(oldest.key))
        for s in evicted:
            s.close()
        return session

    def peek(self, key: str | None) -> Session | None:
        with self._lock:
            return self._sessions.get(key or "")

    def close(self, key: str | None) -> None:
        """Stop the session's trainings and forget it (``demo.unload``)."""
        with self._lock:
            session = self._sessions.pop(key or "", None)
        if session is not None:
            session.close()

    def close_all(self) -> None:
        """Stop every session's trainings and wait for their workers (server shutdown)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            s.close(wait=True)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._sessions
