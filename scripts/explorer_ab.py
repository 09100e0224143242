"""Start-up, first animation and redraw rate of one explorer tree, for paired A/B runs of two trees.

    python scripts/explorer_ab.py /path/to/tree      # prints one JSON line

Alternate two trees (A B A B ...) on a quiet machine and compare the pairs: the figures of this 2-core
machine move by 2x from day to day, so only runs made side by side compare. Uses that tree's
``explorer.bench`` (``measure_ready`` with one start, then ``measure_browser``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys


def main(root: str) -> None:
    os.chdir(root)
    sys.path.insert(0, root)
    from explorer.bench import measure_browser, measure_ready

    ready, proc, url, runs = measure_ready(repeats=1)
    try:
        browser = measure_browser(url) or {}
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(runs, ignore_errors=True)
    print(json.dumps({"tree": root, "ready_s": round(ready, 2), **{k: round(v, 2) for k, v in browser.items()}}))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "."))
