"""The worker side of :class:`explorer.sessions.SessionTrainer`: its thread's loop (wait for a command, tick
every lane's core ``Trainer``, draw a picture when one is due or wanted, drain live changes between steps,
finish the runs at the end), the states a worker is in, and the run folders still being written
(``live_run_dirs``), which the Compare tab never renames or deletes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

#: Worker states, as shown on the page.
READY, RUNNING, PAUSED, FINISHED, DIVERGED, STOPPED, FAILED = (
    "ready",
    "running",
    "paused",
    "finished",
    "diverged",
    "stopped",
    "failed",
)

_LIVE_DIRS: dict[Path, int] = {}  # run folders a trainer may still write to -> number of such trainers
_LIVE_LOCK = threading.Lock()


def live_run_dirs() -> set[Path]:
    """Run folders that a trainer of this process may still write to: from its build until its summary is
    written (or it failed), whether or not its tab is still open. Renaming or deleting one is refused."""
    with _LIVE_LOCK:
        return set(_LIVE_DIRS)


def _add_live_dirs(out_dirs: Iterable[Path | None]) -> None:
    with _LIVE_LOCK:
        for out_dir in out_dirs:
            if out_dir is not None:
                key = out_dir.resolve()
                _LIVE_DIRS[key] = _LIVE_DIRS.get(key, 0) + 1


def _forget_live_dirs(out_dirs: Iterable[Path | None]) -> None:
    with _LIVE_LOCK:
        for out_dir in out_dirs:
            if out_dir is not None:
                key = out_dir.resolve()
                if _LIVE_DIRS.get(key, 0) <= 1:
                    _LIVE_DIRS.pop(key, None)
                else:
                    _LIVE_DIRS[key] -= 1


class WorkerLoop:
    """The thread half of :class:`SessionTrainer` (it uses the attributes ``SessionTrainer.__init__`` sets and
    its command methods); every method here runs on the worker thread unless it says otherwise."""

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._worker, name="session-trainer", daemon=True)
            self._thread.start()

    def _idle_check(self) -> bool:
        """Under ``_cond``: pause (and say so) when nobody has looked for ``idle_pause`` seconds."""
        if not (self._playing and self.idle_pause) or time.monotonic() - self._last_seen <= self.idle_pause:
            return False
        self._playing = False
        self._auto_paused = True
        self._state = PAUSED
        self._message = "paused while this page was hidden; it plays on when you look again"
        return True

    def _halt_worker(self, finish: bool, timeout: float) -> None:
        thread = self._thread
        with self._cond:
            self._halt = True
            self._finish_on_halt = finish
            self._cond.notify_all()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread() and timeout > 0:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._thread = None

    def _worker(self) -> None:
        last_visual = 0.0
        tick_started = time.perf_counter()
        rate_window: list[float] = []
        while True:
            with self._cond:
                if self._idle_check():
                    self._release_if_idle()  # before waiting: a hidden page must not hold its slot
                while not (self._halt or self._playing or self._pending_steps or self._changes):
                    self._cond.wait(timeout=1.0)
                if self._halt:
                    break
                manual = not self._playing and self._pending_steps > 0
                if manual:
                    self._pending_steps -= 1
                work = self._playing or manual
                self._busy = work
            changed = self._drain_changes()
            if not work:
                if changed:
                    self.refresh_visual()
                continue
            tick_started = time.perf_counter()
            try:
                self._tick()
            except Exception as err:  # not a divergence (those are handled per lane): a bug or a bad file
                with self._cond:
                    self._playing = self._busy = False
                    self._state = FAILED
                    self._message = f"training stopped by an unexpected error: {type(err).__name__}: {err}"
                    self._steps_done += manual
                    self._cond.notify_all()
                    self._release_if_idle()
                self._leave_live()  # nothing more will be written there
                continue
            now = time.perf_counter()
            rate_window = [t for t in rate_window if now - t < 2.0] + [now]
            self._rate = (len(rate_window) - 1) / max(now - rate_window[0], 1e-9) if len(rate_window) > 1 else 0.0
            with self._cond:
                wanted, self._visual_wanted = self._visual_wanted, False
            timed = not self.pulled and now - last_visual >= self.visual_every
            if manual or changed or wanted or timed or self.done:
                self.refresh_visual()
                last_visual = time.perf_counter()
            with self._cond:
                if manual:
                    self._steps_done += 1
                if self.done:
                    self._playing = False
                    self._state = DIVERGED if self.buffer.errors() else FINISHED
                elif self.buffer.errors() and self._playing:
                    # Stop for the user to read the advice; ▶ retries the rolled-back lane.
                    self._playing = False
                    self._state = DIVERGED
                elif manual and self._state != DIVERGED:
                    self._state = PAUSED
                self._busy = False
                self._cond.notify_all()
                playing = self._playing
                self._release_if_idle()
            if self.done:
                self._finish_all(stopped=False)
            if playing and self.steps_per_second:
                delay = 1.0 / self.steps_per_second - (time.perf_counter() - tick_started)
                if delay > 0:
                    time.sleep(delay)
        if self._finish_on_halt:
            self._finish_all(stopped=True)

    def _drain_changes(self) -> bool:
        with self._cond:
            changes, self._changes = self._changes, []
        for change in changes:
            with self.model_lock:
                events = [trainer.apply(**change) for trainer in self.trainers]
            for i, event in enumerate(events):
                self.buffer.record(i, event)
        return bool(changes)

    def _tick(self) -> None:
        """One step of every lane still training (core's ``Trainer.tick``), read into the page's buffer."""
        for i, trainer in enumerate(self.trainers):
            if trainer.done or self.buffer.lanes[i].error is not None:
                continue
            with self.model_lock:
                events = trainer.tick()
            for event in events:
                self.buffer.record(i, event)

    def refresh_visual(self) -> None:
        """Recompute the picture now: after something the picture depends on changed (any thread)."""
        if self.visual is None:
            return
        # Computed and published under the model lock: a picture computed later (e.g. after the page moved
        # the probe point) is always published later, never overwritten by one the worker began before.
        with self.model_lock:
            for i, trainer in enumerate(self.trainers):
                try:
                    picture = self.visual(trainer)
                except Exception as err:  # a picture must never kill training: show why instead
                    picture = {"error": f"{type(err).__name__}: {err}"}
                self.buffer.publish(i, visual=picture)
            self.buffer.new_version()

    def _finish_all(self, stopped: bool) -> None:
        """End each lane not yet ended (core's ``Trainer.end``: last validation and checkpoint, test
        accuracy, summary)."""
        pending = self.buffer.unfinished()
        if not pending:
            return
        for i in pending:
            trainer = self.trainers[i]
            with self.model_lock:
                trainer.end(stopped)
                summary = trainer.summary(trainer.finished)
            self.buffer.publish(i, finished=summary)  # last: "finished" on the page means the files are there
        with self._cond:
            if stopped:
                self._state = STOPPED
            elif self._state != DIVERGED:
                self._state = FINISHED
        self._leave_live()

    def _leave_live(self) -> None:
        """Take this trainer's folders out of the live set, once (a failed worker and a later stop both
        end here; counting out twice would free a folder another trainer still writes to)."""
        if self._live:
            _forget_live_dirs(lane.out_dir for lane in self.lanes)
            self._live = False
