"""Pieces every evaluator shares: seeds, exit rule, calibration, measured sizes, and the two steps that turn a
trained candidate into an archive record (`candidate_record`) or a final, saved solution (`final_record`)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import ConstraintError
from ...genome import Genome
from ...records import CandidateRecord, FinalRecord, utc_now
from ..explain import describe_violations

__all__ = ["candidate_seed", "exit_rule", "believed_costs", "figures", "calibrate_model", "calibrate_outputs",
           "int8_sizes", "sizes_still_hold", "over_budget_at_first_exit",
           "candidate_record", "hold_search_cost", "place_member", "final_record", "COST_MODELS", "CALIBRATIONS",
           "MODELS_DIR"]

COST_MODELS = ("staged", "paper")
CALIBRATIONS = ("pareto", "grid")
MODELS_DIR = "models"


def candidate_seed(run_seed: int, genome: Genome) -> int:
    """Training seed of a candidate: a stable hash of (run seed, genome key), the same in every process."""
    h = hashlib.sha256(f"{int(run_seed)}|{genome.key()}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def exit_rule(space) -> str:
    """Exit rule of the space's EENNs: the learned confidence (NACHOS) when it has one, else max-softmax."""
    return "confidence" if space.confidence and space.n_exit_points > 0 else "max_softmax"


def believed_costs(model, exit_macs: Sequence[float], cost_model: str) -> List[float]:
    """Per-exit costs that training and calibration use: "staged" (ours, what the device pays: backbone
    plus every head up to the exit) or "paper" (NACHOS: backbone plus the exit's own head only)."""
    if cost_model == "staged":
        return [float(m) for m in exit_macs]
    if cost_model == "paper":
        from ...macs import paper_exit_macs, profile_macs

        return [float(m) for m in paper_exit_macs(profile_macs(model))]
    raise ConstraintError(f"unknown cost model {cost_model!r}; choose one of {', '.join(COST_MODELS)}")


def figures(sim) -> Dict[str, Any]:
    """The {accuracy, exit_rates, expected_macs} triple of a `policy.SimResult`."""
    return {"accuracy": float(sim.accuracy), "exit_rates": [float(r) for r in sim.exit_rates],
            "expected_macs": float(sim.expected_macs)}


def calibrate_model(model, exit_macs: Sequence[float], x, y, rule: str, constraints, method: str = "pareto",
                    eager: bool = False, tolerance: float = 0.0, crossfit: int = 0, seed: int = 0):
    """Thresholds on (x, y) by `policy.calibrate`: with "pareto" (ours) the most accurate admissible
    point of the exact trade-off curve (with `tolerance` > 0, `Budget.accuracy_tolerance`: the cheapest
    point at most that much less accurate); "grid" is the NACHOS grid + repair (for ablations). `eager`:
    see `train.predict_exits` (no graph tracing, for a model used once). `crossfit` >= 2
    (`Budget.crossfit`): the figures are out-of-fold (`policy.crossfit_calibrate`, split seeded by `seed`)."""
    from ...predict import predict_exits

    probs, confs = predict_exits(model, x, batch_size=1000, eager=True) if eager else predict_exits(model, x)
    return calibrate_outputs(probs, confs, exit_macs, y, rule, constraints, method, tolerance, crossfit, seed)


def calibrate_outputs(probs, confs, exit_macs: Sequence[float], y, rule: str, constraints, method: str = "pareto",
                      tolerance: float = 0.0, crossfit: int = 0, seed: int = 0):
    """`calibrate_model` on outputs already computed: softmax probabilities per exit (final last) and the
    early exits' confidences (or None)."""
    from ...policy import calibrate, crossfit_calibrate

    kw = dict(rule=rule, confidences=confs if rule == "confidence" else None, max_macs=constraints.max_macs,
              min_accuracy=constraints.min_accuracy, method=method, tolerance=tolerance)
    if crossfit and crossfit > 1:
        return crossfit_calibrate(probs, y, exit_macs, folds=int(crossfit), seed=int(seed), **kw)
    return calibrate(probs, y, exit_macs, **kw)


def int8_sizes(model, x_repr, constraints, rule: Optional[str] = None,
               thresholds: Optional[Sequence[float]] = None) -> Dict[str, Optional[int]]:
    """Flash / arena bytes of the int8 staged export when a flash or RAM bound is set (else None, None).

    With `rule` and `thresholds`, those of the export at that policy, which leaves out the stages after an
    early exit whose threshold is -inf (`policy.exported_stages`); without, every stage counts.
    tflite_export is reached through its one door, lazily: only runs with a flash / RAM bound need it.
    """
    if not (constraints.max_flash or constraints.max_ram):
        return {"flash_bytes": None, "arena_bytes": None}
    from tflite_export.convert import int8_sizes as measure

    return measure(model, x_repr, need_ram=bool(constraints.max_ram), rule=rule,
                   thresholds=None if thresholds is None else [float(t) for t in thresholds])


def sizes_still_hold(sizes: Optional[Dict[str, Optional[int]]], measured_at: Sequence[Any],
                     thresholds: Sequence[Any]) -> Optional[Dict[str, Optional[int]]]:
    """`sizes` measured at thresholds `measured_at` if they still hold at `thresholds` (the export keeps the same
    stages, `policy.exported_stages`), else None (they must be measured again)."""
    from ...policy import exported_stages

    if sizes is None or exported_stages(measured_at) != exported_stages(thresholds):
        return None
    return sizes


def over_budget_at_first_exit(genome: Genome, exit_macs: Sequence[float], params: int, constraints,
                              seed: Optional[int], t0: float) -> Optional[CandidateRecord]:
    """The record of a candidate whose first exit alone costs more than max MACs (every image pays for it,
    so it is provably over budget and need not be judged), else None."""
    if exit_macs[0] <= constraints.max_macs:
        return None
    from ...macs import human

    return CandidateRecord.pruned_at_first_exit(
        genome.to_dict(), seed=seed, exit_macs=exit_macs, params=params, max_macs=constraints.max_macs,
        max_flash=constraints.max_flash, max_ram=constraints.max_ram, seconds=time.time() - t0,
        reason=f"first exit alone costs {human(exit_macs[0])} > max MACs {human(constraints.max_macs)}")


def candidate_record(genome: Genome, model, cal, exit_macs: Sequence[float], constraints, rule: str,
                     x_repr, seed: Optional[int], train_seconds: float, t0: float,
                     sizes: Optional[Dict[str, Optional[int]]] = None, **extra: Any) -> CandidateRecord:
    """The archive record of a candidate calibrated on validation (`cal` from `calibrate_model`).

    `model` may be None when `sizes` (int8 flash / arena) and the parameter count (`params=` in `extra`)
    are given: an evaluator that never builds the candidate. A size left None under a flash / RAM bound
    is allowed only for a candidate that already misses accuracy or MACs (infeasible whatever its size);
    its flash / RAM constraint value is then 0 (unmeasured), as for a candidate pruned untrained."""
    from ...policy import thresholds_to_json

    if sizes is None:
        sizes = int8_sizes(model, x_repr, constraints, rule, cal.thresholds)
    if "params" not in extra:
        extra["params"] = int(model.count_params())
    sim = cal.result
    unmeasured = [n for n, bound, key in (("flash", constraints.max_flash, "flash_bytes"),
                                          ("ram", constraints.max_ram, "arena_bytes"))
                  if bound and sizes.get(key) is None]
    if unmeasured:            # not measured because the candidate already misses accuracy or MACs (see caller)
        if constraints.meets_accuracy_and_macs(sim.accuracy, sim.expected_macs):
            raise ConstraintError(f"the int8 {' and '.join(unmeasured)} size of a candidate that meets accuracy "
                                  "and MACs must be measured")
        g = dataclasses.replace(constraints, max_flash=None, max_ram=None).violations(sim.accuracy, sim.expected_macs)
        g.update({n: 0.0 for n in unmeasured})
        extra["sizes_not_measured"] = "misses accuracy or MACs already; flash / RAM not measured"
    else:
        g = constraints.violations(sim.accuracy, sim.expected_macs, sizes["flash_bytes"], sizes["arena_bytes"])
    return CandidateRecord.measured(
        genome.to_dict(), seed=seed, accuracy=sim.accuracy, exit_rates=sim.exit_rates,
        expected_macs=sim.expected_macs, exit_macs=exit_macs, constraints=g, rule=rule,
        thresholds=thresholds_to_json(cal.thresholds), train_seconds=train_seconds,
        seconds=time.time() - t0, **sizes, **extra)


def hold_search_cost(cal, exit_macs: Sequence[float], cap: float, constraints) -> Optional[np.ndarray]:
    """Thresholds for `Budget.final_macs` "search": on the calibration's trade-off curve, the most accurate
    point (ties: cheaper) whose expected MACs at the staged `exit_macs` the device pays are at most `cap`
    and that meets the constraints' accuracy floor and MAC budget; None when there is no such point or no
    curve (calibration method "grid")."""
    curve = getattr(cal, "curve", None)
    if curve is None or not len(curve):
        return None
    staged = np.asarray(curve.exit_rates, np.float64) @ np.asarray(exit_macs, np.float64)
    acc = np.asarray(curve.accuracy, np.float64)
    ok = staged <= float(cap) * (1.0 + 1e-9)
    if constraints.max_macs is not None:
        ok &= staged <= constraints.max_macs
    if constraints.min_accuracy is not None:
        ok &= acc >= constraints.min_accuracy
    cand = np.flatnonzero(ok)
    if not cand.size:
        return None
    best = cand[np.lexsort((staged[cand], -acc[cand]))[0]]
    return np.asarray(curve.thresholds[best], np.float64)


def place_member(probs, confs, costs: Sequence[float], exit_macs: Sequence[float], y, rule: str, constraints,
                 calibration: str, tolerance: float, final_macs: str, cap: float):
    """Where the final stage puts a member on its trade-off curve: `calibrate_outputs` with the believed
    `costs`, then with `final_macs` "search" held at no more than `cap` expected MACs (`hold_search_cost`,
    when the accuracy floor can be met there); the result simulated at the staged `exit_macs` the device pays.
    Returns (calibration, the cap it was held at or None)."""
    from ...policy import simulate

    cal = calibrate_outputs(probs, confs, costs, y, rule, constraints, calibration, tolerance)
    held_at = None
    if final_macs == "search":
        held = hold_search_cost(cal, exit_macs, cap, constraints)
        if held is not None:
            cal = dataclasses.replace(cal, thresholds=held)
            held_at = float(cap)
    elif final_macs != "budget":
        raise ConstraintError(f"unknown final_macs {final_macs!r}; choose search or budget")
    cal.result = simulate(probs, y, cal.thresholds, exit_macs, rule, confs if rule == "confidence" else None)
    return cal, held_at


def final_record(record: CandidateRecord, model, data, exit_macs: Sequence[float], costs: Sequence[float],
                 rule: str, constraints, calibration: str, seed: Optional[int], out_dir: Path,
                 train_seconds: float, t0: float, final_macs: str = "search", tolerance: float = 0.0,
                 extra: Optional[Mapping[str, Any]] = None,
                 val_outputs: Optional[Tuple[Any, Any]] = None) -> FinalRecord:
    """Re-calibrate a finally trained model on validation, measure it on test, check the (true) constraints,
    and save it; a member that misses a constraint is `dropped`. Its int8 staged export is measured on TFLM
    later, by the final stage, and only if it ends in the final Pareto set (``int8_pending``; see
    `nas.final_points.measure_pending_int8`): about a quarter of a member's final cost.

    Training and threshold choice use the believed `costs`; every reported figure and the constraint check
    use the staged `exit_macs` the device pays. `final_macs` (`Budget.final_macs`): "search" keeps the
    member at no more than its search-time expected MACs when the accuracy floor can be met there
    (`hold_search_cost`), "budget" takes the most accurate thresholds within max MACs; the record's
    `calibration` field says which one was used. `extra` adds entries to the record's `extra` (the supernet
    evaluator's ``fine_tune``: whether the fine-tuned weights were kept). `val_outputs`: `predict_exits` of
    `model` on ``data.x_val`` when the caller has them already (they are not predicted again).
    """
    from ...policy import simulate, thresholds_to_json
    from ...predict import predict_exits

    conf = lambda c: c if rule == "confidence" else None  # noqa: E731
    pv, cv = predict_exits(model, data.x_val) if val_outputs is None else val_outputs
    cal, held_at = place_member(pv, cv, costs, exit_macs, data.y_val, rule, constraints, calibration, tolerance,
                                final_macs, float(record.metrics.expected_macs))
    how = {"final_macs": final_macs, "held_at": held_at, "method": calibration}
    if tolerance:
        how["tolerance"] = float(tolerance)
    probs, confs = predict_exits(model, data.x_test)
    test = simulate(probs, data.y_test, cal.thresholds, exit_macs, rule, conf(confs))
    sizes = int8_sizes(model, data.x_train[:64], constraints, rule, cal.thresholds)
    g = constraints.violations(cal.result.accuracy, cal.result.expected_macs, sizes["flash_bytes"],
                               sizes["arena_bytes"])
    failed = [n for n, v in g.items() if v is not None and v > 0]
    metrics = dict(figures(cal.result), error=1.0 - float(cal.result.accuracy), **sizes)
    fin = FinalRecord(id=str(record.id), genome=dict(record.genome), seed=seed, rule=rule,
                      thresholds=thresholds_to_json(cal.thresholds), exit_macs=[float(m) for m in exit_macs],
                      val=figures(cal.result), test=figures(test), constraints=g, metrics=metrics,
                      feasible=not failed, search_metrics={"accuracy": record.metrics.accuracy,
                                                           "expected_macs": record.metrics.expected_macs},
                      train_seconds=round(float(train_seconds), 3), extra={"calibration": how, **(extra or {})})
    if failed:
        fin.dropped = "after re-training, validation misses " + describe_violations(metrics, g, constraints, failed)
    else:
        rel = f"{MODELS_DIR}/{record.id}.keras"
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".tmp{os.getpid()}.keras")
        model.save(tmp)
        os.replace(tmp, path)
        fin.model = rel
        fin.extra["int8_pending"] = True       # measured by the final stage for the final Pareto set only
    fin.seconds = round(time.time() - t0, 3)
    fin.time = utc_now()
    return fin
