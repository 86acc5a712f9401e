"""`Budget.final_macs` "search": the final stage re-calibrates a re-trained member at no more than its
search-time expected MACs. Checked against a brute force over every threshold vector."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from nachos_tf.errors import ConstraintError
from nachos_tf.nas import Budget, Constraints
from nachos_tf.nas.evaluators.common import hold_search_cost
from nachos_tf.policy import calibrate, exit_scores, simulate


def _outputs(seed: int, n: int = 60, classes: int = 4, exits: int = 3):
    """Softmax outputs whose accuracy grows with depth, and confidences loosely tied to correctness."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    probs, confs = [], []
    for e in range(exits):
        logits = rng.normal(0, 1, (n, classes))
        logits[np.arange(n), y] += 0.8 + 0.9 * e
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        probs.append(p)
        if e < exits - 1:
            right = (p.argmax(1) == y).astype(float)
            confs.append(np.clip(0.5 * right + rng.uniform(0, 0.6, n), 0, 1))
    return probs, confs, y


def _brute(probs, confs, y, exit_macs, cap, floor, max_macs):
    """(accuracy, expected MACs) of the most accurate threshold vector (ties: cheaper) within the cap,
    the floor and the budget, over every vector of midpoints between the distinct exit scores (the rule's
    cumulative confidences)."""
    options = []
    for c in exit_scores(probs, "confidence", confs):
        v = np.unique(c)
        options.append(np.concatenate(([-np.inf], (v[1:] + v[:-1]) / 2, [np.inf])))
    best = None
    for t in itertools.product(*options):
        r = simulate(probs, y, np.array(t), exit_macs, "confidence", confs)
        if r.expected_macs > min(cap, max_macs) * (1 + 1e-9) or r.accuracy < floor:
            continue
        key = (-r.accuracy, r.expected_macs)
        best = key if best is None or key < best else best
    return None if best is None else (-best[0], best[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_thresholds_are_the_most_accurate_within_the_search_cost(seed):
    probs, confs, y = _outputs(seed)
    exit_macs = [100.0, 250.0, 600.0]
    constraints = Constraints(min_accuracy=0.3, max_macs=550.0)
    cal = calibrate(probs, y, exit_macs, rule="confidence", confidences=confs, max_macs=constraints.max_macs,
                    min_accuracy=constraints.min_accuracy)
    free = cal.result
    for cap in (free.expected_macs * 0.6, free.expected_macs * 0.85, 1e9):
        held = hold_search_cost(cal, exit_macs, cap, constraints)
        want = _brute(probs, confs, y, exit_macs, cap, constraints.min_accuracy, constraints.max_macs)
        if want is None:
            assert held is None
            continue
        got = simulate(probs, y, held, exit_macs, "confidence", confs)
        assert got.accuracy == pytest.approx(want[0], abs=1e-12)
        assert got.expected_macs == pytest.approx(want[1], rel=1e-12)
        assert got.expected_macs <= cap * (1 + 1e-9)
    # no cap at all: the same point the calibration itself chose
    unc = simulate(probs, y, hold_search_cost(cal, exit_macs, 1e9, constraints), exit_macs, "confidence", confs)
    assert (unc.accuracy, unc.expected_macs) == pytest.approx((free.accuracy, free.expected_macs))


def test_no_point_within_the_cost_that_meets_the_floor_gives_none():
    probs, confs, y = _outputs(3)
    exit_macs = [100.0, 250.0, 600.0]
    cap = 200.0
    best = _brute(probs, confs, y, exit_macs, cap, 0.0, 600.0)     # the most accurate point within the cap
    free = Constraints(min_accuracy=0.01, max_macs=600.0)
    cal = calibrate(probs, y, exit_macs, rule="confidence", confidences=confs, max_macs=600.0)
    got = simulate(probs, y, hold_search_cost(cal, exit_macs, cap, free), exit_macs, "confidence", confs)
    assert (got.accuracy, got.expected_macs) == pytest.approx(best)
    above = Constraints(min_accuracy=best[0] + 1e-6, max_macs=600.0)
    assert hold_search_cost(cal, exit_macs, cap, above) is None      # the floor is out of reach at that cost
    assert hold_search_cost(cal, exit_macs, 99.0, free) is None      # every image pays the first exit
    grid = calibrate(probs, y, exit_macs, rule="confidence", confidences=confs, method="grid")
    assert hold_search_cost(grid, exit_macs, 600.0, free) is None    # the grid method has no curve


def test_budget_final_macs_is_validated_and_round_trips():
    b = Budget.preset("quick")
    assert b.final_macs == "search"
    assert Budget.from_dict(b.with_(final_macs="budget").to_dict()).final_macs == "budget"
    # a config.json written before the field existed: its run was finalized the old way
    assert Budget.from_dict({k: v for k, v in b.to_dict().items() if k != "final_macs"}).final_macs == "budget"
    with pytest.raises(ConstraintError, match="final_macs"):
        b.with_(final_macs="cheapest")


def test_budget_accuracy_tolerance_is_validated_and_round_trips():
    b = Budget.preset("quick")
    assert b.accuracy_tolerance == 0.0
    assert Budget.from_dict(b.with_(accuracy_tolerance=0.0025).to_dict()).accuracy_tolerance == 0.0025
    # a config.json written before the field existed: its candidates were placed at the most accurate point
    assert Budget.from_dict({k: v for k, v in b.to_dict().items() if k != "accuracy_tolerance"}).accuracy_tolerance == 0
    for bad in (-0.1, 1.0, float("nan"), "0.1", None):
        with pytest.raises(ConstraintError, match="accuracy_tolerance"):
            b.with_(accuracy_tolerance=bad)
