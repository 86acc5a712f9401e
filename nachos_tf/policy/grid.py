"""The NACHOS grid search plus repair step (``calibrate(method="grid")``)."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .rules import score_range
from .simulation import ExitTable

__all__ = ["grid_search"]


def grid_search(table: ExitTable, max_macs: Optional[float], min_accuracy: Optional[float],
                 grid: Sequence[float], shared: bool, first_exit_min: float, repair_step: float,
                 repair_floor: float) -> Tuple[np.ndarray, Dict[str, Any]]:
    E = table.n_early
    lo, hi = score_range(table.rule, table.num_classes)

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
