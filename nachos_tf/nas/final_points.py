"""Operating points of the final set: after re-training, a member that another member dominates is moved
along its own accuracy / expected-MAC curve (its thresholds only: same model) to the point that adds most
to the final front, and the int8 TFLM figures are measured for the final Pareto set only.

Why: an EENN is one model with a whole trade-off curve (one threshold vector per point). The search and the
re-training keep one point per member, and re-training re-orders close members: a member can end up both
costlier and less accurate than another, and is then useless to the user at that point. Its curve may still
reach a part of the front nobody covers (most often, cheaper than the cheapest member, with accuracy still
above the floor). `place_dominated` picks such points greedily by hypervolume gain (pymoo's HV on the
constraint box, as `results.hypervolume`); `reposition` applies them to the final records.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..records import FinalRecord

__all__ = ["place_dominated", "reposition", "measure_pending_int8", "box_scales", "box_hypervolume"]

Point = Tuple[float, float]               # (expected MACs, accuracy)


def _dominates(a: Point, b: Point) -> bool:
    """a is at least as good as b in both (fewer MACs, more accuracy) and better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def _front_ids(points: Mapping[str, Point]) -> List[str]:
    """Ids of the non-dominated points (pymoo's NonDominatedSorting on (MACs, error), as `admissible_front`)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if not points:
        return []
    ids = list(points)
    f = np.array([[points[i][0], 1.0 - points[i][1]] for i in ids], dtype=float)
    return sorted(ids[k] for k in NonDominatedSorting().do(f, only_non_dominated_front=True))


def box_scales(seen: np.ndarray, min_accuracy: Optional[float], max_macs: Optional[float]) -> Tuple[float, float]:
    """(error scale, MAC scale) of the hypervolume box, as `results.hypervolume`: (1 - min_accuracy, max_macs);
    for an unbounded side, the largest value among the (MACs, accuracy) rows of `seen`, plus 5 %."""
    seen = np.asarray(seen, dtype=float).reshape(-1, 2)
    macs_scale = float(max_macs) if max_macs is not None else 1.05 * max(float(seen[:, 0].max(initial=0.0)), 1.0)
    err_scale = (max(1.0 - float(min_accuracy), 1e-9) if min_accuracy is not None
                 else 1.05 * max(float((1.0 - seen[:, 1]).max(initial=0.0)), 1e-9))
    return err_scale, macs_scale


def box_hypervolume(points: Sequence[Point], err_scale: float, macs_scale: float) -> float:
    """pymoo's HV of (MACs, accuracy) points in the box (error / err_scale, MACs / macs_scale), reference
    (1, 1); points outside the box add nothing."""
    from pymoo.indicators.hv import HV

    if not points:
        return 0.0
    f = np.array([[(1.0 - a) / err_scale, m / macs_scale] for m, a in points], dtype=float)
    return float(HV(ref_point=np.array([1.0, 1.0]))(f))


def place_dominated(points: Mapping[str, Point], curves: Mapping[str, np.ndarray],
                    min_accuracy: Optional[float], max_macs: Optional[float]) -> Dict[str, int]:
    """New operating points for dominated members, chosen on their own curves.

    Members on the front keep their points. Then, greedily, the dominated member whose best curve point adds
    most hypervolume moves there, and joins the front; repeated until no dominated member has a point that
    adds any. A point qualifies when it meets the floor and the MAC budget, no placed member dominates or
    equals it, and it dominates none of them (the front only grows). Ties: the cheaper point, then the
    smaller id. The hypervolume is taken in the box (error / (1 - min_accuracy), MACs / max_macs) with
    reference (1, 1), as `results.hypervolume` (without a bound: the largest value seen, plus 5 %).

    Args:
        points: member id -> its current (expected MACs, accuracy).
        curves: member id -> (P, 2) array of (expected MACs, accuracy) it can reach by its thresholds
            (members without a curve are never moved).
        min_accuracy, max_macs: the user's constraints (None: unbounded).

    Returns:
        {member id: index of the chosen row of its curve}, only for the members that move.
    """
    floor = -np.inf if min_accuracy is None else float(min_accuracy)
    cap = np.inf if max_macs is None else float(max_macs)
    seen = np.concatenate([np.array(list(points.values()), dtype=float).reshape(-1, 2)]
                          + [np.asarray(c, dtype=float).reshape(-1, 2) for c in curves.values()])
    err_scale, macs_scale = box_scales(seen, min_accuracy, max_macs)
    placed = {i: points[i] for i in _front_ids(points)}
    waiting = sorted(i for i in points if i not in placed and i in curves and len(curves[i]))
    moves: Dict[str, int] = {}
    while waiting:
        base = box_hypervolume(list(placed.values()), err_scale, macs_scale)
        best: Optional[Tuple[float, float, str, int]] = None     # (-gain, macs, id, row)
        for i in waiting:
            for row, (m, a) in enumerate(np.asarray(curves[i], dtype=float)):
                p = (float(m), float(a))
                if a < floor or m > cap or any(_dominates(q, p) or q == p or _dominates(p, q) for q in placed.values()):
                    continue
                gain = box_hypervolume(list(placed.values()) + [p], err_scale, macs_scale) - base
                key = (-gain, p[0], i, row)
                if gain > 1e-12 and (best is None or key < best):
                    best = key
        if best is None:
            break
        _, _, i, row = best
        moves[i] = row
        placed[i] = tuple(float(v) for v in curves[i][row])
        waiting.remove(i)
    return moves


def _pareto_method(fin: FinalRecord) -> bool:
    return (fin.extra.get("calibration") or {}).get("method") == "pareto"


def reposition(finals: Sequence[FinalRecord], out_dir: Path, data, constraints) -> Tuple[List[FinalRecord], List[str]]:
    """Move dominated members of the final set to the points `place_dominated` picks (see the module).

    Only kept members calibrated by the exact trade-off curve (calibration method "pareto") are moved, and only
    where the int8 export at the new point still meets the flash / RAM bounds (it may keep other stages). A
    moved member gets new thresholds, validation and test figures from its saved model, its int8 figures
    marked pending (`measure_pending_int8`), and ``calibration.moved`` records where it was.

    Args:
        finals: the final records (kept and dropped; the newest per member).
        out_dir: the run folder (the members' saved models).
        data: the run's Dataset (validation and test).
        constraints: the user's constraints.

    Returns:
        (the final records with moved members replaced, ids of the moved members).
    """
    import keras

    from ..policy import simulate, thresholds_to_json
    from ..predict import predict_exits
    from .evaluators.common import calibrate_outputs, figures, int8_sizes, sizes_still_hold

    kept = [f for f in finals if not f.dropped]
    points = {f.id: (float(f.val["expected_macs"]), float(f.val["accuracy"])) for f in kept}
    front = set(_front_ids(points))
    curves, cache = {}, {}
    for f in kept:
        if f.id in front or not _pareto_method(f) or not f.model or not (Path(out_dir) / f.model).is_file():
            continue
        model = keras.models.load_model(Path(out_dir) / f.model, compile=False)
        pv, cv = predict_exits(model, data.x_val)
        cal = calibrate_outputs(pv, cv, f.exit_macs, data.y_val, f.rule, constraints, "pareto")
        if cal.curve is None or not len(cal.curve):
            continue
        staged = np.asarray(cal.curve.exit_rates, np.float64) @ np.asarray(f.exit_macs, np.float64)
        curves[f.id] = np.stack([staged, np.asarray(cal.curve.accuracy, np.float64)], axis=1)
        cache[f.id] = (model, pv, cv, cal.curve)
    moves = place_dominated(points, curves, constraints.min_accuracy, constraints.max_macs)
    conf = lambda f, c: c if f.rule == "confidence" else None  # noqa: E731
    out: List[FinalRecord] = []
    moved: List[str] = []
    for f in finals:
        if f.id not in moves:
            out.append(f)
            continue
        t0 = time.time()
        model, pv, cv, curve = cache[f.id]
        th = np.asarray(curve.thresholds[moves[f.id]], np.float64)
        val = simulate(pv, data.y_val, th, f.exit_macs, f.rule, conf(f, cv))
        probs, confs = predict_exits(model, data.x_test)
        test = simulate(probs, data.y_test, th, f.exit_macs, f.rule, conf(f, confs))
        sizes = {"flash_bytes": f.metrics.get("flash_bytes"), "arena_bytes": f.metrics.get("arena_bytes")}
        if constraints.max_flash or constraints.max_ram:    # the export at the new point may keep other stages
            sizes = sizes_still_hold(sizes, f.thresholds, th) or int8_sizes(model, data.x_train[:64], constraints,
                                                                             f.rule, th)
        g = constraints.violations(val.accuracy, val.expected_macs, sizes["flash_bytes"], sizes["arena_bytes"])
        if any((g.get(n) or 0.0) > 0 for n in ("flash", "ram")):
            out.append(f)                                   # the cheaper point would not fit: stay where it was
            continue
        metrics = dict(f.metrics, **figures(val), **sizes, error=1.0 - float(val.accuracy))
        how = dict(f.extra.get("calibration") or {})
        how["moved"] = {"from": {"accuracy": f.val["accuracy"], "expected_macs": f.val["expected_macs"]},
                        "reason": "dominated by another member after re-training"}
        extra = dict(f.extra, calibration=how, int8_pending=True)
        moved.append(f.id)
        out.append(dataclasses.replace(
            f, thresholds=thresholds_to_json(th), val=figures(val), test=figures(test), constraints=g,
            metrics=metrics, int8=None, extra=extra, seconds=round(f.seconds + time.time() - t0, 3)))
    return out, sorted(moved)


def measure_pending_int8(fin: FinalRecord, out_dir: Path, data) -> FinalRecord:
    """The record with its int8 figures measured (staged int8 export on the TFLM micro kernels, at its
    thresholds) when they are pending; otherwise the record itself."""
    if not fin.extra.get("int8_pending") or fin.dropped or not fin.model:
        return fin
    import keras

    from tflite_export.convert import int8_report

    t0 = time.time()
    model = keras.models.load_model(Path(out_dir) / fin.model, compile=False)
    q = int8_report(model, data.x_train, data.x_test, data.y_test, fin.rule, fin.thresholds, fin.exit_macs)
    extra = {k: v for k, v in fin.extra.items() if k != "int8_pending"}
    return dataclasses.replace(fin, int8=q, extra=extra, seconds=round(fin.seconds + time.time() - t0, 3))
