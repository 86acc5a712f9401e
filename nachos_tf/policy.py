"""Exit policies of an EENN: exit rules, simulation of early exiting, and threshold calibration.

Pure numpy (no TensorFlow), so the same code scores outputs from Keras, TFLite or a microcontroller.

* ``exit_scores`` turns per-exit outputs into one confidence score per sample and early exit, for the
  rules in ``RULES``. A sample leaves at the first early exit whose score is ``>=`` its threshold,
  else at the final exit.
* ``simulate`` (or ``ExitTable.simulate``, which scores once and then costs microseconds per
  threshold vector) gives accuracy, exit rates and expected MACs, with expected MACs
  ``sum_k rate_k * exit_macs[k]`` where ``exit_macs`` are staged costs (see DESIGN.md).
* ``calibrate`` picks thresholds on validation data: ``method="pareto"`` (ours) computes the
  accuracy / expected-MAC trade-off curve over per-exit thresholds and picks the most accurate
  admissible point; ``method="grid"`` reproduces NACHOS's grid search plus repair step.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConstraintError, DataError

__all__ = [
    "RULES", "METHODS", "NACHOS_GRID", "SimResult", "ExitTable", "ParetoCurve", "Calibration",
    "softmax", "exit_scores", "simulate", "calibrate", "thresholds_to_json", "thresholds_from_json",
]

#: Exit rules. Every score is "higher = more confident", so a sample exits when score >= threshold.
RULES: Tuple[str, ...] = ("max_softmax", "margin", "entropy", "confidence")
#: Calibration methods.
METHODS: Tuple[str, ...] = ("pareto", "grid")
#: The candidate thresholds of the NACHOS reference code (shared by all early exits).
NACHOS_GRID: Tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8)


def _bad_data(msg: str) -> DataError:
    return DataError(msg)


def _bad_arg(msg: str) -> ConstraintError:
    return ConstraintError(msg)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------

def _check_probs(probs: Sequence[np.ndarray]) -> List[np.ndarray]:
    if isinstance(probs, np.ndarray):
        probs = [probs] if probs.ndim == 2 else list(probs)   # (N, C) or stacked (exits, N, C)
    if not isinstance(probs, (list, tuple)) or len(probs) == 0:
        raise _bad_data("probs must be a non-empty list of (N, classes) arrays, one per exit, final last")
    out = []
    for k, p in enumerate(probs):
        a = np.asarray(p, dtype=np.float64)
        if a.ndim != 2:
            raise _bad_data(f"probs[{k}] must be 2-D (N, classes), got shape {a.shape}")
        if out and a.shape != out[0].shape:
            raise _bad_data(f"probs[{k}] has shape {a.shape}, probs[0] has {out[0].shape}; all exits "
                            "must score the same samples and classes")
        if a.shape[0] == 0 or a.shape[1] < 2:
            raise _bad_data(f"probs[{k}] needs at least 1 sample and 2 classes, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise _bad_data(f"probs[{k}] holds NaN or inf")
        sums = a.sum(axis=1)
        if a.min() < -1e-6 or a.max() > 1 + 1e-6 or np.any(np.abs(sums - 1.0) > 0.5):
            raise _bad_data(f"probs[{k}] rows are not probabilities (values in [0, 1] summing to 1); "
                            "pass softmax outputs, e.g. policy.softmax(logits)")
        out.append(a)
    return out


def _check_labels(labels: np.ndarray, n: int, classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise _bad_data(f"labels must have shape ({n},), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise _bad_data("labels must be integer class indices")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise _bad_data(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise _bad_data(f"labels must lie in [0, {classes}), got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise _bad_arg(f"unknown exit rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def _check_confidences(confidences: Optional[Sequence[np.ndarray]], n_early: int,
                       n: int) -> List[np.ndarray]:
    if confidences is None:
        raise _bad_data("rule 'confidence' needs confidences: one (N,) array per early exit")
    if isinstance(confidences, np.ndarray) and confidences.ndim == 1:
        confidences = [confidences]
    if len(confidences) != n_early:
        raise _bad_data(f"confidences must hold one array per early exit ({n_early}), "
                        f"got {len(confidences)}")
    out = []
    for k, b in enumerate(confidences):
        a = np.asarray(b, dtype=np.float64)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != (n,):
            raise _bad_data(f"confidences[{k}] must have shape ({n},), got {a.shape}")
        if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
            raise _bad_data(f"confidences[{k}] must be sigmoid outputs in [0, 1]")
        out.append(a)
    return out


def _check_exit_macs(exit_macs: Sequence[float], n_exits: int) -> np.ndarray:
    m = np.asarray(exit_macs, dtype=np.float64).reshape(-1)
    if m.shape != (n_exits,):
        raise _bad_arg(f"exit_macs must hold one staged cost per exit ({n_exits}, final last), "
                       f"got {m.shape[0]}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise _bad_arg("exit_macs must be finite and non-negative")
    return m


def _check_thresholds(thresholds: Sequence[float], n_early: int) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.shape != (n_early,):
        raise _bad_arg(f"thresholds must hold one value per early exit ({n_early}), got {t.shape[0]}")
    if np.any(np.isnan(t)):
        raise _bad_arg("thresholds must not be NaN (use +inf for 'never exit here')")
    return t


def _check_constraints(max_macs: Optional[float], min_accuracy: Optional[float]) -> None:
    if max_macs is not None and not (np.isfinite(max_macs) and max_macs > 0):
        raise ConstraintError(f"max_macs must be a positive finite number, got {max_macs!r}")
    if min_accuracy is not None and not (0.0 <= min_accuracy <= 1.0):
        raise ConstraintError(f"min_accuracy must lie in [0, 1], got {min_accuracy!r}")


# --------------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------------

def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax, for callers holding logits rather than probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _score(p: np.ndarray, rule: str) -> np.ndarray:
    if rule == "max_softmax":
        return p.max(axis=1)
    if rule == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if rule == "entropy":  # minus the entropy, so that >= still means "confident"
        return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    raise AssertionError(rule)


def _scores(probs: List[np.ndarray], rule: str, confidences) -> np.ndarray:
    n_early, n = len(probs) - 1, probs[0].shape[0]
    if rule == "confidence":
        b = _check_confidences(confidences, n_early, n)
        if n_early == 0:
            return np.zeros((0, n))
        # NACHOS cumulative confidence D_k = 1 - prod_{j<=k}(1 - b_j), computed as in the NACHOS
        # code, D_k = sum_{i<=k} b_i prod_{j<i}(1 - b_j), so that D_0 == b_0 exactly
        b = np.stack(b)
        stay = np.cumprod(1.0 - b, axis=0)
        terms = b.copy()
        terms[1:] *= stay[:-1]
        return np.cumsum(terms, axis=0)
    return np.stack([_score(p, rule) for p in probs[:-1]]) if n_early else np.zeros((0, n))


def exit_scores(probs: Sequence[np.ndarray], rule: str = "max_softmax",
                confidences: Optional[Sequence[np.ndarray]] = None) -> List[np.ndarray]:
    """One (N,) confidence score per early exit (the final exit needs none); higher = more confident.

    Rules: ``max_softmax`` top-1 probability; ``margin`` top-1 minus top-2 probability (EDANAS);
    ``entropy`` minus the Shannon entropy (nats), in [-log C, 0]; ``confidence`` the NACHOS cumulative
    confidence ``D_k = 1 - prod_{j<=k}(1 - b_j)`` of the learned per-exit confidences ``b_j``.
    """
    p = _check_probs(probs)
    return list(_scores(p, _check_rule(rule), confidences))


def _score_range(rule: str, num_classes: int) -> Tuple[float, float]:
    """Range of a rule's scores; the grid method maps [0, 1] onto it."""
    if rule == "entropy":
        return -math.log(num_classes), 0.0
    return 0.0, 1.0


# --------------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------------

def _macs_from_counts(counts: np.ndarray, exit_macs: np.ndarray, n: int) -> np.ndarray:
    """Expected MACs from per-exit sample counts (..., E+1). One summation order everywhere, so a
    point of the calibration curve and its re-simulation agree to the last bit."""
    tot = counts[..., 0] * exit_macs[0]
    for k in range(1, exit_macs.shape[0]):
        tot = tot + counts[..., k] * exit_macs[k]
    return tot / n


@dataclass
class SimResult:
    """Outcome of early exiting with fixed thresholds on a labelled set."""

    accuracy: float
    exit_rates: np.ndarray       # (E+1,) fraction of samples leaving at each exit, final last; sums to 1
    expected_macs: float         # sum_k exit_rates[k] * exit_macs[k]
    exit_index: np.ndarray       # (N,) exit each sample leaves at (E = final)
    correct: np.ndarray          # (N,) bool: prediction at that exit is right
    exit_accuracy: np.ndarray    # (E+1,) accuracy among samples leaving at each exit (NaN if none)
    exit_counts: np.ndarray      # (E+1,) number of samples leaving at each exit
    n_correct: int
    thresholds: np.ndarray       # (E,)
    rule: str

    def to_dict(self) -> Dict[str, Any]:
        """JSON-safe summary (no per-sample arrays; NaN -> None, +-inf -> "inf"/"-inf")."""
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
        p = _check_probs(probs)
        self.rule = _check_rule(rule)
        self.n, self.num_classes = p[0].shape
        self.n_early = len(p) - 1
        self.labels = _check_labels(labels, self.n, self.num_classes)
        self.exit_macs = _check_exit_macs(exit_macs, len(p))
        self.scores = _scores(p, self.rule, confidences)                      # (E, N)
        self.correct = np.stack([q.argmax(axis=1) == self.labels for q in p])  # (E+1, N)

    def exit_index(self, thresholds: Sequence[float]) -> np.ndarray:
        """(N,) index of the exit each sample leaves at (E = final)."""
        t = _check_thresholds(thresholds, self.n_early)
        passes = np.ones((self.n_early + 1, self.n), dtype=bool)
        passes[:-1] = self.scores >= t[:, None]
        return passes.argmax(axis=0)

    def simulate(self, thresholds: Sequence[float]) -> SimResult:
        """Accuracy, exit rates and expected MACs of these thresholds on the table's samples."""
        t = _check_thresholds(thresholds, self.n_early)
        idx = self.exit_index(t)
        correct = self.correct[idx, np.arange(self.n)]
        counts = np.bincount(idx, minlength=self.n_early + 1)
        right = np.bincount(idx, weights=correct, minlength=self.n_early + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            exit_acc = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
        n_correct = int(correct.sum())
        return SimResult(
            accuracy=n_correct / self.n,
            exit_rates=counts / self.n,
            expected_macs=float(_macs_from_counts(counts, self.exit_macs, self.n)),
            exit_index=idx, correct=correct, exit_accuracy=exit_acc, exit_counts=counts,
            n_correct=n_correct, thresholds=t, rule=self.rule)


def simulate(probs: Sequence[np.ndarray], labels: np.ndarray, thresholds: Sequence[float],
             exit_macs: Sequence[float], rule: str = "max_softmax",
             confidences: Optional[Sequence[np.ndarray]] = None) -> SimResult:
    """Simulate early exiting: each sample leaves at the first early exit whose score >= threshold.

    ``probs``: (N, classes) softmax arrays, one per exit, final last; ``thresholds``: one per early
    exit (+inf = never exit there, -inf = always); ``exit_macs``: staged cost of stopping at each
    exit (final last). For many threshold vectors on the same outputs, build an ``ExitTable`` once.
    """
    return ExitTable(probs, labels, exit_macs, rule, confidences).simulate(thresholds)


# --------------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------------

@dataclass
class ParetoCurve:
    """Non-dominated (expected MACs, accuracy) points over threshold vectors, sorted by MACs.

    Both MACs and accuracy increase strictly along the curve.
    """

    macs: np.ndarray          # (P,)
    accuracy: np.ndarray      # (P,)
    thresholds: np.ndarray    # (P, E)
    exit_rates: np.ndarray    # (P, E+1)

    def __len__(self) -> int:
        return int(self.macs.shape[0])

    def to_dict(self) -> Dict[str, Any]:
        return {"macs": [float(m) for m in self.macs],
                "accuracy": [float(a) for a in self.accuracy],
                "thresholds": [thresholds_to_json(t) for t in self.thresholds],
                "exit_rates": [[float(r) for r in row] for row in self.exit_rates]}


@dataclass
class Calibration:
    """Chosen thresholds, their simulation on the calibration data and how they meet the constraints."""

    thresholds: np.ndarray            # (E,)
    result: SimResult                 # on the calibration data
    method: str
    rule: str
    exit_macs: np.ndarray
    admissible: bool                  # meets max_macs and min_accuracy on the calibration data
    macs_excess: float                # max(0, expected_macs - max_macs); 0 without a budget
    accuracy_shortfall: float         # max(0, min_accuracy - accuracy); 0 without a floor
    max_macs: Optional[float] = None
    min_accuracy: Optional[float] = None
    curve: Optional[ParetoCurve] = None   # method "pareto" only
    info: Dict[str, Any] = field(default_factory=dict)

    def evaluate(self, probs: Sequence[np.ndarray], labels: np.ndarray,
                 confidences: Optional[Sequence[np.ndarray]] = None) -> SimResult:
        """Simulate the chosen thresholds on other (e.g. test) outputs of the same model."""
        return simulate(probs, labels, self.thresholds, self.exit_macs, self.rule, confidences)

    def to_dict(self, with_curve: bool = True) -> Dict[str, Any]:
        d = {"thresholds": thresholds_to_json(self.thresholds), "method": self.method,
             "rule": self.rule, "exit_macs": [float(m) for m in self.exit_macs],
             "admissible": bool(self.admissible), "macs_excess": float(self.macs_excess),
             "accuracy_shortfall": float(self.accuracy_shortfall),
             "max_macs": None if self.max_macs is None else float(self.max_macs),
             "min_accuracy": None if self.min_accuracy is None else float(self.min_accuracy), "result": self.result.to_dict(), "info": self.info}
        if with_curve and self.curve is not None:
            d["curve"] = self.curve.to_dict()
        return d


def thresholds_to_json(thresholds: Sequence[float]) -> List[Any]:
    """Thresholds as strict-JSON values: floats, with +-inf written as "inf" / "-inf"."""
    return ["inf" if t == np.inf else "-inf" if t == -np.inf else float(t) for t in thresholds]


def thresholds_from_json(values: Sequence[Any]) -> np.ndarray:
    """Inverse of ``thresholds_to_json``."""
    return np.array([float(v) for v in values], dtype=np.float64)


def _options(scores: np.ndarray, max_candidates: int) -> np.ndarray:
    """Candidate thresholds of one exit, ascending: -inf, midpoints between consecutive distinct
    scores, +inf. Any threshold between two consecutive distinct scores makes the same decisions on
    these samples; the midpoint is the max-margin representative. More than ``max_candidates``
    options are thinned at evenly spaced quantiles of the samples (endpoints always kept)."""
    u, cnt = np.unique(scores, return_counts=True)
    m = u.shape[0]
    mids = u[:-1] + (u[1:] - u[:-1]) / 2
    mids = np.where(mids > u[:-1], mids, u[1:])  # keep decisions exact if the gap is one ulp
    opts = np.concatenate([[-np.inf], mids, [np.inf]])          # option j: exit iff score >= u[j]
    if m + 1 > max_candidates:
        below = np.concatenate([[0], np.cumsum(cnt)])          # samples scoring below u[j]
        keep = np.searchsorted(below, np.linspace(0, scores.shape[0], max_candidates), side="left")
        keep = np.unique(np.concatenate([[0, m], np.clip(keep, 0, m)]))
        opts = opts[keep]
    return opts


class _Sweeper:
    """Evaluates whole lines of threshold vectors: exit k over all its options, the others fixed.

    With the other thresholds fixed, every sample either leaves before exit k, or reaches it and
    leaves at k (score >= t_k) or at a fixed later exit. Sorting reaching samples by score turns the
    whole line into prefix sums: O(E N) per line however many options it holds.
    """

    def __init__(self, table: ExitTable, options: List[np.ndarray]):
        self.t = table
        self.options = options
        self.orders = [np.argsort(s, kind="stable") for s in table.scores]
        self.sweeps = 0

    def line(self, k: int, thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        tab, E, n = self.t, self.t.n_early, self.t.n
        self.sweeps += 1
        passes = np.ones((E + 1, n), dtype=bool)
        passes[:-1] = tab.scores >= thresholds[:, None]
        passes[k] = False
        first = passes.argmax(axis=0)            # exit if sample does not stop at k
        reached = ~passes[:k].any(axis=0)
        cols = np.arange(n)
        corr_other = tab.correct[first, cols]
        # samples leaving before k: fixed contribution
        before = ~reached
        base_counts = np.bincount(first[before], minlength=E + 1)
        base_correct = int(corr_other[before].sum())
        # reaching samples in ascending score order
        idx = self.orders[k][reached[self.orders[k]]]
        sk = tab.scores[k, idx]
        pre_ck = np.concatenate([[0], np.cumsum(tab.correct[k, idx])])
        pre_co = np.concatenate([[0], np.cumsum(corr_other[idx])])
        opts = self.options[k]
        stay = np.searchsorted(sk, opts, side="left")    # reaching samples scoring below t_k
        counts = np.tile(base_counts, (opts.shape[0], 1))
        counts[:, k] += idx.shape[0] - stay
        later = first[idx]
        for j in range(k + 1, E + 1):
            counts[:, j] += np.concatenate([[0], np.cumsum(later == j)])[stay]
        n_correct = base_correct + (pre_ck[-1] - pre_ck[stay]) + pre_co[stay]
        return counts, n_correct


class _Archive:
    """Evaluated points (option indices, exit counts, correct count), pruned to the Pareto front
    with pymoo's non-dominated sorting."""

    def __init__(self, table: ExitTable):
        self.table = table
        E = table.n_early
        self.idx = np.zeros((0, E), dtype=np.int64)
        self.counts = np.zeros((0, E + 1), dtype=np.int64)
        self.ncorr = np.zeros(0, dtype=np.int64)
        self._pending: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n_pending = 0
        self.n_points = 0

    def add(self, idx: np.ndarray, counts: np.ndarray, ncorr: np.ndarray) -> None:
        self._pending.append((idx, counts, ncorr))
        self._n_pending += idx.shape[0]
        self.n_points += idx.shape[0]
        if self._n_pending > 200_000:
            self.prune()

    def prune(self) -> None:
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
        if self._pending:
            self.idx = np.concatenate([self.idx] + [p[0] for p in self._pending])
            self.counts = np.concatenate([self.counts] + [p[1] for p in self._pending])
            self.ncorr = np.concatenate([self.ncorr] + [p[2] for p in self._pending])
            self._pending, self._n_pending = [], 0
        if self.idx.shape[0] == 0:
            return
        macs = _macs_from_counts(self.counts, self.table.exit_macs, self.table.n)
        F = np.stack([macs, -self.ncorr.astype(np.float64)], axis=1)
        front = NonDominatedSorting().do(F, only_non_dominated_front=True)
        # sort by MACs; equal (macs, accuracy) points keep one representative (the earliest found)
        front = front[np.lexsort((front, macs[front]))]
        m, c = macs[front], self.ncorr[front]
        keep = np.ones(front.shape[0], dtype=bool)
        keep[1:] = (m[1:] != m[:-1]) | (c[1:] != c[:-1])
        front = front[keep]
        self.idx, self.counts, self.ncorr = self.idx[front], self.counts[front], self.ncorr[front]


def _thin_indices(n_opts: int, k: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n_opts - 1, max(2, min(k, n_opts)))).astype(np.int64))


def _pareto_search(table: ExitTable, max_candidates: int, max_sweeps: int,
                   focus: Callable[[np.ndarray, np.ndarray], int]) -> Tuple[_Archive, _Sweeper, Dict[str, Any]]:
    """Trade-off curve over the candidate grid; ``focus(macs, acc)`` is the current pick's index."""
    E = table.n_early
    options = [_options(s, max_candidates) for s in table.scores]
    sw = _Sweeper(table, options)
    arch = _Archive(table)
    if E == 0:
        arch.add(np.zeros((1, 0), np.int64), np.array([[table.n]]), np.array([int(table.correct[0].sum())]))
        arch.prune()
        return arch, sw, {"search": "exhaustive", "exact_on_candidates": True}

    def thresholds_of(row: np.ndarray) -> np.ndarray:
        return np.array([options[j][row[j]] for j in range(E)])

    def add_line(k: int, row: np.ndarray) -> None:
        counts, ncorr = sw.line(k, thresholds_of(row))
        rows = np.tile(row, (options[k].shape[0], 1))
        rows[:, k] = np.arange(options[k].shape[0])
        arch.add(rows, counts, ncorr)

    # 1) exhaustive over the product of exits 0..E-2 (exit E-1 swept exactly along each line);
    #    on a thinned sub-grid when the full product exceeds the budget.
    sizes = [o.shape[0] for o in options[:-1]]
    full = int(np.prod(sizes)) if sizes else 1
    exhaustive = full <= max_sweeps
    if exhaustive:
        grids = [np.arange(s) for s in sizes]
    else:
        per = max(2, int(math.floor((max_sweeps // 2) ** (1.0 / (E - 1)))))
        while per > 2 and per ** (E - 1) > max_sweeps // 2:
            per -= 1
        grids = [_thin_indices(s, per) for s in sizes]
        if int(np.prod([g.shape[0] for g in grids])) > max_sweeps // 2:   # very many exits
            qs = np.linspace(0.0, 1.0, min(64, max_sweeps // 2))
            grids = None
            for q in qs:
                row = np.array([int(round(q * (o.shape[0] - 1))) for o in options], dtype=np.int64)
                add_line(E - 1, row)
    if grids is not None:
        for combo in itertools.product(*grids):
            row = np.zeros(E, dtype=np.int64)
            row[:-1] = combo
            add_line(E - 1, row)
    arch.prune()
    info: Dict[str, Any] = {"search": "exhaustive" if exhaustive else "local",
                            "exact_on_candidates": exhaustive}
    # 2) Pareto local search on the full candidate grid: sweep every exit through front points,
    #    nearest to the current pick first, in small batches, until every front point has been
    #    swept along every exit (a local Pareto optimum) or the budget is spent.
    if not exhaustive:
        expanded = set()
        converged = False
        while sw.sweeps + E <= max_sweeps:
            todo = [i for i, r in enumerate(arch.idx) if tuple(r) not in expanded]
            if not todo:
                converged = True
                break
            p = focus(_macs_from_counts(arch.counts, table.exit_macs, table.n), arch.ncorr / table.n)
            todo.sort(key=lambda i: (abs(i - p), i))
            for i in todo[:8]:
                if sw.sweeps + E > max_sweeps:
                    break
                r = arch.idx[i]
                for k in range(E):
                    add_line(k, r)
                expanded.add(tuple(r))
            arch.prune()
        info["local_search_converged"] = converged
    info["n_sweeps"] = sw.sweeps
    info["n_points"] = arch.n_points
    info["n_candidates"] = [int(o.shape[0]) for o in options]
    return arch, sw, info


def _pick(macs: np.ndarray, acc: np.ndarray, max_macs: Optional[float], min_accuracy: Optional[float],
          prefer: str) -> int:
    """Index of the chosen point: the most accurate admissible one (ties: cheaper), or with
    ``prefer="macs"`` the cheapest admissible one (ties: more accurate). With no admissible point,
    the one with the smallest total relative violation (ties: more accurate, then cheaper)."""
    ok = np.ones(macs.shape[0], dtype=bool)
    if max_macs is not None:
        ok &= macs <= max_macs
    if min_accuracy is not None:
        ok &= acc >= min_accuracy
    cand = np.flatnonzero(ok)
    if cand.size:
        if prefer == "macs":
            order = np.lexsort((-acc[cand], macs[cand]))
        else:
            order = np.lexsort((macs[cand], -acc[cand]))
        return int(cand[order[0]])
    viol = np.zeros(macs.shape[0])
    if max_macs is not None:
        viol += np.maximum(0.0, macs - max_macs) / max_macs
    if min_accuracy is not None and min_accuracy > 0:
        viol += np.maximum(0.0, min_accuracy - acc) / min_accuracy
    return int(np.lexsort((macs, -acc, viol))[0])


def _grid_search(table: ExitTable, max_macs: Optional[float], min_accuracy: Optional[float],
                 grid: Sequence[float], shared: bool, first_exit_min: float, repair_step: float,
                 repair_floor: float) -> Tuple[np.ndarray, Dict[str, Any]]:
    E = table.n_early
    lo, hi = _score_range(table.rule, table.num_classes)

    def raw(norm: Sequence[float]) -> np.ndarray:
        return np.array([lo + g * (hi - lo) for g in norm], dtype=np.float64)

    def clamp(v: List[float]) -> List[float]:
        if E and first_exit_min is not None:
            v[0] = max(v[0], first_exit_min)
        return v

    if E == 0:
        return np.zeros(0), {"grid_pick": [], "repair_steps": 0, "repaired": False}
    vectors = ([clamp([float(g)] * E) for g in grid] if shared
               else [clamp([float(g) for g in c]) for c in itertools.product(grid, repeat=E)])
    best, best_res = None, None
    for v in vectors:
        r = table.simulate(raw(v))
        if (best_res is None or r.accuracy > best_res.accuracy
                or (r.accuracy == best_res.accuracy and r.expected_macs < best_res.expected_macs)):
            best, best_res = v, r
    info: Dict[str, Any] = {"grid_pick": list(best), "repair_steps": 0, "repaired": False}
    floor = -np.inf if min_accuracy is None else min_accuracy
    eps, cur = list(best), best_res
    # NACHOS repair: only when the accuracy floor holds; lower thresholds one step at a time from
    # the last early exit backwards, skipping steps that would break the floor.
    if max_macs is not None and cur.expected_macs > max_macs and cur.accuracy >= floor:
        i = E - 1
        while i >= 0 and cur.expected_macs > max_macs:
            if eps[i] - repair_step < repair_floor - 1e-9:
                i -= 1
                continue
            trial = list(eps)
            trial[i] = round(trial[i] - repair_step, 10)
            r = table.simulate(raw(trial))
            info["repair_steps"] += 1
            if r.accuracy < floor:
                i -= 1
                continue
            eps, cur = trial, r
        info["repaired"] = cur.expected_macs <= max_macs
    info["normalized_thresholds"] = list(eps)
    return raw(eps), info


def calibrate(probs: Sequence[np.ndarray], labels: np.ndarray, exit_macs: Sequence[float],
              rule: str = "max_softmax", confidences: Optional[Sequence[np.ndarray]] = None,
              max_macs: Optional[float] = None, min_accuracy: Optional[float] = None,
              method: str = "pareto", *, prefer: str = "accuracy", max_candidates: int = 128,
              max_sweeps: int = 1024, grid: Sequence[float] = NACHOS_GRID, shared: bool = True,
              first_exit_min: Optional[float] = 0.7, repair_step: float = 0.1,
              repair_floor: float = 0.1) -> Calibration:
    """Choose one threshold per early exit on validation outputs, under an expected-MAC budget
    ``max_macs`` and an accuracy floor ``min_accuracy`` (either may be None).

    ``method="pareto"`` (default): the accuracy / expected-MAC trade-off curve over per-exit
    thresholds, then the most accurate admissible point (ties: cheaper; ``prefer="macs"`` picks the
    cheapest admissible point instead). Only the distinct score values matter: candidate thresholds
    per exit are -inf, the midpoints between consecutive distinct scores and +inf, thinned at
    sample quantiles to at most ``max_candidates`` (default 128, i.e. steps of <1% of the samples).
    With other thresholds fixed, a whole line of candidates for one exit costs O(E N) by prefix sums
    (``_Sweeper``). If the product of the candidate counts of exits 0..E-2 is at most
    ``max_sweeps`` (always for one or two early exits at the defaults) every combination is
    evaluated, each with a full line of exit E-1: the curve is then exact over the candidate grid
    (exact over all thresholds once no thinning happens). Otherwise a thinned sub-grid is evaluated
    exhaustively and refined by Pareto local search (every front point swept along every exit until
    none is left or ``max_sweeps`` lines are spent). The front is kept with pymoo's
    non-dominated sorting.

    ``method="grid"``: the NACHOS reference procedure (AI-Tech-Research-Lab/CNAS,
    ``early_exit/train.py``): one threshold shared by all early exits from ``grid`` (default
    ``NACHOS_GRID``; ``shared=False`` tries the full per-exit product instead), the first exit
    clamped to at least ``first_exit_min``, keeping the most accurate vector (ties: cheaper). Then,
    if expected MACs exceed ``max_macs`` and the accuracy floor holds, the repair step lowers the
    thresholds by ``repair_step`` from the last early exit backwards, never below ``repair_floor``,
    skipping (undoing) a step that would break ``min_accuracy`` and moving to the previous exit,
    until the budget is met. Grid values are in [0, 1]; for the entropy rule they are normalised
    confidences ``1 - H / log C`` (mapped onto the score range).

    If nothing meets the constraints, the closest point (smallest relative violation) is returned
    with ``admissible=False`` and the misses in ``macs_excess`` / ``accuracy_shortfall``.
    """
    if method not in METHODS:
        raise _bad_arg(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if prefer not in ("accuracy", "macs"):
        raise _bad_arg(f"prefer must be 'accuracy' or 'macs', got {prefer!r}")
    if int(max_candidates) < 2 or int(max_sweeps) < 1:
        raise _bad_arg("max_candidates must be >= 2 and max_sweeps >= 1")
    _check_constraints(max_macs, min_accuracy)
    table = ExitTable(probs, labels, exit_macs, rule, confidences)
    curve = None
    if method == "pareto":
        arch, sw, info = _pareto_search(
            table, int(max_candidates), int(max_sweeps),
            lambda m, a: _pick(m, a, max_macs, min_accuracy, prefer))
        options = sw.options
        thr = np.array([[options[j][r[j]] for j in range(table.n_early)] for r in arch.idx],
                       dtype=np.float64).reshape(arch.idx.shape[0], table.n_early)
        macs = _macs_from_counts(arch.counts, table.exit_macs, table.n)
        acc = arch.ncorr / table.n
        curve = ParetoCurve(macs=macs, accuracy=acc, thresholds=thr, exit_rates=arch.counts / table.n)
        thresholds = thr[_pick(macs, acc, max_macs, min_accuracy, prefer)]
    else:
        thresholds, info = _grid_search(table, max_macs, min_accuracy, grid, shared,
                                        first_exit_min, repair_step, repair_floor)
    res = table.simulate(thresholds)
    excess = 0.0 if max_macs is None else max(0.0, res.expected_macs - max_macs)
    short = 0.0 if min_accuracy is None else max(0.0, min_accuracy - res.accuracy)
    return Calibration(thresholds=res.thresholds, result=res, method=method, rule=table.rule,
                       exit_macs=table.exit_macs, admissible=(excess == 0.0 and short == 0.0),
                       macs_excess=excess, accuracy_shortfall=short, max_macs=max_macs,
                       min_accuracy=min_accuracy, curve=curve, info=info)
