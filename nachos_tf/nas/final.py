"""The final stage of a search: re-train (finalize) the admissible front with the evaluator, keep what still
meets the user's constraints on validation, and write ``pareto.json``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..records import CandidateRecord, FinalRecord
from ..results import PARETO, admissible_front, write_json
from .final_points import measure_pending_int8, reposition
from .pool import CandidatePool, fmt_time
from ..macs import human as _human

__all__ = ["spread", "by_hypervolume", "finalists", "leading_layers", "rescored", "distinct", "screened",
           "pareto_doc", "final_stage", "finalize_task", "int8_task"]


def spread(front: Sequence[CandidateRecord], k: int) -> List[CandidateRecord]:
    """At most k members of a front sorted by MACs, evenly spread (both ends kept; k = 1: the most accurate)."""
    if len(front) <= k:
        return list(front)
    if k == 1:
        return [min(front, key=lambda r: (r.metrics.error, r.metrics.expected_macs))]
    idx = sorted({int(round(i)) for i in np.linspace(0, len(front) - 1, k)})
    return [front[i] for i in idx]


def by_hypervolume(layer: Sequence[CandidateRecord], k: int, min_accuracy: Optional[float] = None,
                   max_macs: Optional[float] = None) -> List[CandidateRecord]:
    """At most k members of a front that together cover most of the user's constraint box, sorted by MACs.

    Greedy: each step takes the member whose (expected MACs, accuracy) point adds most hypervolume to the
    members taken (pymoo's HV in the box of `results.hypervolume`; ties: the cheaper, then the smaller id).
    Members that add nothing (e.g. below the user's accuracy floor, feasible only under the search's
    slack) fill the remaining places by `spread`.

    Args:
        layer: a non-dominated set of records.
        k: how many to take.
        min_accuracy, max_macs: the user's constraints (None: unbounded; the box then ends 5 % past the
            largest value seen).

    Returns:
        The chosen records, by expected MACs.
    """
    from .final_points import box_hypervolume, box_scales

    pts = {r.id: (float(r.metrics.expected_macs), float(r.metrics.accuracy)) for r in layer}
    err_scale, macs_scale = box_scales(np.array(list(pts.values())), min_accuracy, max_macs)
    picked: List[CandidateRecord] = []
    while len(picked) < min(k, len(layer)):
        taken = [pts[r.id] for r in picked]
        base = box_hypervolume(taken, err_scale, macs_scale)
        best = None
        for r in layer:
            if r in picked:
                continue
            gain = box_hypervolume(taken + [pts[r.id]], err_scale, macs_scale) - base
            key = (-gain, pts[r.id][0], str(r.id))
            if gain > 1e-12 and (best is None or key < best[0]):
                best = (key, r)
        if best is None:
            break
        picked.append(best[1])
    picked += spread([r for r in layer if r not in picked], k - len(picked)) if len(picked) < k else []
    return sorted(picked, key=lambda r: (pts[r.id][0], -pts[r.id][1], str(r.id)))


def finalists(records: Sequence[CandidateRecord], k: int, min_accuracy: Optional[float] = None,
              max_macs: Optional[float] = None, rule: str = "spread"
              ) -> Tuple[List[CandidateRecord], List[CandidateRecord]]:
    """The k candidates to re-train, and the reserves tried when one of them is dropped after re-training.

    k members of the admissible front: spread evenly by MACs (`spread`, rule "spread") or those that
    together cover most of the constraint box (`by_hypervolume`, rule "hypervolume"). When the front has
    fewer than k members, the next non-dominated layers of the
    feasible candidates (each chosen the same way) fill the rest: search-time estimates of close
    candidates are noisy, and re-training re-orders them, so a front member of the final Pareto set may come
    from the second layer. Reserves: the rest of the front, most accurate first, then the rest of the layers
    used.

    Args:
        records: the search's candidate records (infeasible ones are ignored).
        k: how many to re-train (`Budget.max_final`).
        min_accuracy, max_macs: the user's constraints (the hypervolume box).
        rule: "spread" or "hypervolume" (`Budget.finalists`).

    Returns:
        (chosen, reserves).

    Raises:
        ConstraintError: an unknown rule.
    """
    from ..errors import ConstraintError
    from .settings import FINALISTS

    if rule not in FINALISTS:
        raise ConstraintError(f"unknown finalist rule {rule!r}; choose {' or '.join(FINALISTS)}")
    left = [r for r in records if r.feasible]
    chosen: List[CandidateRecord] = []
    reserves: List[CandidateRecord] = []
    while left and len(chosen) < k:
        layer = admissible_front(left)
        picked = (by_hypervolume(layer, k - len(chosen), min_accuracy, max_macs) if rule == "hypervolume"
                  else spread(layer, k - len(chosen)))
        chosen += picked
        reserves += sorted((r for r in layer if r not in picked),
                           key=lambda r: (r.metrics.error, r.metrics.expected_macs, str(r.id)))
        ids = {r.id for r in layer}
        left = [r for r in left if r.id not in ids]
    return chosen, reserves


def leading_layers(records: Sequence[CandidateRecord], n: int) -> List[CandidateRecord]:
    """The first n feasible candidates by non-dominated layer (the admissible front, then the next layers;
    the last layer used is cut to size by `spread`)."""
    left = [r for r in records if r.feasible]
    out: List[CandidateRecord] = []
    while left and len(out) < n:
        layer = admissible_front(left)
        out += spread(layer, n - len(out))
        ids = {r.id for r in layer}
        left = [r for r in left if r.id not in ids]
    return out


def rescored(records: Sequence[CandidateRecord], evaluator, budget, say: Callable[[str], Any]) -> List[CandidateRecord]:
    """The candidates the finalists are chosen from: the `Budget.rescore` leading ones judged again by the
    evaluator's ``rescore`` (the supernet evaluator: on the whole validation split), when it has one and the
    budget asks for it; else every record as the search judged it."""
    fn = getattr(evaluator, "rescore", None)
    if not budget.rescore or fn is None:
        return list(records)
    lead = leading_layers(records, budget.rescore)
    t0 = time.time()
    before = sum(1 for r in lead if r.extra.get("rescored"))     # judged again during the search (confirm)
    again = fn(lead)
    if not any(r.extra.get("rescored") for r in again):         # the search already judged on the whole split
        return list(records)
    n_val = next(r.extra["rescored"]["n_val"] for r in again if r.extra.get("rescored"))
    front = admissible_front(again)
    during = f"; {before} of them during the search" if before else ""
    say(f"re-scored the {len(again)} leading candidates on the whole validation split ({n_val} images, "
        f"{fmt_time(time.time() - t0)}{during}): {len(front)} on the front, {sum(r.feasible for r in again)} "
        "feasible")
    return again if front else list(records)


def distinct(records: Sequence[CandidateRecord]) -> List[CandidateRecord]:
    """One record per operating point: of the feasible records with the same accuracy, expected MACs and exit
    rates (networks that differ only in parts no image reaches at their thresholds, e.g. the stages after an
    exit every image takes), the one whose full network is cheapest (then the smaller id)."""
    best: Dict[tuple, CandidateRecord] = {}
    for r in records:
        if not r.feasible:
            continue
        m = r.metrics
        key = (round(float(m.accuracy), 9), round(float(m.expected_macs), 3),
               tuple(round(float(x), 9) for x in (m.exit_rates or ())))
        cost = (float(r.exit_macs[-1]) if r.exit_macs else 0.0, str(r.id))
        old = best.get(key)
        if old is None or cost < (float(old.exit_macs[-1]) if old.exit_macs else 0.0, str(old.id)):
            best[key] = r
    keep = {id(r) for r in best.values()}
    return [r for r in records if id(r) in keep]


def screened(records: Sequence[CandidateRecord], evaluator, budget, say: Callable[[str], Any]) -> List[CandidateRecord]:
    """The candidates the finalists are chosen from at a middle fidelity: the `Budget.screen` leading ones
    (one per operating point, `distinct`) judged by the evaluator's ``screen`` (the supernet evaluator: a brief
    fine-tune each), one at a time with a progress line, when it has one and the budget asks for it; else
    `records` as they are. Only the screened candidates are returned (the finalists and their reserves come
    from them); when none of them stays feasible, `records` as they are.
    """
    fn = getattr(evaluator, "screen", None)
    if not budget.screen or fn is None:
        return list(records)
    lead = leading_layers(distinct(records), budget.screen)
    t0 = time.time()
    say(f"screening the {len(lead)} leading candidates: a brief fine-tune each "
        f"({budget.screen_train or 'all'} training images, one epoch), judged on the whole validation split")
    out: List[CandidateRecord] = []
    for i, r in enumerate(lead):
        new = fn([r])[0]
        out.append(new)
        was = new.extra.get("screened", {})
        before = was.get("before_accuracy", r.metrics.accuracy)
        say(f"  [{i + 1}/{len(lead)}] {r.id}: val acc {before:.4f} -> {new.metrics.accuracy:.4f}, E[MACs] "
            f"{_human(new.metrics.expected_macs)}{'' if new.feasible else ' (infeasible)'}")
    front = admissible_front(out)
    say(f"screened {len(out)} candidates in {fmt_time(time.time() - t0)}: {len(front)} on the front")
    return out if front else list(records)


def pareto_doc(constraints, finals: Sequence[FinalRecord]) -> Dict[str, Any]:
    """pareto.json: the kept final records, non-dominated on (val error, val expected MACs)."""
    kept = [f for f in finals if not f.dropped]
    front = admissible_front([dict(f.to_dict(), feasible=True) for f in kept])
    front_ids = {f["id"] for f in front}
    sols = [{"id": f.id, "genome": f.genome, "model": f.model, "rule": f.rule, "thresholds": f.thresholds,
             "exit_macs": f.exit_macs, "val": f.val, "test": f.test, "int8": f.int8}
            for f in kept if f.id in front_ids]
    sols.sort(key=lambda s: (s["val"]["expected_macs"], -s["val"]["accuracy"], s["id"]))
    return {"constraints": constraints.to_dict(), "solutions": sols}


def final_stage(pool: CandidatePool, done: Sequence[FinalRecord], evaluator, constraints, budget, out_dir: Path,
                progress: Optional[Callable[[str], Any]], data=None, backend=None) -> Dict[str, Any]:
    """Finalize the admissible front (reusing finished finalizations from the archive); write pareto.json.

    After re-training, a member that another one dominates is moved along its own trade-off curve to the
    point that adds most to the final front, if any (`final_points.reposition`); then the int8 TFLM figures
    of the final Pareto set are measured (`final_points.measure_pending_int8`). Each step appends the
    member's updated line to the archive, so an interrupted final stage resumes where it stopped.

    Args:
        pool: the search's pool (its records give the front; finals are appended to its archive).
        done: final records already in the archive (an interrupted run's).
        evaluator: the run's evaluator (its `finalize` re-trains one member).
        constraints: the user's constraints (what a finalized member must meet on validation).
        budget: the run's budget (`max_final` members chosen by `finalists`, after `rescored`).
        data: the run's Dataset (validation / test for moved members, int8 figures); None: neither step.
        backend: where the re-trainings and int8 measurements run (`nas.backends`; with local worker processes
            they run in parallel, with the same results); None: here, one after another.

    Returns:
        The pareto.json document.
    """
    say = progress or (lambda s: None)
    records = screened(rescored(pool.records, evaluator, budget, say), evaluator, budget, say)
    front = admissible_front(records)
    chosen, reserves = finalists(records, budget.max_final, constraints.min_accuracy, constraints.max_macs,
                                 budget.finalists)
    queue = chosen + reserves             # if a member is dropped after re-training, one reserve is tried
    by_id = {r.id: r for r in done}
    if chosen:
        extra = len(chosen) - min(len(front), len(chosen))
        more = f" (the front and {extra} of the next non-dominated layers)" if extra else ""
        say(f"admissible front: {len(front)} candidates; re-training {len(chosen)}{more} with the final budget "
            f"({budget.final_train or 'all'} samples, {budget.final_epochs}+{budget.final_head_epochs} epochs)")
    by_pos: Dict[int, FinalRecord] = {}
    first = queue[:budget.max_final]
    _finalize_into(by_pos, list(enumerate(first)), len(chosen), by_id, evaluator, backend, pool, out_dir, say)
    kept = sum(not f.dropped for f in by_pos.values())
    if kept < budget.max_final and len(queue) > len(first):      # one reserve for the dropped, as before
        _finalize_into(by_pos, [(len(first), queue[len(first)])], len(chosen), by_id, evaluator, backend, pool,
                       out_dir, say)
    finals: List[FinalRecord] = [by_pos[i] for i in sorted(by_pos)]
    if data is not None:
        finals = _reposition(finals, pool, out_dir, data, constraints, say)
        doc = pareto_doc(constraints, finals)
        on_front = {s["id"] for s in doc["solutions"]}
        pending = [(k, (fin, str(out_dir))) for k, fin in enumerate(finals)
                   if fin.id in on_front and fin.extra.get("int8_pending")]
        for k, q in _tasks(backend, evaluator, int8_task, pending):
            finals[k] = q
            pool.archive.append(q)
            say(f"  {q.id}: int8 on TFLM: test acc {q.int8['accuracy']:.4f}, E[MACs] "
                f"{_human(q.int8['expected_macs'])}")
    doc = pareto_doc(constraints, finals)
    kept_ids = {f.id for f in finals if not f.dropped}
    dominated = sorted(kept_ids - {s["id"] for s in doc["solutions"]})
    if dominated:
        say(f"  not in the final Pareto set (dominated after re-training): {', '.join(dominated)}")
    write_json(out_dir / PARETO, doc)
    return doc


def finalize_task(evaluator, index: int, item: Tuple[CandidateRecord, str]) -> Tuple[int, FinalRecord]:
    """A backend task: ``evaluator.finalize(record, out_dir)`` (in a worker process, or here; both run with the
    run's thread count)."""
    record, out_dir = item
    return index, evaluator.finalize(record, Path(out_dir))


def int8_task(evaluator, index: int, item: Tuple[FinalRecord, str]) -> Tuple[int, FinalRecord]:
    """A backend task: `measure_pending_int8` on the evaluator's dataset (in a worker process, or here)."""
    fin, out_dir = item
    return index, measure_pending_int8(fin, Path(out_dir), evaluator.context.dataset())


def _tasks(backend, evaluator, task, keyed: Sequence[Tuple[Any, Any]]):
    """``(key, result)`` of `task` on each (key, item), as each finishes, through `backend` (None: here, in order)."""
    from .backends import LocalBackend

    run = (backend if backend is not None else LocalBackend(evaluator)).map(task, [item for _, item in keyed])
    for j, result in run:
        yield keyed[j][0], result


def _finalize_into(by_pos: Dict[int, FinalRecord], todo: Sequence[Tuple[int, CandidateRecord]], n_chosen: int,
                   by_id: Mapping[str, FinalRecord], evaluator, backend, pool: CandidatePool, out_dir: Path,
                   say: Callable[[str], Any]) -> None:
    """Finalize the (queue position, record) pairs into `by_pos`: those re-trained earlier from the archive, the
    others through the backend (in parallel with worker processes); each new one archived as it finishes."""
    fresh = []
    for pos, rec in todo:
        prev = by_id.get(rec.id)
        if prev and (prev.dropped or (prev.model and (out_dir / prev.model).exists())):
            by_pos[pos] = prev
            say(f"{_tag(pos, n_chosen)} {rec.id}: re-trained earlier (archive)")
        else:
            fresh.append(((pos, rec), (rec, str(out_dir))))
    prepare = getattr(evaluator, "prepare_final", None)
    if fresh and callable(prepare):            # work every finalist shares, done once (split over the workers)
        prepare(lambda task, items: _tasks(backend, evaluator, task, list(enumerate(items))),
                backend.map_workers if backend is not None else 1)
    for (pos, rec), fin in _tasks(backend, evaluator, finalize_task, fresh):
        if rec.extra.get("screened"):      # the middle fidelity it was chosen on, next to its search figures
            was = rec.extra["screened"]
            fin.extra["screened"] = dict(was, accuracy=float(rec.metrics.accuracy),
                                         expected_macs=float(rec.metrics.expected_macs))
            fin.search_metrics = {"accuracy": was["before_accuracy"], "expected_macs": was["before_expected_macs"]}
        pool.archive.append(fin)
        by_pos[pos] = fin
        say(f"{_tag(pos, n_chosen)} {rec.id}: {_final_line(fin)}")


def _tag(pos: int, n_chosen: int) -> str:
    return f"  [{pos + 1}/{n_chosen}]" if pos < n_chosen else "  [reserve]"


def _final_line(fin: FinalRecord) -> str:
    """What a finalized member's progress line says after its id."""
    if fin.dropped:
        return f"dropped: {fin.dropped}"
    held = (fin.extra.get("calibration") or {}).get("held_at")
    at = f" (held at its search cost, {_human(held)})" if held else ""
    tuned = fin.extra.get("fine_tune") or {}
    if tuned and not tuned.get("kept"):
        at += (f"; inherited weights kept (fine-tuned: val acc {tuned['fine_tuned_accuracy']:.4f} "
               f"< {tuned['inherited_accuracy']:.4f})")
    return (f"val acc {fin.val['accuracy']:.4f}, E[MACs] {_human(fin.val['expected_macs'])}{at}; test acc "
            f"{fin.test['accuracy']:.4f}, E[MACs] {_human(fin.test['expected_macs'])} ({fmt_time(fin.seconds)})")


def _reposition(finals: List[FinalRecord], pool: CandidatePool, out_dir: Path, data, constraints,
                say: Callable[[str], Any]) -> List[FinalRecord]:
    """`final_points.reposition`, each moved member's new line appended to the archive and announced."""
    finals, moved = reposition(finals, out_dir, data, constraints)
    for fin in finals:
        if fin.id in moved:
            pool.archive.append(fin)
            was = fin.extra["calibration"]["moved"]["from"]
            say(f"  {fin.id}: dominated after re-training at val acc {was['accuracy']:.4f}, E[MACs] "
                f"{_human(was['expected_macs'])}; moved along its own curve to val acc {fin.val['accuracy']:.4f}, "
                f"E[MACs] {_human(fin.val['expected_macs'])} (test acc {fin.test['accuracy']:.4f})")
    return finals
