"""The page in a real browser: Playwright (PyPI) driving Debian's Chromium (never ``playwright install``).

Screenshots go to ``test-artifacts/explorer/`` (or ``$EXPLORER_ARTIFACTS``) for a person to look at.
"""

from __future__ import annotations

import os
import re
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from browser_support import ARGS, ARTIFACTS, CHROMIUM, LOOPBACK, PageLog, built_app, playwright_api, write_fake_run

from explorer.server import serve
from explorer.tabs.playground import PLAYGROUND_IDLE_PAUSE


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    yield from built_app(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def server(demo):
    return serve(demo)


@pytest.fixture
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        log = PageLog(pg)
        yield pg, log
        browser.close()


def status_step(pg) -> int:
    text = pg.locator("#pg-status").inner_text()
    return int(re.search(r"step (\d+)", text).group(1))


#: The picture the Playground's plot shows (its trainer's buffer and version), as its figure names it.
PICTURE = "() => document.querySelector('#pg-flow .js-plotly-plot').layout.meta.version"
#: True once the Playground's plot shows another picture than ``t``.
NEW_PICTURE = "t => document.querySelector('#pg-flow .js-plotly-plot').layout.meta.version !== t"


def flow_picture(pg) -> str:
    return pg.evaluate(PICTURE)


def trace_count(pg, elem: str) -> int:
    return pg.evaluate(f"() => document.querySelector('#{elem} .js-plotly-plot').data.length")


def test_playground_plays_pauses_and_stays_local(server, page):
    pg, log = page
    started = time.perf_counter()
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    # The first screen animates with no clicks: the picture's step moves on its own.
    first = flow_picture(pg)
    pg.wait_for_function(NEW_PICTURE, arg=first, timeout=15_000)
    animated_after = time.perf_counter() - started
    assert trace_count(pg, "pg-flow") >= 10 and trace_count(pg, "pg-curves") >= 4
    # The picture moves in place: frames redraw the same plot element, a few times a second (loosely: this
    # machine is shared; benchmarks.explorer measures the rate).
    pg.evaluate("() => { window.__plot = document.querySelector('#pg-flow .js-plotly-plot'); }")
    drawn, seen, since = pg.evaluate("() => window.__pgFrames.drawn"), {flow_picture(pg)}, time.perf_counter()
    while time.perf_counter() - since < 3:
        seen.add(flow_picture(pg))
        time.sleep(0.05)
    frames = pg.evaluate("() => window.__pgFrames.drawn") - drawn
    assert frames >= 3 and len(seen) >= 4, (frames, len(seen))
    assert pg.evaluate("() => window.__plot === document.querySelector('#pg-flow .js-plotly-plot')")
    # ... and it keeps its size on every frame the browser paints (a frame once let it collapse in between).
    heights = pg.evaluate(
        """() => new Promise(res => { const h = []; const f = () => {
             h.push(document.querySelector('#pg-flow .js-plotly-plot').getBoundingClientRect().height);
             if (h.length < 60) requestAnimationFrame(f); else res(h); }; f(); })"""
    )
    assert min(heights) == max(heights) > 500, sorted(set(heights))
    assert "dataset=circles" in pg.url  # the configuration is in the address bar
    pg.screenshot(path=ARTIFACTS / "playground-running.png", full_page=True)

    pg.click("#pg-pause")
    pg.wait_for_function("() => document.querySelector('#pg-status').innerText.includes('paused')")
    time.sleep(1.0)  # the last step's picture arrives as frames do (a click holds them ~0.4 s)
    paused_at, picture = status_step(pg), flow_picture(pg)
    time.sleep(1.5)
    assert status_step(pg) == paused_at and flow_picture(pg) == picture  # ⏸ stops the counter and the plots

    pg.click("#pg-step")
    pg.wait_for_function(f"() => /step {paused_at + 1}\\b/.test(document.querySelector('#pg-status').innerText)")

    pg.click("#pg-play")
    pg.wait_for_function(
        f"() => {{ const m = document.querySelector('#pg-status').innerText.match(/step (\\d+)/);"
        f" return m && +m[1] > {paused_at + 3}; }}",
        timeout=15_000,
    )
    pg.wait_for_function(NEW_PICTURE, arg=picture)
    pg.click("#pg-pause")

    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()
    assert log.hosts <= LOOPBACK, f"requests left the machine: {log.hosts - LOOPBACK}"
    print(f"first animation after {animated_after:.1f} s")


def test_link_sets_the_configuration_and_a_bad_value_shows_a_message(server, page):
    pg, log = page
    pg.goto(server + "?dataset=moons&models=deq,homoode&lr=0.02&seed=3")
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    # Its answer first: quick events run side by side, and a late ❚❚ answer (message cleared) would otherwise
    # wipe the refusal below off the page (seen once in a full run on a loaded machine).
    pg.wait_for_function("() => document.querySelector('#pg-status').innerText.includes('paused')")
    status = pg.locator("#pg-status").inner_text()
    assert "DEQ" in status and "HomoODE" in status and "NODE\t" not in status
    link = pg.locator("#pg-link textarea").input_value()
    assert "dataset=moons" in link and "seed=3" in link and "lr=0.02" in link
    box = pg.locator("#pg-lr input")
    box.fill("-1")
    box.press("Enter")
    pg.wait_for_function("() => document.querySelector('#pg-message').innerText.includes('learning rate must be')")
    pg.screenshot(path=ARTIFACTS / "playground-bad-value.png", full_page=True)
    # The session still works: one step still advances the counter.
    before = status_step(pg)
    pg.click("#pg-step")
    pg.wait_for_function(f"() => /step {before + 1}\\b/.test(document.querySelector('#pg-status').innerText)")
    assert log.errors == [], log.errors


def test_solver_lab_draws_every_solver(server, page):
    pg, log = page
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Solver lab").click()
    pg.click("#lab-run")
    pg.wait_for_function(
        "() => { const d = document.querySelector('#lab-residual .js-plotly-plot');"
        " return d && d.data && d.data.length >= 5; }",
        timeout=60_000,
    )
    names = pg.evaluate("() => document.querySelector('#lab-residual .js-plotly-plot').data.map(t => t.name)")
    for solver in ("fixed_point", "anderson", "broyden", "homotopy"):
        assert any(n.startswith(solver) for n in names), names
    yaxis = pg.evaluate("() => document.querySelector('#lab-residual .js-plotly-plot')._fullLayout.yaxis.type")
    assert yaxis == "log"
    # Each solver's line was drawn (SVG paths exist), not only declared.
    assert pg.locator("#lab-residual .scatterlayer .trace").count() >= 5
    assert trace_count(pg, "lab-path") == 5
    pg.screenshot(path=ARTIFACTS / "solver-lab.png", full_page=True)
    pg.locator("#lab-view").get_by_text("3-D", exact=True).click()
    pg.wait_for_function(
        "() => { const d = document.querySelector('#lab-path .js-plotly-plot');"
        " return d && d.data && d.data.length === 5 && d.data.every(t => t.type === 'scatter3d'); }",
        timeout=30_000,
    )
    pg.wait_for_selector("#lab-path .gl-container canvas", timeout=30_000)  # the 3-D scene is rendered
    pg.screenshot(path=ARTIFACTS / "solver-lab-3d.png", full_page=True)
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


def test_train_tab_gallery_opens_the_solver_lab(server, page):
    pg, log = page
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Train").click()
    # A tiny DEQ run on the bundled digits: model menu, steps, batch size and subset set through the page.
    pg.locator("#tr-family input").click()
    pg.get_by_role("option", name="DEQ").click()
    for elem, value in (("#tr-steps", "6"), ("#tr-batch", "16"), ("#tr-limit", "64")):
        pg.locator(f"{elem} input").fill(value)
    pg.click("#tr-start")
    pg.wait_for_function(
        "() => document.querySelector('#train-status').innerText.includes('test accuracy')", timeout=90_000
    )
    assert trace_count(pg, "train-curves") >= 5
    pg.get_by_role("button", name="Show test predictions").click()
    pg.wait_for_selector("#train-gallery img", timeout=60_000)
    pg.screenshot(path=ARTIFACTS / "train.png", full_page=True)
    pg.locator("#train-gallery img").first.click()
    pg.wait_for_function(
        "() => { const d = document.querySelector('#lab-residual .js-plotly-plot');"
        " return d && d.data && d.data.length >= 5; }",
        timeout=60_000,
    )
    assert "true class" in pg.locator("#lab-message").inner_text()
    pg.screenshot(path=ARTIFACTS / "gallery-to-lab.png", full_page=True)
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


def test_closing_the_tab_stops_its_training(server, demo, page):
    pg, log = page
    registry = demo.explorer.registry
    before = len(registry)
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.wait_for_function("() => document.querySelector('#pg-status').innerText.includes('running')")
    key = next(
        k for k in registry.keys() if registry.peek(k).playground is not None and registry.peek(k).playground.running
    )
    trainer = registry.peek(key).playground
    pg.close()  # the unload event closes the session on the server
    for _ in range(100):
        if key not in registry:
            break
        time.sleep(0.05)
    assert key not in registry and len(registry) <= before
    # close() stops between steps: a step already in flight may still finish. Wait for the worker to exit.
    for _ in range(200):
        thread = trainer._thread
        if thread is None or not thread.is_alive():
            break
        time.sleep(0.05)
    n = trainer.step_count
    time.sleep(0.5)
    assert trainer.step_count == n and not trainer.running


def step_moves_js(after: int) -> str:
    """A page predicate: the Playground's status shows a step past ``after``."""
    return (
        "() => { const m = document.querySelector('#pg-status').innerText.match(/step (\\d+)/);"
        f" return m && +m[1] > {after}; }}"
    )


def test_playground_pauses_on_another_tab_and_resumes(server, demo, page):
    pg, log = page
    registry = demo.explorer.registry
    before = set(registry.keys())
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    first = flow_picture(pg)
    pg.wait_for_function(
        NEW_PICTURE,
        arg=first,
        timeout=15_000,
    )
    # This page's session: the one that appeared with a Playground.
    keys = [k for k in registry.keys() if k not in before and registry.peek(k).playground is not None]
    assert len(keys) == 1, keys
    trainer = registry.peek(keys[0]).playground
    assert trainer.state == "running"
    pg.get_by_role("tab", name="About").click()
    # Only the visible tab polls: with the Playground out of sight its timer stops, and the models pause
    # themselves after PLAYGROUND_IDLE_PAUSE seconds without a look.
    deadline = time.monotonic() + PLAYGROUND_IDLE_PAUSE + 6
    while trainer.state != "paused" and time.monotonic() < deadline:
        time.sleep(0.25)
    assert trainer.state == "paused", trainer.state
    n = trainer.step_count
    time.sleep(1.5)
    assert trainer.step_count == n and trainer.state == "paused"
    pg.screenshot(path=ARTIFACTS / "about-tab-playground-paused.png", full_page=True)

    pg.get_by_role("tab", name="Playground").click()  # looking again plays on, without a click
    pg.wait_for_function(step_moves_js(n), timeout=10_000)
    assert trainer.state == "running"
    pg.wait_for_function(step_moves_js(n + 2), timeout=10_000)
    pg.screenshot(path=ARTIFACTS / "playground-resumed.png", full_page=True)
    pg.click("#pg-pause")
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


def draw_a_one(pg) -> None:
    """Draw a vertical stroke (a "1") on the Solver lab's sketchpad."""
    # Gradio's sketchpad starts with no tool: the pen draws only once its "Brush" tool is picked.
    pg.locator("#lab-drawing").get_by_role("button", name="Brush", exact=True).click()
    # It stacks two canvases of the same size; the first takes the pointer (the other has pointer-events none).
    canvas = pg.locator("#lab-drawing canvas").first
    canvas.wait_for(state="visible", timeout=30_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box
    x = box["x"] + box["width"] * 0.5
    pg.mouse.move(x, box["y"] + box["height"] * 0.2)
    pg.mouse.down()
    pg.mouse.move(x + 3, box["y"] + box["height"] * 0.8, steps=25)
    pg.mouse.up()


def test_solver_lab_runs_every_solver_on_a_drawing(server, page):
    pg, log = page
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Solver lab").click()
    assert "deq" in pg.locator("#lab-model input").input_value().lower()  # an untrained image28-deq
    draw_a_one(pg)
    pg.wait_for_function(
        "() => { const d = document.querySelector('#lab-residual .js-plotly-plot');"
        " const m = document.querySelector('#lab-message').innerText;"
        " return d && d.data && d.data.length >= 5 && m.includes('your drawing') && m.includes('predicted'); }",
        timeout=90_000,
    )
    pg.locator("#lab-message").scroll_into_view_if_needed()
    pg.screenshot(path=ARTIFACTS / "solver-lab-drawing.png", full_page=True)
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


def test_playground_data_and_model_controls(server, page):
    pg, log = page
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.locator("#pg-more").get_by_text("data and model size").click()
    points = pg.locator("#pg-points input")
    points.wait_for(state="visible")
    points.fill("200")
    points.press("Enter")
    pg.wait_for_function(
        "() => document.querySelector('#pg-link textarea').value.includes('points=200')", timeout=30_000
    )
    pg.wait_for_function("() => location.search.includes('points=200')")  # and the address bar follows
    # Straight from the number box to the checkbox, as a person would: the click also blurs the box, whose
    # blur event applies the form too; the tick must not be lost behind it.
    pg.locator("#pg-show-test input[type=checkbox]").check()
    try:
        pg.wait_for_function(
            "() => document.querySelector('#pg-flow .js-plotly-plot').layout.annotations[0].text.includes('test data')",
            timeout=30_000,
        )
    except playwright_api.TimeoutError:
        pytest.fail(
            f"'show test data' is ticked ({pg.locator('#pg-show-test input').is_checked()}) but the picture "
            f"never showed test data: picture {flow_picture(pg)!r}, "
            f"link {pg.locator('#pg-link textarea').input_value()!r}"
        )
    assert "test=1" in pg.locator("#pg-link textarea").input_value()
    pg.click("#pg-pause")
    pg.screenshot(path=ARTIFACTS / "playground-controls.png", full_page=True)
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


#: The choices listed by the open preset menu (its own list box; an option's text starts with a ✓ when it is
#: selected, its aria-label is the choice alone), or null while it is closed.
PRESET_OPTIONS = (
    "(() => { const i = document.querySelector('#tr-preset input');"
    " const l = i && document.getElementById(i.getAttribute('aria-controls'));"
    " const o = l ? Array.from(l.querySelectorAll('[role=option]')) : [];"
    " return o.length ? o.map(e => e.getAttribute('aria-label')) : null; })()"
)


def test_train_preset_menu_follows_the_model(server, page):
    pg, log = page
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Train").click()
    pg.locator("#tr-family input").click()
    pg.get_by_role("option", name="DEQ", exact=True).click()
    options: list[str | None] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the menu is refreshed by a server event after the pick
        pg.locator("#tr-preset input").click()
        pg.wait_for_function(f"() => {PRESET_OPTIONS} !== null", timeout=5_000)
        options = pg.evaluate(f"() => {PRESET_OPTIONS}")
        if options == ["auto", "image28-deq", "image28-deq-groupnorm"]:
            break
        pg.get_by_role("heading", name="Implicit-model explorer").click()  # closes the menu
        time.sleep(0.5)
    pg.screenshot(path=ARTIFACTS / "train-preset-menu.png", full_page=True)
    assert options == ["auto", "image28-deq", "image28-deq-groupnorm"], options
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


def test_compare_lists_runs_measures_memory_and_exports(server, demo, page):
    pg, log = page
    write_fake_run(demo.explorer.runs_dir / "20990101-000000-homoode-digits-fake")
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Compare").click()  # opening the tab reads the runs directory
    pg.wait_for_function(
        "() => document.querySelector('#compare-table').innerText.includes('20990101-000000-homoode-digits-fake')",
        timeout=30_000,
    )
    pg.wait_for_function(
        "() => { const d = document.querySelector('#compare-curves .js-plotly-plot');"
        " return d && d.data && d.data.some(t => t.legendgroup === '20990101-000000-homoode-digits-fake'); }",
        timeout=30_000,
    )
    assert trace_count(pg, "compare-accuracy") >= 2
    # The curve controls redraw the overlay: wall time on the x axes, a linear loss axis.
    assert pg.evaluate(f"{CURVES_LAYOUT}.yaxis.type") == "log"
    pg.locator("#compare-x-axis").get_by_text("wall time", exact=True).click()
    pg.wait_for_function(
        f"() => {{ const t = {X_TITLES}; return t.length > 0 && t.every(s => s === 'wall time (s)'); }}",
        timeout=30_000,
    )
    pg.locator("#compare-loss-scale").get_by_text("linear", exact=True).click()
    pg.wait_for_function(f"() => {CURVES_LAYOUT}.yaxis.type === 'linear'", timeout=30_000)
    assert set(pg.evaluate(f"() => {X_TITLES}")) == {"wall time (s)"}  # the x axis stayed on wall time
    pg.screenshot(path=ARTIFACTS / "compare-wall-time-linear.png", full_page=True)
    pg.locator("#memory-batches input, #memory-batches textarea").first.fill("4, 16")
    pg.click("#memory-run")
    pg.wait_for_function(
        "() => { const d = document.querySelector('#compare-memory .js-plotly-plot');"
        " return d && d.data && d.data.length === 8; }",
        timeout=120_000,
    )
    pg.click("#compare-csv")
    pg.wait_for_selector("#compare-file a", timeout=30_000)
    href = pg.locator("#compare-file a").first.get_attribute("href")
    csv_text = pg.request.get(href if href.startswith("http") else server.rstrip("/") + href).text()
    assert csv_text.startswith("run,model,dataset,params") and "20990101-000000-homoode-digits-fake" in csv_text
    pg.screenshot(path=ARTIFACTS / "compare.png", full_page=True)
    # A bad batch size shows a message and keeps the chart.
    pg.locator("#memory-batches input, #memory-batches textarea").first.fill("0")
    pg.click("#memory-run")
    pg.wait_for_function("() => document.querySelector('#compare-message').innerText.includes('batch sizes')")
    assert trace_count(pg, "compare-memory") == 8
    # Clicking a run without a checkpoint says so and stays on the tab.
    pg.locator("#compare-table .body-cell", has_text="20990101-000000-homoode-digits-fake").first.click()
    pg.wait_for_function("() => document.querySelector('#compare-message').innerText.includes('no checkpoint yet')")
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


#: The Compare tab's curves figure layout, and the titles of its x axes that have one (the bottom row's).
CURVES_LAYOUT = "document.querySelector('#compare-curves .js-plotly-plot').layout"
X_TITLES = (
    f"Object.entries({CURVES_LAYOUT}).filter(([k, v]) => k.startsWith('xaxis') && v && v.title && v.title.text)"
    ".map(([k, v]) => v.title.text)"
)


# ------------------------------------------------------------------ data safety and correctness

TICKED = "() => Array.from(document.querySelectorAll('#compare-runs input')).filter(i => i.checked).map(i => i.name)"
LISTED = "() => Array.from(document.querySelectorAll('#compare-runs input')).map(i => i.name)"


def test_compare_ticks_survive_refreshes_and_delete_takes_exactly_them(server, demo, page, monkeypatch):
    """A tick made while a refresh is on its way survives it, nothing is ticked for the user, and
    "Delete picked runs" lists and deletes exactly the runs ticked (it deleted the tab's own runs, pre-ticked
    by a refresh that had also unticked the user's pick)."""
    import threading

    from explorer import runs as runs_lib

    pg, log = page
    root = demo.explorer.runs_dir
    names = [f"20980101-00000{i}-deq-digits-tick{i}" for i in range(4)]
    for name in names:
        write_fake_run(root / name)
    # Each refresh reads the runs folder slowly, so that a tick lands while it is on its way.
    entered, read_runs = threading.Event(), runs_lib.read_runs

    def slow_read_runs(*args, **kwargs):
        entered.set()
        time.sleep(2.0)
        return read_runs(*args, **kwargs)

    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Compare").click()  # a refresh: lists the runs
    pg.wait_for_function(f"() => ({LISTED})().includes('{names[3]}')", timeout=30_000)
    time.sleep(1.0)  # its curves redraw, chained after it, is done too
    assert pg.evaluate(TICKED) == []  # nothing is ticked for the user (the three newest were)
    monkeypatch.setattr(runs_lib, "read_runs", slow_read_runs)
    picks = []
    for name in (names[1], names[2]):  # a tick between two refreshes, each while a refresh is on its way
        entered.clear()
        pg.click("#compare-refresh")
        assert entered.wait(30), "the refresh never reached the server"
        pg.locator("#compare-runs").get_by_text(name, exact=True).click()
        picks.append(name)
        # The refresh (2 s), then the curves of the ticks as they are by then (2 s): wait for those curves
        # rather than a fixed time, which a loaded machine overran.
        pg.wait_for_function(
            """(want) => { const p = document.querySelector('#compare-curves .js-plotly-plot');
                 const groups = p && p.data ? [...new Set(p.data.map(t => t.legendgroup))].sort() : [];
                 return JSON.stringify(groups) === JSON.stringify(want); }""",
            arg=sorted(picks),
            timeout=60_000,
        )
        time.sleep(0.5)
        assert sorted(pg.evaluate(TICKED)) == picks
    monkeypatch.setattr(runs_lib, "read_runs", read_runs)
    shown = pg.evaluate("() => document.querySelector('#compare-curves .js-plotly-plot').data.map(t => t.legendgroup)")
    assert set(shown) == set(picks)  # the curves are the ticked runs'
    pg.click("#compare-delete")
    pg.wait_for_function(
        "() => document.querySelector('#compare-message').innerText.includes('exactly these')", timeout=30_000
    )
    asked = pg.locator("#compare-message").inner_text()
    assert f"Delete 2 ticked run(s) and their files: {names[1]}, {names[2]}?" in asked, asked
    pg.screenshot(path=ARTIFACTS / "compare-delete-asks.png", full_page=True)
    pg.click("#compare-delete")
    pg.wait_for_function(
        "() => document.querySelector('#compare-message').innerText.includes('deleted 2 run(s)')", timeout=30_000
    )
    assert not (root / names[1]).exists() and not (root / names[2]).exists()
    assert (root / names[0]).is_dir() and (root / names[3]).is_dir()  # never ticked: never deleted
    pg.wait_for_function(f"() => !({LISTED})().includes('{names[1]}')", timeout=30_000)
    assert pg.evaluate(TICKED) == []
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


def inked_columns(pg) -> int:
    """Columns of the Solver lab's input picture (28 x 28, enlarged) that hold ink."""
    return pg.evaluate(
        """async () => {
        const img = document.querySelector('#lab-input img');
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        const zoom = c.width / 28;
        let n = 0;
        for (let col = 0; col < 28; col++) {
            let ink = 0;
            for (let y = 0; y < c.height; y++) ink = Math.max(ink, d[(y * c.width + col * zoom) * 4]);
            if (ink > 128) n++;
        }
        return n;
    }"""
    )


def test_solver_lab_shows_and_solves_the_drawing_on_the_canvas(server, page):
    """While the canvas holds a drawing, the input picture is the drawing as the model sees it (no
    true class) and "Solve with every solver" solves it; clearing the canvas goes back to the dataset input."""
    from core.data import load_dataset

    pg, log = page
    data = load_dataset("digits")
    zero = next(i for i, t in enumerate(data.val.targets.tolist()) if t == 0)  # a wide digit
    pg.goto(server)
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    pg.get_by_role("tab", name="Solver lab").click()
    index = pg.locator("#lab-index input")
    index.fill(str(zero))
    index.press("Enter")
    pg.wait_for_function("() => document.querySelector('#lab-caption').innerText.includes('true class: 0')")
    pg.wait_for_function("() => { const i = document.querySelector('#lab-input img'); return i && i.complete; }")
    assert inked_columns(pg) >= 12  # the dataset's 0
    draw_a_one(pg)
    pg.wait_for_function(
        "() => document.querySelector('#lab-caption').innerText.includes('your drawing')", timeout=90_000
    )
    caption = pg.locator("#lab-caption").inner_text()
    assert "28 × 28" in caption and "true class:" not in caption, caption
    pg.wait_for_function("() => { const i = document.querySelector('#lab-input img'); return i && i.complete; }")
    assert inked_columns(pg) <= 8  # the drawn 1, as the model sees it: not the 0
    # "Solve with every solver" with the drawing on the canvas solves the drawing. At another tolerance: the
    # plot redraws only when its figure changes, and the drawing's own solve may already have shown the very
    # figure a solve at the same settings gives (when the whole stroke reached that solve).
    pg.evaluate("() => { window.__before = document.querySelector('#lab-residual .js-plotly-plot').data; }")
    tol = pg.locator("#lab-tol input")
    tol.fill("0.001")
    tol.press("Tab")
    pg.click("#lab-run")
    pg.wait_for_function(
        "() => { const d = document.querySelector('#lab-residual .js-plotly-plot');"
        " return d && d.data && d.data !== window.__before && d.data.length >= 5; }",
        timeout=90_000,
    )
    message = pg.locator("#lab-message").inner_text()
    assert "your drawing" in message and "true class" not in message, message
    assert inked_columns(pg) <= 8
    pg.locator("#lab-message").scroll_into_view_if_needed()
    pg.screenshot(path=ARTIFACTS / "solver-lab-drawing-solved.png", full_page=True)
    # Clearing the canvas goes back to the dataset input (solved again: the results were the drawing's).
    pg.locator("#lab-drawing").get_by_role("button", name="Clear canvas", exact=True).click()
    pg.wait_for_function(
        "() => document.querySelector('#lab-caption').innerText.includes('true class: 0')"
        " && document.querySelector('#lab-message').innerText.includes('true class')",
        timeout=90_000,
    )
    pg.wait_for_function("() => { const i = document.querySelector('#lab-input img'); return i && i.complete; }")
    assert inked_columns(pg) >= 12
    pg.screenshot(path=ARTIFACTS / "solver-lab-drawing-cleared.png", full_page=True)
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()


MODELS_TICKED = "() => Array.from(document.querySelectorAll('#pg-models input')).filter(i => i.checked).length"


def test_playground_puts_a_refused_change_back_and_takes_the_next(server, page):
    """A 4th model ticked is refused, named and unticked; a later change to another field is made."""
    pg, log = page
    pg.goto(server + "?models=node,anode,homoode")
    pg.wait_for_selector("#pg-flow .js-plotly-plot", timeout=30_000)
    pg.click("#pg-pause")
    assert pg.evaluate(MODELS_TICKED) == 3
    pg.locator("#pg-models").get_by_text("DEQ", exact=True).click()
    pg.wait_for_function(
        "() => document.querySelector('#pg-message').innerText.includes('pick 1 to 3 models')", timeout=30_000
    )
    try:
        pg.wait_for_function(f"() => ({MODELS_TICKED})() === 3", timeout=10_000)  # the DEQ tick is undone
    except playwright_api.TimeoutError:
        pytest.fail(f"the refused 4th model stays ticked: {pg.evaluate(MODELS_TICKED)} models ticked")
    assert not pg.locator("#pg-models").get_by_label("DEQ", exact=True).is_checked()
    message = pg.locator("#pg-message").inner_text()
    assert message.startswith("⚠️ models not changed (pick 1 to 3 models, got 4)"), message  # names the field
    pg.screenshot(path=ARTIFACTS / "playground-refused.png", full_page=True)
    pg.locator("#pg-more").get_by_text("data and model size").click()
    noise = pg.locator("#pg-noise input")
    noise.wait_for(state="visible")
    noise.fill("0.2")
    noise.press("Enter")
    noise.press("Tab")  # and leave the box: its blur applies the value too (one lost event failed a CI pass)
    pg.wait_for_function(
        "() => document.querySelector('#pg-link textarea').value.includes('noise=0.2')", timeout=60_000
    )
    link = pg.locator("#pg-link textarea").input_value()
    assert "models=node,anode,homoode" in link, link
    assert "⚠️" not in pg.locator("#pg-message").inner_text()
    assert log.errors == [], log.errors
    assert log.real_failures() == [], log.real_failures()
