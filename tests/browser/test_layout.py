"""The page's layout on a phone (390 x 844) and on a wide screen (1440 x 900), measured in Chromium: what a new
user meets first. Each test failed before its fix.

Screenshots go to ``test-artifacts/explorer/layout-*.png`` for a person to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from browser_support import ARGS, ARTIFACTS, CHROMIUM, PageLog, built_app, playwright_api, write_fake_run

from explorer.server import serve  # noqa: E402

PHONE = (390, 844)
WIDE = (1440, 900)
#: Three finished runs with long names (the runs tables' widest case), a loss falling over four decades (a log
#: axis with many decades) and a live lr change half way (its ⚙ mark).
RUNS = (
    "20990101-000000-homoode-digits-layout-check",
    "20990101-000001-deq-digits-groupnorm-layout",
    "20990101-000002-anode-fashion-mnist-layout",
)


def write_layout_run(folder) -> None:
    write_fake_run(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "lr": 0.002, "batch_size": 64}))
    events = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for e in events:
        if e["kind"] == "step":
            e["loss"] = 2.3 * 10 ** (-e["step"] / 5)
    change = {"kind": "change", "step": 10, "changes": {"lr": {"old": 0.002, "new": 0.001}}}
    events.insert(next(i for i, e in enumerate(events) if e.get("step") == 10) + 1, change)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for name in RUNS:
        write_layout_run(runs / name)
    yield from built_app(runs)


@pytest.fixture(scope="module")
def server(demo):
    return serve(demo)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def opened(browser, server, size, tab: str | None = None):
    """A page of ``size`` (width, height) on the app, its Playground paused (its picture drawn), on ``tab``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    log = PageLog(page)
    try:
        page.goto(server)
        page.wait_for_selector("#pg-flow .js-plotly-plot", timeout=60_000)
        page.wait_for_function("() => /step [1-9]/.test(document.querySelector('#pg-status').innerText)")
        page.click("#pg-pause")
        if tab is not None:
            page.get_by_role("tab", name=tab).click()
        yield page
        assert log.errors == [], log.errors
    finally:
        page.close()


# ------------------------------------------------------------------ measuring the page

RECT = "(el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"
#: Lines a piece of text takes: the distinct tops of its rendered line boxes.
LINES = """(el) => { const range = document.createRange(); range.selectNodeContents(el);
  return new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top))).size; }"""
#: Words of an element's text broken over two lines or more ("m o d e l", "0 . 0 8 0 7").
BROKEN_WORDS = """(root) => { const out = [];
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    for (const m of node.textContent.matchAll(/\\S{2,}/g)) {
      const range = document.createRange(); range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) out.push(m[0]);
    }
  }
  return out; }"""
#: The text boxes drawn in a plot (subplot titles, the figure's title, the ⚙ marks, the legend), as [text, rect].
PLOT_BOXES = """(gd) => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const out = [...gd.querySelectorAll('.annotation-text-g, .gtitle')].filter(e => e.textContent.trim())
    .map(e => [e.textContent.trim(), box(e)]);
  const legend = gd.querySelector('.legend');
  if (legend) out.push(['legend', box(legend.querySelector('.bg') || legend)]);
  return out; }"""


def overlap(a, b, slack: float = 1.0) -> bool:
    """Whether rectangles [left, top, right, bottom] overlap by more than ``slack`` px each way."""
    return min(a[2], b[2]) - max(a[0], b[0]) > slack and min(a[3], b[3]) - max(a[1], b[1]) > slack


def overlapping(boxes) -> list[tuple[str, str]]:
    """Pairs of [text, rect] boxes drawn over each other (two runs' ⚙ marks at one step are one mark)."""
    return [
        (a[0], b[0])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if overlap(a[1], b[1]) and not a[0] == b[0] == "⚙"
    ]


def plot_div(page, elem: str):
    return page.locator(f"#{elem} .js-plotly-plot")


def wait_for_plot(page, elem: str, predicate: str = "d.data && d.data.length > 0", timeout: float = 30_000) -> None:
    page.wait_for_function(
        f"() => {{ const d = document.querySelector('#{elem} .js-plotly-plot'); return d && ({predicate}); }}",
        timeout=timeout,
    )


# ------------------------------------------------------------------ a phone


def test_every_tab_is_one_tap_away_on_a_phone(browser, server):
    with opened(browser, server, PHONE) as page:
        assert not page.locator('button[aria-label="More tabs"]').is_visible()
        tabs = page.get_by_role("tab")
        names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
        assert names == ["Playground", "Train", "Solver lab", "Compare", "About"]
        for name in names:
            tab = page.get_by_role("tab", name=name)
            left, top, right, bottom = tab.evaluate(RECT)
            assert tab.is_visible() and 0 <= left and right <= PHONE[0] and bottom <= PHONE[1], (name, left, right)
            tab.click()  # one tap
            assert tab.get_attribute("aria-selected") == "true"
        page.screenshot(path=ARTIFACTS / "layout-phone-tabs.png")


def test_playground_on_a_phone_reads_without_broken_words_and_shows_the_picture_first(browser, server):
    with opened(browser, server, PHONE) as page:
        # The live numbers: no word broken over lines (the table wrapped "m o d e l", "0 . 0 8 0 7").
        status = page.locator("#pg-status")
        assert "NODE" in status.inner_text() and "loss" in status.inner_text()
        assert status.evaluate(BROKEN_WORDS) == []
        # The picture comes right after the ▶ buttons, on the first screen, before the settings.
        flow_top = plot_div(page, "pg-flow").evaluate(RECT)[1]
        settings_top = page.locator("#pg-models").evaluate(RECT)[1]
        buttons_bottom = page.locator("#pg-buttons").evaluate(RECT)[3]
        assert buttons_bottom < flow_top < PHONE[1] and flow_top < settings_top, (flow_top, settings_top)
        page.screenshot(path=ARTIFACTS / "layout-phone-playground.png", full_page=True)


@pytest.mark.parametrize("size", [PHONE, WIDE], ids=["phone", "wide"])
def test_playground_pictures_keep_one_scale_and_their_titles_apart(browser, server, size):
    with opened(browser, server, size) as page:
        gd = plot_div(page, "pg-flow")
        # x and y of every panel at one scale: a circle stays round (the picture was squashed on a phone).
        scales = gd.evaluate(
            """(gd) => Object.keys(gd._fullLayout).filter(k => /^xaxis\\d*$/.test(k)).map(k => {
                 const xa = gd._fullLayout[k], ya = gd._fullLayout[xa.anchor.replace('y', 'yaxis')];
                 return [k, Math.abs(xa._m), Math.abs(ya._m)]; })"""
        )
        assert len(scales) == 4, scales
        for name, x_px, y_px in scales:
            assert abs(x_px / y_px - 1) < 0.02, (name, x_px, y_px)
        assert overlapping(gd.evaluate(PLOT_BOXES)) == []
        # Hovering the picture: the plotly toolbar, where there is one, sits clear of the legend.
        gd.hover()
        time.sleep(0.3)
        bar = page.locator("#pg-flow .modebar")
        if bar.count() and bar.is_visible():
            assert not overlap(bar.evaluate(RECT), gd.locator(".legend .bg").evaluate(RECT))
        else:
            assert size == PHONE, "the wide page lost plotly's toolbar"
        page.screenshot(path=ARTIFACTS / f"layout-{size[0]}-playground-picture.png", full_page=True)


def test_compare_curves_are_readable_on_a_phone(browser, server):
    with opened(browser, server, PHONE, "Compare") as page:
        wait_for_plot(page, "compare-curves", "d.data && d.data.some(t => t.legendgroup)")
        gd = plot_div(page, "compare-curves")
        width = gd.evaluate("(gd) => gd.getBoundingClientRect().width")
        lengths = gd.evaluate(
            """(gd) => Object.keys(gd._fullLayout).filter(k => /^[xy]axis\\d*$/.test(k))
                 .map(k => [k, gd._fullLayout[k]._length])"""
        )
        # Each panel nearly as wide as the figure (three columns and a legend beside them left ~50 px each).
        for name, length in lengths:
            assert length > (0.6 * width if name.startswith("x") else 100), (name, length, width)
        assert overlapping(gd.evaluate(PLOT_BOXES)) == []
        page.screenshot(path=ARTIFACTS / "layout-phone-compare.png", full_page=True)


#: The tables a phone shows in part, by element id: their tab and the headers shown there (what identifies and
#: compares a run; a solver's outcome). A wide page shows all their columns.
PHONE_TABLES = {
    "runs-table": ("Train", ["run", "model", "dataset", "test acc %", "NFE fwd", "state"]),
    "compare-table": ("Compare", ["run", "model", "dataset", "test acc %", "NFE fwd", "state"]),
    "lab-table": ("Solver lab", ["solver", "status", "NFE", "residual", "prediction"]),
}
#: A gr.Dataframe's fit: its scroller's scrollWidth and clientWidth, the headers drawn, and the text of its cells
#: cut short ("0.00001…": a box whose content is wider than the box).
TABLE_FIT = """(root) => { const shown = (el) => el.getBoundingClientRect().width > 0;
  const scroller = root.querySelector('.virtual-table-viewport');
  const cells = [...root.querySelectorAll('th.header-cell, .body-cell')].filter(shown);
  const cut = cells.flatMap(c => [c, ...c.querySelectorAll('*')])
    .filter(e => getComputedStyle(e).display !== 'inline' && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent.trim());
  return {scroll: scroller.scrollWidth, width: scroller.clientWidth, cut,
          headers: [...root.querySelectorAll('th.header-cell')].filter(shown).map(t => t.innerText.trim())}; }"""


def filled_table(page, elem: str):
    """The table ``elem`` on its tab, holding the layout runs (the Solver lab's once it has solved)."""
    first = RUNS[0][:20]
    if elem == "lab-table":
        page.click("#lab-run")
        first = "anderson"
    page.wait_for_function(f"() => document.querySelector('#{elem}').innerText.includes('{first}')", timeout=120_000)
    time.sleep(0.3)  # gradio sizes the columns after the rows arrive
    return page.locator(f"#{elem}")


@pytest.mark.parametrize("elem", list(PHONE_TABLES))
def test_a_phone_reads_a_table_row_without_scrolling_sideways(browser, server, elem):
    tab, headers = PHONE_TABLES[elem]
    with opened(browser, server, PHONE, tab) as page:
        table = filled_table(page, elem)
        fit = table.evaluate(TABLE_FIT)
        # The table fits its box (it scrolled 1097 px in 324: a row's cells on one line, 17 columns).
        assert fit["scroll"] <= fit["width"] + 2, fit
        assert fit["headers"] == headers and fit["cut"] == [], fit
        # Each header sits above its cells: no value's word broken over lines ("finishe d"), the run's name
        # (a time stamp and a model, broken anywhere on purpose) aside.
        values = table.locator("th.header-cell, .body-cell:not([data-col='0'])")
        assert values.evaluate_all(f"(els) => els.flatMap({BROKEN_WORDS})") == []
        for name in headers:
            left, _, right, _ = table.locator("th.header-cell", has_text=name).first.evaluate(RECT)
            assert 0 <= left and right <= PHONE[0], (name, left, right)
        table.screenshot(path=ARTIFACTS / f"layout-phone-{elem}.png")


def test_the_solver_labs_placeholders_are_whole_on_a_phone(browser, server):
    with opened(browser, server, PHONE, "Solver lab") as page:
        for elem in ("lab-residual", "lab-path", "lab-sweep-plot"):
            gd = plot_div(page, elem)
            left, _, right, _ = gd.evaluate(RECT)
            (text, box), *_ = gd.evaluate(PLOT_BOXES)
            assert left <= box[0] and box[2] <= right, (elem, text, box, left, right)
        page.locator("#lab-sweep-plot").screenshot(path=ARTIFACTS / "layout-phone-sweep-placeholder.png")


# ------------------------------------------------------------------ a wide screen


def test_the_runs_table_shows_every_column_on_a_wide_page(browser, server):
    with opened(browser, server, WIDE, "Compare") as page:
        page.wait_for_function(
            f"() => document.querySelector('#compare-table').innerText.includes('{RUNS[0][:20]}')", timeout=30_000
        )
        table = page.locator("#compare-table table").first
        view = page.locator("#compare-table .table-wrap").first
        headers = page.locator("#compare-table thead th")
        right = view.evaluate(RECT)[2]
        last = headers.nth(headers.count() - 1)
        assert last.inner_text().strip() == "state"
        assert last.evaluate(RECT)[2] <= right + 1, (last.evaluate(RECT), right)
        assert table.evaluate("(t) => t.getBoundingClientRect().width") <= view.evaluate("(v) => v.clientWidth") + 1
        page.screenshot(path=ARTIFACTS / "layout-wide-compare-table.png")


def test_a_wide_page_shows_every_column_of_the_runs_and_solver_tables(browser, server):
    """A guard (it passed before too): the phone's tables leave a wide page's tables whole."""
    from explorer.runs import RUN_COLUMNS
    from explorer.tabs.lab import LAB_COLUMNS

    with opened(browser, server, WIDE) as page:
        for elem, columns in (("runs-table", RUN_COLUMNS), ("lab-table", LAB_COLUMNS)):
            page.get_by_role("tab", name=PHONE_TABLES[elem][0]).click()
            fit = filled_table(page, elem).evaluate(TABLE_FIT)
            assert fit["headers"] == columns and fit["scroll"] <= fit["width"] + 2, fit
            page.locator(f"#{elem}").screenshot(path=ARTIFACTS / f"layout-wide-{elem}.png")


def test_buttons_keep_their_labels_on_one_line_on_a_wide_page(browser, server):
    with opened(browser, server, WIDE, "Compare") as page:
        for name in ("Rename", "Delete picked runs"):
            assert page.get_by_role("button", name=name, exact=True).evaluate(LINES) == 1, name
        page.get_by_role("tab", name="Train").click()
        for name in ("▶ Start new run", "■ Stop and save", "Apply lr / tolerance now"):
            assert page.get_by_role("button", name=name, exact=True).evaluate(LINES) == 1, name


def test_log_axes_are_labelled_at_powers_of_ten(browser, server):
    with opened(browser, server, WIDE, "Compare") as page:
        wait_for_plot(page, "compare-curves", "d.data && d.data.some(t => t.legendgroup)")
        gd = plot_div(page, "compare-curves")
        assert gd.evaluate("(gd) => gd._fullLayout.yaxis.type") == "log"
        labels = gd.evaluate(
            "(gd) => [...gd.querySelectorAll('.yaxislayer-above .ytick text')].map(t => t.textContent)"
        )
        assert len(labels) >= 3, labels
        # 1, 10, 10⁻¹ ... (plotly writes the exponent in a superscript: "10−2"); never 5, 2, 0.1, 5, 2, 0.01.
        labels = [t.replace("\u200b", "") for t in labels]  # plotly's zero-width spaces around the exponent
        assert all(t in ("1", "10") or (t.startswith("10") and t[2:].lstrip("−-").isdigit()) for t in labels), labels
        page.screenshot(path=ARTIFACTS / "layout-wide-compare-curves.png", full_page=True)


def test_a_change_mark_stays_clear_of_its_panel_title(browser, server):
    with opened(browser, server, WIDE, "Compare") as page:
        wait_for_plot(page, "compare-curves", "d.layout.annotations.some(a => a.text === '⚙')")
        boxes = plot_div(page, "compare-curves").evaluate(PLOT_BOXES)
        marks = [b for b in boxes if b[0] == "⚙"]
        assert marks and overlapping(boxes) == []


def test_a_long_entry_keeps_its_box_one_line_high(browser, server):
    boxes = {
        "Playground": ["your point x, y"],
        "Solver lab": ["or a checkpoint under the runs directory"],
        "Compare": ["filter (every word", "new name for the picked run", "batch sizes"],
    }
    with opened(browser, server, WIDE) as page:
        for tab, labels in boxes.items():
            page.get_by_role("tab", name=tab).click()
            for elem in labels:
                field = page.get_by_label(elem)
                before = field.evaluate(RECT)
                field.fill("x" * 5000)
                time.sleep(0.3)
                after = field.evaluate(RECT)
                assert after[3] - after[1] <= before[3] - before[1] + 2, (elem, before, after)
                field.fill("")


def test_the_sweep_title_legend_and_labels_never_overlap(browser, server):
    with opened(browser, server, WIDE, "Solver lab") as page:
        page.get_by_text("steps / iterations", exact=True).click()
        page.get_by_label("validation inputs").fill("8")
        page.click("#lab-sweep")
        wait_for_plot(page, "lab-sweep-plot", "d.data && d.data.length >= 3 && d.layout.title", timeout=180_000)
        gd = plot_div(page, "lab-sweep-plot")
        boxes = gd.evaluate(PLOT_BOXES)
        assert any(b[0].startswith("sweep of") for b in boxes) and overlapping(boxes) == []
        labels = gd.evaluate(
            """(gd) => [...gd.querySelectorAll('.textpoint text')].filter(t => t.textContent.trim())
                 .map(t => { const r = t.getBoundingClientRect();
                             return [t.textContent, [r.left, r.top, r.right, r.bottom]]; })"""
        )
        assert labels and overlapping(labels) == [], labels
        page.screenshot(path=ARTIFACTS / "layout-wide-sweep.png", full_page=True)


def test_gallery_captions_are_whole(browser, server):
    with opened(browser, server, WIDE, "Train") as page:
        page.locator("#tr-family input").click()
        page.get_by_role("option", name="DEQ").click()
        for elem, value in (("#tr-steps", "4"), ("#tr-batch", "16"), ("#tr-limit", "64")):
            page.locator(f"{elem} input").fill(value)
        page.click("#tr-start")
        page.wait_for_function(
            "() => document.querySelector('#train-status').innerText.includes('test accuracy')", timeout=90_000
        )
        page.get_by_role("button", name="Show test predictions").click()
        page.wait_for_selector("#train-gallery .caption-label", timeout=60_000)
        cut = page.locator("#train-gallery .caption-label").evaluate_all(
            "(els) => els.filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)"
            ".map(e => e.textContent)"
        )
        assert page.locator("#train-gallery .caption-label").count() > 0 and cut == []
        page.screenshot(path=ARTIFACTS / "layout-wide-gallery.png", full_page=True)


def test_a_radio_shows_its_dot_at_once(browser, server):
    with opened(browser, server, WIDE, "Compare") as page:
        for elem in ("#compare-x-axis", "#compare-loss-scale"):
            radio = page.locator(f"{elem} input").nth(1)
            radio.click()
            # The dot is drawn from the input's own checked state: within half a second of the click.
            page.wait_for_function("(e) => e.checked && getComputedStyle(e).backgroundImage !== 'none'",
                                   arg=radio.element_handle(), timeout=500)  # fmt: skip
