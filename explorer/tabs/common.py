"""What the tabs share: typed handler results, the session context, the page's wiring, messages and the
training curves' options.

A handler is a plain method ``handler(session_key, **inputs) -> Result | tuple[Result, ...]``. Each field
of a result is one output; a field left at ``KEEP`` leaves its output as it is, and ``warning`` becomes a
toast. A misspelt output name raises ``TypeError`` where the result is built, never silently drops.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import gradio as gr

import core
from core.checks import check_choice, check_filled, check_number, short_repr
from core.data import DatasetUnavailable
from core.training import CheckpointError

from ..frames import FrameChannel
from ..pagebuffer import Snapshot
from ..plots import CURVE_X, NARROW_WIDTH, empty_figure, family_colors
from ..sessions import CapacityError, Session, SessionRegistry, SessionTrainer

#: Exceptions that mean "the user asked for something that cannot be done", shown as a message.
USER_ERRORS = (ValueError, DatasetUnavailable, CheckpointError, CapacityError)
MAX_MESSAGE_CHARS = 600  # a message is a line or two; echoed input is cut before it gets here (short_repr)


def cut_message(text: str) -> str:
    """The last guard against a message that would fill the page (one that quotes a long value in full)."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def alert(text: str) -> str:
    """``text`` as a warning in a tab's message area ("" stays "")."""
    return f"⚠️ {cut_message(text)}" if text else ""


def as_int(value: Any, name: str) -> int:
    """A whole number given as an int or a whole float; anything else is a ValueError naming the field (a
    blank box: "<name> is empty", as everywhere)."""
    check_filled(value, name)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {short_repr(value)}")
    return int(value)


#: The page keeps its width (CSS px) in this cookie, sent with every request: figures and tables are laid out
#: for a phone below ``plots.NARROW_WIDTH`` (a figure is drawn on the server, which cannot measure the page).
WIDTH_COOKIE = "explorer_width"
#: In the page's <head> (``launch(head=...)``): notes the width before the first request, and again on resize.
VIEWPORT_HEAD = (
    "<script>(() => { const note = () => { document.cookie = '"
    + WIDTH_COOKIE
    + "=' + Math.round(window.innerWidth) + '; path=/; SameSite=Strict'; };"
    " note(); window.addEventListener('resize', note); })();</script>"
)


def page_width(request: Any) -> int | None:
    """The page's width in CSS px from its cookie (``VIEWPORT_HEAD``); None without one (an API client)."""
    try:
        width = int(request.cookies.get(WIDTH_COOKIE, ""))
    except (AttributeError, TypeError, ValueError):
        return None
    return width if 100 <= width <= 100_000 else None


#: ``column_widths`` of the runs tables: the run's name wraps inside 190 px (a time stamp and a model name are
#: ~35 characters), every other column is as wide as its content; with the app's CSS (smaller type) all 17
#: columns fit a 1440 px page.
RUN_COLUMN_WIDTHS = ["190px"]
#: The runs tables' columns on a phone, as CSS flex-bases (``explorer.app.phone_table``): what identifies and
#: compares a run. The run's name takes a line of its own (100%), its five values share the next one, each wide
#: enough for its longest word at 12 px on a 390 px page ("homoode", "cifar100", "finished"). The other columns
#: are there on a wider page (a phone turned sideways) and in the CSV / JSON export.
PHONE_RUN_COLUMN_WIDTHS = {
    "run": "100%",
    "model": "19%",
    "dataset": "21%",
    "test acc %": "16%",
    "NFE fwd": "16%",
    "state": "24%",
}


# ----------------------------------------------------------------------------------------------- results


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: An output left as it is (``gr.skip()``). Typed ``Any`` so that a field keeps the type of what it holds.
KEEP: Any = _Keep()
R = TypeVar("R", bound="Result")


def result(cls: type[R]) -> type[R]:
    """Make ``cls`` a result type: frozen, keyword-only (an unknown output name is a TypeError)."""
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


@result
class Result:
    """The base of every handler's outputs: a ``warning`` shown as a toast, and the fields of a subclass."""

    warning: str = ""

    def warn(self: R, err: Exception | str, shown: str | None = None) -> R:
        """This result with ``err`` as a toast and, cut, in the tab's ``message`` (``shown`` instead there)."""
        text = str(err)
        return dataclasses.replace(self, warning=text, message=alert(text if shown is None else shown))

    @classmethod
    def failed(cls: type[R], err: Exception | str, shown: str | None = None) -> R:
        """Only the warning: every other output stays as it was (the session keeps its working state)."""
        return cls().warn(err, shown)


class Choices(NamedTuple):
    """A menu's new choices and the value picked among them, in one update; a value of ``KEEP`` sends the
    choices alone, leaving the value to the user (a tick made while the update was on its way survives)."""

    choices: list[Any]
    value: Any


@result
class Nav(Result):
    """App-level outputs: the selected tab, and whether the Playground's and the Train tab's timers poll."""

    tab: str = KEEP
    pg_timer: bool = KEEP
    train_timer: bool = KEEP


#: Switch to the Solver lab from code (which fires no tab-select event): stop the other tabs' timers.
OPEN_LAB = Nav(tab="lab", pg_timer=False, train_timer=False)


def _update(component: Any, value: Any) -> Any:
    """A result field's value as the update of its component."""
    if isinstance(value, Choices):
        if value.value is KEEP:
            return type(component)(choices=value.choices)
        return type(component)(choices=value.choices, value=value.value)
    if isinstance(component, gr.Timer):
        return gr.Timer(active=bool(value))
    if isinstance(component, gr.Tabs):
        return gr.Tabs(selected=value)
    if isinstance(component, gr.File):
        return gr.File(value=value, visible=True)
    if isinstance(component, gr.Button):
        return gr.Button(**value)
    return value


# ----------------------------------------------------------------------------------------------- context


def _signature(snap: Snapshot) -> tuple:
    """Changes whenever the picture would: used to skip redraws of an idle run."""
    rows = tuple((len(m["step"]), len(m.get("change_step", ()))) for m in snap.metrics.values())
    return (snap.state, snap.step, rows, snap.version, tuple(snap.errors), snap.message, tuple(snap.finished))


def lane_colors(trainer: SessionTrainer) -> dict[str, str]:
    """Each lane in its model family's colour (the same colour in every plot of the app)."""
    return family_colors({lane.name: lane.config.model.family for lane in trainer.lanes})


class Context:
    """The app's state that every tab reads: sessions, the runs directory, the default device, what each
    session was last shown.

    Args:
        runs_dir: where image runs are saved and listed.
        device: default device of image runs (auto, cpu, cuda); toy runs stay on the CPU.
        max_trainings: server-wide cap on trainings running at once.
        manage_all_runs: any tab may rename or delete any saved run (a private server); False (a server
            others can reach) limits a tab to the runs it started.
    """

    def __init__(
        self, runs_dir: str | Path, device: str = "auto", max_trainings: int = 4, manage_all_runs: bool = True
    ):
        check_choice(device, "device", core.DEVICES)
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.registry = SessionRegistry(max_trainings=max_trainings)
        self.manage_all_runs = manage_all_runs
        self._drawn: dict[tuple[str, str], Any] = {}  # (session, view) -> what (or when) it last drew
        self._drawn_lock = threading.Lock()
        self._exports: Path | None = None  # made on the first export; removed with the context
        self._widths: dict[str, int] = {}  # session -> its page's width (CSS px), as its last request said
        self.frames = FrameChannel(self)  # the Playground's animation, outside gradio's events

    def session(self, key: str | None) -> Session:
        return self.registry.get(key)

    def close_session(self, key: str | None) -> None:
        self.registry.close(key)
        self.frames.forget(key or "")
        if self._exports is not None:
            shutil.rmtree(self.export_dir(key), ignore_errors=True)
        with self._drawn_lock:
            for k in [k for k in self._drawn if k[0] == key]:
                del self._drawn[k]
            self._widths.pop(key, None)

    def note_width(self, key: str | None, width: int | None) -> None:
        """The width of this session's page, from a request (None: not known, the last one stays)."""
        if key is not None and width is not None:
            with self._drawn_lock:
                self._widths[key] = width

    def narrow(self, key: str | None) -> bool:
        """Whether this session's page is narrower than ``NARROW_WIDTH`` (a phone): lay its figures out for it.
        An unknown width (an API client) is a wide page."""
        with self._drawn_lock:
            return self._widths.get(key or "", NARROW_WIDTH) < NARROW_WIDTH

    def changed(self, key: str, view: str, value: Any, force: bool = False) -> bool:
        """True (and ``value`` noted) when ``view`` of this session last drew something else. A run's snapshot
        compares by what its picture shows (an idle run is not redrawn). ``force`` (a button's answer) is True
        and forgets what was drawn, so that the next tick draws again: a tick computed just before the click
        can reach the page after the click's answer, and would otherwise leave its older state on the page."""
        if isinstance(value, Snapshot):
            value = _signature(value)
        with self._drawn_lock:
            if force:
                self._drawn.pop((key, view), None)
                return True
            if self._drawn.get((key, view)) == value:
                return False
            self._drawn[(key, view)] = value
        return True

    def due(self, key: str, view: str, seconds: float, force: bool = False) -> bool:
        """True (and the time noted) when ``view`` last drew ``seconds`` or more ago, or ``force``."""
        now = time.monotonic()
        with self._drawn_lock:
            if not force and now - self._drawn.get((key, view), -math.inf) < seconds:
                return False
            self._drawn[(key, view)] = now
        return True

    def export_dir(self, key: str | None) -> Path:
        """This tab's download folder inside the context's temporary folder (made on first use)."""
        if self._exports is None:
            self._exports = Path(tempfile.mkdtemp(prefix="explorer-exports-"))
            weakref.finalize(self, shutil.rmtree, str(self._exports), True)
        return self._exports / (re.sub(r"[^A-Za-z0-9]", "", key or "") or "local")


class Tab:
    """A tab's handlers: they read and change the sessions of the shared :class:`Context`."""

    def __init__(self, ctx: Context):
        self.ctx, self.session = ctx, ctx.session


# ----------------------------------------------------------------------------------------------- the page

# How events share the server (one tab's slow work must never hold up another tab's clicks). Gradio
# runs each handler in a worker thread, in a queue per concurrency group: events with the same
# ``concurrency_id`` share that group's slots, server-wide, and wait in line for them; an event without one is
# a group of its own. So the work is sorted by how long it can take, and each kind gets its own slots:
#: Clicks, ticks, tab switches, menus (tenths of a second): each event its own group with this many slots, so
#: that many tabs can press ▶ at once and none ever waits behind a sweep. The queue's default (``build_app``).
QUICK_CONCURRENCY = 8
#: Jobs of seconds to minutes (a Solver-lab sweep, a memory measurement): one group for all of them, so they
#: queue among themselves (a second tab's sweep waits, shown its place in line) and never take the quick
#: handlers' slots. At most this many at once, server-wide: each keeps a core busy, and a 2-core machine must
#: keep one core for the Playgrounds, trainings and every tab's clicks.
SLOW_JOBS = 2 if (os.cpu_count() or 1) >= 4 else 1
#: One input through every solver, the test-image gallery (about a second, longer on big settings): their own
#: group, so a sweep never delays a Solve (nor a drawing) and vice versa; bounded for the same CPU reason.
SOLVE_JOBS = 2
WORK: dict[str, dict[str, Any]] = {
    "quick": {},  # the queue's default: its own group of QUICK_CONCURRENCY slots
    "solve": {"concurrency_id": "explorer-solve", "concurrency_limit": SOLVE_JOBS},
    "slow": {"concurrency_id": "explorer-slow", "concurrency_limit": SLOW_JOBS},
}


class Page:
    """One page's wiring: its Blocks and tabs, the app-level components the tabs wire to (the timers and the
    page-visibility box, placed after the tabs by ``render``), and the component of each result field
    (``bind``, once per result type), through which handlers are wired (``on``)."""

    def __init__(
        self,
        demo: gr.Blocks,
        tabs: gr.Tabs,
        redraw_seconds: float,
        train_seconds: float,
        note_width: Callable[[str, int | None], None] | None = None,
    ):
        self.demo, self.tabs = demo, tabs
        self.note_width = note_width  # told each request's page width (``page_width``) before its handler runs
        self.pg_timer = gr.Timer(redraw_seconds, render=False)
        self.train_timer = gr.Timer(train_seconds, active=False, render=False)
        self.visibility = gr.Textbox("visible", visible=False, render=False)
        self._components: dict[type[Result], dict[str, Any]] = {}
        self.bind(Nav, tab=tabs, pg_timer=self.pg_timer, train_timer=self.train_timer)

    def render(self) -> None:
        for component in (self.pg_timer, self.train_timer, self.visibility):
            component.render()

    def bind(self, kind: type[Result], **components: Any) -> None:
        """The component that shows each field of ``kind``."""
        unknown = set(components) - {f.name for f in dataclasses.fields(kind)}
        if unknown:
            raise TypeError(f"{kind.__name__} has no output {', '.join(sorted(unknown))}")
        self._components[kind] = components

    def on(
        self,
        trigger: Callable[..., Any] | Sequence[Any],
        fn: Callable[..., Result | tuple[Result, ...]],
        inputs: dict[str, Any] | None = None,
        outputs: Sequence[Any] = (),
        *,
        api_name: str | None = None,
        twins: Sequence[Callable[..., Any]] = (),
        select: bool = False,
        query: bool = False,
        work: Literal["quick", "solve", "slow"] = "quick",
        progress: str | None = None,
        **event: Any,
    ) -> Any:
        """Wire ``fn(session_key, **inputs)`` to ``trigger`` (an event such as ``button.click``, a list of them
        for ``gr.on``, or a dependency's ``then``) and to each of ``twins``; without an ``api_name`` (twins
        never have one) an event is not in the page's API. ``inputs`` maps ``fn``'s parameter names to
        components; ``outputs`` are the components updated, in the endpoint's order. ``select`` passes the
        clicked item's index as ``position`` (a table row's cells as ``row``); ``query`` passes the page's
        query parameters as ``params`` and its address as ``page_url``. ``work`` says how long ``fn`` can run,
        which sets the slots it queues for (``WORK``). ``progress`` names the unit of a job that counts its
        work: ``fn`` gets ``progress(done, total)`` to call, shown over the outputs as "done/total unit" (gradio
        would otherwise show a time guessed from earlier calls, which for a sweep of another size is wrong)."""
        inputs = dict(inputs or {})
        event = {**WORK[work], **event}
        inspect.signature(fn).bind_partial(None, **dict.fromkeys(inputs), **({"progress": None} if progress else {}))
        handler = self._handler(fn, list(inputs), list(outputs), select, query, progress)

        def wire(on: Any, **kw: Any) -> Any:
            args = dict(inputs=list(inputs.values()), outputs=list(outputs), **kw)
            return gr.on(on, handler, **args) if isinstance(on, (list, tuple)) else on(handler, **args)

        private = {"api_name": None, "api_visibility": "private"}
        dependency = wire(trigger, **event, **({"api_name": api_name} if api_name else private))
        for twin in twins:
            wire(twin, **event, **private)
        return dependency

    def poll(self, timer: gr.Timer, fn: Callable[..., Result], outputs: Sequence[Any], api_name: str) -> None:
        """Redraw ``outputs`` on each tick of ``timer`` with ``fn(key, visibility)``: the page says whether it
        is hidden (a browser keeps slow timers running in a hidden tab), and the handler then draws nothing."""
        self.on(
            timer.tick,
            fn,
            {"visibility": self.visibility},
            outputs,
            api_name=api_name,
            show_progress="hidden",
            # A quick event (QUICK_CONCURRENCY slots). A tick that arrives while the last redraw is still in
            # flight runs right after it ("once" would drop it and wait a whole extra period: 2 redraws/s
            # instead of ~3 when a redraw takes 0.3 s).
            trigger_mode="always_last",
            js="(v) => document.visibilityState",  # runs in the page before the request
        )

    def _handler(
        self,
        fn: Callable[..., Any],
        names: list[str],
        outputs: list[Any],
        select: bool,
        query: bool,
        progress: str | None = None,
    ) -> Callable[..., Any]:
        """``fn`` as gradio calls it: inputs positionally, then ``gr.SelectData`` and ``gr.Request``, which
        gradio injects into parameters annotated with them (hence the explicit signature), then, for a job
        that counts its work (``progress``: its unit), the ``gr.Progress`` gradio injects into a parameter
        whose default is one."""

        def handler(*args: Any) -> Any:
            extra: dict[str, Any] = {}
            if progress:
                *args, tracker = args
                extra["progress"] = lambda done, total: tracker((done, total), unit=progress)
            *values, request = args
            if select:
                *values, event = values
                extra["position"] = event.index if isinstance(event.index, int) else -1
                if event.row_value is not None:  # a table row: its cells, robust to a re-sorted table
                    extra["row"] = list(event.row_value)
            if self.note_width is not None:
                self.note_width(request.session_hash, page_width(request))
            if query:
                extra["params"] = dict(request.query_params)
                extra["page_url"] = request.headers.get("referer", "")
            out = self.updates(fn(request.session_hash, **dict(zip(names, values)), **extra), outputs)
            return out if len(out) != 1 else out[0]

        injected = {**({"event": gr.SelectData} if select else {}), "request": gr.Request}
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter(n, kind) for n in names]
        params += [inspect.Parameter(n, kind, annotation=t) for n, t in injected.items()]
        if progress:
            params.append(inspect.Parameter("progress", kind, default=gr.Progress()))
        handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        handler.__annotations__ = injected
        handler.__name__ = getattr(fn, "__name__", "handler")
        return handler

    def updates(self, results: Result | tuple[Result, ...], outputs: list[Any]) -> list[Any]:
        """One update per output: the field shown there, or ``gr.skip()``. Fields whose component is not
        among ``outputs`` are left out; a warning becomes a toast."""
        out = [gr.skip()] * len(outputs)
        where = {id(component): i for i, component in enumerate(outputs)}
        for res in results if isinstance(results, tuple) else (results,):
            if res.warning:
                gr.Warning(cut_message(res.warning))
            for name, component in self._components[type(res)].items():
                value = getattr(res, name)
                if value is not KEEP and id(component) in where:
                    out[where[id(component)]] = _update(component, value)
        return out


def plot(label: str, elem_id: str, placeholder: str | None = None, height: int = 300) -> gr.Plot:
    """A plot without its label bar (the figures carry their own titles), showing ``placeholder`` until
    its first figure arrives."""
    value = empty_figure(placeholder, height) if placeholder is not None else None
    return gr.Plot(value, label=label, elem_id=elem_id, show_label=False)


# ----------------------------------------------------------------------------------------------- curves


class CurvesTab(Tab):
    """A tab with training curves, whose smoothing, x axis and loss axis (TensorBoard's three) are options
    kept per session: the tab's redraws, live ones too, use them."""

    name: str  # the key of its options, and of its controls' element ids
    Out: type[Result]

    def curve_options(self, key: str) -> dict[str, Any]:
        """``curves_figure``'s options of this session: the tab's curve controls, and its page's width."""
        return dict(self.session(key).curves.get(self.name, {}), narrow=self.ctx.narrow(key))

    def curves(self, key: str, smoothing: Any, x_axis: str, loss_scale: str, **shown: Any) -> Result:
        """New options from the controls: checked, kept, and the curves redrawn (``redraw_curves``)."""
        try:
            check_number(smoothing, "smoothing", 0, 0.99)
            check_choice(x_axis, "x axis", tuple(CURVE_X))
            check_choice(loss_scale, "loss axis", ("log", "linear"))
        except ValueError as err:
            return self.Out.failed(err)
        self.session(key).curves[self.name] = dict(
            smoothing=float(smoothing), x_axis=x_axis, log_loss=loss_scale == "log"
        )
        return dataclasses.replace(self.redraw_curves(key, **shown), message="")

    def redraw_curves(self, key: str, **shown: Any) -> Result:
        raise NotImplementedError


def curve_controls(page: Page, tab: CurvesTab, outputs: Sequence[Any], **shown: Any) -> None:
    """The three controls of ``tab``'s curves, which redraw ``outputs`` (with ``shown``, the components that
    say which curves are shown)."""
    with gr.Row():
        controls = {
            "smoothing": gr.Slider(0, 0.99, value=0, step=0.01, label="smoothing", elem_id=f"{tab.name}-smoothing"),
            "x_axis": gr.Radio(list(CURVE_X), value="step", label="x axis", elem_id=f"{tab.name}-x-axis"),
            "loss_scale": gr.Radio(["log", "linear"], value="log", label="loss axis", elem_id=f"{tab.name}-loss-scale"),
        }
    page.on(
        controls["smoothing"].release,
        tab.curves,
        {**controls, **shown},
        outputs,
        api_name=f"{tab.name}_curves",
        twins=(controls["x_axis"].input, controls["loss_scale"].input),
        show_progress="hidden",
        trigger_mode="always_last",
    )
