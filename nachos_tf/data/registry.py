"""Dataset names: the names :func:`nachos_tf.data.load` understands and the reader behind each one."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

from nachos_tf.errors import DataError

from .cifar import load_cifar10
from .dataset import Dataset, PathLike
from .folder import load_folder
from .idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_idx_folder
from .npz import load_npz

__all__ = ["DATASETS", "dataset_key", "read_dataset"]

#: Dataset names :func:`nachos_tf.data.load` understands.
DATASETS: Tuple[str, ...] = ("fashion_mnist", "mnist", "cifar10", "npz", "folder")

_ALIASES = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "image_folder": "folder"}


def dataset_key(name: str) -> str:
    """The canonical name of dataset ``name``: case, surrounding blanks, dashes and a few aliases are forgiven.

    Args:
        name: a dataset name such as ``"Fashion-MNIST"``, ``"cifar-10"`` or ``"npz"``.

    Returns:
        One of :data:`DATASETS`.

    Raises:
        DataError: ``name`` is not a known dataset.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return key


def read_dataset(key: str, where: PathLike, val_fraction: float, seed: int, test_fraction: float) -> Dataset:
    """Read dataset ``key`` from local files with the reader of its format.

    Args:
        key: a canonical name from :data:`DATASETS` (see :func:`dataset_key`).
        where: for ``fashion_mnist`` the folder already located (see
            :func:`nachos_tf.data.find_fashion_mnist`); otherwise the file or folder given by the user.
        val_fraction: fraction of the training set held out per class as validation.
        seed: seed of that split.
        test_fraction: test fraction of a ``folder`` without a test/ sub-folder.

    Returns:
        The :class:`~nachos_tf.data.Dataset`.

    Raises:
        DataError: unknown ``key`` or any malformed or missing file (naming the file).
        OSError: a file-system failure the readers did not name (:func:`nachos_tf.data.load` turns it
            into a DataError).
    """
    key = dataset_key(key)
    if key == "fashion_mnist":
        return load_idx_folder(Path(where), "fashion_mnist", FASHION_MNIST_CLASSES, val_fraction, seed)
    if key == "mnist":
        return load_idx_folder(Path(where).expanduser(), "mnist", MNIST_CLASSES, val_fraction, seed)
    if key == "cifar10":
        return load_cifar10(where, val_fraction, seed)
    if key == "npz":
        return load_npz(where, val_fraction, seed)
    return load_folder(where, val_fraction, seed, test_fraction)
