"""One-line checks of dataset contents shared by every reader: labels, classes, counts, finiteness."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nachos_tf.errors import DataError

__all__ = ["check_val_fraction", "check_labels", "check_classes", "check_finite", "check_counts"]


def check_val_fraction(val_fraction: float) -> None:
    try:
        ok = 0.0 < float(val_fraction) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")


def check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{where}: label {bad} out of range 0..{num_classes - 1}")


def _some(values: Sequence[int], shown: int = 5) -> str:
    """'3, 4, 7' or '1, 2, 3, 4, 5 and 99994 more': a short list for a one-line message."""
    vals = [str(int(v)) for v in values[:shown]]
    more = len(values) - shown
    return ", ".join(vals) + (f" and {more} more" if more > 0 else "")


def check_classes(y: np.ndarray, num_classes: int, where: str, what: str = "training set") -> None:
    """Labels must be 0..K-1 (K >= 2) with every class present in the training set.

    Checked before anything of size K is allocated, so a label of 100000 or 2**60 gives one short line.
    """
    y = np.asarray(y)
    rule = f"labels must be 0..K-1 with every class present in the {what}"
    if num_classes < 2:
        raise DataError(f"{where}: the {what} holds {num_classes} class(es); a classifier needs at least 2 "
                        f"({rule})")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{where}: label {bad} out of range 0..{num_classes - 1}")
    if num_classes > len(y):
        raise DataError(f"{where}: {num_classes} classes (labels 0..{num_classes - 1}) but the {what} has only "
                        f"{len(y)} sample(s); {rule}")
    missing = np.flatnonzero(np.bincount(y.astype(np.int64), minlength=num_classes) == 0)
    if missing.size:
        raise DataError(f"{where}: class(es) {_some(missing)} of 0..{num_classes - 1} have no sample in the "
                        f"{what}; {rule}")


def check_finite(x: np.ndarray, where: str) -> None:
    """Float images must hold no NaN or infinity (integer images always pass)."""
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{where}: images contain NaN or infinite values")


def check_counts(x: np.ndarray, y: np.ndarray, x_where: str, y_where: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{x_where}: image/label count mismatch: {len(x)} images but "
                        f"{y_where} has {len(y)} labels")
