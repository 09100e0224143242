"""Benchmarks of the explorer app (a developer tool, not installed): ``python -m benchmarks.explorer`` measures
start-up, animation, page CPU and clicks in headless Chromium; ``python -m benchmarks.explorer_ab`` compares two
trees A B A B. The library's own benchmarks are ``python -m core.bench``."""


def short_error(err: BaseException) -> str:
    """One short line for a skipped figure or a failed request."""
    line = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {line}"[:160]
