"""The run folder: the one place that knows its files, for the CLI, the app, the Compare tab and the benchmarks.

    DIR/config.json     the settings in force (rewritten after a live change; a resume continues with them)
    DIR/metrics.jsonl   one JSON event per line, appended as they happen (a resume appends to it)
    DIR/summary.json    written once the run has ended (finished, stopped)
    DIR/checkpoint.pt   the last checkpoint (see :mod:`checkpoint`)
    DIR/events.out.tfevents.*   where the optional tensorboard package is installed: the same rows for
                        TensorBoard, rewritten from metrics.jsonl when a run opens the folder (:mod:`tensorboard_log`)

Writers replace whole files atomically; readers never raise on a missing, half-written or foreign file
(a crash can leave half a line at the end of ``metrics.jsonl``): they return what is readable. Nothing is
read through a symbolic link: a linked file or run folder may lead anywhere on the machine.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import short_repr
from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_json
from .events import Event, json_safe

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"
#: TensorBoard's event files (``SummaryWriter`` names them so).
EVENT_FILES = "events.out.tfevents.*"
#: A run folder's name as a user may type it: no separators, no leading dot.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _own_file(path: Path) -> bool:
    """A regular file that is not a symbolic link: a run's files are read only where the run wrote them
    (a link planted in a run folder must not make the runs table or its export read a file elsewhere)."""
    return not path.is_symlink() and path.is_file()


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} for a missing, unreadable or non-object file, and for a link (a run
    folder's files are never read through links)."""
    if path.is_symlink():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class RunDir:
    """One run folder (which need not exist yet: :meth:`create` makes it)."""

    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint(self) -> Path:
        """Where the run's checkpoint is written (use :meth:`checkpoint_file` to open one safely)."""
        return self.path / CHECKPOINT

    # ------------------------------------------------------------------ writing

    def create(self) -> RunDir:
        """Make the folder (and its parents), and remove temporary files a killed writer left in it."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, SUMMARY, CHECKPOINT, METRICS):
            for stale in self.path.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        return self

    def clear(self) -> None:
        """Remove the run's own files (those above), nothing else: for starting afresh in this folder."""
        for name in (CONFIG, METRICS, SUMMARY, CHECKPOINT):
            (self.path / name).unlink(missing_ok=True)
        self.clear_event_files()

    def event_files(self) -> list[Path]:
        """The folder's TensorBoard event files (regular files only: a link is not the run's)."""
        return sorted(p for p in self.path.glob(EVENT_FILES) if _own_file(p))

    def clear_event_files(self) -> None:
        for path in self.event_files():
            path.unlink(missing_ok=True)

    def write_config(self, config: Any) -> None:
        """The settings in force: a ``TrainConfig`` (or its dict)."""
        atomic_write_json(self.path / CONFIG, config.to_dict() if hasattr(config, "to_dict") else config)

    def append(self, event: Event | dict[str, Any]) -> None:
        """One event as one JSON line. Opened per event: no handle outlives a run, and each line is flushed
        as a whole, so a crash loses at most the line being written."""
        row = event.to_dict() if isinstance(event, Event) else json_safe(event)
        line = (json.dumps(row) + "\n").encode()
        with open(self.path / METRICS, "a+b") as fh:
            # A process killed mid-write leaves a torn last line: start on a new one, or this event would be
            # glued to it and lost with it (readers skip the torn line only).
            if fh.seek(0, os.SEEK_END) > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = b"\n" + line
            fh.write(line)

    def truncate_events(self, step: int) -> int:
        """Keep only the events up to ``step`` (atomically); returns how many were dropped.

        A resumed run continues from its checkpoint's step: rows that a killed process wrote after that
        checkpoint (and a torn last line) would otherwise stand twice, once from each process. A
        ``finished`` row goes too: a run being resumed has not finished (its process died before the
        summary), and its end will be recorded again."""
        path = self.path / METRICS
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return 0
        kept = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(row, dict)
                and isinstance(row.get("step"), int)
                and row["step"] <= step
                and (row.get("kind") != "finished")
            ):
                kept.append(line)
        if len(kept) != len(lines):
            atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())
        return len(lines) - len(kept)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, json_safe(summary))

    # ------------------------------------------------------------------ reading (never raises)

    def has_config(self) -> bool:
        return _own_file(self.path / CONFIG)

    def read_config(self) -> dict[str, Any]:
        """``config.json`` as a dict ({} when missing or unreadable)."""
        return read_json(self.path / CONFIG)

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict ({} while the run has not ended, or when unreadable)."""
        return read_json(self.path / SUMMARY)

    def events(self) -> Iterator[dict[str, Any]]:
        """The recorded events in order: complete JSON objects only (a torn last line is skipped)."""
        if (self.path / METRICS).is_symlink():
            return
        try:
            lines = (self.path / METRICS).read_text().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event

    def last_event_kind(self) -> str | None:
        """The ``kind`` of the last complete event (reads only the file's tail)."""
        if (self.path / METRICS).is_symlink():
            return None
        try:
            with open(self.path / METRICS, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 8192))
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            return event.get("kind") if isinstance(event, dict) else None
        return None

    def state(self) -> str:
        """What the folder's files say of its run (the one rule the CLI, the study and the app's tables use):
        ``finished`` (all its steps, summary written), ``stopped`` (ended early, summary written), ``failed``
        (its last event is an error), ``in progress`` (configured, no summary: running now, or interrupted: a
        killed process leaves the same files), ``empty`` (no config)."""
        summary = self.read_summary()
        if summary:
            return "stopped" if summary.get("stopped") else "finished"
        if not self.has_config():
            return "empty"
        return "failed" if self.last_event_kind() == "error" else "in progress"

    def started(self) -> float:
        """When the run was configured (``config.json``'s time; 0 when unreadable): runs sort by it."""
        try:
            return (self.path / CONFIG).stat().st_mtime
        except OSError:
            return 0.0

    def checkpoint_file(self) -> Path:
        """The run's checkpoint, if it is a regular file of this folder (not a link to elsewhere).

        Raises:
            CheckpointError: there is none (yet), or it is a symbolic link (a checkpoint is opened only
                where the run wrote it).
        """
        path = self.checkpoint
        if path.is_symlink():
            raise CheckpointError(f"{path} is a symbolic link; only a checkpoint written into the run folder is opened")
        if not path.is_file():
            if self.has_config():
                raise CheckpointError(
                    f"the run in {self.path} stopped before its first checkpoint: there is nothing to resume; "
                    f"start it again with --out {self.path} --overwrite"
                )
            if not self.path.is_dir():
                raise CheckpointError(
                    f"there is no run folder at {self.path}: check the path (a run folder is the --out of a run)"
                )
            raise CheckpointError(f"no checkpoint in {self.path} (the run has not saved one yet)")
        return path

    # ------------------------------------------------------------------ folders of runs

    @staticmethod
    def find(root: str | os.PathLike, name: str) -> RunDir:
        """Run ``name`` directly inside ``root`` and really there (not a link out of it); ValueError
        otherwise. Code that renames or deletes a run goes through here."""
        if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
            raise ValueError(f"{short_repr(name)} is not a run's name (letters, digits, '.', '_' and '-')")
        resolved_root = Path(root).resolve()
        folder = Path(root) / name
        if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != resolved_root:
            raise ValueError(f"there is no run {short_repr(name)} in {resolved_root}")
        run = RunDir(folder)
        if not run.has_config():
            raise ValueError(f"{short_repr(name)} in {resolved_root} is not a run folder (it has no {CONFIG})")
        return run

    @staticmethod
    def list(root: str | os.PathLike, limit: int | None = None, only: set[Path] | None = None) -> list[RunDir]:
        """The run folders under ``root`` (those with a ``config.json``), newest first, at most ``limit``,
        optionally only those in ``only``. A symbolic link is skipped: a link to a folder elsewhere is not a
        run of ``root``, and its files are never read (nor listed, exported or opened) through it."""
        root = Path(root)
        try:
            entries = list(root.iterdir()) if root.is_dir() else []
        except OSError:
            return []
        runs = [RunDir(p) for p in entries if not p.is_symlink() and p.is_dir() and RunDir(p).has_config()]
        if only is not None:
            wanted = {p.resolve() for p in only}
            runs = [r for r in runs if r.path.resolve() in wanted]
        runs.sort(key=lambda r: (r.started(), r.name), reverse=True)
        return runs if limit is None else runs[:limit]
