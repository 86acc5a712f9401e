"""Summaries of `benchmarks/search_speed.py` results: timing, rank fidelity against full training, front
overlap, and the Markdown table (pure functions on result rows; no TensorFlow)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import correlation  # noqa: E402


def fmt(v: Optional[float], digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def nondominated(err: Sequence[float], macs: Sequence[float]) -> List[int]:
    """Indices of the points no other point dominates (both objectives minimised; pymoo's NonDominatedSorting,
    as `nachos_tf.results`), in increasing order."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    f = np.column_stack([np.asarray(err, float), np.asarray(macs, float)])
    return sorted(int(i) for i in NonDominatedSorting().do(f, only_non_dominated_front=True))


def timing_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Seconds per candidate and candidates per minute, steady state (first call left out) and overall."""
    secs = [r["seconds"] for r in rows]
    steady = [r["seconds"] for r in rows if not r.get("first_call")] or secs
    if not secs:
        return {"n": 0}
    mean = float(np.mean(steady))
    return {"n": len(secs), "n_steady": sum(1 for r in rows if not r.get("first_call")),
            "seconds_mean": round(mean, 3), "seconds_median": round(float(np.median(steady)), 3),
            "seconds_min": round(float(np.min(steady)), 3), "seconds_max": round(float(np.max(steady)), 3),
            "first_call_seconds": [round(r["seconds"], 3) for r in rows if r.get("first_call")],
            "candidates_per_min": round(60.0 / mean, 3),
            "candidates_per_min_incl_first": round(60.0 * len(secs) / float(np.sum(secs)), 3),
            "load_avg_1min_mean": round(float(np.mean([np.mean([r["load_before"][0], r["load_after"][0]])
                                                       for r in rows if r.get("load_before") and r.get("load_after")]
                                                      or [np.nan])), 2)}


def fidelity(rows: Sequence[Dict[str, Any]], full: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Rank correlations of an evaluator's estimates with the full-training figures, and front overlap."""
    rows = [r for r in rows if r["id"] in full and r.get("accuracy") is not None]
    fu = [full[r["id"]] for r in rows]
    corr = {
        "thresholded": dict(correlation([r["accuracy"] for r in rows], [f["test"]["accuracy"] for f in fu]),
                            what="estimate: val accuracy at its calibrated thresholds (the search objective); "
                                 "full: test accuracy at thresholds calibrated on val"),
        "objective_vs_full_final_exit": dict(
            correlation([r["accuracy"] for r in rows], [f["test"]["final_exit_accuracy"] for f in fu]),
            what="estimate: thresholded val accuracy; full: final-exit test accuracy"),
        "final_exit": dict(correlation([r["final_exit_accuracy"] for r in rows],
                                       [f["test"]["final_exit_accuracy"] for f in fu]),
                           what="estimate: final-exit val accuracy; full: final-exit test accuracy (no thresholds)"),
        "expected_macs": dict(correlation([r["expected_macs"] for r in rows], [f["test"]["expected_macs"] for f in fu]),
                              what="estimate: expected MACs (val, its thresholds); full: expected MACs (test)"),
    }
    sel: Dict[str, Any] = {}
    if len(rows) >= 3:
        pe, pm = [1 - r["accuracy"] for r in rows], [r["expected_macs"] for r in rows]
        fe, fm = [1 - f["test"]["accuracy"] for f in fu], [f["test"]["expected_macs"] for f in fu]
        a, b = set(nondominated(pe, pm)), set(nondominated(fe, fm))
        ids = [r["id"] for r in rows]
        k = min(5, len(rows))
        top_p, top_f = set(np.argsort(pe, kind="stable")[:k].tolist()), set(np.argsort(fe, kind="stable")[:k].tolist())
        best_f = int(np.argmin(fe))
        sel = {"estimate_front": sorted(ids[i] for i in a), "full_front": sorted(ids[i] for i in b),
               "front_overlap": len(a & b), "front_jaccard": round(len(a & b) / len(a | b), 3),
               f"top{k}_overlap_by_accuracy": len(top_p & top_f),
               "estimate_rank_of_full_best": sorted(range(len(pe)), key=lambda i: (pe[i], i)).index(best_f) + 1,
               "what": "non-dominated sets in (error, expected MACs) by the estimate (val) and after full training "
                       "(test); top-k by thresholded accuracy; where the estimate ranks the best fully trained "
                       "genome (1 = first)"}
    return {"rank_correlation": corr, "selection": sel,
            "estimate_accuracy_range": [min((r["accuracy"] for r in rows), default=None),
                                        max((r["accuracy"] for r in rows), default=None)]}


def table(d: Dict[str, Any]) -> str:
    """The summary as Markdown (speed and fidelity per evaluator)."""
    s = d.get("summary") or {}
    lines = ["| evaluator | one-time cost (s) | s / candidate (mean / median) | candidates / min | "
             "Spearman (p) thresholded | Kendall | Spearman final exit | Spearman E[MACs] |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in (s.get("evaluators") or {}).items():
        sp, rc = e["speed"], e["rank_correlation"]
        if not sp.get("n"):
            continue
        th = rc["thresholded"]
        lines.append(f"| {name} | {fmt(e['one_time_cost'].get('total_seconds'), 0)} | {fmt(sp['seconds_mean'], 2)} / "
                     f"{fmt(sp['seconds_median'], 2)} (n = {sp['n_steady']}) | **{fmt(sp['candidates_per_min'], 2)}** | "
                     f"**{fmt(th['spearman'], 2)}** ({fmt(th['spearman_p'], 3)}) | {fmt(th['kendall'], 2)} | "
                     f"{fmt(rc['final_exit']['spearman'], 2)} | {fmt(rc['expected_macs']['spearman'], 2)} |")
    return "\n".join(lines)
