"""Training and evaluation throughput (images per second) per family, on random CIFAR-shaped images.

    python -m core.bench throughput [--device cuda] [--precision bf16] [--json throughput.json]

For each model (the four ``image32-*`` presets and ``paper-cifar10``: dopri5 at rtol = atol = 1e-3, as
the official code) and each batch size, time ``--steps`` training steps after ``--warmup`` and as many
evaluation batches, through the real ``Trainer`` (its step, its precision, its data path). ``max`` in
``--batches`` doubles the batch from the largest given until the device runs out of memory (CUDA only)
and reports the largest that fitted. Peak memory is CUDA's ``max_memory_allocated`` per configuration;
on a CPU the process's peak RSS, which only grows, is given for the whole run.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import torch

from ..models import preset
from ..training import DEVICES, PRECISIONS, TrainConfig, Trainer, atomic_write_json, peak_memory
from .models import _log, _payload

#: Models measured: name -> preset.
THROUGHPUT_MODELS = {
    "node": "image32-node",
    "anode": "image32-anode",
    "deq": "image32-deq",
    "homoode": "image32-homoode",
    "paper-cifar10": "paper-cifar10",
}
MAX_BATCH = 8192


def measure(model: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """One configuration: train and eval images/s, mean NFE, peak memory. Raises on failure (OOM included)."""
    steps, warmup = args.steps, args.warmup
    n = batch * (steps + warmup)
    cfg = TrainConfig(
        model=preset(THROUGHPUT_MODELS[model]),
        dataset="random32",
        toy_size=n + n // 9 + 1,  # train after the validation share is held out: at least n examples
        batch_size=batch,
        steps=steps + warmup,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
    )
    trainer = Trainer(cfg)
    dev = trainer.device
    for _ in range(warmup):
        trainer.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    nfe = [trainer.step().nfe_forward for _ in range(steps)]
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    train_seconds = time.perf_counter() - t0
    memory, measure_kind = peak_memory(dev)
    t0 = time.perf_counter()
    trainer.evaluate("test", max_batches=steps)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    eval_seconds = time.perf_counter() - t0
    eval_images = min(len(trainer.test_y), steps * batch)
    return {
        "model": model,
        "preset": THROUGHPUT_MODELS[model],
        "batch": batch,
        "precision": args.precision,
        "device": str(dev),
        "params": trainer.model.num_parameters(),
        "train_images_per_s": steps * batch / train_seconds,
        "eval_images_per_s": eval_images / eval_seconds,
        "nfe_forward": sum(nfe) / len(nfe),
        "peak_memory_bytes": memory,
        "memory_measure": measure_kind,
    }


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def run_throughput(args: argparse.Namespace) -> int:
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    fixed = sorted({int(b) for b in args.batches if b != "max"})
    for model in args.models:
        for batch in fixed:
            _log(f"{model}: batch {batch}")
            try:
                records.append(measure(model, batch, args))
            except Exception as err:  # an OOM or a solver failure at this size: recorded, the rest goes on
                records.append({"model": model, "batch": batch, "error": f"{type(err).__name__}: {err}"})
            gc.collect()
        if "max" in args.batches and torch.cuda.is_available() and args.device != "cpu":
            records.append(_largest_batch(model, max(fixed or [64]), args))
    payload = _payload("throughput", args, records, start, precision=args.precision)
    if args.json:
        atomic_write_json(args.json, payload)
    print(throughput_table(records))
    return 0 if all("error" not in r for r in records) else 1


def _largest_batch(model: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Double the batch until CUDA runs out of memory; the last one that fitted, marked ``largest``."""
    best: dict[str, Any] | None = None
    while batch * 2 <= MAX_BATCH:
        batch *= 2
        _log(f"{model}: batch {batch} (looking for the largest)")
        try:
            best = {**measure(model, batch, args), "largest": True}
        except Exception as err:
            if not _is_oom(err):
                return {"model": model, "batch": batch, "error": f"{type(err).__name__}: {err}"}
            break
        finally:
            gc.collect()
            torch.cuda.empty_cache()
    return best or {"model": model, "batch": batch, "error": "no batch above the fixed ones fitted"}


def throughput_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| model | batch | precision | train img/s | eval img/s | NFE fwd | peak memory (MB) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in records:
        if "error" in r:
            rows.append(f"| {r['model']} | {r['batch']} | failed: {r['error'][:80]} | | | | |")
            continue
        batch = f"{r['batch']} (largest)" if r.get("largest") else str(r["batch"])
        memory = f"{r['peak_memory_bytes'] / 2**20:.0f}" + ("" if r["memory_measure"].startswith("cuda") else " (RSS)")
        rows.append(
            f"| {r['model']} | {batch} | {r['precision']} | {r['train_images_per_s']:.1f} | "
            f"{r['eval_images_per_s']:.1f} | {r['nfe_forward']:.1f} | {memory} |"
        )
    return "\n".join(rows)


def _add_throughput_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "throughput",
        help="training and evaluation images/s per family and paper-cifar10, with peak memory",
        description="Time training steps and evaluation batches of each model on random CIFAR-shaped images.",
    )
    p.add_argument("--json", metavar="PATH", help="write the records here (atomically)")
    p.add_argument("--models", nargs="+", choices=tuple(THROUGHPUT_MODELS), default=list(THROUGHPUT_MODELS))
    p.add_argument("--batches", nargs="+", default=["64", "max"], help="batch sizes; 'max': the largest that fits")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (and evaluation batches)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=run_throughput, check=_check_throughput, parser=p)


def _check_throughput(args: argparse.Namespace) -> str | None:
    bad = [b for b in args.batches if b != "max" and not (b.isdigit() and int(b) >= 1)]
    if bad:
        return f"--batches takes whole numbers >= 1 or 'max', got {' '.join(bad)}"
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        return "--steps and --threads must be >= 1, --warmup >= 0"
    return None


SUBCOMMANDS = (_add_throughput_parser,)
