"""Checkpoints and run files: written atomically, loaded safely.

A checkpoint is a plain dict of tensors, numbers and strings (the config as a JSON string), so
``torch.load(weights_only=True)`` can read it without unpickling arbitrary objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

FORMAT = "implicit-explorer-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this project."""


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; once the block has written it, fsync and rename it onto
    ``path``. A crash (or an exception) leaves ``path`` as it was and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: never a half-written file."""
    with _atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings, nested dicts/lists) atomically."""
    with _atomic_file(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` with a clear message
    for a missing, truncated, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises many types for bad files
        # Name the file, never torch's text (not even cut short): for a file holding more than tensors it
        # advises re-running with weights_only=False, which would run whatever code an untrusted file holds.
        raise CheckpointError(
            f"{path.name} is not a readable checkpoint: it is not a checkpoint this tool wrote, or it cannot be "
            "loaded safely (a truncated or corrupt file, or one holding objects other than tensors and numbers, "
            "which are never unpickled here); a run's checkpoint is its checkpoint.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a checkpoint of this project (format {FORMAT})")
    return state
