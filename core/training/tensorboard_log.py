"""A TensorBoard view of a run folder, for ``tensorboard --logdir runs``.

The event file lies in the run folder itself (``DIR/events.out.tfevents.*``), so TensorBoard lists each run
by its folder's path under the log directory (a study's runs as ``STUDY/<dataset>-<variant>-s<seed>``). It
holds the rows of ``metrics.jsonl`` as scalars (:data:`SCALARS`), live setting changes and errors as text,
and the run's settings (``config.json``, flattened: ``lr``, ``model.family``, ``model.ode.method`` ...) as
hparams.

Optional: written only where the ``tensorboard`` package is installed (``pip install '.[tensorboard]'``);
without it nothing is written and nothing fails. The run folder stays the source of truth: the trainer
hands this log the very rows it appends to ``metrics.jsonl`` (``Trainer._record``), and opening a run folder
(a new run, or a resumed one whose rows were cut back to its checkpoint) writes the event file afresh from
``metrics.jsonl``, so the two never disagree. TensorBoard keeps scalars in float32.
"""

from __future__ import annotations

import json
import math
import warnings
import weakref
from pathlib import Path
from typing import Any

from .rundir import RunDir

#: A ``metrics.jsonl`` row's kind -> (the row's key, the TensorBoard tag) of each scalar; an eval row's
#: tags are under its split (``val/accuracy``). A value that is missing, None or not finite is left out.
SCALARS: dict[str, tuple[tuple[str, str], ...]] = {
    "step": (
        ("loss", "train/loss"),
        ("train_acc", "train/accuracy"),
        ("lr", "train/lr"),
        ("start_loss", "train/start_point_loss"),
        ("nfe_forward", "nfe/forward"),
        ("nfe_backward", "nfe/backward"),
        ("residual", "solver/residual"),
        ("backward_residual", "solver/backward_residual"),
        ("peak_memory_bytes", "memory/peak_bytes"),
        ("graph_bytes", "memory/graph_bytes"),
        ("step_seconds", "time/step_seconds"),
        ("wall_seconds", "time/wall_seconds"),
    ),
    "eval": (("loss", "{split}/loss"), ("accuracy", "{split}/accuracy"), ("nfe_forward", "{split}/nfe_forward")),
    "finished": (
        ("test_accuracy", "test/accuracy"),
        ("test_loss", "test/loss"),
        ("best_val_accuracy", "val/best_accuracy"),
    ),
}
#: Row kinds shown as text (at their step): what changed, and why a run stopped.
TEXTS = {"change": "changes", "error": "error"}
#: Rows after which the file is flushed at once (steps are flushed every ``FLUSH_SECONDS``).
FLUSH_KINDS = {"eval", "checkpoint", "change", "finished", "error"}
FLUSH_SECONDS = 5


def scalars(row: dict[str, Any]) -> list[tuple[str, float]]:
    """(tag, value) of each scalar of one ``metrics.jsonl`` row (see :data:`SCALARS`)."""
    split = row.get("split") if isinstance(row.get("split"), str) else "val"
    out = []
    for key, tag in SCALARS.get(row.get("kind"), ()):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append((tag.format(split=split), float(value)))
    return out


def text(row: dict[str, Any]) -> str | None:
    """A change or error row as a line of text (None for other rows)."""
    if row.get("kind") == "change" and isinstance(row.get("changes"), dict) and row["changes"]:
        return "; ".join(
            f"{name}: {v.get('old')!r} → {v.get('new')!r}" if isinstance(v, dict) else f"{name}: {v!r}"
            for name, v in row["changes"].items()
        )
    if row.get("kind") == "error":
        return f"{row.get('message', '')} Advice: {row.get('advice', '')}"
    return None


def hparams(config: dict[str, Any]) -> dict[str, float | int | str]:
    """A run's settings as TensorBoard hparams: nested settings by dotted name (``model.ode.method``),
    numbers as numbers, yes/no and lists as text; unset (None) settings are left out."""
    out: dict[str, float | int | str] = {}

    def add(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(inner, f"{name}.{key}" if name else str(key))
        elif value is None:
            return
        elif isinstance(value, bool):
            out[name] = str(value).lower()
        elif isinstance(value, (int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)

    add(config, "")
    return out


class TensorBoardLog:
    """The event file of one run folder. Build it with :meth:`open` (None where TensorBoard is not
    installed); :meth:`write` each row as it is recorded; :meth:`close` when the run ends (a later row
    opens a new file in the same folder, which TensorBoard reads as the same run).

    A failure to write (a full disk, a folder removed under a running run) never stops training: the log
    warns once and writes nothing more."""

    def __init__(self, folder: Path, writer_class: Any, summary_class: Any):
        self.folder = folder
        self._writer_class = writer_class
        self._summary_class = summary_class
        self._writer: Any = None
        self._failed = False

    @classmethod
    def open(cls, run: RunDir, config: dict[str, Any]) -> TensorBoardLog | None:
        """The log of the run folder ``run``, written afresh: its old event files removed, then the run's
        settings (``config``, a ``TrainConfig.to_dict()``) as hparams and the rows its ``metrics.jsonl``
        holds already (a resumed run's, up to its checkpoint). None when TensorBoard is not installed here."""
        try:
            from tensorboard.compat.proto.summary_pb2 import Summary
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams as hparams_summary
        except ImportError:  # the optional extra is not installed: no event file, and no error
            return None
        log = cls(run.path, SummaryWriter, Summary)
        try:
            run.clear_event_files()
            # The session's settings only: TensorBoard's HParams dashboard builds the table from every run's
            # session, and takes the metrics from their scalars (one experiment record per run would clash).
            _, session_start, _ = hparams_summary(hparams(config), {})
            log._file().file_writer.add_summary(session_start)
        except Exception as err:  # an unwritable folder must not stop the run
            log._fail(err)
            return log
        for row in run.events():
            log.write(row, flush=False)
        log.flush()
        return log

    def _file(self) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.folder), flush_secs=FLUSH_SECONDS)
            # A trainer that is never ended (a page closed mid-run) still closes its file, at the latest when
            # the program exits; the writer's thread is a daemon.
            weakref.finalize(self, self._writer.close)
        return self._writer

    def write(self, row: dict[str, Any], flush: bool = True) -> None:
        """One ``metrics.jsonl`` row: its scalars and text at the row's step; flushed at once unless it is a
        step (``flush`` False: never)."""
        if self._failed:
            return
        step = row.get("step") if isinstance(row.get("step"), int) else None
        try:
            writer = self._file()
            values = scalars(row)
            if values:  # a row's scalars in one record (a step's dozen add_scalar calls cost ten times more)
                Value = self._summary_class.Value
                summary = self._summary_class(value=[Value(tag=tag, simple_value=v) for tag, v in values])
                writer.file_writer.add_summary(summary, step)
            line = text(row)
            if line is not None:
                writer.add_text(TEXTS[row["kind"]], line, step)
            if flush and row.get("kind") in FLUSH_KINDS:
                writer.flush()
        except Exception as err:
            self._fail(err)

    def flush(self) -> None:
        if self._writer is not None and not self._failed:
            try:
                self._writer.flush()
            except Exception as err:
                self._fail(err)

    def close(self) -> None:
        """Write what is pending and close the file."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as err:
                self._fail(err)

    def _fail(self, err: Exception) -> None:
        self._failed = True
        warnings.warn(
            f"TensorBoard: cannot write the event file in {self.folder} ({type(err).__name__}: {err}); "
            "the run goes on, its run folder is complete",
            stacklevel=3,
        )
