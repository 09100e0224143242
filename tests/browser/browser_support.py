"""What the browser tests share: Chromium (Debian's, driven by PyPI playwright; never ``playwright install``),
a log of what a page did, the app served on loopback, and a finished run folder written without training.

Importing this module skips the importing test module where playwright or Chromium is missing.
Screenshots go to ``test-artifacts/explorer/`` (or ``$EXPLORER_ARTIFACTS``) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api", reason="PyPI package 'playwright' is not installed")
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

from explorer.app import build_app  # noqa: E402
from explorer.server import CHROMIUM_ARGS as ARGS  # noqa: E402  (one list of offline-safe flags)

__all__ = ["ARGS", "ARTIFACTS", "CHROMIUM", "LOOPBACK", "PageLog", "built_app", "playwright_api", "write_fake_run"]

ARTIFACTS = Path(os.environ.get("EXPLORER_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts/explorer"))
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def built_app(runs_dir: Path):
    """The app on ``runs_dir`` with torch on one thread (as launch.py runs it), closed afterwards: the body of a
    module's ``demo`` fixture."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    app = build_app(runs_dir, device="cpu")
    yield app
    app.explorer.registry.close_all()
    app.close()
    torch.set_num_threads(old)


class PageLog:
    """Console errors, failed requests and every host the page talked to."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.hosts: set[str] = set()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure or "")))
        page.on("request", self._request)

    def _request(self, request) -> None:
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss"):
            self.hosts.add(url.hostname or "")

    def real_failures(self) -> list[tuple[str, str]]:
        # Gradio's client aborts its own server-sent-event stream when no event is pending: not a failure.
        return [(u, f) for u, f in self.failed if not ("/gradio_api/queue/data" in u and "ERR_ABORTED" in f)]


def write_fake_run(folder: Path) -> None:
    """A finished run folder as core.train writes it (config, metrics, summary), without training."""
    import json

    import core

    folder.mkdir(parents=True)
    model = core.preset("image28-homoode").to_dict()
    (folder / "config.json").write_text(json.dumps({"model": model, "dataset": "digits", "device": "cpu"}))
    lines = []
    for k in range(1, 21):
        lines.append(
            {
                "kind": "step",
                "step": k,
                "epoch": 0,
                "loss": 2.3 / k**0.5,
                "train_acc": min(0.95, 0.1 * k),
                "nfe_forward": 8,
                "nfe_backward": 0,
                "residual": None,
                "start_loss": None,
                "lr": 2e-3,
                "peak_memory_bytes": 300 * 2**20,
                "graph_bytes": 12 * 2**20,
                "step_seconds": 0.2,
                "wall_seconds": 0.2 * k,
            }
        )
        if k % 10 == 0:
            lines.append(
                {
                    "kind": "eval",
                    "step": k,
                    "epoch": 0,
                    "split": "val",
                    "loss": 1.0,
                    "accuracy": 0.04 * k,
                    "nfe_forward": 8.0,
                    "is_best": True,
                    "seconds": 0.5,
                }
            )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    summary = {
        "params": 40874,
        "steps": 20,
        "test_accuracy": 0.79,
        "best_val_accuracy": 0.8,
        "mean_nfe_forward": 8.0,
        "mean_nfe_backward": 0.0,
        "peak_memory_bytes": 300 * 2**20,
        "peak_graph_bytes": 12 * 2**20,
        "seconds": 4.0,
        "stopped": False,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
