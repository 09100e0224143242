"""Measure the explorer on this machine: ``python -m explorer.bench [--json out.json]``.

- ready: seconds from starting ``python launch.py`` to ``/gradio_api/info`` answering (fresh process).
- first animation / redraws per second: Debian's Chromium (headless, via playwright) on the Playground while
  it trains; skipped when Chromium or playwright is missing.
- solver comparison: seconds to solve one bundled digit with every solver (untrained image28-deq, warm).

Targets from issue 4: ready <= 5 s, >= 4 redraws/s, solver comparison <= 2 s. The machines are shared and
noisy: each figure is the median of a few repeats, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from .server import free_port, wait_until_ready

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


def measure_ready(repeats: int = 2) -> tuple[float, subprocess.Popen, str, str]:
    """Start launch.py ``repeats`` times; returns the median ready time and the last server (left running)."""
    root = Path(__file__).resolve().parents[1]
    times, proc, url = [], None, ""
    runs = tempfile.mkdtemp(prefix="explorer-bench-")
    for i in range(repeats):
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(root / "launch.py"), "--port", str(port), "--runs-dir", runs],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
        )
        wait_until_ready(url, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times), proc, url, runs


def measure_browser(url: str, seconds: float = 5.0, chromium: str = "/usr/bin/chromium") -> dict[str, float] | None:
    """First animation after page load and redraws per second of the Playground figure, or None."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not (Path(chromium).is_file() or shutil.which(chromium)):
        return None
    script = """(ms) => new Promise(res => { const seen = new Set(); const t0 = performance.now();
        const f = () => { const d = document.querySelector('#pg-flow .js-plotly-plot');
          if (d && d.layout) seen.add(d.layout.annotations[0].text);
          if (performance.now() - t0 < ms) requestAnimationFrame(f); else res(seen.size); }; f(); })"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#pg-flow .js-plotly-plot", timeout=60_000)
        first = page.evaluate("() => document.querySelector('#pg-flow .js-plotly-plot').layout.annotations[0].text")
        page.wait_for_function(
            "t => document.querySelector('#pg-flow .js-plotly-plot').layout.annotations[0].text !== t",
            arg=first,
            timeout=60_000,
        )
        animated = time.perf_counter() - started
        distinct = page.evaluate(script, seconds * 1000)
        browser.close()
    return {"first_animation_s": animated, "redraws_per_s": distinct / seconds}


def measure_solvers(repeats: int = 3) -> float:
    """Median seconds of one Solver-lab comparison (4 solvers) on a bundled digit, after a warm-up run."""
    import torch

    from . import lab

    torch.set_num_threads(1)
    model, data = lab.fresh_model("image28-deq")
    subject = lab.LabModel("bench", "bench", model, data)
    x, _, _ = lab.pick_input(subject, 0)
    lab.compare_solvers(subject, x)  # warm-up: first calls pay one-time set-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lab.compare_solvers(subject, x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    results: dict[str, float | None] = {}
    ready, proc, url, runs = measure_ready()
    results["ready_s"] = ready
    try:
        browser = measure_browser(url)
        results["first_animation_s"] = browser["first_animation_s"] if browser else None
        results["redraws_per_s"] = browser["redraws_per_s"] if browser else None
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(runs, ignore_errors=True)
    results["solver_comparison_s"] = measure_solvers()
    rows = [
        ("launch to a page that answers", "ready_s", "s", "<= 5 s"),
        ("page load to first Playground animation", "first_animation_s", "s", "~2 s"),
        ("Playground redraws while training", "redraws_per_s", "/s", ">= 4 /s"),
        ("Solver lab: 4 solvers on one digit", "solver_comparison_s", "s", "<= 2 s"),
    ]
    print("| measure | value | target |\n|---|---|---|")
    for label, key, unit, target in rows:
        value = results.get(key)
        shown = "skipped (no Chromium/playwright)" if value is None else f"{value:.2f} {unit}"
        print(f"| {label} | {shown} | {target} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
