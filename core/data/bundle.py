"""One entry point, ``load_dataset``: train / val / test tensors in memory, normalised, with metadata."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..checks import check_positive_int
from .formats import Split
from .sources import DATASETS, DatasetInfo, check_name, load_files
from .toy import TOY_SETS, make_toy

DIGITS_ASSET = "assets/digits.npz"  # relative to the ``core`` package
TEST_ORDER_SEED = (0, 4)  # seed of the test split's class-balanced order: fixed, whatever the split_seed


def load_digits() -> tuple[Split, Split, str]:
    """The bundled 10,000 MNIST digits: train (8000, 1, 28, 28) and test (2000, 1, 28, 28) uint8 with int64
    labels, and the asset's source note. Built by scripts/build_digits.py; see core/assets/DIGITS_LICENSE.txt.
    """
    with resources.files("core").joinpath(DIGITS_ASSET).open("rb") as handle, np.load(handle) as npz:
        arrays = {key: npz[key] for key in npz.files}

    def split(prefix: str) -> Split:
        return arrays[f"{prefix}_images"][:, None].copy(), arrays[f"{prefix}_labels"].astype(np.int64)

    return split("train"), split("test"), str(arrays["source"])


def stratified_split(labels: np.ndarray, n_first: int, seed: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into ``n_first`` and the rest, each class in proportion to its count.

    Class quotas are rounded by largest remainder (ties to the lower class), so the first part has exactly
    ``n_first`` indices. Both parts come back sorted; the same (labels, n_first, seed) gives the same split.
    """
    labels = np.asarray(labels)
    if not 0 <= n_first <= len(labels):
        raise ValueError(f"cannot take {n_first} of {len(labels)} examples")
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_first / len(labels)
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_first - int(take.sum())]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    first = np.sort(np.concatenate(chosen)).astype(np.int64)
    return first, np.setdiff1d(np.arange(len(labels)), first)


BALANCE_TOLERANCE = 1.5  # balanced_order's bound on |count_c(first n) - n p_c|


def balanced_order(labels: np.ndarray, seed: int | list[int]) -> np.ndarray:
    """A seeded permutation of 0..N-1 in which every prefix is a stratified sample of ``labels``.

    Guarantee: for every prefix length n and class c, the count of c among the first n items differs
    from n · p_c (p_c = the class's share of ``labels``) by at most ``BALANCE_TOLERANCE`` (1.5).

    Each class is shuffled; the k-th of its n_c items gets the key (k + u) / n_c with u ~ U(0, 1), and
    items are sorted by key: a random-looking interleaving, within 1 + p_c (C - 2) of the share (so well
    inside the bound for near-balanced classes). When one class dominates many small ones that can drift
    further; then the class sequence is Tijdeman's "chairman assignment" instead (earliest deadline first,
    deviation below 1 whatever the class sizes; ties broken by a seeded class priority), filled with each
    class's shuffled items. The same (labels, seed) gives the same order.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(counts))]
    keys = np.empty(len(labels), dtype=np.float64)
    for items in members:
        keys[items] = (np.arange(len(items)) + rng.random(len(items))) / len(items)
    order = np.argsort(keys, kind="stable").astype(np.int64)
    if _prefix_deviation(inverse[order], counts) <= BALANCE_TOLERANCE:
        return order
    sequence = _chairman_sequence(counts, rng.permutation(len(counts)))
    for c, items in enumerate(members):
        order[sequence == c] = items
    return order


def _prefix_deviation(classes: np.ndarray, counts: np.ndarray) -> float:
    """max over n and c of |#c in classes[:n] - n · p_c| (classes: 0..C-1 in their order)."""
    n = np.arange(1, len(classes) + 1)
    share = counts / max(len(classes), 1)
    return max((float(np.abs(np.cumsum(classes == c) - n * p).max()) for c, p in enumerate(share)), default=0.0)


def _chairman_sequence(counts: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Classes 0..C-1 in a sequence with every prefix count within 1 - 1/(2C - 2) of its share.

    Tijdeman (1980): item j (1-based) of class c may not come before step ceil((j - s) / p_c) and is due
    at step (j - 1 + s) / p_c, s = 1 - 1/(2C - 2); earliest deadline first meets every due step.
    """
    C, n = len(counts), int(counts.sum())
    if C == 1:
        return np.zeros(n, dtype=np.int64)
    a, b = 2 * C - 3, 2 * C - 2  # s = a / b
    cls = np.repeat(np.arange(C), counts)
    j = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    release = np.maximum(-((a - j * b) * n // (counts[cls] * b)), 1)  # integer ceil
    deadline = ((j - 1) * b + a) / counts[cls]
    by_release = np.argsort(release, kind="stable")
    heap: list[tuple[float, int, int]] = []
    sequence = np.empty(n, dtype=np.int64)
    pending = 0
    for step in range(1, n + 1):
        while pending < n and release[by_release[pending]] <= step:
            item = by_release[pending]
            heapq.heappush(heap, (deadline[item], priority[cls[item]], cls[item]))
            pending += 1
        sequence[step - 1] = heapq.heappop(heap)[2]
    return sequence


def random_crop_flip(
    x: torch.Tensor, pad: int, flip: bool, fill: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop of the same size from ``x`` padded by ``pad`` (with ``fill``), optionally mirrored.

    Args:
        x: (B, C, H, W) images.
        pad: border width; offsets are uniform in 0..2·pad per image and axis.
        flip: mirror each image left-right with probability 1/2.
        fill: (C,) padding value per channel (the normalised value of a black pixel, as torchvision's
            RandomCrop pads before normalising).
        generator: source of randomness (CPU).

    Returns:
        (B, C, H, W) augmented copy.
    """
    B, C, H, W = x.shape
    padded = fill.to(x).view(1, C, 1, 1).expand(B, C, H + 2 * pad, W + 2 * pad).clone()
    padded[:, :, pad : pad + H, pad : pad + W] = x
    oy = torch.randint(0, 2 * pad + 1, (B, 1), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (B, 1), generator=generator)
    rows = oy + torch.arange(H)  # (B, H)
    cols = ox + torch.arange(W)  # (B, W)
    if flip:
        # A mirrored crop reads its columns right to left: fold the flip into the gather.
        mirrored = torch.rand(B, 1, generator=generator) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    batch = torch.arange(B)[:, None, None]
    # Advanced indices split by the channel slice put (B, H, W) first: (B, H, W, C).
    # The offsets come from the (CPU) generator, as before, so a run's crops do not depend on the device.
    dev = x.device
    out = padded[batch.to(dev), :, rows[:, :, None].to(dev), cols[:, None, :].to(dev)]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation of 32x32 colour images: random crop with ``pad`` and optional flip."""

    pad: int = 4
    flip: bool = True
    fill: tuple[float, ...] = (0.0, 0.0, 0.0)


class InMemoryDataset(Dataset):
    """Inputs (N, *input_shape) float32 and targets (N,) int64 held as tensors.

    A torch ``Dataset``: ``DataLoader(bundle.train, batch_size=128, shuffle=True)`` batches it for a loop of
    one's own (core's ``Trainer`` indexes the tensors directly, faster). With an ``augmentation`` each item is
    randomly cropped / flipped on access, from the dataset's own seeded generator; in a DataLoader worker it
    is reseeded from the worker's seed, so workers do not replay each other's crops. The tensors ``inputs``
    and ``targets`` stay unaugmented and may be read directly for fast evaluation.
    """

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, augmentation: Augmentation | None = None, seed: int = 0
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs
        self.targets = targets
        self.augmentation = augmentation
        self._fill = torch.tensor(augmentation.fill if augmentation else (), dtype=inputs.dtype)
        self.generator = torch.Generator().manual_seed(seed)
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs[index]
        if self.augmentation is not None:
            worker = get_worker_info()
            if worker is not None and worker.seed != self._worker_seed:  # this copy lives in a new worker
                self._worker_seed = worker.seed
                self.generator.manual_seed(worker.seed % 2**63)
            aug = self.augmentation
            x = random_crop_flip(x[None], aug.pad, aug.flip, self._fill, self.generator)[0]
        return x, self.targets[index]


@dataclass(frozen=True)
class DataBundle:
    """Train / val / test datasets of one dataset and what a model and a UI need to know about it.

    Attributes:
        name: registry name.
        train, val, test: ``InMemoryDataset``s; inputs (N, 2) for points, (N, 1, 28, 28) or
            (N, 3, 32, 32) normalised images; targets (N,) int64. Each split is in a seeded class-balanced
            order (``balanced_order``): every prefix (``x[:n]``) is a stratified sample of the split.
        num_classes, input_kind, class_names: for ``ModelConfig`` and labels.
        source: which file, folder or generator the data came from.
        mean, std: per-channel normalisation applied (x - mean) / std to pixels in [0, 1].
        augment: whether the train split is augmented.
        split_seed: seed of the validation split (and of toy generation, subsets, augmentation and the
            train / val order; not of the test order).
    """

    name: str
    train: InMemoryDataset
    val: InMemoryDataset
    test: InMemoryDataset
    num_classes: int
    input_kind: str
    class_names: tuple[str, ...]
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    split_seed: int = 0

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.inputs.shape[1:])

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: (B, C, H, W) images back to pixels in [0, 1] (points are unchanged)."""
        if self.input_kind == "points":
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return x * std + mean

    def summary(self) -> str:
        sizes = " / ".join(f"{n:,}" for n in self.sizes.values())
        aug = ", train augmented" if self.augment else ""
        return (
            f"{self.name}: {sizes} train/val/test, {self.num_classes} classes, input {self.input_kind} "
            f"{self.input_shape}{aug}; {self.source}"
        )


def _normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C, H, W) of (pixel / 255 - mean) / std, in place to spare memory."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    x.sub_(torch.tensor(mean).view(1, -1, 1, 1)).div_(torch.tensor(std).view(1, -1, 1, 1))
    return x


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_fraction: float | None = None,
    split_seed: int = 0,
    augment: bool = False,
    download: bool = False,
    train_limit: int | None = None,
    toy_size: int = 1000,
    toy_noise: float | None = None,
) -> DataBundle:
    """Load a dataset by name, split it and normalise it.

    Names: toy sets ``circles``, ``moons``, ``spirals``, ``crossing`` (generated; train and test have
    ``toy_size`` points, val ``round(toy_size * val_fraction)``, each from its own seed stream of
    ``split_seed``; not normalised); ``digits`` (bundled 10,000 MNIST digits: fixed 8,000 / 2,000
    train / test, val carved from train, default 7,000 / 1,000 / 2,000); ``mnist``, ``fashion-mnist``,
    ``cifar10``, ``cifar100``, ``svhn`` (standard files, see ``core.data.sources``).

    Every split comes back in a seeded class-balanced order (``balanced_order``): any prefix, such as the
    first ``eval_batches`` batches of val or a gallery of the first N test images, is a stratified sample
    (each class count within 1.5 of its proportional share), even though the files store classes in runs.
    Which examples a split holds does not depend on this order.

    Args:
        name: one of ``DATASET_NAMES``.
        data_dir: folder holding the standard files (default ``$IMPLICIT_EXPLORER_DATA`` or
            ``~/.cache/implicit-explorer/data``); also where ``download`` puts them.
        val_fraction: share of the training split held out for validation, stratified by class and
            drawn with ``split_seed``; None: the dataset's default (0.1; digits 0.125; toy sets 0.2).
        split_seed: seed of the validation split, of the ``train_limit`` subset, of toy generation, of
            augmentation and of the train / val order. The test split never depends on it (its order
            comes from a fixed seed).
        augment: random crop (pad 4) + horizontal flip of the train split, for the 32x32 colour sets
            (SVHN: crop only, a mirrored digit is another glyph).
        download: let torchvision fetch missing files (needs internet); never done otherwise.
        train_limit: keep at most this many training examples (a stratified, seeded subset), for quick
            runs. Validation and test stay whole: a limit on them would change what a run's accuracy
            means (cap validation's cost with ``TrainConfig.eval_batches`` instead).
        toy_size, toy_noise: size and noise of generated toy sets (noise None: the set's default).

    Returns:
        A ``DataBundle``.

    Raises:
        ValueError: unknown name (the message lists valid ones) or bad option.
        DatasetUnavailable: the files are missing or unreadable; the message says how to get them.
    """
    info = check_name(name)
    frac = info.val_fraction if val_fraction is None else val_fraction
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 <= frac < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {frac!r}")
    check_positive_int(split_seed, "split_seed", 0)
    if train_limit is not None:
        check_positive_int(train_limit, "train_limit", 1)
    if augment and info.input_kind != "image32":
        colour = ", ".join(n for n, i in DATASETS.items() if i.input_kind == "image32")
        raise ValueError(f"augment=True is for the 32x32 colour sets ({colour}), not {name!r}")

    if info.kind == "toy":
        splits, source = _toy_splits(name, frac, split_seed, train_limit, toy_size, toy_noise)
    else:
        splits, source, info = _image_splits(info, data_dir, frac, split_seed, train_limit, download, toy_size)

    augmentation = None
    if augment:
        fill = tuple(-m / s for m, s in zip(info.mean, info.std))
        augmentation = Augmentation(pad=4, flip=info.flip, fill=fill)
    datasets = {
        key: InMemoryDataset(x, y, augmentation if key == "train" else None, seed=split_seed)
        for key, (x, y) in splits.items()
    }
    return DataBundle(
        name=name,
        num_classes=info.num_classes,
        input_kind=info.input_kind,
        class_names=info.class_names,
        source=source,
        mean=info.mean,
        std=info.std,
        augment=augment,
        split_seed=split_seed,
        **datasets,
    )


Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _toy_splits(
    name: str, frac: float, split_seed: int, train_limit: int | None, toy_size: int, toy_noise: float | None
) -> tuple[Splits, str]:
    """Generated train / val / test points (each from its own seed stream), each in balanced order."""
    check_positive_int(toy_size, "toy_size", 1)
    n_val = round(toy_size * frac)
    noise = TOY_SETS[name][0] if toy_noise is None else toy_noise
    parts = [
        make_toy(name, n, noise, seed=[split_seed, stream]) if n > 0 else _empty_points()
        for stream, n in enumerate((toy_size, n_val, toy_size))
    ]
    tensors = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in parts]
    if train_limit is not None:
        tensors[0] = _subset(*tensors[0], train_limit, split_seed)
    source = f"generated {name} ({TOY_SETS[name][2]}; noise {noise}, seed {split_seed})"
    splits = {}
    for key, (x, y) in zip(("train", "val", "test"), tensors):
        order = torch.from_numpy(balanced_order(y.numpy(), _order_seed(key, split_seed)))
        splits[key] = (x[order], y[order])
    return splits, source


def _image_splits(
    info: DatasetInfo,
    data_dir: str | Path | None,
    frac: float,
    split_seed: int,
    train_limit: int | None,
    download: bool,
    toy_size: int,
) -> tuple[Splits, str, DatasetInfo]:
    """An image set's train / val (stratified from the training files) / test splits, normalised, each in
    balanced order; with the source and the info (class names from the files' own metadata)."""
    if info.kind == "bundled":
        train, test, note = load_digits()
        source = f"bundled core/{DIGITS_ASSET} ({note})"
    elif info.kind == "synthetic":
        check_positive_int(toy_size, "toy_size", 1)
        train, test = (_random_images(toy_size, info, [split_seed, 4 + k]) for k in range(2))
        source = f"generated {info.name}: uniform noise, random labels ({toy_size} train, {toy_size} test)"
    else:
        train, test, class_names, source = load_files(info.name, data_dir, download)
        info = _with_class_names(info, class_names)
    (images, labels), (test_images, test_labels) = train, test
    val_idx, train_idx = stratified_split(labels, round(len(labels) * frac), [split_seed, 0])
    picks = {
        "train": (images, labels, train_idx),
        "val": (images, labels, val_idx),
        "test": (test_images, test_labels, np.arange(len(test_labels))),
    }
    splits = {}
    for key, (pool, pool_labels, idx) in picks.items():
        y = pool_labels[idx]
        if key == "train" and train_limit is not None and train_limit < len(y):
            keep = stratified_split(y, train_limit, [split_seed, 1])[0]
            idx, y = idx[keep], y[keep]
        order = balanced_order(y, _order_seed(key, split_seed))
        idx, y = idx[order], y[order]  # index once: the 32x32 sets are big
        splits[key] = (_normalise(pool[idx], info.mean, info.std), torch.from_numpy(np.ascontiguousarray(y)))
    return splits, source, info


def _random_images(n: int, info: DatasetInfo, seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``info``'s shape, uniform noise, and uniform random labels."""
    rng = np.random.default_rng(seed)
    shape = {"image28": (1, 28, 28), "image32": (3, 32, 32)}[info.input_kind]
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, info.num_classes, n).astype(np.int64)


def _order_seed(split: str, split_seed: int) -> list[int]:
    # Streams 0 and 1 of split_seed draw the val split and the train_limit subset; 2 and 3 order train and val.
    return list(TEST_ORDER_SEED) if split == "test" else [split_seed, {"train": 2, "val": 3}[split]]


def _empty_points() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int64)


def _subset(x: torch.Tensor, y: torch.Tensor, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if limit >= len(y):
        return x, y
    keep = torch.from_numpy(stratified_split(y.numpy(), limit, [seed, 1])[0])
    return x[keep], y[keep]


def _with_class_names(info: DatasetInfo, class_names: list[str]) -> DatasetInfo:
    # Names from the files' own metadata (CIFAR's meta) win over the built-in list.
    return replace(info, class_names=tuple(class_names)) if len(class_names) == info.num_classes else info


__all__ = [
    "BALANCE_TOLERANCE",
    "DIGITS_ASSET",
    "Augmentation",
    "DataBundle",
    "InMemoryDataset",
    "balanced_order",
    "load_dataset",
    "load_digits",
    "random_crop_flip",
    "stratified_split",
]
