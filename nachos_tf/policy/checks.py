"""Input checks of the exit policy: probabilities, labels, confidences, costs, thresholds, constraints.

Each check returns the validated float64/int64 array (or raises a one-line typed error), so the rest of
the policy works on clean arrays only.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from nachos_tf.errors import ConstraintError, DataError

__all__ = ["bad_data", "bad_arg", "check_probs", "check_labels", "check_confidences", "check_exit_macs",
           "check_thresholds", "check_constraints"]


def bad_data(msg: str) -> DataError:
    return DataError(msg)


def bad_arg(msg: str) -> ConstraintError:
    return ConstraintError(msg)


def check_probs(probs: Sequence[np.ndarray]) -> List[np.ndarray]:
    if isinstance(probs, np.ndarray):
        probs = [probs] if probs.ndim == 2 else list(probs)   # (N, C) or stacked (exits, N, C)
    if not isinstance(probs, (list, tuple)) or len(probs) == 0:
        raise bad_data("probs must be a non-empty list of (N, classes) arrays, one per exit, final last")
    out = []
    for k, p in enumerate(probs):
        a = np.asarray(p, dtype=np.float64)
        if a.ndim != 2:
            raise bad_data(f"probs[{k}] must be 2-D (N, classes), got shape {a.shape}")
        if out and a.shape != out[0].shape:
            raise bad_data(f"probs[{k}] has shape {a.shape}, probs[0] has {out[0].shape}; all exits "
                            "must score the same samples and classes")
        if a.shape[0] == 0 or a.shape[1] < 2:
            raise bad_data(f"probs[{k}] needs at least 1 sample and 2 classes, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise bad_data(f"probs[{k}] holds NaN or inf")
        sums = a.sum(axis=1)
        if a.min() < -1e-6 or a.max() > 1 + 1e-6 or np.any(np.abs(sums - 1.0) > 0.5):
            raise bad_data(f"probs[{k}] rows are not probabilities (values in [0, 1] summing to 1); "
                            "pass softmax outputs, e.g. policy.softmax(logits)")
        out.append(a)
    return out


def check_labels(labels: np.ndarray, n: int, classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise bad_data(f"labels must have shape ({n},), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise bad_data("labels must be integer class indices")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise bad_data(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise bad_data(f"labels must lie in [0, {classes}), got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def check_confidences(confidences: Optional[Sequence[np.ndarray]], n_early: int,
                       n: int) -> List[np.ndarray]:
    if confidences is None:
        raise bad_data("rule 'confidence' needs confidences: one (N,) array per early exit")
    if isinstance(confidences, np.ndarray) and confidences.ndim == 1:
        confidences = [confidences]
    if len(confidences) != n_early:
        raise bad_data(f"confidences must hold one array per early exit ({n_early}), "
                        f"got {len(confidences)}")
    out = []
    for k, b in enumerate(confidences):
        a = np.asarray(b, dtype=np.float64)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != (n,):
            raise bad_data(f"confidences[{k}] must have shape ({n},), got {a.shape}")
        if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
            raise bad_data(f"confidences[{k}] must be sigmoid outputs in [0, 1]")
        out.append(a)
    return out


def check_exit_macs(exit_macs: Sequence[float], n_exits: int) -> np.ndarray:
    m = np.asarray(exit_macs, dtype=np.float64).reshape(-1)
    if m.shape != (n_exits,):
        raise bad_arg(f"exit_macs must hold one staged cost per exit ({n_exits}, final last), "
                       f"got {m.shape[0]}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise bad_arg("exit_macs must be finite and non-negative")
    return m


def check_thresholds(thresholds: Sequence[float], n_early: int) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.shape != (n_early,):
        raise bad_arg(f"thresholds must hold one value per early exit ({n_early}), got {t.shape[0]}")
    if np.any(np.isnan(t)):
        raise bad_arg("thresholds must not be NaN (use +inf for 'never exit here')")
    return t


def check_constraints(max_macs: Optional[float], min_accuracy: Optional[float]) -> None:
    if max_macs is not None and not (np.isfinite(max_macs) and max_macs > 0):
        raise ConstraintError(f"max_macs must be a positive finite number, got {max_macs!r}")
    if min_accuracy is not None and not (0.0 <= min_accuracy <= 1.0):
        raise ConstraintError(f"min_accuracy must lie in [0, 1], got {min_accuracy!r}")
