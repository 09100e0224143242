"""The app served in-process on a free port and driven through its named endpoints with gradio_client."""

from __future__ import annotations

import os
import re
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch
from gradio_client import Client
from gradio_client.utils import Status

from explorer.app import build_app
from explorer.server import serve
from explorer.tabs.common import SLOW_JOBS

ENDPOINTS = {
    "/playground_load",
    "/playground_tick",
    "/playground_play",
    "/playground_pause",
    "/playground_step",
    "/playground_reset",
    "/playground_apply",
    "/playground_probe",
    "/train_start",
    "/train_pause",
    "/train_resume",
    "/train_stop",
    "/train_apply",
    "/train_tick",
    "/train_gallery",
    "/runs_list",
    "/lab_run",
    "/lab_scrub",
    "/lab_sweep",
    "/lab_models",
    "/compare_refresh",
    "/compare_select",
    "/compare_export_csv",
    "/compare_export_json",
    "/compare_memory",
}
PG_FORM = ["circles", ["node", "homoode"], "dopri5", 4, 1e-3, "anderson", 0.01, 0, 2000]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = build_app(tmp_path_factory.mktemp("runs"), device="cpu", max_trainings=4)
    url = serve(demo)
    yield demo, url
    demo.explorer.registry.close_all()
    demo.close()
    torch.set_num_threads(old)


def client(url: str) -> Client:
    return Client(url, verbose=False)


def step_of(status: str) -> int:
    return int(re.search(r"step \*\*(\d+)\*\*", status).group(1))


def test_named_endpoints(app):
    _, url = app
    names = set(client(url).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert ENDPOINTS <= names


def test_two_clients_stay_isolated(app):
    demo, url = app
    a, b = client(url), client(url)
    assert a.session_hash != b.session_hash
    out_a = a.predict(api_name="/playground_load")
    out_b = b.predict(api_name="/playground_load")
    assert out_a[-1].startswith("?dataset=circles") and out_b[-1].startswith("?dataset=circles")
    # Both autoplay; A pauses and steps by hand, B keeps running.
    a.predict(api_name="/playground_pause")
    n = step_of(a.predict(api_name="/playground_step")[0])
    time.sleep(0.6)
    assert step_of(a.predict(api_name="/playground_step")[0]) == n + 1
    b_status = b.predict(api_name="/playground_tick")[0]
    assert "running" in b_status
    # A switches to moons with three models; B's run is untouched.
    out = a.predict("moons", ["node", "anode", "homoode"], *PG_FORM[2:], api_name="/playground_apply")
    assert "dataset=moons" in out[-1] and "ANODE" in out[0]
    b.predict(api_name="/playground_pause")
    b_out = b.predict(api_name="/playground_step")
    assert "ANODE" not in b_out[0]
    sessions = demo.explorer.registry
    sa, sb = sessions.peek(a.session_hash), sessions.peek(b.session_hash)
    assert sa.playground_settings.dataset == "moons" and sb.playground_settings.dataset == "circles"
    assert sa.playground is not sb.playground


def test_bad_values_leave_the_session_usable(app):
    _, url = app
    c = client(url)
    c.predict(api_name="/playground_load")
    c.predict(api_name="/playground_pause")
    out = c.predict(*PG_FORM[:4], -0.5, *PG_FORM[5:], api_name="/playground_apply")
    assert "tolerance must be" in out[3]
    out = c.predict(*PG_FORM[:1], [], *PG_FORM[2:], api_name="/playground_apply")
    assert "pick 1 to 3 models" in out[3]
    n = step_of(c.predict(api_name="/playground_step")[0])
    assert step_of(c.predict(api_name="/playground_step")[0]) == n + 1
    out = c.predict(
        "digits", "homoode", "auto", 10, 0, 1e-3, "rk4", 2, 1e-3, "anderson", "cpu", 64, None, api_name="/train_start"
    )
    assert "batch size must be" in out[2]


@pytest.mark.slow
def test_train_run_is_saved_listed_and_opens_in_the_lab(app):
    demo, url = app
    c = client(url)
    out = c.predict(
        "digits", "deq", "auto", 4, 16, 2e-3, "rk4", 2, 1e-3, "anderson", "cpu", 64, None, api_name="/train_start"
    )
    assert "Started" in out[2]
    for _ in range(300):
        status = c.predict(api_name="/train_tick")[0]
        if isinstance(status, str) and "test accuracy" in status:
            break
        time.sleep(0.2)
    assert "finished" in status and "step **4**" in status
    rows = c.predict(api_name="/runs_list")["data"]
    assert rows and rows[0][1] == "deq" and rows[0][-1] == "finished"
    gallery = c.predict(api_name="/train_gallery")[0]
    assert len(gallery) == 24
    out = c.predict(f"run:{rows[0][0]}", "", "test", 3, 1e-4, 30, "rk4", 4, "3-D", None, api_name="/lab_run")
    assert [r[0] for r in out[2]["data"]] == ["fixed_point", "anderson", "broyden", "homotopy"]
    assert '"scatter3d"' in out[1]["plot"]
    # A pick that is no longer offered (a dropped run of this tab) becomes the first choice, never a raw key.
    menu = c.predict("session:train:99", api_name="/lab_models")
    assert menu["value"] == menu["choices"][0][1] == "session:train:0"
    # Compare: the run is in the table (this tab started it), its curves are drawn, the table exports.
    table, picked, curves, _, message = c.predict("this tab's runs", [], api_name="/compare_refresh")
    assert [r[0] for r in table["data"]] == [rows[0][0]] and "1 run" in message
    assert "value" not in picked  # a refresh lists the runs; the ticks stay the user's
    assert rows[0][0] in curves["plot"]  # nothing ticked: the newest run's curves
    # Ticking runs in the picker redraws the overlay (it failed on an input it did not take: the filter).
    curves, _ = c.predict("this tab's runs", [rows[0][0]], "", api_name="/compare_select")
    assert rows[0][0] in curves["plot"]
    other = client(url).predict("this tab's runs", [], api_name="/compare_refresh")
    assert other[0]["data"] in ([], [[None] * len(other[0]["headers"])], [[""] * len(other[0]["headers"])])
    update, _ = c.predict("this tab's runs", api_name="/compare_export_csv")
    path = update["value"] if isinstance(update, dict) else update  # the file box is shown with its file
    assert open(path).read().splitlines()[1].startswith(f"{rows[0][0]},deq,digits,")


def _wait_until_processing(job, timeout: float = 60.0) -> None:
    """Until the server runs ``job`` (not merely queued), or it ended."""
    deadline = time.perf_counter() + timeout
    while job.status().code != Status.PROCESSING and not job.done():
        assert time.perf_counter() < deadline, f"the job did not start within {timeout:.0f} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_slow_work_in_one_session_never_delays_another_sessions_clicks(app):
    """A long sweep in one tab and a memory measurement in another (beside it, or queued behind it
    on a small CPU); a third tab's clicks, ticks and menus are answered within about a second meanwhile."""
    _, url = app
    a, b, c = client(url), client(url), client(url)
    b.predict(api_name="/playground_load")  # B has a page open (its Playground plays, as on a real first load)
    # A: accuracy vs NFE of an untrained GroupNorm DEQ on 64 validation inputs, 15 settings (~8 s on a quiet
    # 2-core box; the default contractive DEQ converges in a few iterations, too fast to keep A busy).
    sweep = a.submit("fresh:image28-deq-groupnorm", "", "tol", 64, api_name="/lab_sweep")
    _wait_until_processing(sweep)
    # C: a second slow job (~5 s), which runs beside A's or queues behind it (the server's cap on slow work).
    measure = c.submit(["deq"], ["implicit"], "8, 32, 128", "image28", 1, api_name="/compare_memory")
    time.sleep(0.3)
    quick = [
        ("/playground_tick", ()),
        ("/playground_pause", ()),
        ("/playground_step", ()),
        ("/playground_play", ()),
        ("/playground_tick", ()),
        ("/playground_pause", ()),
        ("/runs_list", ()),
        ("/compare_refresh", ("this tab's runs", [])),
        ("/lab_models", ("fresh:image28-deq",)),
    ]
    timings = []
    try:
        for endpoint, args in quick:
            started = time.perf_counter()
            b.predict(*args, api_name=endpoint)
            timings.append((endpoint, round(time.perf_counter() - started, 3), sweep.done()))
        # Not vacuous: A's sweep was still running when B's last answer came.
        assert not any(done for *_, done in timings), f"the sweep ended too soon to measure anything: {timings}"
        assert max(seconds for _, seconds, _ in timings) < 1.5, timings
        if SLOW_JOBS == 1:  # the cap on slow work (a small CPU): C's measurement waits for A's sweep to end
            assert measure.status().code == Status.IN_QUEUE
    finally:  # never leave a job inside torch when the module's server closes
        a_out, c_out = sweep.result(timeout=300), measure.result(timeout=300)
    assert "sweep of" in a_out[1] and "measured 3 training steps" in c_out[1]
