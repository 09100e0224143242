"""explorer.bench's parsing and table (no browser, no server)."""

from explorer import bench


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
