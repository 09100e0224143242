"""Start the explorer web app: ``python launch.py``.

The web app (issue 4) is not built yet; until it lands this prints what the project offers today.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Implicit-model explorer (web app not built yet).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.parse_args(argv)
    import core

    print("The explorer web app is not built yet. Available today:")
    print(f"  core.solve(f, z0, method=...)  methods: {', '.join(core.METHODS)}")
    print(f"  core.build_model(config)       families: {', '.join(core.FAMILIES)}")
    print("  python -m core.bench solvers --json out.json   (solver benchmark)")
    print("  python -m pytest -q                            (test suite)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
