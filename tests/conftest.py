"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from core.data import sources


@pytest.fixture(autouse=True, scope="session")
def no_installed_datasets(tmp_path_factory):
    """The suite never depends on what happens to be installed: the user's data folder and the
    system data folders (/usr/share/datasets, where Debian's ``dataset-fashion-mnist`` goes) are replaced by
    empty ones for this process and every subprocess it starts. A test that needs a file-backed set writes
    its own small files (tests/core/test_data.py) and passes their folder."""
    empty = tmp_path_factory.mktemp("no-datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(sources.DATA_ENV, str(empty))
        patch.setenv(sources.SYSTEM_DATA_ENV, "")
        yield empty


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one CPU thread for a module, as ``launch.py`` runs it: several trainer threads share 2 cores
    and intra-op threads would oversubscribe them."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_collection_modifyitems(config, items):
    """Every browser test is slow (a Chromium and a served app each): ``-m "not slow"`` leaves them out."""
    browser = config.rootpath / "tests" / "browser"
    for item in items:
        if browser in item.path.parents:
            item.add_marker(pytest.mark.slow)
