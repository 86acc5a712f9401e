"""Datasets as numpy arrays: Fashion-MNIST (the embedded default), MNIST, CIFAR-10, .npz and image folders.

Everything here reads local files only (nothing downloads) and returns a :class:`Dataset` with
float32 images holding raw pixel values (0..255) in NHWC order (always a channel axis), int32
labels, and a seeded, class-balanced validation split of the training set.  Any malformed input
raises :class:`~nachos_tf.errors.DataError` naming the file and what is wrong.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``; :func:`load` looks for it in
``path=``, then ``$NACHOS_DATA``, then :data:`SYSTEM_FASHION_MNIST_DIR`, then
:data:`FASHION_MNIST_CACHE_DIR` (where a non-root user can unpack the .deb with ``dpkg -x``).

The package, one job per module: ``dataset`` (the :class:`Dataset` container and its assembly),
``splits`` (stratified and balanced index selection), ``checks`` (label/class/count checks),
``idx``, ``cifar``, ``npz`` and ``folder`` (one reader per format), ``registry`` (dataset names and
the reader of each).  The entry point :func:`load` and the Fashion-MNIST look-up stay here, so that
the location constants are read from this module at call time (setting
``nachos_tf.data.SYSTEM_FASHION_MNIST_DIR`` or ``FASHION_MNIST_CACHE_DIR`` still redirects the search).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from nachos_tf.errors import DataError

from .checks import check_val_fraction
from .cifar import CIFAR10_CLASSES
from .dataset import Dataset, PathLike
from .idx import MNIST_CLASSES  # noqa: F401 - public attribute, as before the split
from .idx import FASHION_MNIST_CLASSES, IDX_STEMS, find_idx_file, idx_folder_has_all, read_idx
from .registry import DATASETS, dataset_key, read_dataset
from .splits import balanced_indices, stratified_split

__all__ = [
    "Dataset",
    "load",
    "read_idx",
    "find_fashion_mnist",
    "stratified_split",
    "balanced_indices",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "SYSTEM_FASHION_MNIST_DIR",
    "FASHION_MNIST_CACHE_ROOT",
    "FASHION_MNIST_CACHE_DIR",
]

#: Where ``apt-get install dataset-fashion-mnist`` puts the IDX files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Root a non-root user unpacks the .deb into: ``dpkg -x dataset-fashion-mnist_*.deb <this>``.
FASHION_MNIST_CACHE_ROOT = Path.home() / ".cache" / "nachos-tf" / "fashion-mnist"
#: Folder holding the IDX files after that unpacking (searched last).
FASHION_MNIST_CACHE_DIR = FASHION_MNIST_CACHE_ROOT / "usr" / "share" / "datasets" / "fashion-mnist"


def _fashion_mnist_candidates(path: Optional[PathLike]) -> List[Path]:
    def with_sub(base: Path) -> List[Path]:
        return [base, base / "fashion-mnist", base / "fashion_mnist"]

    if path is not None:  # an explicit path is the only place looked
        return with_sub(Path(path).expanduser())
    out: List[Path] = []
    env = os.environ.get("NACHOS_DATA")
    if env:
        out += with_sub(Path(env).expanduser())
    out += [SYSTEM_FASHION_MNIST_DIR, FASHION_MNIST_CACHE_DIR]
    return out


def find_fashion_mnist(path: Optional[PathLike] = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files, or DataError saying where it looked.

    Order: ``path`` (exclusively, when given), ``$NACHOS_DATA``, the Debian package folder,
    then the per-user cache folder; each folder may also hold a ``fashion-mnist`` sub-folder.

    Args:
        path: the only folder to look in (or its parent holding ``fashion-mnist``); None searches
            ``$NACHOS_DATA``, :data:`SYSTEM_FASHION_MNIST_DIR` and :data:`FASHION_MNIST_CACHE_DIR`.

    Returns:
        The first folder holding all four IDX files.

    Raises:
        DataError: a folder holds only some of the files (naming the missing ones), or none was
            found (naming every folder looked in and how to install the dataset).
    """
    candidates = _fashion_mnist_candidates(path)
    for folder in candidates:
        if folder.is_dir() and idx_folder_has_all(folder):
            return folder
    # a folder with some but not all files deserves a precise message
    for folder in candidates:
        if folder.is_dir() and any(find_idx_file(folder, p) for p in IDX_STEMS):
            missing = [IDX_STEMS[p][0] + ".gz" for p in IDX_STEMS if not find_idx_file(folder, p)]
            raise DataError(f"{folder}: incomplete Fashion-MNIST folder, missing "
                            f"{', '.join(missing)}")
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"Fashion-MNIST not found (looked in {looked}): install it with `apt-get install "
                    "dataset-fashion-mnist` (or `make data`, also without root), or point --data-path or "
                    "NACHOS_DATA at a folder holding its four IDX files")


def load(name: str = "fashion_mnist", path: Optional[PathLike] = None, val_fraction: float = 0.1,
         seed: int = 0, *, test_fraction: float = 0.2) -> Dataset:
    """Load a dataset by name from local files into a :class:`Dataset`.

    ``name`` is one of :data:`DATASETS`: ``fashion_mnist`` (found automatically, see
    :func:`find_fashion_mnist`), ``mnist`` (folder of the four IDX files), ``cifar10`` (folder of
    the binary or python batches), ``npz`` (file with x_train, y_train, x_test, y_test and
    optionally x_val, y_val, class_names, num_classes) or ``folder`` (one sub-folder of images per
    class, optionally under train/, test/ and val/).  ``val_fraction`` of the training set is held
    out per class as validation, deterministically for ``seed``; ``test_fraction`` only applies to
    a ``folder`` without a test/ sub-folder.

    Args:
        name: one of :data:`DATASETS` (case, dashes and the aliases ``fashionmnist``, ``cifar_10``,
            ``image_folder`` are forgiven).
        path: the file or folder to read; required for every dataset but ``fashion_mnist``.
        val_fraction: fraction of the training set held out per class as validation, in (0, 1)
            (unused when the files bring their own validation split).
        seed: seed of the validation (and, for ``folder``, test) split.
        test_fraction: fraction held out as test by a ``folder`` without a test/ sub-folder.

    Returns:
        The :class:`Dataset` (float32 raw pixels NHWC, int32 labels, train/val/test).

    Raises:
        DataError: unknown name, bad fraction, missing ``path``, or any missing, unreadable or
            malformed file (one line naming the file and what is wrong).
    """
    key = dataset_key(name)
    check_val_fraction(val_fraction)
    if key != "fashion_mnist" and path is None:
        raise DataError(f"dataset {key!r} needs path= (a "
                        f"{'file' if key == 'npz' else 'folder'} to read it from)")
    try:
        where = find_fashion_mnist(path) if key == "fashion_mnist" else path
        return read_dataset(key, where, val_fraction, seed, test_fraction)
    except OSError as e:   # any file-system failure not named yet (a folder that cannot be listed or stat'ed)
        raise DataError(f"{e.filename or path}: cannot read ({e.strerror or e})") from None
