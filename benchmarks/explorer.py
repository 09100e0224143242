"""Measure the explorer on this machine: ``python -m benchmarks.explorer [--json out.json]``.

- ready: seconds from starting ``python launch.py`` to ``/gradio_api/info`` answering (fresh process).
- the animation (:func:`measure_browser`): Debian's Chromium (headless, via playwright) on the Playground while
  it trains: page load to the first new picture, then distinct pictures drawn a second, the bytes the page
  receives per picture, the page's and the server's CPU seconds a minute, training steps a second; skipped
  when Chromium or playwright is missing. ``benchmarks.explorer_ab`` measures two trees with it, A B A B.
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

Floor mode, ``python -m benchmarks.explorer --floor [--rounds 3]``: launch-to-answering and page load to first
animation of ``benchmarks/floor_app.py`` (the least gradio app that animates a plotly figure; alone and with
torch imported first) and of the explorer, in turn, by the same code (:func:`measure_floor`).

Load mode, ``python -m benchmarks.explorer --load N [--seconds 60] [--json out.json]`` (N <= 32, <= 600 s): the app
served in this process on 127.0.0.1 only, N gradio_client sessions at once, each opening the app, playing its
Playground and polling its tick every 0.5 s; then every session closed as at server shutdown. Reports the
requests answered, errors, p50 / p95 / max latency, this process's RSS and its threads before vs after
(``benchmarks/load.py``). The clients run in the server's process: their latency includes their own work.

Targets: ready <= 3 s, first animation <= 2 s, >= 10 redraws/s, solver comparison <= 2 s. The machines are shared and
noisy: each figure is the median of a few repeats, measured in one run. A figure that cannot be measured
prints "skipped (why)" and is null in the JSON, with its reason under "skipped".
"""

from __future__ import annotations

import argparse
import contextlib
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

from explorer.server import CHROMIUM_ARGS, free_port, wait_until_ready

from . import short_error
from .load import MAX_LOAD_SECONDS, MAX_LOAD_SESSIONS, load_table, measure_load


def measure_ready(
    repeats: int = 2, root: Path | None = None, app: list[str] | None = None
) -> tuple[float, subprocess.Popen, str, str]:
    """Start ``root``'s launch.py (default: this tree's), or the script and arguments ``app``, ``repeats`` times
    (each gets ``--port`` and ``--runs-dir``); returns the median ready time and the last server (left
    running), its URL and its runs folder."""
    root = Path(root or Path(__file__).resolve().parents[1])
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
            [sys.executable, *(app or [str(root / "launch.py")]), "--port", str(port), "--runs-dir", runs],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
        )
        wait_until_ready(url, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times), proc, url, runs


#: The apps :func:`measure_floor` compares: gradio's floor, the floor with torch imported first, the explorer.
FLOOR_APPS = {
    "gradio + plotly only": [str(Path(__file__).with_name("floor_app.py"))],
    "the same + import torch": [str(Path(__file__).with_name("floor_app.py")), "--torch"],
    "the explorer": None,
}


def measure_floor(rounds: int = 3, seconds: float = 5.0) -> dict[str, dict[str, float | None]]:
    """Launch-to-answering and page-load-to-first-animation of each of :data:`FLOOR_APPS`, measured in turn
    (A B C A B C ...) by the same code, ``rounds`` times; returns each app's medians (and its redraws a second
    over ``seconds``). What the explorer adds to its start-up is its row minus the floor's."""
    measured: dict[str, list[dict[str, float | None]]] = {name: [] for name in FLOOR_APPS}
    for _ in range(rounds):
        for name, app in FLOOR_APPS.items():
            ready, proc, url, runs = measure_ready(repeats=1, app=app)
            try:
                browser = measure_browser(url, seconds=seconds, server_pid=proc.pid) or {}
            finally:
                proc.terminate()
                proc.wait(30)
                shutil.rmtree(runs, ignore_errors=True)
            measured[name].append({"ready_s": ready, **browser})
    keys = ("ready_s", "first_animation_s", "redraws_per_s")
    return {
        name: {k: statistics.median(v) if (v := [r[k] for r in rows if r.get(k) is not None]) else None for k in keys}
        for name, rows in measured.items()
    }


def floor_table(floor: dict[str, dict[str, float | None]]) -> str:
    """:func:`measure_floor`'s medians as a markdown table."""
    cell = lambda v, fmt: "–" if v is None else fmt.format(v)  # noqa: E731
    lines = ["| app | launch to answering | page load to first animation | redraws/s |", "|---|---:|---:|---:|"]
    for name, r in floor.items():
        lines.append(
            f"| {name} | {cell(r['ready_s'], '{:.2f} s')} | {cell(r['first_animation_s'], '{:.2f} s')} "
            f"| {cell(r['redraws_per_s'], '{:.1f}')} |"
        )
    return "\n".join(lines)


#: The picture the Playground's plot shows: its name (``layout.meta.version``), or, on a tree from before
#: pictures were named, its first panel title (which then carried the step).
_PICTURE = """() => { const d = document.querySelector('#pg-flow .js-plotly-plot');
    if (!d || !d.layout) return null;
    return (d.layout.meta && d.layout.meta.version) || (d.layout.annotations || [{}])[0].text || null; }"""
#: Distinct pictures shown in ``ms`` milliseconds, looked at on every animation frame of the page.
_COUNT_PICTURES = (
    "(ms) => new Promise(res => { const seen = new Set(); const t0 = performance.now(); const pic = "
    + _PICTURE
    + "; const f = () => { seen.add(pic()); if (performance.now() - t0 < ms) requestAnimationFrame(f);"
    " else res(seen.size - 1); }; f(); })"
)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (every thread), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def missing_browser(chromium: str) -> str | None:
    """Why no page can be opened here (no playwright, no Chromium), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright"
    return None if Path(chromium).is_file() or shutil.which(chromium) else f"no Chromium at {chromium}"


@contextlib.contextmanager
def fresh_page(chromium: str):
    """A page (1400 x 1000) of a fresh headless Chromium with the offline-safe flags; closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        finally:
            browser.close()


def measure_browser(
    url: str, seconds: float = 10.0, chromium: str = "/usr/bin/chromium", server_pid: int | None = None
) -> dict[str, float | None] | None:
    """The Playground animating on a fresh page: seconds from page load to its first new picture, then over
    ``seconds`` (after a 2-s settle): distinct pictures drawn a second, bytes the page received per picture
    (everything: frames, gradio's events), the page's main-thread CPU and the server's CPU (``server_pid``,
    every thread: training included) in seconds a minute, and training steps a second. None without
    Chromium or playwright."""
    if missing_browser(chromium):
        return None
    with fresh_page(chromium) as page:
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#pg-flow .js-plotly-plot", timeout=60_000)
        first = page.evaluate(_PICTURE)
        page.wait_for_function(f"(t) => ({_PICTURE})() !== t", arg=first, timeout=60_000)
        animated = time.perf_counter() - started
        time.sleep(2.0)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        cdp.send("Network.enable")
        received = [0]
        cdp.on("Network.dataReceived", lambda e: received.__setitem__(0, received[0] + e.get("dataLength", 0)))
        busy, cpu, step = busy_seconds(cdp), _cpu(server_pid), _step(_text(page))
        t0 = time.perf_counter()
        pictures = page.evaluate(_COUNT_PICTURES, seconds * 1000)
        elapsed = time.perf_counter() - t0
        busy, cpu2, step2 = busy_seconds(cdp) - busy, _cpu(server_pid), _step(_text(page))
    per_minute = 60.0 / elapsed
    return {
        "first_animation_s": animated,
        "redraws_per_s": pictures / elapsed,
        "bytes_per_redraw": received[0] / pictures if pictures else None,
        "page_cpu_s_per_min": busy * per_minute,
        "server_cpu_s_per_min": (cpu2 - cpu) * per_minute if cpu is not None and cpu2 is not None else None,
        "anim_steps_per_s": (step2 - step) / elapsed if step is not None and step2 is not None else None,
    }


def _cpu(pid: int | None) -> float | None:
    return process_cpu_seconds(pid) if pid is not None else None


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


#: True once the Train tab's gallery shows its tiles (each loaded) and its message says what they are.
_GALLERY_SHOWN = """() => { const imgs = [...document.querySelectorAll('#train-gallery img')];
    return imgs.length >= 8 && imgs.every(i => i.complete && i.naturalWidth > 0)
        && /Misclassified first/.test(document.querySelector('#train-message').innerText); }"""


def measure_latency_gallery(page, steps: int = 30) -> float:
    """Seconds from clicking "Show test predictions" to the tiles shown, after a ``steps``-step DEQ run on the
    digits (the family whose one-image solves cost most; 48 of them, each its own NFE)."""
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#tr-start", state="visible")
    page.locator("#tr-family input").click()
    page.get_by_role("option", name="DEQ", exact=True).click()
    page.locator("#tr-steps input").fill(str(steps))
    page.click("#tr-start")
    page.wait_for_function(
        "() => document.querySelector('#train-status').innerText.includes('test accuracy')", timeout=300_000
    )
    show = page.get_by_role("button", name="Show test predictions")
    return _timed(lambda: show.click(), lambda: page.wait_for_function(_GALLERY_SHOWN, timeout=120_000))


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
        "latency_gallery_s",
    ]
    figures: dict[str, Any] = dict.fromkeys(keys)
    skipped: dict[str, str] = {}
    missing = missing_browser(chromium)
    if missing:
        return figures, dict.fromkeys(keys, missing)

    def attempt(names: list[str], fn):
        try:
            return fn()
        except Exception as err:  # one figure that cannot be measured must not lose the others
            skipped.update(dict.fromkeys(names, short_error(err)))
            return None

    def away(prefix: str, result: dict | None, rate: float | None) -> None:
        if result is None:
            return
        figures[f"cpu_{prefix}_s_per_min"] = result["cpu"]
        figures[f"steps_{prefix}"] = result["steps"]
        figures[f"steps_{prefix}_away_s"] = result["away_s"]
        figures[f"steps_{prefix}_at_visible_rate"] = rate * result["away_s"] if rate else None
        figures[f"state_on_return_{prefix}"] = result["state_on_return"]

    with fresh_page(chromium) as page:
        try:
            page.goto(url)
            page.wait_for_selector("#pg-flow .js-plotly-plot", timeout=60_000)
            cdp = page.context.new_cdp_session(page)
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
            figures["latency_gallery_s"] = attempt(["latency_gallery_s"], lambda: measure_latency_gallery(page))
        except Exception as err:  # the page itself failed: every figure not yet measured is skipped
            for key in keys:
                if figures[key] is None:
                    skipped.setdefault(key, short_error(err))
    return figures, skipped


def measure_solvers(repeats: int = 3) -> float:
    """Median seconds of one Solver-lab comparison (4 solvers) on a bundled digit, after a warm-up run."""
    import torch

    from explorer import lab

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


#: The figures of :func:`measure_browser`, as ``main`` records them.
ANIMATION_KEYS = (
    "first_animation_s", "redraws_per_s", "bytes_per_redraw", "page_cpu_s_per_min", "server_cpu_s_per_min",
    "anim_steps_per_s",
)  # fmt: skip


def table(results: dict[str, Any], skipped: dict[str, str]) -> str:
    """The figures as a markdown table; a missing one says why."""
    seconds = "{:.2f} s".format
    per_minute = "{:.2f} s/min".format

    def away(prefix: str) -> str:
        return _steps_cell(results, prefix)

    rows = [
        ("launch to a page that answers", "ready_s", seconds, "<= 3 s"),
        ("page load to first Playground animation", "first_animation_s", seconds, "<= 2 s"),
        ("Playground redraws while training", "redraws_per_s", "{:.2f} /s".format, ">= 10 /s"),
        ("bytes the page receives per redraw", "bytes_per_redraw", "{:,.0f} B".format, "–"),
        ("page CPU while animating (main thread)", "page_cpu_s_per_min", per_minute, "<= before"),
        ("server CPU while animating (training included)", "server_cpu_s_per_min", per_minute, "–"),
        ("Playground steps/s while animating", "anim_steps_per_s", "{:.1f} /s".format, "<= 30 /s (cap)"),
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
        ("Train: test predictions of a 30-step DEQ shown", "latency_gallery_s", seconds, "<= 3 s"),
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
    parser.add_argument(
        "--load",
        type=int,
        metavar="N",
        help=f"load test instead: N gradio_client sessions (1..{MAX_LOAD_SESSIONS}) on a loopback server",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help=f"duration of the load test (default 60, at most {MAX_LOAD_SECONDS})",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="instead: start-up of gradio's least animating app, of it with torch, and of the explorer, in turn",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --floor (default 3)")
    args = parser.parse_args(argv)
    if args.floor:
        load = os.getloadavg()
        floor = measure_floor(args.rounds)
        print(floor_table(floor))
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if args.json:
            args.json.write_text(json.dumps({"load": load, "floor": floor}, indent=2) + "\n")
        return 0
    if args.load is not None:
        try:
            load = measure_load(args.load, args.seconds)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(load_table(load))
        if args.json:
            args.json.write_text(json.dumps(load, indent=2) + "\n")
        return 0
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    ready, proc, url, runs = measure_ready()
    results["ready_s"] = ready
    try:
        browser = measure_browser(url, server_pid=proc.pid)
        if browser is None:
            skipped.update(dict.fromkeys(ANIMATION_KEYS, "no Chromium/playwright"))
        results.update(browser or dict.fromkeys(ANIMATION_KEYS))
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
