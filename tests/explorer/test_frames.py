"""The Playground's animation channel (``explorer.frames``): pictures on demand, frames that carry only what
changed and that draw over the page's figure to give exactly the figure the server would send whole."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest

from explorer.app import Explorer
from explorer.frames import FrameChannel, pack, picture_name, unpack
from explorer.playground import PlaygroundSettings, PlaygroundVisual, flow_views
from explorer.plots import playground_figure
from explorer.sessions import SessionTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def explorer(tmp_path):
    ex = Explorer(tmp_path / "runs", device="cpu", autoplay=False)
    yield ex
    ex.registry.close_all()


def first_figure(ex: Explorer, key: str = "s1") -> dict:
    """The figure a page gets on load, as the page holds it (plain JSON)."""
    return json.loads(ex.playground.load(key, {"models": "node,homoode"}).flow.to_json())


def apply(figure: dict, frame: dict) -> dict:
    """What the page's script does with a frame (FRAME_JS's ``apply``), in Python."""
    if "full" in frame:
        figure = frame["full"]
        figure["data"] = [{k: unpack(v) for k, v in t.items()} for t in figure["data"]]
    else:
        data = [dict(t) for t in figure["data"]]
        for i, values in frame["traces"].items():
            data[int(i)].update({k: unpack(v) for k, v in values.items()})
        annotations = [dict(a, text=t) for a, t in zip(figure["layout"]["annotations"], frame["titles"])]
        figure = {"data": data, "layout": {**figure["layout"], "annotations": annotations}}
    figure["layout"]["meta"] = {**figure["layout"]["meta"], **frame["meta"]}
    return figure


def step(ex: Explorer, key: str = "s1") -> None:
    """One training step and its picture, which only frames show (no gradio event draws it)."""
    ex.session(key).playground.step_once()


def pull(ex: Explorer, figure: dict) -> tuple[dict, bytes]:
    meta = figure["layout"]["meta"]
    body = ex.frames.frame(meta["frames"], meta["version"], meta["shape"])
    assert body is not None, "no frame came"
    return json.loads(body), body


def as_drawn(value):
    """A figure value as plotly.js reads it: numbers in nested lists, NaN (a gap) as None."""
    if isinstance(value, dict) and "bdata" in value:  # plotly.py's base64 arrays
        import base64

        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
        return as_drawn(array.tolist())
    if isinstance(value, (list, tuple)):
        return [as_drawn(v) for v in value]
    if value is None:
        return np.nan  # a gap, as the page reads JSON's null
    if isinstance(value, float) and np.isnan(value):
        return np.nan
    return value


def test_a_frame_draws_the_next_picture_over_the_page_figure_with_only_what_moved(explorer):
    figure = first_figure(explorer)
    meta = figure["layout"]["meta"]
    assert meta["frames"] and meta["version"] and meta["shape"].startswith("wide:")
    step(explorer)
    frame, body = pull(explorer, figure)
    assert frame["meta"]["base"] == meta["version"]  # what it draws over: the page checks it has that picture
    drawn = apply(figure, frame)
    # What the page now draws is the figure the server would send whole for the same picture ...
    snap = explorer.session("s1").playground.read()
    whole = json.loads(playground_figure(flow_views(snap)).to_json())
    whole["layout"]["meta"]["version"] = picture_name(snap.serial, snap.version)
    assert drawn["layout"]["meta"]["version"] == whole["layout"]["meta"]["version"] != meta["version"]
    assert [a["text"] for a in drawn["layout"]["annotations"]] == [a["text"] for a in whole["layout"]["annotations"]]
    for got, want in zip(drawn["data"], whole["data"]):
        for key in ("x", "y", "z"):
            if key in want:
                w = np.array(as_drawn(want[key]), dtype=float)
                # Packed in 8 bits (z, on [0, 1]) or in 16 bits of the array's own range.
                tol = 0.5 / 254 if key == "z" else 0.5 * np.nanmax(np.abs(w)) * 2 / 65534 + 1e-9
                np.testing.assert_allclose(
                    np.array(as_drawn(got[key]), dtype=float), w, atol=tol, err_msg=f"{got.get('name')} {key}"
                )
    # ... from a frame that carries what moved and nothing else: the data points stay where they are.
    moved = {int(i): set(values) for i, values in frame["traces"].items()}
    points = [i for i, t in enumerate(whole["data"]) if str(t.get("name", "")).startswith("class ")]
    assert points and not set(points) & set(moved)
    assert all(keys <= {"x", "y", "z"} for keys in moved.values()), moved
    assert any(whole["data"][i]["type"] == "heatmap" and keys == {"z"} for i, keys in moved.items())
    assert len(body) < 0.4 * len(json.dumps(whole))


def test_packed_arrays_keep_their_values_to_a_code_and_their_gaps():
    rng = np.random.default_rng(0)
    prob = rng.random((41, 41))
    back = np.array(unpack(json.loads(json.dumps(pack("z", prob)))))
    assert back.shape == (41, 41) and np.abs(back - prob).max() <= 0.5 / 254 + 1e-12
    path = np.array([-3.0, 0.25, np.nan, 7.5, np.inf, 1e-3])
    back = np.array(unpack(pack("x", path)), dtype=float)
    assert np.isnan(back[[2, 4]]).all()
    np.testing.assert_allclose(back[[0, 1, 3, 5]], path[[0, 1, 3, 5]], atol=0.5 * 10.5 / 65534)
    assert back[0] == -3.0  # the ends of the range are exact
    flat = unpack(pack("y", np.full(40, 2.5)))
    assert flat == [2.5] * 40  # one value: no range to divide


def test_a_page_that_missed_a_frame_gets_every_value_and_another_shape_the_whole_figure(explorer):
    figure = first_figure(explorer)
    meta = figure["layout"]["meta"]
    step(explorer)
    pull(explorer, figure)  # a frame the page never drew
    step(explorer)
    frame, _ = pull(explorer, figure)  # the page still shows the first picture: it gets every value
    assert len(frame["traces"]) == len(figure["data"])
    assert set(frame["traces"]["1"]) >= {"x", "y", "type", "marker"}
    step(explorer)
    whole = json.loads(explorer.frames.frame(meta["frames"], meta["version"], "another shape"))
    assert set(whole["full"]) == {"data", "layout"}
    assert whole["full"]["layout"]["meta"]["shape"] == meta["shape"]
    assert whole["full"]["layout"]["meta"]["version"] == whole["meta"]["version"]


def test_a_frame_waits_for_a_new_picture_and_says_nothing_new_after_its_wait(explorer):
    figure = first_figure(explorer)
    meta = figure["layout"]["meta"]
    explorer.frames.wait = 0.3
    started = time.perf_counter()
    assert explorer.frames.frame(meta["frames"], meta["version"], meta["shape"]) is None  # paused: no new picture
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(KeyError):
        explorer.frames.frame("not a key", meta["version"], meta["shape"])
    explorer.close_session("s1")
    with pytest.raises(KeyError):  # a closed page's key answers no more
        explorer.frames.frame(meta["frames"], meta["version"], meta["shape"])


def test_pictures_come_when_a_page_asks_and_the_timed_ones_stop_while_it_does():
    trainer = SessionTrainer(
        PlaygroundSettings(models=("node",)).lanes(), visual=PlaygroundVisual(), visual_every=3600, steps_per_second=50
    )
    try:
        trainer.play()
        time.sleep(0.3)  # the first step draws a picture; then the timed ones are hourly
        first = trainer.buffer.version
        time.sleep(0.3)
        assert trainer.buffer.version == first and trainer.step_count > 3
        trainer.want_visual()
        deadline = time.monotonic() + 10
        while trainer.buffer.version == first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trainer.buffer.version == first + 1 and trainer.pulled
        time.sleep(0.3)
        assert trainer.buffer.version == first + 1  # one picture per ask, however many steps follow
        trainer.visual_every = 0.0  # timed pictures at every step, but a page pulls: none come
        time.sleep(0.3)
        assert trainer.buffer.version == first + 1
    finally:
        trainer.stop()


def test_a_reset_names_its_pictures_anew(explorer):
    figure = first_figure(explorer)
    old = figure["layout"]["meta"]["version"]
    explorer.playground.control("s1", "reset")
    trainer = explorer.session("s1").playground
    assert picture_name(trainer.buffer.serial, trainer.buffer.version) != old
    frame, _ = pull(explorer, figure)  # a page showing the old run's picture gets the new run's at once
    assert frame["meta"]["version"] == picture_name(trainer.buffer.serial, trainer.buffer.version)


def test_the_frame_route_answers_its_page_only(tmp_path):
    from explorer.app import build_app
    from explorer.server import serve

    demo = build_app(tmp_path / "runs", device="cpu", autoplay=False)
    try:
        url = serve(demo)
        ex = demo.explorer
        ex.frames.wait = 0.2
        figure = first_figure(ex, "page")
        meta = figure["layout"]["meta"]
        base = url + "explorer/playground/frame?"

        def get(query: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(base + query, timeout=30) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        status, body = get(f"key={meta['frames']}&have={meta['version']}&shape={meta['shape']}")
        assert (status, body) == (204, b"")  # paused: nothing new
        step(ex, "page")
        status, body = get(f"key={meta['frames']}&have={meta['version']}&shape={meta['shape']}")
        assert status == 200 and json.loads(body)["meta"]["version"] != meta["version"]
        status, body = get(f"key=someone-elses&have={meta['version']}")
        assert status == 404 and b"reload the page" in body
        assert get("key=" + "x" * 5000)[0] == 400
    finally:
        demo.close()
        demo.explorer.registry.close_all()


def test_frame_channel_tokens_are_per_session_and_unguessable():
    channel = FrameChannel(ctx=None)
    a, b = channel.token("a"), channel.token("b")
    assert a != b and len(a) >= 20 and channel.token("a") == a
    channel.forget("a")
    assert channel.token("a") != a
