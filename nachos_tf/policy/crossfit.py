"""Cross-fitted calibration: figures of a calibrated exit policy measured on samples it was not fitted on.

`calibrate` picks the most accurate admissible point of a trade-off curve it computes on the very samples it
then reports on. That maximum is optimistic, and the more early exits (the more thresholds to fit) the more
so: a search that ranks candidates on it favours many-exit designs that then fall back after re-training.
K-fold cross-fitting removes that selection bias: each fold's samples are scored with thresholds calibrated on
the other folds, and the figures are those out-of-fold per-sample exits together.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from .calibration import Calibration, calibrate
from .checks import bad_arg
from .rules import thresholds_to_json
from .simulation import ExitTable

__all__ = ["MIN_FOLD_SAMPLES", "crossfit_calibrate"]

#: The fewest samples a fold may hold.
MIN_FOLD_SAMPLES = 10


def crossfit_calibrate(probs: Sequence[np.ndarray], labels: np.ndarray, exit_macs: Sequence[float],
                       folds: int = 2, seed: int = 0, rule: str = "max_softmax",
                       confidences: Optional[Sequence[np.ndarray]] = None, **kwargs: Any) -> Calibration:
    """`calibrate` on all samples, its figures replaced by K-fold out-of-fold ones.

    The samples are split into `folds` parts by a permutation seeded with `seed` (the same split for every
    model scored on the same samples, so their comparison is not split noise). For each part, thresholds are
    calibrated on the other parts with the same settings and applied to it; ``result`` is the simulation of
    those out-of-fold exits on all samples (its ``thresholds``: the all-sample ones), and ``admissible``,
    ``macs_excess`` and ``accuracy_shortfall`` follow it. ``thresholds`` and ``curve`` stay the all-sample
    calibration's (what a user deploys). ``info["crossfit"]`` gives the folds, seed, each fold's thresholds
    and the all-sample (in-sample) figures.

    Args:
        probs: (N, classes) softmax arrays, one per exit, final last.
        labels: (N,) integer labels.
        exit_macs: staged cost of stopping at each exit, final last.
        folds: number of parts (>= 2); each must hold at least `MIN_FOLD_SAMPLES` samples.
        seed: seed of the split.
        rule: one of :data:`~nachos_tf.policy.RULES`.
        confidences: for rule ``confidence``, one (N,) sigmoid array per early exit.
        **kwargs: the other arguments of :func:`~nachos_tf.policy.calibrate` (constraints, method, ...).

    Returns:
        The :class:`~nachos_tf.policy.Calibration`, with out-of-fold ``result``.

    Raises:
        ConstraintError: folds not a whole number >= 2, too few samples per fold, or a bad `calibrate` argument.
        DataError: malformed probabilities, labels or confidences.
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise bad_arg(f"folds must be a whole number >= 2, got {folds!r}")
    table = ExitTable(probs, labels, exit_macs, rule, confidences)
    if table.n // int(folds) < MIN_FOLD_SAMPLES:
        raise bad_arg(f"{table.n} samples cannot be split into {folds} folds of at least {MIN_FOLD_SAMPLES}")
    full = calibrate(probs, labels, exit_macs, rule=rule, confidences=confidences, **kwargs)
    conf = list(confidences) if confidences is not None else None
    parts = np.array_split(np.random.default_rng(int(seed)).permutation(table.n), int(folds))
    idx = np.empty(table.n, np.int64)
    per_fold = []
    for k, held in enumerate(parts):
        fit = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k]))
        cal = calibrate([np.asarray(p)[fit] for p in probs], np.asarray(labels)[fit], exit_macs, rule=rule,
                        confidences=None if conf is None else [np.asarray(c)[fit] for c in conf], **kwargs)
        idx[held] = table.exit_index(cal.thresholds)[held]
        per_fold.append(cal.thresholds)
    res = table.result(idx, full.thresholds)
    excess = 0.0 if full.max_macs is None else max(0.0, res.expected_macs - full.max_macs)
    short = 0.0 if full.min_accuracy is None else max(0.0, full.min_accuracy - res.accuracy)
    info = dict(full.info, crossfit={
        "folds": int(folds), "seed": int(seed), "fold_thresholds": [thresholds_to_json(t) for t in per_fold],
        "in_sample": {"accuracy": float(full.result.accuracy), "expected_macs": float(full.result.expected_macs)}})
    return dataclasses.replace(full, result=res, admissible=(excess == 0.0 and short == 0.0), macs_excess=excess,
                               accuracy_shortfall=short, info=info)
