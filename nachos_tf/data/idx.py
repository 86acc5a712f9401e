"""IDX files (MNIST, Fashion-MNIST): reading one file and loading a folder of the four files."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from nachos_tf.errors import DataError

from .checks import check_classes, check_counts, check_finite, check_labels
from .dataset import Dataset, PathLike, with_val_split

__all__ = ["FASHION_MNIST_CLASSES", "MNIST_CLASSES", "IDX_STEMS", "read_idx", "find_idx_file",
           "idx_folder_has_all", "load_idx_folder"]

FASHION_MNIST_CLASSES: Tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES: Tuple[str, ...] = tuple(str(i) for i in range(10))

IDX_STEMS = {
    # part -> accepted file stems (dash and dot spellings both circulate); ".gz" optional
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped when the file starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except EOFError:
            raise DataError(f"{path}: truncated gzip file (compressed data ends early)") from None
        except (OSError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip file ({e})") from None
    return raw


def read_idx(path: PathLike, ndim: Optional[int] = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array, checking magic number and size.

    Args:
        path: the IDX file (``.gz`` or not; recognised by the gzip magic).
        ndim: the number of dimensions expected (3 for images, 1 for labels); None accepts any.

    Returns:
        The array, with the shape and big-endian dtype of the IDX header.

    Raises:
        DataError: missing, unreadable, corrupt-gzip, truncated, oversized or non-IDX file, or the
            wrong number of dimensions.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    code, nd = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in _IDX_DTYPES or nd == 0:
        raise DataError(f"{path}: wrong magic number 0x{magic:08X}: not an IDX file")
    if ndim is not None and nd != ndim:
        raise DataError(f"{path}: wrong magic number 0x{magic:08X}: expected an IDX file with "
                        f"{ndim} dimension(s) (magic 0x{0x800 + ndim:08X}), got {nd}")
    head = 4 + 4 * nd
    if len(data) < head:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", nd, 4))
    dtype = np.dtype(_IDX_DTYPES[code])
    count = 1
    for d in dims:            # Python ints: a header of 2^31 x 2^31 x 4 must not wrap around to 0
        count *= d
    need = count * dtype.itemsize
    have = len(data) - head
    if have < need:
        raise DataError(f"{path}: truncated IDX data: header says {dims} ({need} bytes), "
                        f"file has {have} bytes")
    if have > need:
        raise DataError(f"{path}: {have - need} unexpected trailing bytes after IDX data {dims}")
    return np.frombuffer(data, dtype, need // dtype.itemsize, head).reshape(dims)


def find_idx_file(folder: Path, part: str) -> Optional[Path]:
    for stem in IDX_STEMS[part]:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def idx_folder_has_all(folder: Path) -> bool:
    return all(find_idx_file(folder, part) is not None for part in IDX_STEMS)


def load_idx_folder(folder: Path, name: str, class_names: Sequence[str], val_fraction: float,
                     seed: int) -> Dataset:
    """Load the four IDX files of an MNIST-like folder."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (expected the four IDX files of {name})")
    files = {}
    for part, stems in IDX_STEMS.items():
        f = find_idx_file(folder, part)
        if f is None:
            raise DataError(f"{folder / (stems[0] + '.gz')}: file not found "
                            f"(nor {stems[0]} or {stems[1]}[.gz]) in {folder}")
        files[part] = f
    num_classes = len(class_names)
    arrays = {}
    for split in ("train", "test"):
        xf, yf = files[f"{split}_images"], files[f"{split}_labels"]
        x = read_idx(xf, ndim=3)
        y = read_idx(yf, ndim=1)
        check_counts(x, y, str(xf), str(yf))
        check_finite(x, str(xf))
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{yf}: labels must be integers, got IDX type {y.dtype}")
        check_labels(y, num_classes, str(yf))
        if split == "train":
            check_classes(y, num_classes, str(yf))
        arrays[split] = (x[..., None], y.astype(np.int32))
    (x, y), (x_test, y_test) = arrays["train"], arrays["test"]
    if x.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{files['test_images']}: image shape {x_test.shape[1:3]} differs from "
                        f"training images {x.shape[1:3]} in {files['train_images']}")
    return with_val_split(name, x, y, x_test, y_test, num_classes, class_names,
                           val_fraction, seed, str(folder))
