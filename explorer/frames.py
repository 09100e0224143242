"""The Playground's animation channel: the page pulls frames and draws each over the figure it has, in place.

A gradio event per redraw sends a whole plotly figure (about 70 kB, built and validated by plotly, parsed and
laid out again by the page, with gradio's own bookkeeping around it) at the timer's pace. Here the page asks
``GET FRAME_ROUTE?key=&have=&shape=`` for a picture newer than the one it shows (``have``), the server answers
once the models have stepped and drawn one (or ``204`` after ``FRAME_WAIT`` seconds of nothing new), and the
page's script (``FRAME_JS``) hands it to ``Plotly.react`` on the same plot element, having asked for the next
one (which the server draws meanwhile):

- the pace is the page's: a frame per paint at most and one asked for ahead at most, never faster than
  training makes pictures (:meth:`~explorer.sessions.SessionTrainer.want_visual`), only while the page and its
  Playground are visible; a slow page gets fewer frames, never a backlog;
- a frame holds only what changed: the values of the traces that differ from the ones the page has (the
  data points and the grids stay put while the models learn, the probabilities and paths move), its float
  arrays packed in 8 or 16 bits (:func:`pack`), and the panels' titles. A page whose picture is not the one
  the server last sent, or whose figure has another shape (other models, a placed point, a phone turned),
  gets every trace, or the whole figure.

A frame is JSON: ``{"meta": {"version", "base", "frames"}, "traces": {index: {key: value}}, "titles": [...]}`` or
``{"meta": ..., "full": {"data", "layout"}}``. The key is a random token per session that the Playground's
figure carries in ``layout.meta.frames``: a page reads only its own session's pictures.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import Any

import numpy as np
import orjson

from .playground import flow_views
from .plots import playground_figure_dict

FRAME_ROUTE = "/explorer/playground/frame"
FRAME_WAIT = 1.0  # seconds a request waits for a new picture before answering 204 (nothing new)
FRAME_POLL = 0.01  # seconds between looks at the picture's version while waiting
MAX_QUERY = 4000  # characters of a query value: a figure's shape is a few hundred


class FrameChannel:
    """Frames of each session's Playground picture (see the module's docstring).

    Args:
        ctx: the app's :class:`~explorer.tabs.common.Context` (sessions, and whether a page is narrow).
        wait: seconds a request waits for a new picture.
    """

    def __init__(self, ctx: Any, wait: float = FRAME_WAIT):
        self.ctx = ctx
        self.wait = wait
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}  # token -> session key
        self._tokens: dict[str, str] = {}  # session key -> token
        self._sent: dict[str, tuple[str, list[dict[str, bytes]]]] = {}  # session key -> (picture, traces' JSON)

    def token(self, key: str) -> str:
        """The session's frame key (made on first use): its figures carry it for the page's script."""
        with self._lock:
            if key not in self._tokens:
                token = secrets.token_urlsafe(16)
                self._tokens[key], self._keys[token] = token, key
            return self._tokens[key]

    def forget(self, key: str) -> None:
        """The session closed: its key no longer answers."""
        with self._lock:
            token = self._tokens.pop(key, None)
            self._keys.pop(token or "", None)
            self._sent.pop(key, None)

    def frame(self, token: str, have: str = "", shape: str = "") -> bytes | None:
        """The next frame for the page that shows picture ``have`` in a figure of ``shape``, or None when no
        newer picture came within ``wait`` seconds (or there is nothing to draw). Raises KeyError for a key
        that is no session's."""
        with self._lock:
            key = self._keys[token]
        session = self.ctx.registry.peek(key)
        trainer = session.playground if session is not None else None
        if trainer is None:
            return None
        trainer.seen()  # the page is looking: keep playing (as the timer's tick does)
        deadline = time.monotonic() + self.wait
        narrow = self.ctx.narrow(key)
        layout = "narrow" if narrow else "wide"
        while True:
            trainer.want_visual()
            buffer = trainer.buffer
            # A new picture, or the page turned (a phone): the same picture laid out for it.
            if picture_name(buffer.serial, buffer.version) != have or not shape.startswith(layout + ":"):
                break
            if time.monotonic() >= deadline:
                return None
            time.sleep(FRAME_POLL)
        snap = trainer.read_pictures()
        figure = picture(session, snap, narrow)
        if figure is None:
            return None
        name = picture_name(snap.serial, snap.version)
        meta = {"frames": token, "version": name, "base": have}  # base: the picture it draws over
        traces, (sent_name, sent) = self._note_sent(key, name, figure)
        if figure["layout"]["meta"]["shape"] != shape:
            figure["layout"]["meta"].update(meta)
            data = b"[" + b",".join(_object(t.items()) for t in traces) + b"]"
            body = b'{"meta":%s,"full":{"data":%s,"layout":%s}}' % (_json("", meta), data, _json("", figure["layout"]))
        else:
            # The values that differ from the page's (all of them when the page's picture is not the one sent
            # last): the data points and the grids' coordinates stay put while the models learn.
            same = sent_name == have and len(sent) == len(traces)
            changed = {}
            for i, trace in enumerate(traces):
                keys = [(k, v) for k, v in trace.items() if not same or sent[i].get(k) != v]
                if keys:
                    changed[b'"%d"' % i] = _object(keys)
            titles = [a["text"] for a in figure["layout"]["annotations"]]
            parts = (_json("", meta), _json("", titles), _object(changed.items()))
            body = b'{"meta":%s,"titles":%s,"traces":%s}' % parts
        return body

    def whole(self, key: str, session: Any, snap: Any, narrow: bool) -> dict | None:
        """The picture of ``snap`` that gradio sends whole (:func:`picture`), with what the page's script needs
        in ``layout.meta``; noted as sent, so that the next frame carries what moved. None: nothing to draw."""
        figure = picture(session, snap, narrow)
        if figure is not None:
            name = picture_name(snap.serial, snap.version)
            figure["layout"]["meta"].update(frames=self.token(key), version=name)
            self._note_sent(key, name, figure)
        return figure

    def _note_sent(self, key: str, name: str, figure: dict) -> tuple[list[dict[str, bytes]], tuple[str, list]]:
        """Note picture ``name`` (``figure``) as the one the session's page gets next; returns its traces'
        values as JSON and what was noted before (picture, traces)."""
        traces = [{k: _json(k, v) for k, v in trace.items()} for trace in figure["data"]]
        with self._lock:
            before = self._sent.get(key, ("", []))
            self._sent[key] = (name, traces)
        return traces, before


def picture(session: Any, snap: Any, narrow: bool) -> dict | None:
    """The Playground's figure of ``snap`` as ``session`` shows it (its training or its test points), a plain
    dict (:func:`~explorer.plots.playground_figure_dict`); None when no model has a picture yet."""
    show_test = bool(session.playground_settings and session.playground_settings.show_test)
    views = flow_views(snap, show_test)
    return playground_figure_dict(views, narrow=narrow) if views else None


#: A frame's float arrays travel packed (``pack``), not as decimal text: a probability in 8 bits (1/254: finer
#: than the two decimals the hover shows), anything else in 16 bits of its own range; NaN (a gap between
#: paths) as the top code. About a quarter of the bytes of rounded decimals, and no number parsing.
PACK_BITS = {"z": 8}
PACK_FROM = 32  # values: a shorter array stays plain JSON


def pack(key: str, array: np.ndarray) -> dict[str, Any]:
    """``array`` as ``{"q": base64 codes, "bits", "lo", "step", "shape"}``: value = lo + code * step, the top
    code for a gap (NaN or ±inf). 8-bit arrays (``PACK_BITS``) are probabilities on [0, 1]."""
    a = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(a)
    bits = PACK_BITS.get(key, 16)
    top = (1 << bits) - 1
    if bits == 8:
        lo, step = 0.0, 1.0 / (top - 1)
    else:
        lo = float(a[finite].min()) if finite.any() else 0.0
        span = float(a[finite].max()) - lo if finite.any() else 0.0
        step = span / (top - 1) if span > 0 else 1.0
    codes = np.where(finite, np.clip(np.rint((np.where(finite, a, lo) - lo) / step), 0, top - 1), top)
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    return {
        "q": base64.b64encode(codes.astype(dtype).tobytes()).decode(),
        "bits": bits,
        "lo": lo,
        "step": step,
        "shape": list(a.shape),
    }


def unpack(value: Any) -> Any:
    """The values of a :func:`pack`-ed array (NaN for a gap) as nested lists; anything else as it is."""
    if not (isinstance(value, dict) and "q" in value):
        return value
    dtype = np.uint8 if value["bits"] == 8 else np.dtype("<u2")
    codes = np.frombuffer(base64.b64decode(value["q"]), dtype=dtype).astype(np.float64)
    out = np.where(codes == (1 << value["bits"]) - 1, np.nan, value["lo"] + codes * value["step"])
    return out.reshape(value["shape"]).tolist()


def _json(key: str, value: Any) -> bytes:
    """``value`` as JSON: a float array of ``PACK_FROM`` values or more packed (:func:`pack`)."""
    if isinstance(value, np.ndarray):
        value = pack(key, value) if value.dtype.kind == "f" and value.size >= PACK_FROM else np.ascontiguousarray(value)
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _object(items: Any) -> bytes:
    """A JSON object from (name, JSON bytes) pairs, names str or already-quoted bytes."""
    return b"{" + b",".join((k if isinstance(k, bytes) else orjson.dumps(k)) + b":" + v for k, v in items) + b"}"


def picture_name(serial: int, version: int) -> str:
    """One picture of one trainer's buffer: its serial (a reset starts another) and its version."""
    return f"{serial}.{version}"


def router(channel: FrameChannel):
    """The FastAPI routes of ``channel`` (installed beside gradio's by :func:`explorer.server.serve`)."""
    from fastapi import APIRouter, Response

    routes = APIRouter()

    @routes.get(FRAME_ROUTE)
    def frame(key: str = "", have: str = "", shape: str = "") -> Response:
        # A plain function: FastAPI runs it on its thread pool, where waiting for a picture blocks no one.
        if max(len(key), len(have), len(shape)) > MAX_QUERY:
            return Response("query too long", status_code=400)
        try:
            body = channel.frame(key, have, shape)
        except KeyError:
            return Response("no such Playground (reload the page)", status_code=404)
        if body is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    return routes


#: Installed once per page: pulls frames while the Playground's picture is on screen and draws each in place.
FRAME_JS = r"""() => {
  if (window.__pgFrames) return [];
  const stats = window.__pgFrames = {drawn: 0, ms: 0};
  const route = new URL('explorer/playground/frame', document.baseURI).pathname;
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const painted = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const plot = () => document.querySelector('#pg-flow .js-plotly-plot');
  const unpack = (v) => {  // explorer.frames.pack's arrays, back to numbers (null: a gap)
    if (!v || typeof v !== 'object' || v.q === undefined) return v;
    const bytes = Uint8Array.from(atob(v.q), (c) => c.charCodeAt(0));
    const codes = v.bits === 8 ? bytes : new Uint16Array(bytes.buffer);
    const gap = v.bits === 8 ? 255 : 65535;
    const flat = Array.from(codes, (n) => (n === gap ? null : v.lo + n * v.step));
    if (v.shape.length < 2) return flat;
    const w = v.shape[1];
    return Array.from({length: v.shape[0]}, (_, i) => flat.slice(i * w, (i + 1) * w));
  };
  const unpackAll = (t) => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, unpack(v)]));
  const apply = async (gd, f) => {
    let data, layout;
    if (f.full) {
      data = f.full.data.map(unpackAll);
      layout = Object.assign(f.full.layout, {autosize: true});
    } else {
      data = gd.data.slice();
      for (const [i, t] of Object.entries(f.traces)) data[Number(i)] = Object.assign({}, data[Number(i)], unpackAll(t));
      const titles = f.titles || [];
      const anns = (gd.layout.annotations || []).map((a, k) =>
        k < titles.length && a.text !== titles[k] ? Object.assign({}, a, {text: titles[k]}) : a);
      // Plotly drops the height from the layout it keeps once it has sized an autosized figure: give it
      // back, or the figure takes its container's height (none) and collapses between frames.
      layout = Object.assign({}, gd.layout, {annotations: anns, height: gd._fullLayout.height});
    }
    layout.meta = Object.assign({}, layout.meta || {}, f.meta);
    await window.Plotly.react(gd, data, layout, {responsive: true});
  };
  // One frame: {frame} (200), {none: true} (204: nothing new while the server waited) or {failed: true}.
  const get = async (meta, have) => {
    try {
      const q = new URLSearchParams({key: meta.frames, have: have || '', shape: meta.shape || ''});
      const r = await fetch(route + '?' + q, {cache: 'no-store'});
      if (r.status === 204) return {none: true};
      return r.status === 200 ? {frame: await r.json()} : {failed: true};
    } catch (e) {
      return {failed: true};
    }
  };
  // A click or a key answers first: frames wait while the page handles it (its answer, its redraw).
  let quietUntil = 0;
  const quiet = () => { quietUntil = performance.now() + 400; };
  document.addEventListener('pointerdown', quiet, true);
  document.addEventListener('keydown', quiet, true);
  (async () => {
    let next = null;  // the request for the frame after the one being drawn: the server draws it meanwhile
    for (;;) {
      const gd = plot();
      const meta = gd && gd.layout && gd.layout.meta;
      if (!meta || !meta.frames || !window.Plotly || document.visibilityState !== 'visible' || !gd.offsetParent) {
        next = null;
        await wait(250);
        continue;
      }
      if (performance.now() < quietUntil) {
        await wait(quietUntil - performance.now());
        continue;
      }
      const got = await (next || get(meta, meta.version));
      next = null;
      if (got.failed) { await wait(1000); continue; }
      if (got.none) continue;
      const f = got.frame;
      // Drawn over the picture it was made against only: gradio may have drawn a figure meanwhile (a
      // button, a setting); then ask again from that one.
      if (plot() !== gd || (gd.layout.meta || {}).version !== f.meta.base) continue;
      next = get(meta, f.meta.version);  // at most one frame asked for ahead: a slow page never piles up
      const t0 = performance.now();
      try { await apply(gd, f); } catch (e) { next = null; await wait(1000); continue; }
      stats.drawn += 1;  // for tests and benchmarks.explorer: frames drawn, and the milliseconds drawing them
      stats.ms += performance.now() - t0;
      await painted();
    }
  })();
  return [];
}"""
