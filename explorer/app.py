"""The web app: ``build_app(runs_dir, device) -> gr.Blocks``: the header, the four tabs (each laid out and
wired by its module in :mod:`explorer.tabs`, beside its handlers) and the page's own events.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from . import frames
from .runs import RUN_COLUMNS
from .tabs import compare, lab, playground, train
from .tabs.common import PHONE_RUN_COLUMN_WIDTHS, QUICK_CONCURRENCY, Context, Nav, Page

#: System fonts only: the page must not fetch fonts (or anything) from the internet.
THEME_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
CSS = """
#pg-buttons button { font-size: 1rem; }
/* Table headers break between words only ("device", not "devic e"); long run names stay whole. */
#compare-table th, #compare-table th *, #runs-table th, #runs-table th *, #lab-table th, #lab-table th * {
  white-space: nowrap; word-break: keep-all; overflow-wrap: normal;
}
#compare-table td:first-child, #runs-table td:first-child { word-break: break-all; min-width: 14em; }
#pg-status table, #train-status table { font-size: 0.85rem; }
/* The study report: words stay whole ("supported", not "supp orte d"); the claim column keeps some width. */
#compare-study-report td, #compare-study-report th { word-break: normal; overflow-wrap: normal; }
#compare-study-report td:first-child { min-width: 14em; }
#compare-study-report td:nth-child(2) { white-space: nowrap; }
.story { font-size: 0.95rem; }
/* The runs tables: smaller type and padding, so that all 17 columns fit a 1440 px page (the run's name wraps
   in its 190 px column, ``RUN_COLUMN_WIDTHS``); gradio sizes the other columns by measuring them. */
#compare-table, #runs-table { --input-text-size: 12px; }
#compare-table .cell-wrap, #runs-table .cell-wrap, #compare-table .sizing-body td, #runs-table .sizing-body td {
  padding: 5px 4px;
}
#compare-table .header-content, #runs-table .header-content { gap: 0; }
/* Button labels stay on one line: a button is as wide as its label needs. */
#compare-rename, #compare-delete, #tr-buttons button { white-space: nowrap; }
#tr-buttons button { flex: 1 1 auto; min-width: min(150px, 100%); }
/* Gallery captions: whole, over two lines if need be, never cut to "#12 ✗ pred 3…". */
#train-gallery .caption-label {
  white-space: normal; overflow: visible; text-overflow: clip; max-width: calc(100% - 8px);
  font-size: 11px; line-height: 1.25;
}
/* A one-line box keeps its height whatever is typed into it (a long entry scrolls inside it). */
#compare-filter input, #compare-new-name input, #memory-batches input, #pg-probe input { text-overflow: ellipsis; }

/* A phone (this width is plots.NARROW_WIDTH: the figures are laid out for it below it too). */
@media (max-width: 699.98px) {
  /* Every tab one tap away: the tab bar wraps (``overflow_behavior="wrap"``) with compact buttons. */
  .tab-container[role="tablist"] { flex-wrap: wrap; row-gap: 2px; }
  .tab-container[role="tablist"] button { padding: 6px 4px; font-size: 0.8rem; }
  /* Plotly's toolbar would sit on the legend: on a phone pinch and drag zoom, a double tap resets. */
  .js-plotly-plot .modebar-container { display: none !important; }
  /* Playground: the ▶ buttons, then the status and the pictures, then the settings. */
  #pg-main { flex-direction: column; flex-wrap: nowrap; }
  #pg-controls, #pg-view { display: contents; }
  #pg-main > #pg-controls > *, #pg-main > #pg-view > * { order: 2; width: 100%; }
  #pg-main > #pg-view > * { order: 1; }
  #pg-main > #pg-controls > #pg-buttons { order: 0; }
  #pg-status ul { padding-left: 1.1em; margin: 0; }
  #pg-status li { margin: 2px 0; font-size: 0.85rem; }
}
"""
ABOUT = """
### Three ways to get a representation out of an implicit layer

1. **Neural ODE (NODE)**: the input *is the initial point*. z(0) = x, dz/dt = F(z), the answer is z(1).
   A flow is a homeomorphism: trajectories cannot cross, so a 2-D NODE must contort itself (and spend more
   function evaluations, NFE) to pull the inner disk of *circles* out of the ring. **ANODE** adds a zero
   dimension so trajectories can pass each other.
2. **Deep equilibrium model (DEQ)**: the input is a *condition*. The answer is the fixed point
   z* = f(z*; x), found by a root solver (fixed-point iteration, Anderson mixing, Broyden) whose cost is
   the number of evaluations of f until the residual ||f(z) − z|| falls under a tolerance.
3. **HomoODE**: the input is again a condition, and the fixed point is reached by *homotopy continuation*:
   from a start point z0 shared by every input, an ODE in λ ∈ [0, 1] carries z from z0 (λ = 0) to the
   equilibrium (λ = 1). It is the bridge between the two sides: a DEQ's answer, a NODE's smooth path.

**Playground**: watch the three side by side on 2-D data (boundary, trajectories, vector field, NFE).
**Train**: train on images (bundled MNIST digits offline) with live loss, accuracy, NFE, memory and time.
**Solver lab**: take one input of a trained model and solve it with every solver; residual vs NFE on a log
axis, the path of the state in one frozen PCA basis (2-D or 3-D), and accuracy vs NFE when solver settings
change.
**Compare**: every saved run in one table (export it as CSV or JSON), their curves overlaid, accuracy vs NFE,
and training memory vs batch size measured per family and gradient method.

Everything runs on this machine; nothing is sent anywhere.
"""


def phone_table(elem_ids: tuple[str, ...], columns: list[str], widths: dict[str, str]) -> str:
    """CSS (for inside the phone's @media block) that lays the gr.Dataframes ``elem_ids`` (headers ``columns``)
    out to the page's width: only the columns in ``widths`` are shown, each with its flex-basis there (a header
    and its cells alike, so they line up; 100% puts a column on a line of its own, the next ones on the line
    below), growing evenly into what is left. !important: gradio writes each column's measured width into its
    cells' style, and widens the table to their sum."""
    unknown = set(widths) - set(columns)
    if unknown:
        raise ValueError(f"columns {sorted(unknown)} are not among {columns}")

    def cells(i: int) -> str:
        return ", ".join(f'#{e} th[data-heading="{i}"], #{e} .body-cell[data-col="{i}"]' for e in elem_ids)

    def each(part: str) -> str:
        return ", ".join(f"#{e} {part}" for e in elem_ids)

    rules = [
        f"{each('.header-table')}, {each('.virtual-body')} {{ width: 100% !important; }}",
        f"{each('thead')} {{ display: block; }}",
        f"{each('.sizing-body')} {{ display: none; }}",
        f"{each('thead tr')}, {each('.virtual-row')} {{ display: flex !important; flex-wrap: wrap !important; "
        "padding: 0; }",
        f"{each('th.header-cell')}, {each('.body-cell')} {{ width: auto !important; min-width: 0 !important; "
        "max-width: none !important; }",
        # Headers break between words ("test acc" over "%"), never inside one.
        f"{each('th')}, {each('th *')} {{ white-space: normal; }}",
    ]
    for i, name in enumerate(columns):
        rule = f"flex: 1 1 {widths[name]} !important;" if name in widths else "display: none !important;"
        rules.append(f"{cells(i)} {{ {rule} }}")
    return "\n".join(rules)


#: A phone: the runs tables and the Solver lab's table show their key columns, and fit the page (no sideways
#: scrolling to read a row).
CSS += (
    "@media (max-width: 699.98px) {\n"
    + phone_table(("compare-table", "runs-table"), RUN_COLUMNS, PHONE_RUN_COLUMN_WIDTHS)
    + "\n"
    + phone_table(("lab-table",), lab.LAB_COLUMNS, lab.LAB_PHONE_COLUMN_WIDTHS)
    + "\n#lab-table { --input-text-size: 11px; }"
    + "\n#lab-table .cell-wrap { padding: 4px 2px; }"
    + "\n}\n"
)


class Explorer(Context):
    """The composition root: the app's shared state and the four tabs' handlers (testable without a browser).

    Args:
        runs_dir: where image runs are saved and listed.
        autoplay: start the Playground's preset on page load (the first screen tells the story).
        **options: the rest of :class:`~explorer.tabs.common.Context`'s: device, max_trainings, manage_all_runs.
    """

    def __init__(self, runs_dir: str | Path, autoplay: bool = True, **options: Any):
        super().__init__(runs_dir, **options)
        self.playground = playground.PlaygroundTab(self, autoplay)
        self.train = train.TrainTab(self)
        self.lab = lab.LabTab(self)
        self.compare = compare.CompareTab(self)

    def warm_up(self) -> None:
        """Build and draw the first screen once, off the request path: the first load in a fresh process
        pays ~2 s of one-time torch and plotly set-up, which would delay the first animation."""
        key = "__warm_up__"
        try:
            self.playground.load(key, {}, autoplay=False)
            self.playground.control(key, "step")
        except Exception:  # warming up is an optimisation; the real load reports real problems
            pass
        finally:
            self.close_session(key)

    def tab_selected(self, key: str, tab: str) -> Nav:
        """Only the visible tab polls: the Playground's timer runs on its tab (elsewhere its models pause by
        themselves), the Train tab's while a run there is live; the others draw on demand."""
        session = self.registry.peek(key)
        run = session.train if session is not None else None
        live = run is not None and not train.settled(run.read())
        return Nav(pg_timer=tab == "playground", train_timer=tab == "train" and live)


def build_app(runs_dir: str | Path = "runs", **options: Any) -> gr.Blocks:
    """The explorer's gr.Blocks (launch it with ``theme=app_theme(), css=CSS``); ``options`` are
    :class:`Explorer`'s: device (of image runs: auto, cpu or cuda), max_trainings (server-wide), autoplay (the
    Playground's preset when a page opens), manage_all_runs (False: a tab renames or deletes only its own runs).
    """
    ex = Explorer(runs_dir, **options)
    threading.Thread(target=ex.warm_up, name="explorer-warm-up", daemon=True).start()
    with gr.Blocks(title="Implicit-model explorer", analytics_enabled=False) as demo:
        demo.explorer = ex  # tests and launch.py reach the state through the Blocks
        demo.explorer_routes = frames.router(ex.frames)  # served beside gradio's by explorer.server.serve
        gr.Markdown(
            "## Implicit-model explorer\n"
            "<span class='story'>NODE starts **from** the input; DEQ and HomoODE are **conditioned on** it. "
            "Watch them learn the same data, then open a trained model in the Solver lab.</span>"
        )
        # A tab bar too long for the page wraps onto a second line: every tab stays one tap away (the default
        # hides the last tabs behind a "⋯" menu on a phone).
        with gr.Tabs(overflow_behavior="wrap") as tabs:
            page = Page(demo, tabs, playground.REDRAW_SECONDS, train.POLL_SECONDS, note_width=ex.note_width)
            pg_tab = playground.build(ex.playground, page)
            train_tab, gallery = train.build(ex.train, page)
            lab_tab, open_in_lab = lab.build(ex.lab, page)
            compare_tab, runs_table, compare_message = compare.build(ex.compare, page)
            with gr.Tab("About", id="about") as about_tab:
                gr.Markdown(ABOUT)
        # Only the visible tab polls: each timer runs while its tab is selected (and the Train tab's only while
        # a run is live), and a tick from a hidden browser tab says so (``Page.poll``) and draws nothing.
        page.render()
        shown = {"playground": pg_tab, "train": train_tab, "lab": lab_tab, "compare": compare_tab, "about": about_tab}
        for name, tab in shown.items():
            page.on(
                tab.select,
                partial(ex.tab_selected, tab=name),
                outputs=[page.pg_timer, page.train_timer],
                show_progress="hidden",
            )
        # A gallery tile or a runs-table row opens its model in the Solver lab, then solves there.
        open_in_lab(gallery, ex.train.gallery_pick)
        open_in_lab(runs_table, ex.compare.pick, compare_message)

        def unload(request: gr.Request) -> None:
            ex.close_session(request.session_hash)

        demo.unload(unload)
    # Quick events get QUICK_CONCURRENCY slots each; slow work has its own, few, shared slots (``tabs.common.WORK``).
    demo.queue(default_concurrency_limit=QUICK_CONCURRENCY)
    return demo


def app_theme() -> gr.themes.Base:
    """A built-in theme with system fonts (no web fonts are fetched)."""
    return gr.themes.Default(font=THEME_FONTS, font_mono=MONO_FONTS)
