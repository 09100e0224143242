"""Datasets for the implicit models: seeded 2-D toy sets, a bundled real digit set, and full image sets.

======================  ==========  =====================================================================
name                    input_kind  source
======================  ==========  =====================================================================
circles moons spirals   points      generated (``make_toy``), 2 classes
crossing                points      generated: the 1-D g(±1) = ∓1 problem as points (x, 0)
digits                  image28     bundled: 10,000 real MNIST digits in core/assets/digits.npz
mnist fashion-mnist     image28     IDX files in a data folder (Fashion-MNIST also from Debian's
                                    dataset-fashion-mnist), or torchvision download
cifar10 cifar100 svhn   image32     pickles / .mat files in a data folder, or torchvision download
======================  ==========  =====================================================================

Example::

    from torch.utils.data import DataLoader
    from core.data import load_dataset
    bundle = load_dataset("digits", split_seed=0)          # 7,000 / 1,000 / 2,000, offline
    x, y = next(iter(DataLoader(bundle.train, batch_size=128, shuffle=True)))  # (128, 1, 28, 28), (128,)

Command line: ``python -m core.data NAME [--data-dir DIR] [--download]`` loads NAME (fetching it when
asked) and prints its summary; ``python -m core.data --list`` shows which sets are available here.
"""

from .bundle import (
    DIGITS_ASSET,
    Augmentation,
    DataBundle,
    InMemoryDataset,
    balanced_order,
    load_dataset,
    load_digits,
    random_crop_flip,
    stratified_split,
)
from .formats import DatasetUnavailable, FormatError
from .sources import DATASET_NAMES, DATASETS, DatasetInfo, default_data_dir, is_available
from .sources import check_name as dataset_info
from .toy import TOY_SETS, make_toy

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DIGITS_ASSET",
    "TOY_SETS",
    "Augmentation",
    "DataBundle",
    "DatasetInfo",
    "DatasetUnavailable",
    "FormatError",
    "InMemoryDataset",
    "balanced_order",
    "dataset_info",
    "default_data_dir",
    "is_available",
    "load_dataset",
    "load_digits",
    "make_toy",
    "random_crop_flip",
    "stratified_split",
]
