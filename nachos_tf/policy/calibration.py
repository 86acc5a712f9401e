"""Threshold calibration: :func:`calibrate` (methods "pareto" and "grid") and its :class:`Calibration`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .checks import bad_arg, check_constraints
from .grid import grid_search
from .pareto import pareto_search
from .rules import thresholds_to_json
from .simulation import ExitTable, SimResult, macs_from_counts, simulate

__all__ = ["METHODS", "NACHOS_GRID", "ParetoCurve", "Calibration", "calibrate"]

#: Calibration methods.
METHODS: Tuple[str, ...] = ("pareto", "grid")
#: The candidate thresholds of the NACHOS reference code (shared by all early exits).
NACHOS_GRID: Tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8)


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
    """Chosen thresholds, their simulation on the calibration data and how they meet the constraints.

    Attributes:
        thresholds: (E,) one threshold per early exit.
        result: The simulation of `thresholds` on the calibration data.
        method: The calibration method (one of `METHODS`).
        rule: The exit rule the thresholds apply to.
        exit_macs: Staged cost of stopping at each exit, final last.
        admissible: Whether the thresholds meet max_macs and min_accuracy on the calibration data.
        macs_excess: max(0, expected_macs - max_macs); 0 without a budget.
        accuracy_shortfall: max(0, min_accuracy - accuracy); 0 without a floor.
        max_macs: The expected-MAC budget, or None.
        min_accuracy: The accuracy floor, or None.
        curve: The accuracy / expected-MAC trade-off curve (method "pareto" only).
        info: Details of the search (e.g. sweeps and candidates, or the grid pick and repair steps).
    """

    thresholds: np.ndarray
    result: SimResult
    method: str
    rule: str
    exit_macs: np.ndarray
    admissible: bool
    macs_excess: float
    accuracy_shortfall: float
    max_macs: Optional[float] = None
    min_accuracy: Optional[float] = None
    curve: Optional[ParetoCurve] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def evaluate(self, probs: Sequence[np.ndarray], labels: np.ndarray,
                 confidences: Optional[Sequence[np.ndarray]] = None) -> SimResult:
        """Simulate the chosen thresholds on other (e.g. test) outputs of the same model.

        Args:
            probs: (N, classes) softmax arrays, one per exit, final last.
            labels: (N,) integer labels.
            confidences: For rule ``confidence``, one (N,) sigmoid array per early exit.

        Returns:
            The :class:`SimResult` of the chosen thresholds on these outputs.

        Raises:
            DataError: Malformed probabilities, labels or confidences.
            ConstraintError: The outputs have another number of exits than the calibrated model.
        """
        return simulate(probs, labels, self.thresholds, self.exit_macs, self.rule, confidences)

    def to_dict(self, with_curve: bool = True) -> Dict[str, Any]:
        """JSON-safe form of the calibration.

        Args:
            with_curve: Include the Pareto curve (when there is one).

        Returns:
            The fields, with the simulation summarised by `SimResult.to_dict`.
        """
        d = {"thresholds": thresholds_to_json(self.thresholds), "method": self.method,
             "rule": self.rule, "exit_macs": [float(m) for m in self.exit_macs],
             "admissible": bool(self.admissible), "macs_excess": float(self.macs_excess),
             "accuracy_shortfall": float(self.accuracy_shortfall),
             "max_macs": None if self.max_macs is None else float(self.max_macs),
             "min_accuracy": None if self.min_accuracy is None else float(self.min_accuracy),
             "result": self.result.to_dict(), "info": self.info}
        if with_curve and self.curve is not None:
            d["curve"] = self.curve.to_dict()
        return d


def _pick(macs: np.ndarray, acc: np.ndarray, max_macs: Optional[float], min_accuracy: Optional[float],
          prefer: str, tolerance: float = 0.0) -> int:
    """Index of the chosen point: the most accurate admissible one (ties: cheaper), or with
    ``prefer="macs"`` the cheapest admissible one (ties: more accurate). A ``tolerance`` > 0 (with
    ``prefer="accuracy"``) takes the cheapest admissible point whose accuracy is at least the most
    accurate admissible one's minus ``tolerance`` (ties: more accurate). With no admissible point,
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
        elif tolerance > 0:
            cand = cand[acc[cand] >= acc[cand].max() - tolerance - 1e-12]
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


def calibrate(probs: Sequence[np.ndarray], labels: np.ndarray, exit_macs: Sequence[float],
              rule: str = "max_softmax", confidences: Optional[Sequence[np.ndarray]] = None,
              max_macs: Optional[float] = None, min_accuracy: Optional[float] = None,
              method: str = "pareto", *, prefer: str = "accuracy", tolerance: float = 0.0,
              max_candidates: int = 128,
              max_sweeps: int = 1024, grid: Sequence[float] = NACHOS_GRID, shared: bool = True,
              first_exit_min: Optional[float] = 0.7, repair_step: float = 0.1,
              repair_floor: float = 0.1) -> Calibration:
    """Choose one threshold per early exit on validation outputs, under an expected-MAC budget
    ``max_macs`` and an accuracy floor ``min_accuracy`` (either may be None).

    ``method="pareto"`` (default): the accuracy / expected-MAC trade-off curve over per-exit
    thresholds, then the most accurate admissible point (ties: cheaper; ``prefer="macs"`` picks the
    cheapest admissible point instead; ``tolerance`` > 0 the cheapest admissible point at most
    ``tolerance`` less accurate than the most accurate one: the knee of the curve, where an EENN's
    accuracy has levelled off while its expected MACs still rise). Only the distinct score values matter: candidate thresholds
    per exit are -inf, the midpoints between consecutive distinct scores and +inf, thinned at
    sample quantiles to at most ``max_candidates`` (default 128, i.e. steps of <1% of the samples).
    With other thresholds fixed, a whole line of candidates for one exit costs O(E N) by prefix sums
    (``policy.pareto._Sweeper``). If the product of the candidate counts of exits 0..E-2 is at most
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

    Args:
        probs: (N, classes) validation softmax arrays, one per exit, final last.
        labels: (N,) integer labels.
        exit_macs: staged cost of stopping at each exit, final last.
        rule: one of :data:`~nachos_tf.policy.RULES`.
        confidences: for rule ``confidence``, one (N,) sigmoid array per early exit.
        max_macs: expected-MAC budget, or None.
        min_accuracy: accuracy floor in [0, 1], or None.
        method: one of :data:`METHODS`.
        prefer: ``"accuracy"`` or ``"macs"`` (method "pareto").
        tolerance: accuracy (a fraction, >= 0) given up for a cheaper point (method "pareto",
            ``prefer="accuracy"``; method "grid" keeps the NACHOS rule and ignores it).
        max_candidates, max_sweeps: search budget of method "pareto".
        grid, shared, first_exit_min, repair_step, repair_floor: settings of method "grid".

    Returns:
        The :class:`Calibration` (thresholds, their simulation, admissibility, curve and info).

    Raises:
        ConstraintError: unknown method, rule or ``prefer``, bad budget or constraint values.
        DataError: malformed probabilities, labels or confidences.
    """
    if method not in METHODS:
        raise bad_arg(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if prefer not in ("accuracy", "macs"):
        raise bad_arg(f"prefer must be 'accuracy' or 'macs', got {prefer!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(tolerance) < 1.0:
        raise bad_arg(f"tolerance must be a fraction in [0, 1), got {tolerance!r}")
    if int(max_candidates) < 2 or int(max_sweeps) < 1:
        raise bad_arg("max_candidates must be >= 2 and max_sweeps >= 1")
    check_constraints(max_macs, min_accuracy)
    table = ExitTable(probs, labels, exit_macs, rule, confidences)
    curve = None
    if method == "pareto":
        arch, sw, info = pareto_search(
            table, int(max_candidates), int(max_sweeps),
            lambda m, a: _pick(m, a, max_macs, min_accuracy, prefer))
        options = sw.options
        thr = np.array([[options[j][r[j]] for j in range(table.n_early)] for r in arch.idx],
                       dtype=np.float64).reshape(arch.idx.shape[0], table.n_early)
        macs = macs_from_counts(arch.counts, table.exit_macs, table.n)
        acc = arch.ncorr / table.n
        curve = ParetoCurve(macs=macs, accuracy=acc, thresholds=thr, exit_rates=arch.counts / table.n)
        thresholds = thr[_pick(macs, acc, max_macs, min_accuracy, prefer, float(tolerance))]
    else:
        thresholds, info = grid_search(table, max_macs, min_accuracy, grid, shared,
                                        first_exit_min, repair_step, repair_floor)
    res = table.simulate(thresholds)
    excess = 0.0 if max_macs is None else max(0.0, res.expected_macs - max_macs)
    short = 0.0 if min_accuracy is None else max(0.0, min_accuracy - res.accuracy)
    return Calibration(thresholds=res.thresholds, result=res, method=method, rule=table.rule,
                       exit_macs=table.exit_macs, admissible=(excess == 0.0 and short == 0.0),
                       macs_excess=excess, accuracy_shortfall=short, max_macs=max_macs,
                       min_accuracy=min_accuracy, curve=curve, info=info)
