"""Datasets as numpy arrays: Fashion-MNIST (the embedded default), MNIST, CIFAR-10, .npz and image folders.

Everything here reads local files only (nothing downloads) and returns a :class:`Dataset` with
float32 images holding raw pixel values (0..255) in NHWC order (always a channel axis), int32
labels, and a seeded, class-balanced validation split of the training set.  Any malformed input
raises :class:`~nachos_tf.errors.DataError` naming the file and what is wrong.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``; :func:`load` looks for it in
``path=``, then ``$NACHOS_DATA``, then :data:`SYSTEM_FASHION_MNIST_DIR`, then
:data:`FASHION_MNIST_CACHE_DIR` (where a non-root user can unpack the .deb with ``dpkg -x``).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nachos_tf.errors import DataError

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

PathLike = Union[str, "os.PathLike[str]"]

#: Dataset names :func:`load` understands.
DATASETS: Tuple[str, ...] = ("fashion_mnist", "mnist", "cifar10", "npz", "folder")

#: Where ``apt-get install dataset-fashion-mnist`` puts the IDX files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Root a non-root user unpacks the .deb into: ``dpkg -x dataset-fashion-mnist_*.deb <this>``.
FASHION_MNIST_CACHE_ROOT = Path.home() / ".cache" / "nachos-tf" / "fashion-mnist"
#: Folder holding the IDX files after that unpacking (searched last).
FASHION_MNIST_CACHE_DIR = FASHION_MNIST_CACHE_ROOT / "usr" / "share" / "datasets" / "fashion-mnist"

FASHION_MNIST_CLASSES: Tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES: Tuple[str, ...] = tuple(str(i) for i in range(10))
CIFAR10_CLASSES: Tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

_IDX_STEMS = {
    # part -> accepted file stems (dash and dot spellings both circulate); ".gz" optional
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_CIFAR_RECORD = 1 + 3 * 32 * 32


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Dataset:
    """Train/validation/test arrays of one image classification dataset.

    Images are float32 raw pixel values in (N, H, W, C); labels are int32 in 0..num_classes-1.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: Tuple[int, int, int]
    name: str
    class_names: Tuple[str, ...] = ()
    source: str = field(default="")  # where the files were read from, for run provenance

    def __post_init__(self) -> None:
        if not self.class_names:
            self.class_names = tuple(str(i) for i in range(self.num_classes))

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")

    def split(self, which: str) -> Tuple[np.ndarray, np.ndarray]:
        """The (x, y) arrays of split ``"train"``, ``"val"`` or ``"test"``."""
        if which not in ("train", "val", "test"):
            raise DataError(f"unknown split {which!r}: expected 'train', 'val' or 'test'")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def class_counts(self, which: str = "train") -> np.ndarray:
        """Number of samples of each class in one split (length num_classes)."""
        return np.bincount(self.split(which)[1], minlength=self.num_classes)

    def subset(self, train: Optional[int] = None, val: Optional[int] = None,
               test: Optional[int] = None, seed: Optional[int] = 0) -> "Dataset":
        """A smaller, class-balanced copy: at most ``train``/``val``/``test`` samples per split.

        ``None`` keeps a split whole.  With an int ``seed`` the samples of each class are drawn at
        random (deterministic for the seed); with ``seed=None`` the first ones of each class are
        taken.  Samples keep their original relative order.
        """
        out: Dict[str, np.ndarray] = {}
        for k, (which, n) in enumerate((("train", train), ("val", val), ("test", test))):
            x, y = self.split(which)
            if n is not None:
                if int(n) < 0:
                    raise DataError(f"subset size for {which} must be >= 0, got {n}")
                rng = None if seed is None else np.random.default_rng([int(seed), k])
                idx = balanced_indices(y, int(n), rng)
                x, y = x[idx], y[idx]
            out[f"x_{which}"], out[f"y_{which}"] = x, y
        return replace(self, **out)

    def summary(self) -> str:
        """A few human-readable lines: sizes, shape, classes and pixel range."""
        lines = [f"dataset {self.name}: {self.num_classes} classes, input shape {self.input_shape}"]
        if self.source:
            lines.append(f"  source: {self.source}")
        for which in ("train", "val", "test"):
            x, y = self.split(which)
            counts = np.bincount(y, minlength=self.num_classes) if len(y) else np.zeros(0, int)
            rng = f", pixels {x.min():g}..{x.max():g}" if x.size else ""
            per = (f", per class {counts.min()}..{counts.max()}" if len(y) else "")
            lines.append(f"  {which:5s} {len(y):6d} images{per}{rng}")
        names = ", ".join(self.class_names)
        lines.append(f"  classes: {names}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Splitting helpers
# --------------------------------------------------------------------------------------------

def _ranks_within_class(y: np.ndarray, rng: Optional[np.random.Generator]) -> np.ndarray:
    """For each sample, its position among the samples of its class (random order if rng)."""
    order = rng.permutation(len(y)) if rng is not None else np.arange(len(y))
    order = order[np.argsort(y[order], kind="stable")]  # grouped by class, shuffled inside
    ys = y[order]
    starts = np.searchsorted(ys, ys, side="left")
    ranks = np.empty(len(y), dtype=np.int64)
    ranks[order] = np.arange(len(y)) - starts
    return ranks


def balanced_indices(y: np.ndarray, n: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Sorted indices of ``n`` samples spread as evenly as possible over the classes of ``y``.

    Classes with too few samples give all they have and the others make up the rest.
    Without ``rng`` the first samples of each class are chosen.
    """
    y = np.asarray(y)
    if n >= len(y):
        return np.arange(len(y))
    ranks = _ranks_within_class(y, rng)
    pick = np.lexsort((y, ranks))[:n]
    return np.sort(pick)


def stratified_split(y: np.ndarray, fraction: float, seed: int = 0,
                     what: str = "validation") -> Tuple[np.ndarray, np.ndarray]:
    """Split indices 0..len(y)-1 into (keep, held_out) with ``fraction`` held out per class.

    The held-out size is round(fraction * N) (at least 1, at most N-1), shared among classes in
    proportion to their size (largest remainders); which samples go is seeded.
    """
    y = np.asarray(y)
    if not 0.0 < float(fraction) < 1.0:
        raise DataError(f"{what} fraction must be strictly between 0 and 1, got {fraction}")
    n = len(y)
    if n < 2:
        raise DataError(f"cannot split a {what} set off {n} training sample(s): need at least 2")
    classes, counts = np.unique(y, return_counts=True)
    total = min(max(1, int(round(fraction * n))), n - 1)
    exact = counts * (total / n)
    quota = np.floor(exact).astype(np.int64)
    short = total - int(quota.sum())
    if short > 0:  # largest remainders first, ties to the lower class index
        extra = np.lexsort((np.arange(len(classes)), -(exact - quota)))[:short]
        quota[extra] += 1
    rng = np.random.default_rng(int(seed))
    ranks = _ranks_within_class(y, rng)
    held = ranks < quota[np.searchsorted(classes, y)]
    return np.flatnonzero(~held), np.flatnonzero(held)


def _with_val_split(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, num_classes: int, class_names: Sequence[str],
                    val_fraction: float, seed: int, source: str,
                    val: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Dataset:
    """Assemble a Dataset, carving a stratified validation set off (x, y) unless one is given."""
    if val is None:
        keep, held = stratified_split(y, val_fraction, seed)
        x_tr, y_tr, x_va, y_va = x[keep], y[keep], x[held], y[held]
    else:
        x_tr, y_tr, (x_va, y_va) = x, y, val

    def f32(a: np.ndarray) -> np.ndarray:  # converted last: indexing uint8 is 4x cheaper
        return np.ascontiguousarray(a, dtype=np.float32)

    def i32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.int32)

    return Dataset(
        x_train=f32(x_tr), y_train=i32(y_tr), x_val=f32(x_va), y_val=i32(y_va),
        x_test=f32(x_test), y_test=i32(y_test),
        num_classes=int(num_classes), input_shape=tuple(int(d) for d in x.shape[1:]),
        name=name, class_names=tuple(class_names), source=source,
    )


def _check_val_fraction(val_fraction: float) -> None:
    try:
        ok = 0.0 < float(val_fraction) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{where}: label {bad} out of range 0..{num_classes - 1}")


def _check_counts(x: np.ndarray, y: np.ndarray, x_where: str, y_where: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{x_where}: image/label count mismatch: {len(x)} images but "
                        f"{y_where} has {len(y)} labels")


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------

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
    """Read one IDX file (gzipped or not) into a numpy array, checking magic number and size."""
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
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(data) - head
    if have < need:
        raise DataError(f"{path}: truncated IDX data: header says {dims} ({need} bytes), "
                        f"file has {have} bytes")
    if have > need:
        raise DataError(f"{path}: {have - need} unexpected trailing bytes after IDX data {dims}")
    return np.frombuffer(data, dtype, need // dtype.itemsize, head).reshape(dims)


def _find_idx_file(folder: Path, part: str) -> Optional[Path]:
    for stem in _IDX_STEMS[part]:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _idx_folder_has_all(folder: Path) -> bool:
    return all(_find_idx_file(folder, part) is not None for part in _IDX_STEMS)


def _load_idx_folder(folder: Path, name: str, class_names: Sequence[str], val_fraction: float,
                     seed: int) -> Dataset:
    """Load the four IDX files of an MNIST-like folder."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (expected the four IDX files of {name})")
    files = {}
    for part, stems in _IDX_STEMS.items():
        f = _find_idx_file(folder, part)
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
        _check_counts(x, y, str(xf), str(yf))
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{yf}: labels must be integers, got IDX type {y.dtype}")
        _check_labels(y, num_classes, str(yf))
        arrays[split] = (x[..., None], y.astype(np.int32))
    (x, y), (x_test, y_test) = arrays["train"], arrays["test"]
    if x.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{files['test_images']}: image shape {x_test.shape[1:3]} differs from "
                        f"training images {x.shape[1:3]} in {files['train_images']}")
    return _with_val_split(name, x, y, x_test, y_test, num_classes, class_names,
                           val_fraction, seed, str(folder))


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
    """
    candidates = _fashion_mnist_candidates(path)
    for folder in candidates:
        if folder.is_dir() and _idx_folder_has_all(folder):
            return folder
    # a folder with some but not all files deserves a precise message
    for folder in candidates:
        if folder.is_dir() and any(_find_idx_file(folder, p) for p in _IDX_STEMS):
            missing = [_IDX_STEMS[p][0] + ".gz" for p in _IDX_STEMS if not _find_idx_file(folder, p)]
            raise DataError(f"{folder}: incomplete Fashion-MNIST folder, missing "
                            f"{', '.join(missing)}")
    looked = "\n  ".join(str(c) for c in candidates)
    raise DataError(
        "Fashion-MNIST not found (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz). Looked in:\n  {looked}\n"
        "Install it with `sudo apt-get install dataset-fashion-mnist`, or without root: "
        "`apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb "
        f"{FASHION_MNIST_CACHE_ROOT}`, or set NACHOS_DATA to a folder holding the files."
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------

def _numpy_attr(modules: Sequence[str], name: str) -> Optional[Any]:
    import importlib
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return None


def _safe_globals() -> Dict[Tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name: plain containers and numpy array rebuilding."""
    import _codecs
    import builtins

    allowed: Dict[Tuple[str, str], Any] = {}
    for name in ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str",
                 "int", "float", "complex", "bool"):
        allowed[("builtins", name)] = allowed[("__builtin__", name)] = getattr(builtins, name)
    allowed[("_codecs", "encode")] = _codecs.encode  # how protocol 2 spells bytes
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    scalar = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "scalar")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
        allowed[(mod, "scalar")] = scalar
    for mod in ("numpy._core.numeric", "numpy.core.numeric"):
        allowed[(mod, "_frombuffer")] = frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return {k: v for k, v in allowed.items() if v is not None}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of :func:`_safe_globals`; anything else is refused.

    CIFAR-10's python batches are pickles; a crafted pickle could otherwise run any code.
    """

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _safe_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._source}: refused to unpickle global {module}.{name} "
                            "(only plain data and numpy arrays are allowed)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refused persistent id in pickle")


def _unpickle_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch safely: (N, 32, 32, 3) uint8 images, (N,) labels."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), path).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{path}: not a readable CIFAR-10 python batch "
                        f"({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{path}: missing key {key!r} (has {sorted(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: 'labels' is not a list of integers ({e})") from None
    if len(labels) != len(data):
        raise DataError(f"{path}: image/label count mismatch: {len(data)} images but "
                        f"{len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_cifar_bin(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch: records of 1 label byte + 3072 CHW pixel bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DataError(f"{path}: truncated or malformed CIFAR-10 binary batch: {len(raw)} bytes "
                        f"is not a positive multiple of the {_CIFAR_RECORD}-byte record")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rec[:, 0].astype(np.int64)


def _load_cifar10(path: PathLike, val_fraction: float, seed: int) -> Dataset:
    base = Path(path).expanduser()
    folders = [base, base / "cifar-10-batches-bin", base / "cifar-10-batches-py"]
    for folder in folders:
        if (folder / "data_batch_1.bin").is_file():
            reader, suffix = _read_cifar_bin, ".bin"
            break
        if (folder / "data_batch_1").is_file():
            reader, suffix = _unpickle_batch, ""
            break
    else:
        looked = ", ".join(str(f) for f in folders)
        raise DataError(f"{base}: no CIFAR-10 batches found (data_batch_1.bin ... test_batch.bin "
                        f"or python data_batch_1 ... test_batch); looked in {looked}")
    parts = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        f = folder / (name + suffix)
        x, y = reader(f)
        _check_labels(y, 10, str(f))
        parts.append((x, y))
    x = np.concatenate([p[0] for p in parts[:5]])
    y = np.concatenate([p[1] for p in parts[:5]]).astype(np.int32)
    x_test, y_test = parts[5][0], parts[5][1].astype(np.int32)
    return _with_val_split("cifar10", x, y, x_test, y_test, 10, CIFAR10_CLASSES,
                           val_fraction, seed, str(folder))


# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------

def _npz_images(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind not in "uif":
        raise DataError(f"{where}: images must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, H, W, C), "
                        f"got {arr.shape}")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise DataError(f"{where}: images contain NaN or infinite values")
    return out


def _npz_labels(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,) or (N, 1), got {arr.shape}")
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) \
            and np.array_equal(arr, np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "ui":
        raise DataError(f"{where}: labels must be integers, got dtype {arr.dtype}")
    if arr.size and int(arr.min()) < 0:
        raise DataError(f"{where}: label {int(arr.min())} out of range (negative)")
    return arr.astype(np.int64)


def _load_npz(path: PathLike, val_fraction: float, seed: int) -> Dataset:
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e})") from None
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{p}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except ValueError as e:
        raise DataError(f"{p}: refused or unreadable array (object arrays are never "
                        f"unpickled): {e}") from None
    except Exception as e:  # noqa: BLE001 - zip/format errors of every kind
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e})") from None
    required = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(f"{p}: missing key(s) {', '.join(missing)} (has {', '.join(sorted(arrays))})")
    has_val = "x_val" in arrays or "y_val" in arrays
    splits = ("train", "val", "test") if has_val else ("train", "test")
    xs, ys = {}, {}
    for s in splits:
        if f"x_{s}" not in arrays or f"y_{s}" not in arrays:
            raise DataError(f"{p}: x_{s} and y_{s} must come together")
        xs[s] = _npz_images(arrays[f"x_{s}"], f"{p} [x_{s}]")
        ys[s] = _npz_labels(arrays[f"y_{s}"], f"{p} [y_{s}]")
        _check_counts(xs[s], ys[s], f"{p} [x_{s}]", f"{p} [y_{s}]")
        if xs[s].shape[1:] != xs["train"].shape[1:]:
            raise DataError(f"{p} [x_{s}]: image shape {xs[s].shape[1:]} differs from x_train "
                            f"{xs['train'].shape[1:]}")
    if not ys["train"].size:
        raise DataError(f"{p} [y_train]: the training set is empty")
    num_classes = max(int(y.max()) + 1 for y in ys.values() if y.size)
    class_names: Sequence[str] = ()
    if "num_classes" in arrays:
        try:
            nc = int(arrays["num_classes"])
        except (TypeError, ValueError):
            raise DataError(f"{p} [num_classes]: must be a single integer") from None
        for s in splits:
            _check_labels(ys[s], nc, f"{p} [y_{s}]")
        num_classes = nc
    if "class_names" in arrays:
        class_names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
        if len(class_names) < num_classes:
            raise DataError(f"{p} [class_names]: {len(class_names)} names for labels "
                            f"0..{num_classes - 1}")
        num_classes = len(class_names)
    y32 = {s: y.astype(np.int32) for s, y in ys.items()}
    val = (xs["val"], y32["val"]) if has_val else None
    return _with_val_split("npz", xs["train"], y32["train"], xs["test"], y32["test"],
                           num_classes, class_names, val_fraction, seed, str(p), val=val)


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------

def _subdirs(folder: Path) -> List[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_image(f: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    try:
        with Image.open(f) as im:
            im.load()
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
            return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, DecompressionBombError, OSError, ValueError,
            SyntaxError) as e:
        raise DataError(f"{f}: not a readable image ({e})") from None


def _read_class_folders(root: Path, class_names: Optional[Sequence[str]] = None
                        ) -> Tuple[List[np.ndarray], List[int], List[Path], List[str]]:
    """Images and labels of a folder holding one sub-folder per class."""
    dirs = _subdirs(root)
    if class_names is None:
        if not dirs:
            raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
        class_names = [d.name for d in dirs]
    else:
        unknown = [d.name for d in dirs if d.name not in class_names]
        if unknown:
            raise DataError(f"{root / unknown[0]}: class folder not present in the training set "
                            f"(classes: {', '.join(class_names)})")
    images: List[np.ndarray] = []
    labels: List[int] = []
    files: List[Path] = []
    for d in dirs:
        label = list(class_names).index(d.name)
        found = sorted(f for f in d.iterdir()
                       if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES
                       and not f.name.startswith("."))
        if not found:
            raise DataError(f"{d}: class folder holds no images "
                            f"({', '.join(sorted(_IMAGE_SUFFIXES))})")
        for f in found:
            images.append(_read_image(f))
            labels.append(label)
            files.append(f)
    return images, labels, files, list(class_names)


def _stack_images(images: List[np.ndarray], files: List[Path],
                  size: Optional[Tuple[int, int]] = None, rgb: bool = False) -> np.ndarray:
    size = size or images[0].shape[:2]
    for im, f in zip(images, files):
        if im.shape[:2] != size:
            raise DataError(f"{f}: image size {im.shape[1]}x{im.shape[0]} differs from "
                            f"{size[1]}x{size[0]} of {files[0]} (all images must share a size)")
    rgb = rgb or any(im.ndim == 3 for im in images)
    out = np.empty((len(images),) + tuple(size) + ((3,) if rgb else (1,)), np.float32)
    for i, im in enumerate(images):
        out[i] = im[..., None] if im.ndim == 2 else im
    return out


def _load_folder(path: PathLike, val_fraction: float, seed: int, test_fraction: float) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    train_dir, test_dir, val_dir = root / "train", root / "test", None
    for v in ("val", "valid", "validation"):
        if (root / v).is_dir():
            val_dir = root / v
    if test_dir.is_dir() and not train_dir.is_dir():
        raise DataError(f"{root}: has a test/ folder but no train/ folder")
    if train_dir.is_dir():
        imgs, labels, files, names = _read_class_folders(train_dir)
        extra = [(test_dir, "test")] if test_dir.is_dir() else []
        if val_dir is not None:
            extra.append((val_dir, "val"))
    else:
        imgs, labels, files, names = _read_class_folders(root)
        extra = []
    others = {}
    for d, which in extra:
        o_imgs, o_labels, o_files, _ = _read_class_folders(d, names)
        others[which] = (o_imgs, o_labels, o_files)
    all_imgs = imgs + [im for o in others.values() for im in o[0]]
    all_files = files + [f for o in others.values() for f in o[2]]
    stacked = _stack_images(all_imgs, all_files)
    x, y = stacked[:len(imgs)], np.asarray(labels, np.int32)
    splits = {}
    start = len(imgs)
    for which, (o_imgs, o_labels, _) in others.items():
        splits[which] = (stacked[start:start + len(o_imgs)], np.asarray(o_labels, np.int32))
        start += len(o_imgs)
    if "test" in splits:
        x_test, y_test = splits["test"]
    else:
        if not 0.0 < float(test_fraction) < 1.0:
            raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
        keep, held = stratified_split(y, test_fraction, int(seed) + 1_000_003, what="test")
        x, y, x_test, y_test = x[keep], y[keep], x[held], y[held]
    return _with_val_split("folder", x, y, x_test, y_test, len(names), names, val_fraction,
                           seed, str(root), val=splits.get("val"))


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

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
    """
    key = str(name).strip().lower().replace("-", "_")
    key = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "image_folder": "folder"}.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    _check_val_fraction(val_fraction)
    if key == "fashion_mnist":
        folder = find_fashion_mnist(path)
        return _load_idx_folder(folder, "fashion_mnist", FASHION_MNIST_CLASSES, val_fraction, seed)
    if path is None:
        raise DataError(f"dataset {key!r} needs path= (a "
                        f"{'file' if key == 'npz' else 'folder'} to read it from)")
    if key == "mnist":
        return _load_idx_folder(Path(path).expanduser(), "mnist", MNIST_CLASSES, val_fraction, seed)
    if key == "cifar10":
        return _load_cifar10(path, val_fraction, seed)
    if key == "npz":
        return _load_npz(path, val_fraction, seed)
    return _load_folder(path, val_fraction, seed, test_fraction)
