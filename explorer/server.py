"""Serving helpers shared by launch.py, the tests and the benchmark."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


#: Offline-safe flags for the headless Chromium the benchmarks, tests and screenshot script drive.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, timeout: float = 60.0) -> float:
    """Poll ``/gradio_api/info`` until it answers 200 (gradio prints its URL before it answers);
    returns the seconds waited. Raises TimeoutError."""
    started = time.perf_counter()
    info = url.rstrip("/") + "/gradio_api/info"
    while True:
        try:
            with urllib.request.urlopen(info, timeout=5) as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{info} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def serve(demo, host: str = "127.0.0.1", port: int | None = None, **launch: object) -> str:
    """Launch ``demo`` without blocking (never shared, no analytics) and return its URL once it answers."""
    from .app import CSS, app_theme
    from .tabs.common import VIEWPORT_HEAD

    port = port or free_port(host)
    # The queue (how many handlers run at once, and which wait for which) is the app's: ``build_app`` sets it.
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=True,
        quiet=True,
        show_error=True,
        theme=app_theme(),
        css=CSS,
        head=VIEWPORT_HEAD,  # the page's width, for figures laid out for a phone
        footer_links=["api", "settings"],
        **launch,
    )
    # The app's own routes beside gradio's (the Playground's animation frames, ``explorer.frames``).
    routes = getattr(demo, "explorer_routes", None)
    if routes is not None:
        demo.app.include_router(routes)
    url = f"http://{host}:{port}/"
    wait_until_ready(url)
    return url
