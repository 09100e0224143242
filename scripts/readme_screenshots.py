"""Take the README's screenshots of the explorer app: ``python scripts/readme_screenshots.py [--out docs/img]``.

Starts ``launch.py`` on a free loopback port with a temporary runs folder (deleted afterwards), drives the page
in headless Chromium (Playwright from PyPI, Debian's ``/usr/bin/chromium``; never ``playwright install``) and
writes, cropped to the part worth showing:

- ``playground.png``: the Playground (1440 x 900) after its models trained some seconds, paused;
- ``solver-lab.png``: the Solver lab after "Solve with every solver" on a digit, on the untrained GroupNorm DEQ
  (not a contraction: homotopy converges where plain iteration struggles) when the lab offers it;
- ``train.png``: the Train tab after a short run, with its curves and the test-prediction gallery;
- ``compare.png``: the Compare tab over the short runs trained through the Train tab (runs table, curves,
  accuracy vs NFE);
- ``playground-phone.png``: the Playground on a 390 x 844 phone.

Four to six minutes on a 2-core CPU, most of it the short image runs (``--playground-only``: the two
Playground pictures, a minute). On a failure the page as it was is saved
to ``$TMPDIR/readme-shots-failed-N.png``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from explorer.server import CHROMIUM_ARGS, free_port, wait_until_ready  # noqa: E402  (stdlib only: no gradio import here)

WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
#: Image runs trained through the Train tab for the Compare tab: (model menu label, steps).
#: 60 steps: two validation points (every 50 steps, and at the end). The last run's page is train.png.
RUNS = (("HomoODE", 60), ("NODE", 60), ("DEQ", 60))
MAX_BYTES = 250_000
GROUPNORM = "image28-deq-groupnorm"


STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {message}", flush=True)


def plot_ready(elem: str, traces: int = 1) -> str:
    """A page predicate: the plot in ``#elem`` is drawn with at least ``traces`` traces."""
    return (
        f"() => {{ const d = document.querySelector('#{elem} .js-plotly-plot');"
        f" return !!(d && d.data && d.data.length >= {traces}); }}"
    )


def pg_step(page) -> int:
    m = re.search(r"step (\d+)", page.locator("#pg-status").inner_text())
    return int(m.group(1)) if m else 0


def crop(page, path: Path, top: str, bottoms: list[str], pad: int = 12) -> None:
    """Screenshot the page from the top of ``top`` down to the lowest bottom of ``bottoms`` (CSS selectors;
    ``parent:SELECTOR`` is the element's parent), as wide as the app's column, ``pad`` px around; a PNG over
    MAX_BYTES is reduced to 256 colours."""
    page.mouse.move(0, 0)  # no hover label on a plot
    time.sleep(0.5)
    box = page.evaluate(
        """([top, bottoms]) => {
          const el = (s) => s.startsWith('parent:') ? document.querySelector(s.slice(7)).parentElement
                                                    : document.querySelector(s);
          const r = (s) => el(s).getBoundingClientRect();
          const c = (document.querySelector('.main') || document.body).getBoundingClientRect();
          return {x: c.left + scrollX, right: c.right + scrollX, y: r(top).top + scrollY,
                  bottom: Math.max(...bottoms.map(s => r(s).bottom)) + scrollY,
                  width: document.documentElement.scrollWidth};
        }""",
        [top, bottoms],
    )
    x0, y0 = max(0, box["x"] - pad), max(0, box["y"] - pad)
    x1 = min(box["width"], box["right"] + pad)
    clip = {"x": x0, "y": y0, "width": x1 - x0, "height": box["bottom"] + pad - y0}
    page.screenshot(path=path, clip=clip, full_page=True, animations="disabled", caret="hide")
    shrink(path)
    log(f"wrote {path} ({path.stat().st_size // 1024} kB, {clip['width']:.0f} x {clip['height']:.0f})")


def shrink(path: Path) -> None:
    """Reduce a PNG over MAX_BYTES to a 256-colour palette (Pillow, which gradio installs), if that helps."""
    if path.stat().st_size <= MAX_BYTES:
        return
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    tmp = path.with_suffix(".tmp.png")
    small.save(tmp, optimize=True)
    if tmp.stat().st_size < path.stat().st_size:
        tmp.replace(path)
    else:
        tmp.unlink()


def open_app(browser, url: str, viewport: dict, seconds: float, min_step: int):
    """A page on the app whose Playground trained ``seconds`` (or ``min_step`` steps, whichever is later, up to
    three times ``seconds``), then paused."""
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#pg-flow .js-plotly-plot", timeout=120_000)
    started = time.monotonic()
    while time.monotonic() - started < 3 * seconds:
        if time.monotonic() - started >= seconds and pg_step(page) >= min_step:
            break
        time.sleep(0.5)
    page.click("#pg-pause")
    page.wait_for_function("() => document.querySelector('#pg-status').innerText.includes('paused')")
    time.sleep(1.5)  # the last picture lands
    log(f"Playground paused at step {pg_step(page)}")
    page.errors = errors
    return page


def select_option(page, elem: str, name: str | re.Pattern) -> None:
    """Pick ``name`` in the dropdown ``#elem``."""
    page.locator(f"#{elem} input").click()
    page.get_by_role("option", name=name).first.click()


def train_run(page, family: str, steps: int) -> None:
    select_option(page, "tr-family", re.compile(rf"^{re.escape(family)}$"))
    time.sleep(1.0)  # the preset menu follows the model (a server event)
    page.locator("#tr-steps input").fill(str(steps))
    page.locator("#tr-batch input").fill("64")
    page.locator("#tr-limit input").fill("")
    started = time.monotonic()
    page.click("#tr-start")  # (a run still going would be stopped: wait for each to finish)
    page.wait_for_function(
        "f => { const t = document.querySelector('#train-status').innerText;"
        " return t.startsWith(f + ' on ') && t.includes('test accuracy'); }",
        arg=family,
        timeout=600_000,
    )
    log(f"{family}: {steps} steps trained and tested in {time.monotonic() - started:.0f} s")


def shoot(url: str, out: Path, chromium: str, seconds: float, playground_only: bool = False) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            if playground_only:
                shoot_playground(browser, url, out, seconds)
            else:
                shoot_pages(browser, url, out, seconds)
        except Exception:
            for n, page in enumerate(browser.contexts[-1].pages if browser.contexts else ()):
                shot = Path(tempfile.gettempdir()) / f"readme-shots-failed-{n}.png"
                page.screenshot(path=shot, full_page=True)
                log(f"the page when it failed: {shot}")
            raise
        finally:
            browser.close()


def shoot_playground(browser, url: str, out: Path, seconds: float) -> None:
    """Only the two Playground pictures (a minute, no image runs)."""
    page = open_app(browser, url, WIDE, seconds, min_step=100)
    page.wait_for_function(plot_ready("pg-curves", 4))
    crop(page, out / "playground.png", "h2", ["#pg-curves", "#pg-controls"])
    page.close()
    shoot_phone(browser, url, out, seconds, list(page.errors))


def shoot_phone(browser, url: str, out: Path, seconds: float, errors: list) -> None:
    phone = open_app(browser, url, PHONE, seconds, min_step=100)
    phone.wait_for_function(plot_ready("pg-curves", 4))
    # The first screen and a bit: the tab bar, the buttons, the status and the pictures.
    crop(phone, out / "playground-phone.png", "[role=tablist]", ["#pg-flow"], pad=6)
    errors += phone.errors
    if errors:
        log(f"page errors: {errors}")


def shoot_pages(browser, url: str, out: Path, seconds: float) -> None:
    page = open_app(browser, url, WIDE, seconds, min_step=100)
    page.wait_for_function(plot_ready("pg-curves", 4))
    crop(page, out / "playground.png", "h2", ["#pg-curves", "#pg-controls"])

    # Solver lab: every solver on a validation digit, on the non-contractive DEQ if the lab offers it.
    page.get_by_role("tab", name="Solver lab").click()
    page.locator("#lab-model input").click()
    groupnorm = page.get_by_role("option", name=re.compile(re.escape(GROUPNORM)))
    if groupnorm.count():
        groupnorm.first.click()
    else:
        log(f"the lab offers no {GROUPNORM}: showing its default model")
        page.keyboard.press("Escape")
    page.wait_for_selector("#lab-input img", timeout=60_000)
    started = time.monotonic()
    page.click("#lab-run")
    page.wait_for_function(plot_ready("lab-residual", 5), timeout=180_000)
    page.wait_for_function(plot_ready("lab-path", 5), timeout=60_000)
    page.wait_for_function("() => document.querySelector('#lab-table').innerText.includes('homotopy')", timeout=60_000)
    log(f"Solver lab: every solver in {time.monotonic() - started:.1f} s")
    # Down to the drawing pad (open: one can draw a digit too) and the sweep's controls, above its empty plot.
    crop(page, out / "solver-lab.png", "[role=tablist]", ["#lab-draw-box", "parent:#lab-sweep"], pad=6)

    # Train: short runs on the bundled digits; the last one's curves and test predictions.
    page.get_by_role("tab", name="Train").click()
    for family, steps in RUNS:
        train_run(page, family, steps)
    page.wait_for_function(plot_ready("train-curves", 5))
    started = time.monotonic()
    page.get_by_role("button", name="Show test predictions").click()
    page.wait_for_selector("#train-gallery img", timeout=120_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#train-gallery img')].every(i => i.complete)", timeout=60_000
    )
    log(f"test-prediction gallery in {time.monotonic() - started:.1f} s")
    crop(page, out / "train.png", "[role=tablist]", ["#train-gallery"])

    # Compare: the runs just trained, their curves overlaid.
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('#compare-runs input').length >= {len(RUNS)}", timeout=60_000
    )
    time.sleep(1.0)  # the refresh's chained curves redraw is done
    boxes = page.locator("#compare-runs input[type=checkbox]")
    for i in range(boxes.count()):
        if not boxes.nth(i).is_checked():
            boxes.nth(i).check()
    page.wait_for_function(
        f"() => {{ const d = document.querySelector('#compare-curves .js-plotly-plot');"
        f" return d && d.data && new Set(d.data.map(t => t.legendgroup)).size >= {len(RUNS)}; }}",
        timeout=60_000,
    )
    page.wait_for_function(plot_ready("compare-accuracy", len(RUNS)), timeout=60_000)
    crop(page, out / "compare.png", "[role=tablist]", ["#compare-accuracy"])
    errors = list(page.errors)
    page.close()
    shoot_phone(browser, url, out, seconds, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img", help="folder of the PNGs (default docs/img)")
    parser.add_argument("--chromium", default=os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--seconds", type=float, default=10.0, help="Playground training before the pause")
    parser.add_argument("--playground-only", action="store_true", help="only the two Playground pictures")
    args = parser.parse_args(argv)
    if not (Path(args.chromium).is_file() or shutil.which(args.chromium)):
        print(f"error: no Chromium at {args.chromium} (apt-get install -y chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="readme-shots-") as tmp:
        runs = str(Path(tmp) / "runs")
        cmd = [sys.executable, str(ROOT / "launch.py"), "--port", str(port), "--runs-dir", runs, "--device", "cpu"]
        # Ctrl+C reaches it even from a shell that started this script in the background (which ignores SIGINT).
        server = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            wait_until_ready(url, timeout=180)
            log(f"app on {url}, runs in {runs}")
            shoot(url, args.out, args.chromium, args.seconds, args.playground_only)
        except Exception:
            if server.poll() is not None:
                log(f"the app exited with status {server.returncode}")
            raise
        finally:
            stopping = time.monotonic()
            server.send_signal(signal.SIGINT)  # launch.py closes its sessions and the server on Ctrl+C
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log(f"app stopped (status {server.returncode}) in {time.monotonic() - stopping:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
