"""Benchmarks of the explorer app (a developer tool, not installed): ``python -m benchmarks.explorer`` measures
start-up, animation, page CPU and clicks in headless Chromium; ``python -m benchmarks.explorer_ab`` compares two
trees A B A B. The library's own benchmarks are ``python -m core.bench``."""
