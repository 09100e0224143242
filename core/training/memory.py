"""Memory figures: the bytes a forward pass keeps for backward (a run's own), and the process's peak.

    with SavedTensorMeter() as meter:
        loss = model(x).logits.logsumexp(1).mean()
    meter.nbytes  # what autograd holds until loss.backward()

The saved-tensor count is deterministic and belongs to the code inside the ``with`` alone, so two
runs trained in one process each get their own figure; ``peak_memory`` is the whole process's.
"""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch


class SavedTensorMeter:
    """Counts the bytes of the tensors autograd saves for backward while the context is open.

    Every distinct storage is counted once, whole (keyed by its data pointer): a tensor saved by
    several operations, or a view of a saved tensor, adds nothing more. The count includes saved
    weights and inputs, not gradients or optimizer state. Only graph-building code inside the
    ``with`` is seen (``no_grad`` code saves nothing; a ``backward()`` called outside is not counted).
    Entering the context again starts a new count.

    Attributes:
        nbytes: bytes of the distinct saved storages.
        storages: how many distinct storages were saved.
    """

    def __init__(self) -> None:
        self._saved: dict[int, int] = {}
        self._hooks: Any = None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self._saved[storage.data_ptr()] = storage.nbytes()
        # Detached: a saved output handed back as itself would keep its own grad_fn alive through the node
        # that saved it, a reference cycle in C++ that Python's gc cannot see: every step's whole graph
        # leaked (+90 MB per training step of image28-node, measured). Same storage, no copy.
        return tensor.detach()

    @staticmethod
    def _unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    @property
    def nbytes(self) -> int:
        return sum(self._saved.values())

    @property
    def storages(self) -> int:
        return len(self._saved)

    def __enter__(self) -> SavedTensorMeter:
        self._saved = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        hooks, self._hooks = self._hooks, None
        hooks.__exit__(*exc)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured) for the whole process, shared by every run in it: CUDA
    max_memory_allocated on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_peak_rss"
