"""benchmarks.explorer: its parsing and table (no browser, no server)."""

import pytest

from benchmarks import explorer as bench
from benchmarks import load


def test_step_and_state_of_a_status():
    status = "running · step 123 / 2000 · 30 steps/s\n\nmodel\tloss"
    assert bench._step(status) == 123
    assert bench._state(status) == "running"
    assert bench._step("No image run yet.") is None


def test_table_says_why_a_figure_was_skipped():
    results = {
        "ready_s": 3.0,
        "cpu_hidden_s_per_min": None,
        "steps_other_tab": 40,
        "steps_other_tab_away_s": 19.6,
        "steps_other_tab_at_visible_rate": 580.0,
        "state_on_return_other_tab": "running",
    }
    text = bench.table(results, {"cpu_hidden_s_per_min": "headless | visible"})
    assert "| launch to a page that answers | 3.00 s |" in text
    assert "skipped (headless / visible)" in text  # a '|' would break the row
    assert "40 in 20 s (visible rate: ~580), running on return" in text
    assert "| Train: Start new run to running | skipped (not measured) |" in text


def test_percentile_and_thread_multisets():
    assert load._percentile([], 50) is None
    assert load._percentile([0.3, 0.1, 0.2], 50) == 0.2
    assert load._percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert load._left_over(["A", "B", "B"], ["A", "B", "B", "B", "C"]) == ["B", "C"]
    assert load._left_over(["A", "B"], ["A"]) == []


def test_load_mode_is_bounded(capsys):
    assert bench.main(["--load", "33"]) == 2
    assert bench.main(["--load", "2", "--seconds", "601"]) == 2
    assert bench.main(["--load", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: --") for line in err)


@pytest.mark.slow
def test_load_two_sessions_answer_and_leave_nothing_behind(monkeypatch):
    """Two gradio_client sessions for 4 s on a loopback server; every request answered, and the
    process's Python threads back to the baseline once every session and client is closed."""
    # The clients' heartbeat threads end at the server's next heartbeat line (15 s by default): 1 s here.
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "1")
    r = load.measure_load(sessions=2, seconds=4.0)
    assert r["errors"] == 0, r["error_samples"]
    assert r["answered"] >= 2 * 3  # load, play and at least one tick each
    assert 0 < r["latency_p50_s"] <= r["latency_p95_s"] <= r["latency_max_s"] < 10.0
    assert all(step and step > 0 for step in r["pg_steps_per_session"])  # both Playgrounds trained
    assert r["threads_after"] <= r["threads_before"], r["threads_left"]
    assert r["threads_left"] == []
    for key in ("rss_before_mb", "rss_loaded_mb", "rss_after_mb", "rss_peak_mb", "rss_growth_mb"):
        assert isinstance(r[key], float), key
    assert r["rss_before_mb"] > 0 and r["rss_peak_mb"] >= r["rss_after_mb"]
    text = load.load_table(r)
    assert "| errors | 0 |" in text and "| answered requests |" in text
