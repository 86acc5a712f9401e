"""CIFAR-10 from its binary or python batches (the python pickles are read with a restricted unpickler)."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from nachos_tf.errors import DataError

from .checks import check_labels
from .dataset import Dataset, PathLike, with_val_split

__all__ = ["CIFAR10_CLASSES", "load_cifar10"]

CIFAR10_CLASSES: Tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_CIFAR_RECORD = 1 + 3 * 32 * 32


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


def load_cifar10(path: PathLike, val_fraction: float, seed: int) -> Dataset:
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
        check_labels(y, 10, str(f))
        parts.append((x, y))
    x = np.concatenate([p[0] for p in parts[:5]])
    y = np.concatenate([p[1] for p in parts[:5]]).astype(np.int32)
    x_test, y_test = parts[5][0], parts[5][1].astype(np.int32)
    return with_val_split("cifar10", x, y, x_test, y_test, 10, CIFAR10_CLASSES,
                           val_fraction, seed, str(folder))
