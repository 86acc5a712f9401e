"""Simulation of early exiting with fixed thresholds: :class:`ExitTable`, :class:`SimResult`, :func:`simulate`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .checks import check_exit_macs, check_labels, check_probs, check_thresholds
from .rules import check_rule, score_matrix, thresholds_to_json

__all__ = ["macs_from_counts", "SimResult", "ExitTable", "simulate"]


def macs_from_counts(counts: np.ndarray, exit_macs: np.ndarray, n: int) -> np.ndarray:
    """Expected MACs from per-exit sample counts (..., E+1). One summation order everywhere, so a
    point of the calibration curve and its re-simulation agree to the last bit."""
    tot = counts[..., 0] * exit_macs[0]
    for k in range(1, exit_macs.shape[0]):
        tot = tot + counts[..., k] * exit_macs[k]
    return tot / n


@dataclass
class SimResult:
    """Outcome of early exiting with fixed thresholds on a labelled set.

    Attributes:
        accuracy: Fraction of samples predicted right at the exit they leave at.
        exit_rates: (E+1,) fraction of samples leaving at each exit, final last; sums to 1.
        expected_macs: sum_k exit_rates[k] * exit_macs[k].
        exit_index: (N,) exit each sample leaves at (E = final).
        correct: (N,) bool: prediction at that exit is right.
        exit_accuracy: (E+1,) accuracy among samples leaving at each exit (NaN if none).
        exit_counts: (E+1,) number of samples leaving at each exit.
        n_correct: Number of samples predicted right.
        thresholds: (E,) the thresholds simulated.
        rule: The exit rule.
    """

    accuracy: float
    exit_rates: np.ndarray
    expected_macs: float
    exit_index: np.ndarray
    correct: np.ndarray
    exit_accuracy: np.ndarray
    exit_counts: np.ndarray
    n_correct: int
    thresholds: np.ndarray
    rule: str

    def to_dict(self) -> Dict[str, Any]:
        """JSON-safe summary (no per-sample arrays; NaN -> None, +-inf -> "inf"/"-inf").

        Returns:
            The scalar and per-exit fields, plus ``n_samples``.
        """
        return {
            "accuracy": float(self.accuracy),
            "expected_macs": float(self.expected_macs),
            "exit_rates": [float(r) for r in self.exit_rates],
            "exit_counts": [int(c) for c in self.exit_counts],
            "exit_accuracy": [None if np.isnan(a) else float(a) for a in self.exit_accuracy],
            "n_correct": int(self.n_correct),
            "n_samples": int(self.exit_index.shape[0]),
            "thresholds": thresholds_to_json(self.thresholds),
            "rule": self.rule,
        }


class ExitTable:
    """Per-sample scores and per-exit correctness, computed once from one forward pass.

    ``simulate(thresholds)`` then costs a few vectorised comparisons, so calibration can try
    thousands of threshold vectors.
    """

    def __init__(self, probs: Sequence[np.ndarray], labels: np.ndarray, exit_macs: Sequence[float],
                 rule: str = "max_softmax", confidences: Optional[Sequence[np.ndarray]] = None):
        p = check_probs(probs)
        self.rule = check_rule(rule)
        self.n, self.num_classes = p[0].shape
        self.n_early = len(p) - 1
        self.labels = check_labels(labels, self.n, self.num_classes)
        self.exit_macs = check_exit_macs(exit_macs, len(p))
        self.scores = score_matrix(p, self.rule, confidences)                      # (E, N)
        self.correct = np.stack([q.argmax(axis=1) == self.labels for q in p])  # (E+1, N)

    def exit_index(self, thresholds: Sequence[float]) -> np.ndarray:
        """(N,) index of the exit each sample leaves at (E = final)."""
        t = check_thresholds(thresholds, self.n_early)
        passes = np.ones((self.n_early + 1, self.n), dtype=bool)
        passes[:-1] = self.scores >= t[:, None]
        return passes.argmax(axis=0)

    def simulate(self, thresholds: Sequence[float]) -> SimResult:
        """Accuracy, exit rates and expected MACs of these thresholds on the table's samples."""
        t = check_thresholds(thresholds, self.n_early)
        return self.result(self.exit_index(t), t)

    def result(self, idx: np.ndarray, thresholds: np.ndarray) -> SimResult:
        """The SimResult of given per-sample exits `idx` ((N,) ints in 0..E); `thresholds` is recorded as is
        (what `simulate` used, or what a caller reports for exits chosen otherwise, as `crossfit` does)."""
        t = np.asarray(thresholds, np.float64)
        correct = self.correct[idx, np.arange(self.n)]
        counts = np.bincount(idx, minlength=self.n_early + 1)
        right = np.bincount(idx, weights=correct, minlength=self.n_early + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            exit_acc = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
        n_correct = int(correct.sum())
        return SimResult(
            accuracy=n_correct / self.n,
            exit_rates=counts / self.n,
            expected_macs=float(macs_from_counts(counts, self.exit_macs, self.n)),
            exit_index=idx, correct=correct, exit_accuracy=exit_acc, exit_counts=counts,
            n_correct=n_correct, thresholds=t, rule=self.rule)


def simulate(probs: Sequence[np.ndarray], labels: np.ndarray, thresholds: Sequence[float],
             exit_macs: Sequence[float], rule: str = "max_softmax",
             confidences: Optional[Sequence[np.ndarray]] = None) -> SimResult:
    """Simulate early exiting: each sample leaves at the first early exit whose score >= threshold.

    ``probs``: (N, classes) softmax arrays, one per exit, final last; ``thresholds``: one per early
    exit (+inf = never exit there, -inf = always); ``exit_macs``: staged cost of stopping at each
    exit (final last). For many threshold vectors on the same outputs, build an ``ExitTable`` once.

    Args:
        probs: (N, classes) softmax arrays, one per exit, final last.
        labels: (N,) integer labels.
        thresholds: one threshold per early exit.
        exit_macs: staged cost of stopping at each exit, final last.
        rule: one of :data:`~nachos_tf.policy.RULES`.
        confidences: for rule ``confidence``, one (N,) sigmoid array per early exit.

    Returns:
        The :class:`SimResult`.

    Raises:
        DataError: malformed probabilities, labels or confidences.
        ConstraintError: unknown rule, or wrongly shaped/NaN thresholds or exit costs.
    """
    return ExitTable(probs, labels, exit_macs, rule, confidences).simulate(thresholds)
