"""Where each dataset comes from: the registry of names, file discovery, torchvision download, errors.

Search order for a file-backed set: the user's data directory (``data_dir``, else ``$IMPLICIT_EXPLORER_DATA``,
else ``~/.cache/implicit-explorer/data``) and its usual subfolders, then the same subfolders of the system data
folders (``$IMPLICIT_EXPLORER_SYSTEM_DATA``, else ``/usr/share/datasets``, where the Debian package
``dataset-fashion-mnist`` puts Fashion-MNIST), then, only when asked (``download=True``), torchvision's
download into that data directory.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import formats
from .formats import DatasetUnavailable, Split
from .toy import TOY_SETS

DATA_ENV = "IMPLICIT_EXPLORER_DATA"
#: Folders (separated by os.pathsep) searched after the data directory, each laid out like Debian's
#: /usr/share/datasets (one subfolder per set). Set but empty: no system folder is searched (the test suite
#: does this, so that it never depends on what happens to be installed).
SYSTEM_DATA_ENV = "IMPLICIT_EXPLORER_SYSTEM_DATA"
DEFAULT_SYSTEM_DATA = (Path("/usr/share/datasets"),)

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Fine labels in index order (alphabetical), as in cifar-100-python/meta; used when meta is absent.
CIFAR100_NAMES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel
    can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
    dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
    lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree
    pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea
    seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table
    tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman
    worm""".split()
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset name means.

    Attributes:
        name: registry key.
        title: human name.
        kind: "toy" (generated points), "bundled" (core/assets), "files" (standard files / torchvision) or
            "synthetic" (seeded uniform noise with random labels: speed and memory, never accuracy).
        input_kind: "points", "image28" or "image32" (see ``core.INPUT_KINDS``).
        class_names: one per class.
        mean, std: per-channel normalisation of pixels in [0, 1] (identity for toy sets).
        val_fraction: default share of the training data held out for validation.
        flip: whether augmentation may flip horizontally (not for digits: a mirrored 2 is no 2).
        files: the standard files, for messages.
    """

    name: str
    title: str
    kind: str
    input_kind: str
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val_fraction: float = 0.1
    flip: bool = True
    files: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_IDX_LIST = (
    "the IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz (gzipped or not)"
)
# Standard statistics of each training set (pixels in [0, 1]); "digits" uses MNIST's so models move freely
# between the bundled subset and the full set.
_MNIST_STATS = ((0.1307,), (0.3081,))

DATASETS: dict[str, DatasetInfo] = {
    **{
        name: DatasetInfo(name, f"{name} (toy)", "toy", "points", names, (0.0, 0.0), (1.0, 1.0), 0.2)
        for name, (_, names, _) in TOY_SETS.items()
    },
    "digits": DatasetInfo(
        "digits",
        "MNIST digits (bundled 10k)",
        "bundled",
        "image28",
        DIGIT_NAMES,
        *_MNIST_STATS,
        val_fraction=0.125,  # 8,000 bundled training digits -> 7,000 / 1,000
        flip=False,
    ),
    "mnist": DatasetInfo("mnist", "MNIST", "files", "image28", DIGIT_NAMES, *_MNIST_STATS, files=_IDX_LIST),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", "files", "image28", FASHION_NAMES, (0.2860,), (0.3530,), files=_IDX_LIST
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        "CIFAR-10",
        "files",
        "image32",
        CIFAR10_NAMES,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        files="the folder cifar-10-batches-py/ (data_batch_1 ... data_batch_5, test_batch) or cifar-10-python.tar.gz",
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        "CIFAR-100",
        "files",
        "image32",
        CIFAR100_NAMES,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        files="the folder cifar-100-python/ (train, test, meta) or cifar-100-python.tar.gz",
    ),
    "svhn": DatasetInfo(
        "svhn",
        "SVHN (cropped digits)",
        "files",
        "image32",
        DIGIT_NAMES,
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        flip=False,
        files="the files train_32x32.mat and test_32x32.mat",
    ),
    "random32": DatasetInfo(
        "random32",
        "random CIFAR-shaped images (benchmarks, device checks)",
        "synthetic",
        "image32",
        CIFAR10_NAMES,
        (0.5, 0.5, 0.5),
        (0.2887, 0.2887, 0.2887),  # uniform pixels: std 1/sqrt(12)
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)

# Subfolders of the data directory tried before the directory itself ("MNIST/raw" is torchvision's layout).
_SUBFOLDERS = {
    "mnist": ["mnist", "MNIST/raw", "MNIST"],
    "fashion-mnist": ["fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"],
    "svhn": ["svhn", "SVHN"],
}
_HOW_TO = {
    "mnist": "from http://yann.lecun.com/exdb/mnist/ or a mirror",
    "fashion-mnist": "from https://github.com/zalandoresearch/fashion-mnist, or offline on Debian/Ubuntu with "
    "`apt-get install dataset-fashion-mnist` (installs them in /usr/share/datasets/fashion-mnist, searched "
    f"automatically unless ${SYSTEM_DATA_ENV} names other folders)",
    "cifar10": "from https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "from https://www.cs.toronto.edu/~kriz/cifar.html",
    "svhn": "from http://ufldl.stanford.edu/housenumbers/",
}


def check_name(name: str) -> DatasetInfo:
    """The registry entry of ``name``; ValueError listing the valid names otherwise."""
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(str(name), DATASET_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; expected one of {', '.join(DATASET_NAMES)}")
    return DATASETS[name]


def default_data_dir() -> Path:
    """``$IMPLICIT_EXPLORER_DATA`` or ``~/.cache/implicit-explorer/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "implicit-explorer" / "data"


def system_data_dirs() -> list[Path]:
    """``$IMPLICIT_EXPLORER_SYSTEM_DATA`` (os.pathsep-separated; empty: none) or ``/usr/share/datasets``."""
    env = os.environ.get(SYSTEM_DATA_ENV)
    if env is None:
        return list(DEFAULT_SYSTEM_DATA)
    return [Path(part).expanduser() for part in env.split(os.pathsep) if part]


def candidate_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    """Folders searched for ``name``'s files, in order (they need not exist)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if name in ("cifar10", "cifar100"):
        # The folder holding cifar-10-batches-py/ or the tarball; also accept the batch folder itself.
        folder = formats.CIFAR10_FOLDER if name == "cifar10" else formats.CIFAR100_FOLDER
        return [root, *([root.parent] if root.name == folder else [])]
    system = [folder / sub for folder in system_data_dirs() for sub in _SUBFOLDERS[name]]
    return [root / sub for sub in _SUBFOLDERS[name]] + [root] + system


def locate(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder (or CIFAR tarball) holding ``name``'s standard files, or None."""
    for folder in candidate_dirs(name, data_dir):
        if name in ("mnist", "fashion-mnist") and formats.has_idx_files(folder):
            return folder
        if name == "svhn" and all((folder / f).is_file() for f in formats.SVHN_FILES.values()):
            return folder
        if name == "cifar10":
            if (folder / formats.CIFAR10_FOLDER / "test_batch").is_file():
                return folder
            if (folder / "cifar-10-python.tar.gz").is_file():
                return folder / "cifar-10-python.tar.gz"
        if name == "cifar100":
            if (folder / formats.CIFAR100_FOLDER / "test").is_file():
                return folder
            if (folder / "cifar-100-python.tar.gz").is_file():
                return folder / "cifar-100-python.tar.gz"
    return None


def is_available(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether ``load_dataset(name, data_dir)`` would find its data without downloading."""
    info = check_name(name)
    return info.kind != "files" or locate(name, data_dir) is not None


def unavailable_message(name: str, data_dir: str | Path | None) -> str:
    """One paragraph: what was searched, which files are expected, and every way to get them."""
    info = DATASETS[name]
    searched = ", ".join(str(d) for d in dict.fromkeys(candidate_dirs(name, data_dir)))
    dir_arg = f" --data-dir {data_dir}" if data_dir is not None else ""
    return (
        f"{info.title} ({name!r}) is not available: expected {info.files} in one of these folders: {searched} "
        f"(none has them). Get the files {_HOW_TO[name]} and put them in one of those folders, or pass "
        f"data_dir= (command line: --data-dir) naming the folder that holds them (default: ${DATA_ENV} or "
        f"~/.cache/implicit-explorer/data); or let torchvision download them (needs internet): "
        f"load_dataset({name!r}, download=True) or `python -m core.data {name} --download{dir_arg}`. "
        "The bundled 'digits' set (10,000 real MNIST digits) works offline with no files."
    )


def download(name: str, data_dir: str | Path | None) -> None:
    """Fetch ``name`` with torchvision into the data directory (its standard layout, which ``locate`` knows)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        import torchvision.datasets as tvd  # only here: importing torchvision costs seconds

        fetch: dict[str, Callable[[], object]] = {
            "mnist": lambda: tvd.MNIST(root, train=True, download=True),
            "fashion-mnist": lambda: tvd.FashionMNIST(root, train=True, download=True),
            "cifar10": lambda: tvd.CIFAR10(root, train=True, download=True),
            "cifar100": lambda: tvd.CIFAR100(root, train=True, download=True),
            "svhn": lambda: (tvd.SVHN(root, split="train", download=True), tvd.SVHN(root, split="test", download=True)),
        }
        fetch[name]()
    except Exception as error:  # network, disk, checksum: all end in the same advice
        # torchvision's messages span lines (one per mirror); keep them, on one line and bounded.
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"[:400]
        raise DatasetUnavailable(
            f"downloading {name!r} with torchvision into {root} failed ({reason}). " + unavailable_message(name, root)
        ) from None  # the message says it all; torchvision's traceback would only bury it


def load_files(name: str, data_dir: str | Path | None, allow_download: bool) -> tuple[Split, Split, list[str], str]:
    """Train and test splits of a file-backed set, its class names and a description of the source used."""
    info = check_name(name)
    source = locate(name, data_dir)
    if source is None and allow_download:
        download(name, data_dir)
        source = locate(name, data_dir)
    if source is None:
        raise DatasetUnavailable(unavailable_message(name, data_dir))
    try:
        if name in ("mnist", "fashion-mnist"):
            train, test = formats.load_idx_split(source, "train"), formats.load_idx_split(source, "test")
            class_names = None
        elif name == "cifar10":
            train, test, class_names = formats.load_cifar10(source)
        elif name == "cifar100":
            train, test, class_names = formats.load_cifar100(source)
        else:
            train = formats.load_svhn_split(source / formats.SVHN_FILES["train"])
            test = formats.load_svhn_split(source / formats.SVHN_FILES["test"])
            class_names = None
    except (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, tarfile.TarError) as error:
        raise formats.FormatError(f"{info.title} files in {source} could not be read: {error}") from error
    for split, (images, labels) in (("train", train), ("test", test)):
        if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
            raise formats.FormatError(f"{source}: {split} labels outside 0..{info.num_classes - 1}")
        if images.dtype != np.uint8:
            raise formats.FormatError(f"{source}: {split} images are {images.dtype}, expected uint8")
    return train, test, list(class_names or info.class_names), f"{info.title} from {source}"
