"""The explorer under load: ``python -m benchmarks.explorer --load N [--seconds 60] [--json out.json]``.

The app is served in this process on 127.0.0.1 only; N gradio_client sessions at once each open it, play its
Playground and poll its tick every 0.5 s; then every session is closed as at server shutdown. Reports the
requests answered, errors, p50 / p95 / max latency, this process's RSS and its threads before vs after. The
clients run in the server's process: their latency includes their own work. N <= 32 and <= 600 s are enforced
(a benchmark on a shared box must not become a denial of service).
"""

from __future__ import annotations

import gc
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import short_error

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


#: Bounds of the load mode (a benchmark on a shared box must not become a denial of service).
MAX_LOAD_SESSIONS = 32
MAX_LOAD_SECONDS = 600
#: anyio (gradio's thread pool for sync handlers) stops a worker idle this long, on the pool's next call.
POOL_IDLE_S = 10.5


def _proc_status(field: str) -> int:
    """A number of this process's ``/proc/self/status`` (VmRSS, VmHWM in kB; Threads), or -1 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _thread_names() -> list[str]:
    """Names of this process's live Python threads, with their numbers dropped ("Thread-12 (run)" -> "Thread-N
    (run)"), sorted: two snapshots compare as multisets."""
    return sorted(re.sub(r"\d+", "N", t.name) for t in threading.enumerate())


def _left_over(before: list[str], after: list[str]) -> list[str]:
    """Thread names in ``after`` beyond those in ``before`` (as multisets)."""
    extra = Counter(after) - Counter(before)
    return sorted(extra.elements())


def _percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _close_clients(clients: list[Any], timeout: float = 30.0) -> list[str]:
    """Close gradio_client Clients in parallel: stop each heartbeat and wait for its thread (it ends at the
    server's next heartbeat line, up to ``GRADIO_HEARTBEAT_INTERVAL`` = 15 s), and shut its thread pools
    (``Client.close`` leaves them). Returns one line per heartbeat thread still alive after ``timeout``."""

    def close(client) -> None:
        client.close()
        client.heartbeat.join(timeout)
        for pool in ("executor", "helper_executor", "stream_executor"):
            executor = getattr(client, pool, None)
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

    closers = [threading.Thread(target=close, args=(c,), name="load-close") for c in clients]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(timeout + 5)
    return [f"client {c.session_hash}: heartbeat thread still alive" for c in clients if c.heartbeat.is_alive()]


def _session(url: str, deadline: float, period: float, out: dict[str, Any]) -> None:
    """One simulated tab: open the app, ▶ Play, then tick about every ``period`` s until ``deadline``; its
    Client is left open in ``out["client"]`` (closed by the caller after the sessions). Records each
    request's (endpoint, seconds) in ``out["latencies"]``, failures in ``out["errors"]``."""
    from gradio_client import Client

    latencies, errors = out.setdefault("latencies", []), out.setdefault("errors", [])

    def call(endpoint: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            result = out["client"].predict(*args, api_name=endpoint)
        except Exception as err:  # counted, never fatal: the session goes on polling
            errors.append(f"{endpoint}: {short_error(err)}")
            return None
        latencies.append((endpoint, time.perf_counter() - started))
        return result

    try:
        out["client"] = Client(url, verbose=False)
    except Exception as err:  # the client could not even connect
        errors.append(f"client: {short_error(err)}")
        return
    call("/playground_load")
    call("/playground_play")
    due = time.perf_counter()
    while True:
        # Like the page's timer: the next tick ``period`` after the last one was due, or at once when the last
        # answer came later than that (never a backlog of missed ticks); none due after the deadline.
        due = max(due + period, time.perf_counter())
        if due >= deadline:
            break
        time.sleep(max(0.0, due - time.perf_counter()))
        result = call("/playground_tick", "visible")
        status = result[0] if isinstance(result, (list, tuple)) and result else None
        if isinstance(status, str) and (match := re.search(r"step\s+\**(\d+)\**\s*/", status)):
            out["step"], out["status"] = int(match.group(1)), status
    out["ended"] = time.perf_counter()


def measure_load(sessions: int = 8, seconds: float = 60.0, period: float = 0.5, threads: int = 1) -> dict[str, Any]:
    """Serve the app in this process on 127.0.0.1 (a free port) and drive it with ``sessions`` gradio_client
    tabs at once for ``seconds``: each opens the app, plays its Playground and polls its tick every
    ``period`` s. Then closes every session as the server does at shutdown (``registry.close_all``, which
    waits for every worker), then the clients, and compares this process's RSS and threads with a baseline
    taken the same way after one warm-up session came and went (gradio's own threads and the first torch
    set-up are in it). Both samples are taken after gradio's handler pool (anyio) was left idle for
    ``POOL_IDLE_S`` and then called once (one more short session), which retires its idle workers."""
    if not 1 <= sessions <= MAX_LOAD_SESSIONS:
        raise ValueError(f"--load must be 1..{MAX_LOAD_SESSIONS} sessions, got {sessions}")
    if not 0 < seconds <= MAX_LOAD_SECONDS:
        raise ValueError(f"--seconds must be in (0, {MAX_LOAD_SECONDS}], got {seconds:g}")
    import torch

    from explorer.app import build_app
    from explorer.server import serve

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    runs = tempfile.mkdtemp(prefix="explorer-load-")
    demo = build_app(runs, device="cpu", max_trainings=4)
    results: list[dict[str, Any]] = [{} for _ in range(sessions)]
    problems: list[str] = []

    def finish(outs: list[dict[str, Any]]) -> float:
        """Close every session (as at shutdown), then the clients; returns the seconds close_all took."""
        started = time.perf_counter()
        demo.explorer.registry.close_all()
        closed = time.perf_counter() - started
        problems.extend(_close_clients([o["client"] for o in outs if "client" in o]))
        return closed

    def settle() -> None:
        time.sleep(POOL_IDLE_S)
        one: dict[str, Any] = {}
        _session(url, 0.0, period, one)  # load + play only (its deadline is past): retires idle pool workers
        finish([one])
        problems.extend(one["errors"])
        gc.collect()

    try:
        url = serve(demo, host="127.0.0.1")  # loopback only, whatever the caller wants
        for thread in threading.enumerate():
            if thread.name == "explorer-warm-up":
                thread.join(120)
        warm: dict[str, Any] = {}
        _session(url, time.perf_counter() + 2.0, period, warm)
        finish([warm])
        problems.extend(warm["errors"])
        settle()
        names_before, threads_before = _thread_names(), threading.active_count()
        rss_before, os_threads_before = _proc_status("VmRSS"), _proc_status("Threads")

        started = time.perf_counter()
        deadline = started + seconds
        tabs = [
            threading.Thread(target=_session, args=(url, deadline, period, out), name=f"load-session-{i}")
            for i, out in enumerate(results)
        ]
        for tab in tabs:
            tab.start()
        for tab in tabs:
            tab.join(seconds + 120)
        problems.extend(f"{tab.name}: still running" for tab in tabs if tab.is_alive())
        elapsed = max((out.get("ended", started) for out in results), default=started) - started
        rss_loaded = _proc_status("VmRSS")
        close_s = finish(results)
        settle()
        names_after, threads_after = _thread_names(), threading.active_count()
        rss_after, os_threads_after = _proc_status("VmRSS"), _proc_status("Threads")
        rss_peak = _proc_status("VmHWM")
    finally:
        demo.explorer.registry.close_all()
        demo.close()
        shutil.rmtree(runs, ignore_errors=True)
        torch.set_num_threads(old_threads)

    latencies = [s for out in results for _, s in out.get("latencies", [])]
    ticks = [s for out in results for e, s in out.get("latencies", []) if e == "/playground_tick"]
    errors = [e for out in results for e in out.get("errors", [])] + problems
    kb = 1 / 1024
    return {
        "load_sessions": sessions,
        "load_seconds": seconds,
        "load_elapsed_s": elapsed,
        "load_period_s": period,
        "answered": len(latencies),
        "answered_per_s": len(latencies) / elapsed if elapsed > 0 else None,
        "errors": len(errors),
        "error_samples": errors[:5],
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "latency_max_s": max(latencies, default=None),
        "tick_p50_s": _percentile(ticks, 50),
        "tick_p95_s": _percentile(ticks, 95),
        "pg_steps_per_session": [out.get("step") for out in results],
        "close_all_s": close_s,
        "rss_before_mb": rss_before * kb if rss_before >= 0 else None,
        "rss_loaded_mb": rss_loaded * kb if rss_loaded >= 0 else None,
        "rss_peak_mb": rss_peak * kb if rss_peak >= 0 else None,
        "rss_after_mb": rss_after * kb if rss_after >= 0 else None,
        "rss_growth_mb": (rss_after - rss_before) * kb if min(rss_before, rss_after) >= 0 else None,
        "threads_before": threads_before,
        "threads_after": threads_after,
        "threads_left": _left_over(names_before, names_after),
        "os_threads_before": os_threads_before if os_threads_before >= 0 else None,
        "os_threads_after": os_threads_after if os_threads_after >= 0 else None,
    }


def load_table(r: dict[str, Any]) -> str:
    """The load figures as a markdown table."""

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value * 1000:.0f} ms"

    def mb(value: float | None) -> str:
        return "–" if value is None else f"{value:.0f} MB"

    steps = [s for s in r["pg_steps_per_session"] if s is not None]
    first_error = f" (first: {r['error_samples'][0]})" if r["error_samples"] else ""
    left = f" (left: {', '.join(r['threads_left'])})" if r["threads_left"] else ""
    duration = f"{r['load_sessions']} × {r['load_elapsed_s']:.0f} s (tick every {r['load_period_s']:g} s)"
    latency = f"{ms(r['latency_p50_s'])} / {ms(r['latency_p95_s'])} / {ms(r['latency_max_s'])}"
    rss = f"{mb(r['rss_before_mb'])} / {mb(r['rss_loaded_mb'])} / {mb(r['rss_after_mb'])} ({mb(r['rss_peak_mb'])})"
    growth = "–" if r["rss_growth_mb"] is None else f"{r['rss_growth_mb']:+.0f} MB"
    rows = [
        ("sessions × duration", duration),
        ("answered requests", f"{r['answered']} ({r['answered_per_s']:.1f} /s)"),
        ("errors", f"{r['errors']}{first_error}"),
        ("latency p50 / p95 / max (all requests)", latency),
        ("tick latency p50 / p95", f"{ms(r['tick_p50_s'])} / {ms(r['tick_p95_s'])}"),
        ("Playground steps per session (min–max)", f"{min(steps)}–{max(steps)}" if steps else "–"),
        ("close every session (close_all)", f"{r['close_all_s']:.2f} s"),
        ("RSS before / loaded / after (peak)", rss),
        ("RSS growth (after − before)", growth),
        ("Python threads before / after", f"{r['threads_before']} / {r['threads_after']}{left}"),
        ("OS threads before / after", f"{r['os_threads_before']} / {r['os_threads_after']}"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {label} | {value.replace('|', '/')} |" for label, value in rows]
    return "\n".join(lines)
