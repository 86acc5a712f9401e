"""Datasets stored as one ``.npz`` file (x_train, y_train, x_test, y_test, optional val split and names)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from nachos_tf.errors import DataError

from .checks import check_classes, check_counts, check_labels
from .dataset import Dataset, PathLike, with_val_split

__all__ = ["load_npz"]


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


def load_npz(path: PathLike, val_fraction: float, seed: int) -> Dataset:
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
        check_counts(xs[s], ys[s], f"{p} [x_{s}]", f"{p} [y_{s}]")
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
            check_labels(ys[s], nc, f"{p} [y_{s}]")
        num_classes = nc
    if "class_names" in arrays:
        class_names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
        if len(class_names) < num_classes:
            raise DataError(f"{p} [class_names]: {len(class_names)} names for labels "
                            f"0..{num_classes - 1}")
        num_classes = len(class_names)
    for s in splits:
        check_labels(ys[s], num_classes, f"{p} [y_{s}]")
    check_classes(ys["train"], num_classes, f"{p} [y_train]")
    y32 = {s: y.astype(np.int32) for s, y in ys.items()}
    val = (xs["val"], y32["val"]) if has_val else None
    return with_val_split("npz", xs["train"], y32["train"], xs["test"], y32["test"],
                           num_classes, class_names, val_fraction, seed, str(p), val=val)
