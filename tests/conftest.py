"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one CPU thread for a module, as ``launch.py`` runs it: several trainer threads share 2 cores
    and intra-op threads would oversubscribe them."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
