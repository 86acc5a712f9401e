"""The genomes and the stand-alone full-training reference of `benchmarks/search_speed.py` (issue 12).

`sample_genomes` draws the benchmark's genomes (the issue-4 ones: `SearchSpace.sample(seed)` for seeds 0..,
leaving out those the search would prune untrained), `full_training` trains one of them stand-alone as the
reference (FULL_SETTINGS, or a longer schedule), `reference_results` reads a committed reference in either
format, and `Capture` reads the per-exit validation accuracies the evaluators hand to the calibration.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from _common import loadavg, utc_now

import nachos_tf as nt
from nachos_tf import policy as P
from nachos_tf.nas import candidate_seed, exit_rule

FULL_SETTINGS = {"train_samples": 54000, "epochs": 1, "head_epochs": 1, "batch_size": 64, "learning_rate": 0.003,
                 "loss": "NACHOS (LossConfig.nachos(mac_budget=max_macs))",
                 "schedule": "train_candidate: backbone phase (final exit CE) then exit phase (NACHOS loss)",
                 "calibration": "calibrate_model on the whole validation split (policy.calibrate, method 'pareto', "
                                "rule = exit_rule(space))",
                 "figures": "test split at those thresholds; final exit = argmax of the last exit",
                 "seed": "candidate_seed(run_seed, genome), as the search"}


# --------------------------------------------------------------------------------------------------
# capturing the evaluator's exit probabilities (pass-through; no extra work)
# --------------------------------------------------------------------------------------------------

class Capture:
    """Wraps `nachos_tf.policy.calibrate` and `crossfit_calibrate` (which the evaluators' `calibrate_model`
    imports at call time) so that the per-exit validation accuracies of the model being calibrated (on all
    the samples it is given) can be read afterwards."""

    def __init__(self) -> None:
        self.exit_acc: Optional[List[float]] = None
        for name in ("calibrate", "crossfit_calibrate"):
            setattr(P, name, self._wrap(getattr(P, name)))

    def _wrap(self, orig):
        def wrapped(probs, labels, *args, **kwargs):
            y = np.asarray(labels).reshape(-1)
            self.exit_acc = [float((np.asarray(p).argmax(axis=1) == y).mean()) for p in probs]
            return orig(probs, labels, *args, **kwargs)
        return wrapped

    def take(self) -> Optional[List[float]]:
        out, self.exit_acc = self.exit_acc, None
        return out


# --------------------------------------------------------------------------------------------------
# genomes and the stand-alone full-training results
# --------------------------------------------------------------------------------------------------

def genome_id(genome) -> str:
    """Short stable id of a genome (sha256 of its key), as in the issue-4 results."""
    return hashlib.sha256(genome.key().encode()).hexdigest()[:10]


def reference_results(ref: Optional[Dict[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]],
                                                              Optional[Dict[str, Any]]]:
    """(genomes by id, full-training result by id, the issue-4 summary) of a committed search_speed.json
    in the issue-4 format (``candidates[*].full``) or this one (``full_training``)."""
    if not ref:
        return {}, {}, None
    genomes = dict(ref.get("genomes") or {})
    if "full_training" in ref:
        return genomes, dict(ref["full_training"]["results"]), ref.get("issue4_summary")
    full = {c["id"]: c["full"] for c in ref.get("candidates", []) if c.get("full")}
    s = ref.get("summary") or {}
    issue4 = {"candidates_per_min": s.get("candidates_per_min"), "seconds_per_candidate": s.get("seconds_per_candidate"),
              "rank_correlation": s.get("rank_correlation"), "started": ref.get("started"),
              "wall_seconds": ref.get("wall_seconds"), "load_avg": (ref.get("machine") or {}).get("load_avg_start"),
              "note": "the proxy as measured by the issue-4 version of this benchmark (nachos_tf/search.py)"}
    return genomes, full, issue4


def sample_genomes(space, n: int, first_seed: int, max_macs: float):
    """n distinct genomes from space.sample(seed) for seeds first_seed, first_seed + 1, ..., leaving out those
    whose first exit alone costs more than max_macs (the search prunes them untrained: no accuracy).
    Returns ({id: {sample_seed, exit_macs, genome}}, skipped [{sample_seed, reason}])."""
    out: Dict[str, Any] = {}
    skipped, s = [], first_seed
    while len(out) < n:
        g = space.sample(seed=s)
        gid = genome_id(g)
        if gid in out:
            skipped.append({"sample_seed": s, "reason": "duplicate genome"})
        else:
            macs = exit_macs_of(space, g)
            if macs[0] > max_macs:
                skipped.append({"sample_seed": s, "id": gid,
                                "reason": f"first exit alone costs {macs[0]} MACs > max_macs (pruned untrained)"})
            else:
                out[gid] = {"sample_seed": s, "exit_macs": macs, "genome": g.to_dict()}
        s += 1
    return out, skipped


def exit_macs_of(space, genome) -> List[int]:
    """Staged exit MACs of a genome's network (profiler)."""
    import keras

    keras.backend.clear_session()
    return [int(m) for m in nt.profile_macs(nt.build_eenn(space, genome)).exit_macs]


def full_training(space, data, genome, constraints, run_seed: int, train_data, capture: Capture,
                  settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Stand-alone full training of one genome (`settings`, default FULL_SETTINGS); figures on test."""
    from nachos_tf.nas.evaluators.common import calibrate_model
    from nachos_tf.nas.evaluators.proxy import train_candidate

    cseed = candidate_seed(run_seed, genome)
    rule = exit_rule(space)
    lb, t0 = loadavg(), time.perf_counter()
    loss = nt.LossConfig.nachos(mac_budget=constraints.max_macs)
    fs = settings or FULL_SETTINGS
    model, exit_macs, train_s = train_candidate(space, genome, train_data, loss, cseed, fs["epochs"],
                                                fs["head_epochs"], fs["batch_size"], fs["learning_rate"])
    capture.take()
    cal = calibrate_model(model, exit_macs, data.x_val, data.y_val, rule, constraints)
    val_exit_acc = capture.take()
    probs, confs = nt.predict_exits(model, data.x_test)
    test = P.simulate(probs, data.y_test, cal.thresholds, exit_macs, rule, confs if rule == "confidence" else None)
    test_exit_acc = [float((p.argmax(axis=1) == data.y_test).mean()) for p in probs]
    return {"id": genome_id(genome), "seed": cseed, "seconds": round(time.perf_counter() - t0, 3),
            "train_seconds": round(train_s, 3), "load_before": lb, "load_after": loadavg(), "finished": utc_now(),
            "test": {"accuracy": float(test.accuracy), "expected_macs": float(test.expected_macs),
                     "exit_rates": [float(r) for r in test.exit_rates],
                     "final_exit_accuracy": test_exit_acc[-1], "exit_accuracy": test_exit_acc},
            "val": {"accuracy": float(cal.result.accuracy), "expected_macs": float(cal.result.expected_macs),
                    "final_exit_accuracy": None if val_exit_acc is None else val_exit_acc[-1]},
            "thresholds": P.thresholds_to_json(cal.thresholds), "total_macs": int(exit_macs[-1]),
            "params": int(model.count_params())}
