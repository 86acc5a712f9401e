"""The accuracy / expected-MAC trade-off curve over per-exit thresholds (``calibrate(method="pareto")``).

Candidate thresholds per exit (:func:`_options`), whole lines of threshold vectors by prefix sums
(:class:`_Sweeper`), the non-dominated archive (:class:`_Archive`) and the search over them
(:func:`pareto_search`).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from .simulation import ExitTable, macs_from_counts

__all__ = ["pareto_search"]


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
        macs = macs_from_counts(self.counts, self.table.exit_macs, self.table.n)
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


def pareto_search(table: ExitTable, max_candidates: int, max_sweeps: int,
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
            p = focus(macs_from_counts(arch.counts, table.exit_macs, table.n), arch.ncorr / table.n)
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
