"""Readers for the standard files of MNIST-like (IDX), CIFAR (python pickles) and SVHN (.mat) datasets.

Plain numpy / gzip / pickle / scipy, no torchvision dataset classes: they are fast, testable on small
fixtures, and fail with our own messages. Every reader returns uint8 images (N, C, H, W) and int64
labels (N,), exactly as stored.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

Split = tuple[np.ndarray, np.ndarray]  # images uint8 (N, C, H, W), labels int64 (N,)

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); all multi-byte types are big-endian.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: file stems of an MNIST-like dataset; each may be stored as is or with a ".gz" suffix.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetUnavailable(RuntimeError):
    """A dataset's files are not on this machine (or could not be fetched); the message says how to get them."""


class FormatError(DatasetUnavailable):
    """A dataset file exists but does not hold what its format promises."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped when the name ends in .gz) into an array of its stored shape and type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise FormatError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise FormatError(f"{path}: header promises shape {shape} ({expected} bytes), found {len(data) - offset}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def idx_path(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem`` (torchvision keeps both), whichever exists."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx_files(folder: Path) -> bool:
    return all(idx_path(folder, stem) is not None for pair in IDX_FILES.values() for stem in pair)


def load_idx_split(folder: Path, split: str) -> Split:
    """One split ("train" or "test") of an MNIST-like folder: images (N, 1, 28, 28), labels (N,)."""
    image_stem, label_stem = IDX_FILES[split]
    image_file, label_file = idx_path(folder, image_stem), idx_path(folder, label_stem)
    if image_file is None or label_file is None:
        raise FileNotFoundError(f"{folder} lacks {image_stem}[.gz] or {label_stem}[.gz]")
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FormatError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return np.ascontiguousarray(images[:, None], dtype=np.uint8), labels.astype(np.int64)


_NUMPY_MAJOR = int(np.__version__.split(".")[0])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a pickle from the internet cannot run code."""

    _ALLOWED: ClassVar[frozenset[str]] = frozenset({"_reconstruct", "ndarray", "dtype", "_frombuffer", "scalar"})

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in self._ALLOWED:
            # numpy >= 2 renamed numpy.core to numpy._core; old pickles (CIFAR's) name the former.
            if _NUMPY_MAJOR >= 2:
                module = module.replace("numpy.core", "numpy._core")
            return super().find_class(module, name)
        if (module, name) in (("_codecs", "encode"), ("codecs", "encode")):
            # Python 3 writes bytes into protocol-2 pickles as codecs.encode(text, "latin1"): a pure function.
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not a plain numpy array")


def unpickle(data: bytes) -> dict[str, Any]:
    """A CIFAR batch (pickled by Python 2, byte-string keys) as a dict with str keys."""
    obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(obj, dict):
        raise FormatError(f"expected a pickled dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_members(source: Path, folder: str, names: list[str], optional: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Files ``folder/<name>`` from a directory holding ``folder`` or from a .tar.gz archive of it.

    ``optional`` names are returned when present. A tar.gz is read in one pass (random access into a
    gzip stream would re-decompress it for every member).
    """
    found: dict[str, bytes] = {}
    if source.is_dir():
        for name in [*names, *optional]:
            if (source / folder / name).is_file():
                found[name] = (source / folder / name).read_bytes()
    else:
        wanted = {f"{folder}/{name}": name for name in [*names, *optional]}
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:
                key = member.name.removeprefix("./")
                if key in wanted and (handle := tar.extractfile(member)) is not None:
                    found[wanted[key]] = handle.read()
    missing = [name for name in names if name not in found]
    if missing:
        raise FormatError(f"{source} lacks {', '.join(f'{folder}/{m}' for m in missing)}")
    return found


def _cifar_images(data: Any, where: str) -> np.ndarray:
    # Rows are 3072 bytes: the 1024 red, then green, then blue values of a 32x32 image, row-major.
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise FormatError(f"{where}: expected uint8 rows of 3072 pixels, got {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32)


CIFAR10_FOLDER, CIFAR10_TRAIN = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
CIFAR100_FOLDER = "cifar-100-python"


def load_cifar10(source: Path) -> tuple[Split, Split, list[str] | None]:
    """CIFAR-10 from a directory holding ``cifar-10-batches-py/`` or from ``cifar-10-python.tar.gz``.

    Returns train (50000 in the real set), test (10000) and the class names of ``batches.meta`` (None
    when that file is absent).
    """
    names = [*CIFAR10_TRAIN, "test_batch"]
    files = read_members(source, CIFAR10_FOLDER, names, optional=("batches.meta",))
    class_names = None
    if "batches.meta" in files:
        class_names = [n.decode() for n in unpickle(files["batches.meta"])["label_names"]]
    batches = {name: unpickle(files[name]) for name in names}

    def join(keys: list[str]) -> Split:
        images = np.concatenate([_cifar_images(batches[k]["data"], k) for k in keys])
        labels = np.concatenate([np.asarray(batches[k]["labels"], dtype=np.int64) for k in keys])
        return images, labels

    return join(CIFAR10_TRAIN), join(["test_batch"]), class_names


def load_cifar100(source: Path) -> tuple[Split, Split, list[str] | None]:
    """CIFAR-100 (fine labels, 100 classes) from ``cifar-100-python/`` or ``cifar-100-python.tar.gz``."""
    files = read_members(source, CIFAR100_FOLDER, ["train", "test"], optional=("meta",))
    class_names = None
    if "meta" in files:
        class_names = [n.decode() for n in unpickle(files["meta"])["fine_label_names"]]

    def split(key: str) -> Split:
        batch = unpickle(files[key])
        return _cifar_images(batch["data"], key), np.asarray(batch["fine_labels"], dtype=np.int64)

    return split("train"), split("test"), class_names


SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def load_svhn_split(path: Path) -> Split:
    """An SVHN cropped-digits .mat file: X (32, 32, 3, N) uint8 and y (N, 1) with digit 0 stored as 10."""
    from scipy.io import loadmat  # scipy.io is slow to import and only SVHN needs it

    mat = loadmat(path)
    if "X" not in mat or "y" not in mat:
        raise FormatError(f"{path} has no X and y arrays")
    images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
    labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    labels[labels == 10] = 0
    if len(images) != len(labels) or images.shape[1:] != (3, 32, 32):
        raise FormatError(f"{path}: X {mat['X'].shape} and y {mat['y'].shape} do not match")
    return images, labels
