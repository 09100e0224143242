"""Start the explorer web app: ``python launch.py [--host 127.0.0.1] [--port 7860] [--device auto|cpu|cuda]
[--runs-dir DIR]``.

Local and offline by default: binds 127.0.0.1, never creates a share link, sends no analytics and loads no
fonts or scripts from the internet.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time

# Before gradio is imported anywhere: it reads this at import time.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 / ::1; False for anything reachable from other machines."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Implicit-model explorer: a local web app over core.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device of image runs")
    parser.add_argument("--runs-dir", default="runs", help="where image runs are saved and listed")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: several sessions train at once, and more threads per op "
        "oversubscribe a small CPU)",
    )
    parser.add_argument(
        "--max-trainings",
        type=int,
        default=4,
        help="image trainings allowed to run at once (Playgrounds have their own budget and pause while hidden)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.port <= 65535:
        print(f"error: --port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    if args.threads < 1 or args.max_trainings < 1:
        print("error: --threads and --max-trainings must be >= 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    # Same reason for numpy's BLAS (PCA in the Solver lab): set before numpy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda was asked for but no CUDA GPU is available; use --device auto or cpu", file=sys.stderr
        )
        return 2
    from explorer.app import build_app
    from explorer.server import serve

    if not is_loopback(args.host):
        print(
            f"WARNING: binding to {args.host}: anyone who can reach this machine on port {args.port} can use the "
            "app, train models on it and read the runs directory. Use --host 127.0.0.1 to keep it private.",
            file=sys.stderr,
        )
    # On a server others can reach, a tab may rename or delete only the runs it started.
    demo = build_app(
        runs_dir=args.runs_dir,
        device=args.device,
        max_trainings=args.max_trainings,
        manage_all_runs=is_loopback(args.host),
    )
    try:
        url = serve(demo, host=args.host, port=args.port)
    except OSError as err:
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    if args.host in ("0.0.0.0", "::"):
        url = f"http://127.0.0.1:{args.port}/ (and every address of this machine)"
    print(f"Explorer running on {url}  (ready in {time.perf_counter() - started:.1f} s)", flush=True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        # `kill`, systemd and `docker stop` send SIGTERM: stop as Ctrl+C does, so every training ends its run
        # (last checkpoint, summary) instead of losing the steps since its last save.
        signal.signal(signal.SIGTERM, _interrupt)
        print("Press Ctrl+C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping…")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the closing short
        demo.explorer.registry.close_all()
        demo.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
