"""Seeded, class-balanced index selection: stratified hold-out splits and balanced subsets."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from nachos_tf.errors import DataError

__all__ = ["balanced_indices", "stratified_split"]


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

    Args:
        y: (N,) integer labels.
        n: number of samples wanted (all N when ``n >= N``).
        rng: random order inside each class; None takes the first samples of each class.

    Returns:
        The sorted (n,) indices into ``y``.
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

    Args:
        y: (N,) integer labels.
        fraction: fraction held out, strictly between 0 and 1.
        seed: seed choosing which samples of each class are held out.
        what: name of the held-out set in error messages ("validation", "test").

    Returns:
        (keep, held_out): two sorted index arrays partitioning 0..N-1.

    Raises:
        DataError: ``fraction`` outside (0, 1) or fewer than 2 samples.
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
