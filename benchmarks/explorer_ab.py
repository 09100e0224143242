"""The Playground's start-up and animation, two explorer trees side by side: A B A B on one quiet machine.

    python -m benchmarks.explorer_ab BEFORE_TREE AFTER_TREE [--pairs 3] [--json out.json]

Each run starts that tree's ``launch.py`` (a fresh process) and measures it with *this* tree's
``benchmarks.explorer`` (``measure_ready`` with one start, then ``measure_browser``), so both trees are measured
by the same code: ready seconds, first animation, redraws a second, bytes per redraw, page and server CPU
a minute, steps a second. Prints one JSON line per run, then the medians and the after/before ratio of each
figure pair by pair (the figures of this 2-core machine move by 2x from day to day: only runs made side by
side compare). A tree from before pictures were named is counted by its first panel title, which then
carried the step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from benchmarks.explorer import measure_browser, measure_ready

FIGURES = (
    "ready_s", "first_animation_s", "redraws_per_s", "bytes_per_redraw", "page_cpu_s_per_min",
    "server_cpu_s_per_min", "anim_steps_per_s",
)  # fmt: skip


def measure(tree: Path) -> dict:
    ready, proc, url, runs = measure_ready(repeats=1, root=tree)
    try:
        browser = measure_browser(url, server_pid=proc.pid) or {}
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(runs, ignore_errors=True)
    return {"tree": str(tree), "ready_s": ready, **browser}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.pairs):
        for name in ("before", "after"):
            run = measure(getattr(args, name).resolve())
            runs[name].append(run)
            print(json.dumps({"run": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}}))
    summary = {}
    for key in FIGURES:
        pairs = [(b.get(key), a.get(key)) for b, a in zip(runs["before"], runs["after"])]
        pairs = [(b, a) for b, a in pairs if b is not None and a is not None]
        if not pairs:
            continue
        summary[key] = {
            "before": statistics.median(b for b, _ in pairs),
            "after": statistics.median(a for _, a in pairs),
            "ratio": statistics.median(a / b for b, a in pairs if b),
        }
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))  # fmt: skip
    for key, row in summary.items():
        print(f"{key:24s} before {row['before']:10.2f}  after {row['after']:10.2f}  after/before {row['ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "runs": runs, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
