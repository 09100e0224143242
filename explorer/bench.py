"""Measure the explorer on this machine: ``python -m explorer.bench [--json out.json]``.

- ready: seconds from starting ``python launch.py`` to ``/gradio_api/info`` answering (fresh process).
- first animation / redraws per second: Debian's Chromium (headless, via playwright) on the Playground while
  it trains; skipped when Chromium or playwright is missing.
- page CPU: the page's main-thread busy time (CDP ``Performance.getMetrics`` ``TaskDuration``) in seconds per
  minute, over a window after a settle, in three states: the Playground visible and training; another gradio
  tab (About) selected; the browser tab hidden (a second page brought to front). Headless Chromium may keep
  ``document.visibilityState`` 'visible' whatever is tried: that figure is then skipped, with the reason.
  For the last two states also the Playground steps trained while away (its status read on coming back),
  next to the steps it would have trained at the visible rate.
- action latency (median of a few, from the click to what the page shows): ▶ / ❚❚ to the status saying
  running / paused, ▶❚ Step to the step counter +1, a learning-rate change (Enter) to the share link in the
  address bar carrying it, Solver lab "Solve with every solver" to a residual plot with >= 5 traces, Train
  "▶ Start new run" (default form, once) to its status saying running.
- solver comparison: seconds to solve one bundled digit with every solver (untrained image28-deq, warm).

Targets: ready <= 5 s, >= 4 redraws/s, solver comparison <= 2 s. The machines are shared and
noisy: each figure is the median of a few repeats, measured in one run. A figure that cannot be measured
prints "skipped (why)" and is null in the JSON, with its reason under "skipped".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


#: The text of a gr.Markdown by elem id (its prose only: not the progress timer drawn over it).
_MD = """const md = (id) => { const e = document.querySelector(id + ' [data-testid=markdown]');
    return e ? e.innerText : ''; };"""
_TEXT = "(id) => {" + _MD + " return md(id); }"
#: True once ``#pg-status`` matches the regular expression ``re``.
_STATUS_MATCHES = "(re) => {" + _MD + " return new RegExp(re).test(md('#pg-status')); }"
#: True once ``#pg-status`` differs from ``t``.
_STATUS_CHANGED = "(t) => {" + _MD + " return md('#pg-status') !== t; }"
#: True once the step counter of ``#pg-status`` is at least ``n``.
_STEP_AT_LEAST = (
    "(n) => {" + _MD + r" const m = /step\s+(\d+)\s*\//.exec(md('#pg-status')); return !!m && Number(m[1]) >= n; }"
)
#: True once the Train tab's status says running, or its message area shows an error (⚠️).
_TRAIN_ANSWERED = "() => {" + _MD + " return /running/.test(md('#train-status')) || /⚠/.test(md('#train-message')); }"
#: Remembers the Solver lab's residual figure, so that _LAB_DRAWN waits for a new one.
_LAB_MARK = """() => { const d = document.querySelector('#lab-residual .js-plotly-plot');
    window.__benchLab = d && d.data; }"""
#: True once the Solver lab's residual plot is a new figure with >= 5 traces.
_LAB_DRAWN = """() => { const d = document.querySelector('#lab-residual .js-plotly-plot');
    return !!(d && d.data && d.data !== window.__benchLab && d.data.length >= 5); }"""


def _text(page, elem_id: str = "#pg-status") -> str:
    """The text of the gr.Markdown ``elem_id``."""
    return page.evaluate(_TEXT, elem_id)


def _step(status: str) -> int | None:
    """The step counter of a Playground status ("running · step 123 / 2000 · …")."""
    match = re.search(r"step\s+(\d+)\s*/", status)
    return int(match.group(1)) if match else None


def _state(status: str) -> str:
    """The first word of a status: running, paused, …"""
    match = re.match(r"\s*(\w+)", status)
    return match.group(1) if match else ""


def _why(err: BaseException) -> str:
    """One short line for a skipped figure."""
    line = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {line}"[:160]


def _timed(action, observe) -> float:
    """Seconds from starting ``action`` until ``observe`` returns."""
    started = time.perf_counter()
    action()
    observe()
    return time.perf_counter() - started


def _wait_status(page, pattern: str, timeout: float = 30_000) -> None:
    page.wait_for_function(_STATUS_MATCHES, arg=pattern, timeout=timeout)


def busy_seconds(cdp) -> float:
    """Cumulative main-thread busy seconds of the page (CDP ``Performance.getMetrics`` ``TaskDuration``)."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def cpu_per_minute(page, cdp, seconds: float) -> float:
    """Main-thread busy seconds per minute of the page over the next ``seconds``."""
    busy0, t0 = busy_seconds(cdp), time.perf_counter()
    page.wait_for_timeout(seconds * 1000)
    busy1, t1 = busy_seconds(cdp), time.perf_counter()
    return (busy1 - busy0) / (t1 - t0) * 60


def measure_cpu_visible(page, cdp, settle: float, window: float) -> dict[str, float]:
    """Page CPU (s/min) while the Playground is visible and training, and its steps per second meanwhile."""
    _wait_status(page, r"^\s*running")
    page.wait_for_timeout(settle * 1000)
    step0, t0 = _step(_text(page)), time.perf_counter()
    cpu = cpu_per_minute(page, cdp, window)
    step1, t1 = _step(_text(page)), time.perf_counter()
    if not re.match(r"\s*running", _text(page)):
        raise RuntimeError(f"the Playground stopped training during the window: {_text(page)[:80]!r}")
    rate = (step1 - step0) / (t1 - t0) if step0 is not None and step1 is not None else None
    return {"cpu": cpu, "steps_per_s": rate}


def _away(page, cdp, leave, come_back, settle: float, window: float) -> dict[str, float | str | None]:
    """Page CPU (s/min) while away (``leave`` done, then ``settle`` seconds, then ``window``), and the
    Playground's steps while away, read from the first status it shows after ``come_back``."""
    before_text = _text(page)
    before, left = _step(before_text), time.perf_counter()
    leave()
    page.wait_for_timeout(settle * 1000)
    cpu = cpu_per_minute(page, cdp, window)
    away = time.perf_counter() - left
    come_back()
    try:  # the first redraw after coming back: the server's state at that moment
        page.wait_for_function(_STATUS_CHANGED, arg=before_text, timeout=10_000)
    except Exception:  # unchanged: nothing trained (e.g. done) and nothing to redraw
        pass
    after_text = _text(page)
    after = _step(after_text)
    steps = after - before if after is not None and before is not None else None
    return {"cpu": cpu, "steps": steps, "away_s": away, "state_on_return": _state(after_text)}


def measure_cpu_other_tab(page, cdp, settle: float, window: float) -> dict[str, float | str | None]:
    """Page CPU (s/min) with the About tab selected, and the Playground steps trained meanwhile."""
    return _away(
        page,
        cdp,
        lambda: page.get_by_role("tab", name="About").click(),
        lambda: page.get_by_role("tab", name="Playground").click(),
        settle,
        window,
    )


def measure_cpu_hidden(page, cdp, settle: float, window: float) -> dict[str, float | str | None]:
    """Page CPU (s/min) with the browser tab hidden (a second page brought to front; then, while the page
    still says 'visible', focus emulation off and its window minimized; never 'frozen'), and the
    Playground steps trained meanwhile. Raises when nothing makes ``document.visibilityState`` 'hidden'."""
    context = page.context
    other = context.new_page()
    undo, tried = [], []

    def hidden() -> bool:
        page.wait_for_timeout(300)
        return page.evaluate("document.visibilityState") == "hidden"

    def leave() -> None:
        other.goto("about:blank")
        other.bring_to_front()
        tried.append("a second page brought to front")
        if not hidden():
            cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
            undo.append(lambda: cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": True}))
            tried.append("focus emulation off")
        if not hidden():
            browser_cdp = context.browser.new_browser_cdp_session()
            target = cdp.send("Target.getTargetInfo")["targetInfo"]["targetId"]
            window_id = browser_cdp.send("Browser.getWindowForTarget", {"targetId": target})["windowId"]
            browser_cdp.send("Browser.setWindowBounds", {"windowId": window_id, "bounds": {"windowState": "minimized"}})
            undo.append(
                lambda: browser_cdp.send(
                    "Browser.setWindowBounds", {"windowId": window_id, "bounds": {"windowState": "normal"}}
                )
            )
            tried.append("its window minimized")
        if not hidden():
            raise RuntimeError(f"headless Chromium kept visibilityState 'visible' ({', '.join(tried)})")

    def come_back() -> None:
        for step in reversed(undo):
            step()
        undo.clear()
        other.close()
        page.bring_to_front()

    try:
        return _away(page, cdp, leave, come_back, settle, window)
    finally:
        if undo or not other.is_closed():
            come_back()


def measure_latency_play_pause(page, repeats: int = 3) -> dict[str, float]:
    """Median seconds from clicking ❚❚ Pause / ▶ Play to ``#pg-status`` saying paused / running."""
    _wait_status(page, r"^\s*running")
    pause, play = [], []
    for _ in range(repeats):
        pause.append(_timed(lambda: page.click("#pg-pause"), lambda: _wait_status(page, r"^\s*paused")))
        play.append(_timed(lambda: page.click("#pg-play"), lambda: _wait_status(page, r"^\s*running")))
    return {"pause": statistics.median(pause), "play": statistics.median(play)}


def measure_latency_step(page, repeats: int = 3) -> float:
    """Median seconds from clicking ▶❚ Step (paused) to the step counter of ``#pg-status`` showing one more."""
    page.click("#pg-pause")
    _wait_status(page, r"^\s*paused")
    times = []
    for _ in range(repeats):
        n = _step(_text(page))
        if n is None:
            raise RuntimeError(f"no step counter in the status {_text(page)[:80]!r}")
        times.append(
            _timed(
                lambda: page.click("#pg-step"),
                lambda n=n: page.wait_for_function(_STEP_AT_LEAST, arg=n + 1, timeout=30_000),
            )
        )
    return statistics.median(times)


def measure_latency_lr(page, values: tuple[str, ...] = ("0.02", "0.03", "0.01")) -> float:
    """Median seconds from pressing Enter on a new Playground learning rate to the share link in the address
    bar carrying it (the server applied it and answered; the status only redraws when it changes)."""
    times = []
    for value in values:
        page.fill("#pg-lr input", value)
        times.append(
            _timed(
                lambda: page.press("#pg-lr input", "Enter"),
                lambda v=value: page.wait_for_function(
                    "v => new URLSearchParams(location.search).get('lr') === v", arg=v, timeout=30_000
                ),
            )
        )
    message = _text(page, "#pg-message").strip()
    if message:
        raise RuntimeError(f"the Playground answered with a message: {message[:80]!r}")
    return statistics.median(times)


def measure_latency_lab(page, indices: tuple[int, ...] = (0, 1, 2)) -> list[float]:
    """Seconds (one per input index; the first pays the model's set-up) from clicking "Solve with every
    solver" to the residual plot showing a new figure with >= 5 traces. Each solve is of another input:
    the same one again draws the same figure, which the page does not redraw."""
    page.get_by_role("tab", name="Solver lab").click()
    page.wait_for_selector("#lab-run", state="visible")
    times = []
    for index in indices:
        page.fill("#lab-index input", str(index))
        page.evaluate(_LAB_MARK)
        times.append(_timed(lambda: page.click("#lab-run"), lambda: page.wait_for_function(_LAB_DRAWN, timeout=60_000)))
    return times


def measure_latency_train(page) -> float:
    """Seconds from clicking "▶ Start new run" (default form) to ``#train-status`` saying running; the run
    is then stopped."""
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#tr-start", state="visible")
    seconds = _timed(
        lambda: page.click("#tr-start"),
        lambda: page.wait_for_function(_TRAIN_ANSWERED, timeout=90_000),
    )
    if "running" not in _text(page, "#train-status"):
        raise RuntimeError(f"no run started: {_text(page, '#train-message').strip()[:80]!r}")
    page.click("#tr-stop")
    return seconds


def measure_page(
    url: str, settle: float = 4.0, window: float = 15.0, chromium: str = "/usr/bin/chromium"
) -> tuple[dict[str, Any], dict[str, str]]:
    """Page CPU in three states, then the latency of each action, on one fresh page of a fresh headless
    Chromium. Returns (figures, why each missing figure was skipped)."""
    keys = [
        "cpu_visible_s_per_min",
        "pg_steps_per_s",
        "cpu_other_tab_s_per_min",
        "steps_other_tab",
        "cpu_hidden_s_per_min",
        "steps_hidden",
        "latency_pause_s",
        "latency_play_s",
        "latency_step_s",
        "latency_lr_s",
        "latency_lab_s",
        "latency_train_s",
    ]
    figures: dict[str, Any] = dict.fromkeys(keys)
    skipped: dict[str, str] = {}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return figures, dict.fromkeys(keys, "no playwright")
    if not (Path(chromium).is_file() or shutil.which(chromium)):
        return figures, dict.fromkeys(keys, f"no Chromium at {chromium}")

    def attempt(names: list[str], fn):
        try:
            return fn()
        except Exception as err:  # one figure that cannot be measured must not lose the others
            skipped.update(dict.fromkeys(names, _why(err)))
            return None

    def away(prefix: str, result: dict | None, rate: float | None) -> None:
        if result is None:
            return
        figures[f"cpu_{prefix}_s_per_min"] = result["cpu"]
        figures[f"steps_{prefix}"] = result["steps"]
        figures[f"steps_{prefix}_away_s"] = result["away_s"]
        figures[f"steps_{prefix}_at_visible_rate"] = rate * result["away_s"] if rate else None
        figures[f"state_on_return_{prefix}"] = result["state_on_return"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("#pg-flow .js-plotly-plot", timeout=60_000)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            visible = attempt(keys[:2], lambda: measure_cpu_visible(page, cdp, settle, window))
            rate = None
            if visible is not None:
                figures["cpu_visible_s_per_min"], figures["pg_steps_per_s"] = visible["cpu"], visible["steps_per_s"]
                rate = visible["steps_per_s"]
            away("other_tab", attempt(keys[2:4], lambda: measure_cpu_other_tab(page, cdp, settle, window)), rate)
            # back on the Playground: let it play again before the browser tab goes
            attempt([], lambda: _wait_status(page, r"^\s*running", 10_000))
            away("hidden", attempt(keys[4:6], lambda: measure_cpu_hidden(page, cdp, settle, window)), rate)
            play_pause = attempt(keys[6:8], lambda: measure_latency_play_pause(page))
            if play_pause is not None:
                figures["latency_pause_s"], figures["latency_play_s"] = play_pause["pause"], play_pause["play"]
            figures["latency_step_s"] = attempt(["latency_step_s"], lambda: measure_latency_step(page))
            figures["latency_lr_s"] = attempt(["latency_lr_s"], lambda: measure_latency_lr(page))
            lab_times = attempt(["latency_lab_s"], lambda: measure_latency_lab(page))
            if lab_times:
                figures["latency_lab_s"] = statistics.median(lab_times)
                figures["latency_lab_each_s"] = lab_times
            figures["latency_train_s"] = attempt(["latency_train_s"], lambda: measure_latency_train(page))
        except Exception as err:  # the page itself failed: every figure not yet measured is skipped
            for key in keys:
                if figures[key] is None:
                    skipped.setdefault(key, _why(err))
        finally:
            browser.close()
    return figures, skipped


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


def _steps_cell(results: dict[str, Any], prefix: str) -> str:
    steps, expected = results.get(f"steps_{prefix}"), results.get(f"steps_{prefix}_at_visible_rate")
    away, state = results.get(f"steps_{prefix}_away_s"), results.get(f"state_on_return_{prefix}")
    cell = f"{steps} in {away:.0f} s" if away is not None else f"{steps}"
    if expected is not None:
        cell += f" (visible rate: ~{expected:.0f})"
    return cell + (f", {state} on return" if state else "")


def table(results: dict[str, Any], skipped: dict[str, str]) -> str:
    """The figures as a markdown table; a missing one says why."""
    seconds = "{:.2f} s".format
    per_minute = "{:.2f} s/min".format

    def away(prefix: str) -> str:
        return _steps_cell(results, prefix)

    rows = [
        ("launch to a page that answers", "ready_s", seconds, "<= 5 s"),
        ("page load to first Playground animation", "first_animation_s", seconds, "~2 s"),
        ("Playground redraws while training", "redraws_per_s", "{:.2f} /s".format, ">= 4 /s"),
        ("page CPU, Playground visible and training", "cpu_visible_s_per_min", per_minute, "baseline"),
        ("Playground steps/s while visible", "pg_steps_per_s", "{:.1f} /s".format, "<= 30 /s (cap)"),
        ("page CPU, About tab selected", "cpu_other_tab_s_per_min", per_minute, "<< baseline"),
        ("Playground steps while on About", "steps_other_tab", lambda _: away("other_tab"), "~3 s of steps, paused"),
        ("page CPU, browser tab hidden", "cpu_hidden_s_per_min", per_minute, "<< baseline"),
        ("Playground steps while hidden", "steps_hidden", lambda _: away("hidden"), "~3 s of steps, paused"),
        ("❚❚ Pause to status paused", "latency_pause_s", seconds, "–"),
        ("▶ Play to status running", "latency_play_s", seconds, "–"),
        ("▶❚ Step to step counter +1", "latency_step_s", seconds, "–"),
        ("learning rate (Enter) to applied", "latency_lr_s", seconds, "–"),
        ("Solver lab: click to >= 5 residual traces", "latency_lab_s", seconds, "–"),
        ("Train: Start new run to running", "latency_train_s", seconds, "–"),
        ("Solver lab: 4 solvers on one digit", "solver_comparison_s", seconds, "<= 2 s"),
    ]
    lines = ["| measure | value | target |", "|---|---|---|"]
    for label, key, show, target in rows:
        value = results.get(key)
        shown = f"skipped ({skipped.get(key, 'not measured')})" if value is None else show(value)
        lines.append(f"| {label} | {shown.replace('|', '/')} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds before each CPU window (default 4)")
    parser.add_argument("--window", type=float, default=15.0, help="seconds of each CPU window (default 15)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    ready, proc, url, runs = measure_ready()
    results["ready_s"] = ready
    try:
        browser = measure_browser(url)
        results["first_animation_s"] = browser["first_animation_s"] if browser else None
        results["redraws_per_s"] = browser["redraws_per_s"] if browser else None
        if browser is None:
            skipped.update(dict.fromkeys(["first_animation_s", "redraws_per_s"], "no Chromium/playwright"))
        figures, why = measure_page(url, settle=args.settle, window=args.window)
        results.update(figures)
        skipped.update(why)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(runs, ignore_errors=True)
    results["solver_comparison_s"] = measure_solvers()
    print(table(results, skipped))
    if args.json:
        args.json.write_text(json.dumps({**results, "skipped": skipped}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
