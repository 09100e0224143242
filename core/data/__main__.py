"""``python -m core.data NAME [--data-dir DIR] [--download]``: load (or fetch) a dataset and print its summary."""

from __future__ import annotations

import argparse
import sys

from . import DATASET_NAMES, DATASETS, DatasetUnavailable, default_data_dir, is_available, load_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__)
    parser.add_argument("name", nargs="?", choices=DATASET_NAMES, help="dataset to load")
    parser.add_argument("--data-dir", help=f"folder with the standard files (default {default_data_dir()})")
    parser.add_argument("--download", action="store_true", help="let torchvision fetch missing files (internet)")
    parser.add_argument("--list", action="store_true", help="list datasets and whether each is available")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for name, info in DATASETS.items():
            state = "available" if is_available(name, args.data_dir) else "missing"
            print(f"{name:14s} {info.input_kind:8s} {info.num_classes:3d} classes  {state:9s} {info.title}")
        return 0
    try:
        bundle = load_dataset(args.name, args.data_dir, download=args.download)
    except DatasetUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(bundle.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
