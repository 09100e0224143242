"""How fast the Playground's models learn a toy set: validation accuracy every ``--every`` steps.

    python scripts/playground_learning.py spirals --steps 1200 --models node,anode,deq,homoode
    python scripts/playground_learning.py spirals --steps 600 --set depth=2 --set lr=0.02

Trains without the page (one thread, seeded, so the figures repeat), with the Playground's own settings
(``explorer.playground.PlaygroundSettings``) and any ``--set name=value`` changes.
"""

from __future__ import annotations

import argparse
import time

import torch

from core.training import Trainer
from explorer.playground import PlaygroundSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--models", default="node,homoode")
    parser.add_argument("--set", action="append", default=[], help="a setting, e.g. lr=0.02 or hidden=64")
    args = parser.parse_args()
    torch.set_num_threads(1)
    changes: dict[str, object] = {}
    for item in args.set:
        name, _, raw = item.partition("=")
        default = getattr(PlaygroundSettings(), name)
        changes[name] = type(default)(raw) if default is not None else float(raw)
    for family in args.models.split(","):
        settings = PlaygroundSettings(dataset=args.dataset, models=(family,), **changes)
        trainer = Trainer(settings.train_config(family))
        accs, t0 = [], time.perf_counter()
        for i in range(args.steps):
            trainer.step()
            if (i + 1) % args.every == 0:
                accs.append(round(trainer.validate().accuracy, 3))
        ms = 1000 * (time.perf_counter() - t0) / args.steps
        print(f"{args.dataset} {family} {changes or ''} val acc every {args.every}: {accs} ({ms:.0f} ms/step)")


if __name__ == "__main__":
    main()
