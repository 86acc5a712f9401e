"""Tests of nachos_tf.policy: exit rules, simulation and threshold calibration (pure numpy, fast)."""
import itertools
import json
import math

import numpy as np
import pytest

from nachos_tf.errors import ConstraintError, DataError, NachosError
from nachos_tf.policy import (RULES, Calibration, ExitTable, calibrate, exit_scores, simulate, softmax,
                              thresholds_from_json, thresholds_to_json)
try:
    from reference_sim import reference_score, reference_simulate
except ImportError:  # tests/ imported as a package
    from tests.reference_sim import reference_score, reference_simulate


def make_outputs(seed, n=300, n_exits=3, classes=5):
    """Synthetic EENN outputs: later exits are more accurate; learned confidences track correctness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    easy = 1.3 - rng.random(n)                      # per-sample easiness
    probs, confs = [], []
    for k in range(n_exits):
        strength = 0.8 + 2.0 * k
        logits = rng.normal(0.0, 1.0, (n, classes))
        logits[np.arange(n), labels] += strength * easy
        probs.append(softmax(logits))
        if k < n_exits - 1:
            z = 2.5 * (probs[-1][np.arange(n), labels] - 0.5) + rng.normal(0, 0.7, n)
            confs.append(1.0 / (1.0 + np.exp(-z)))
    exit_macs = np.cumsum(rng.uniform(1e5, 3e5, n_exits))   # staged, increasing
    return probs, labels, confs, exit_macs


def random_thresholds(rng, table):
    t = []
    for s in table.scores:
        lo, hi = s.min(), s.max()
        r = rng.random()
        t.append(np.inf if r < 0.1 else -np.inf if r < 0.15 else rng.uniform(lo, hi))
    return np.array(t)


# ------------------------------------------------------------------------------------------ simulate

@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulate_matches_per_sample_reference(rule, seed):
    probs, labels, confs, macs = make_outputs(seed, n=150, n_exits=4)
    table = ExitTable(probs, labels, macs, rule, confs)
    rng = np.random.default_rng(100 + seed)
    for _ in range(5):
        t = random_thresholds(rng, table)
        got = simulate(probs, labels, t, macs, rule, confs)
        ref = reference_simulate(probs, labels, t, macs, rule, confs)
        assert got.exit_index.tolist() == ref["exit_index"]
        assert got.correct.tolist() == ref["correct"]
        assert got.exit_counts.tolist() == ref["exit_counts"]
        assert got.accuracy == ref["accuracy"]
        assert got.expected_macs == pytest.approx(ref["expected_macs"], rel=1e-12)
        assert got.exit_rates.sum() == pytest.approx(1.0, abs=1e-12)
        fast = table.simulate(t)
        assert fast.exit_index.tolist() == ref["exit_index"] and fast.expected_macs == got.expected_macs


@pytest.mark.parametrize("rule", RULES)
def test_scores_match_reference_scores(rule):
    probs, labels, confs, _ = make_outputs(3, n=40, n_exits=3)
    scores = exit_scores(probs, rule, confs)
    assert len(scores) == 2
    for k in range(2):
        for i in range(40):
            conf = [confs[j][i] for j in range(k + 1)]
            assert scores[k][i] == pytest.approx(reference_score(probs[k][i], rule, conf), abs=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_infinite_thresholds(rule):
    probs, labels, confs, macs = make_outputs(4, n=50)
    never = simulate(probs, labels, [np.inf, np.inf], macs, rule, confs)
    assert never.exit_rates.tolist() == [0.0, 0.0, 1.0]
    assert never.expected_macs == pytest.approx(macs[-1])
    assert never.accuracy == np.mean(probs[-1].argmax(1) == labels)
    always = simulate(probs, labels, [-np.inf, np.inf], macs, rule, confs)
    assert always.exit_rates.tolist() == [1.0, 0.0, 0.0]
    assert always.expected_macs == pytest.approx(macs[0])
    assert always.accuracy == np.mean(probs[0].argmax(1) == labels)


def test_hand_computed_example():
    p0 = np.array([[.7, .2, .1], [.4, .35, .25], [.5, .3, .2], [.2, .2, .6]])
    p1 = np.array([[.6, .3, .1], [.1, .8, .1], [.3, .3, .4], [.1, .1, .8]])
    p2 = np.array([[.8, .1, .1], [.1, .8, .1], [.1, .6, .3], [.1, .1, .8]])
    labels = np.array([0, 1, 0, 2])
    r = simulate([p0, p1, p2], labels, [0.6, 0.5], [100, 250, 600])
    # sample 0: .7 >= .6 -> exit 0 (right); 1: .4 < .6, .8 >= .5 -> exit 1 (right);
    # 2: .5 < .6, .4 < .5 -> final, predicts 1 (wrong); 3: .6 >= .6 -> exit 0 (right, ties exit)
    assert r.exit_index.tolist() == [0, 1, 2, 0]
    assert r.correct.tolist() == [True, True, False, True]
    assert r.exit_counts.tolist() == [2, 1, 1]
    assert r.exit_rates.tolist() == [0.5, 0.25, 0.25]
    assert r.accuracy == 0.75
    assert r.expected_macs == (2 * 100 + 250 + 600) / 4      # 262.5
    assert r.exit_accuracy.tolist() == [1.0, 1.0, 0.0]
    m = simulate([p0, p1, p2], labels, [0.6, 0.5], [100, 250, 600], rule="margin")
    # margins exit 0: .5, .05, .2, .4 (none >= .6); exit 1: .3, .7, .1, .7 (samples 1 and 3 exit)
    assert m.exit_index.tolist() == [2, 1, 2, 1]


def test_confidence_rule_is_cumulative():
    p = np.array([[.6, .4], [.3, .7]])
    probs = [p, p, p]
    b0, b1 = np.array([0.5, 0.2]), np.array([0.4, 0.5])
    d0, d1 = exit_scores(probs, "confidence", [b0, b1])
    assert d0.tolist() == [0.5, 0.2]
    assert d1 == pytest.approx([1 - 0.5 * 0.6, 1 - 0.8 * 0.5])        # 0.7, 0.6
    r = simulate(probs, np.array([0, 1]), [0.6, 0.65], [1, 2, 3], "confidence", [b0, b1])
    assert r.exit_index.tolist() == [1, 2]   # D1 = .7 >= .65 exits; D1 = .6 < .65 goes on


def test_entropy_sign_and_margin():
    probs = [np.array([[1 / 4] * 4, [0.7, 0.1, 0.1, 0.1], [1.0, 0, 0, 0]])] * 2
    ent, = exit_scores(probs, "entropy")
    assert ent[0] == pytest.approx(-math.log(4))
    assert ent[2] == 0.0 and np.all(np.isfinite(ent))
    assert ent[0] < ent[1] < ent[2]                  # more peaked = more confident = higher score
    mar, = exit_scores(probs, "margin")
    assert mar == pytest.approx([0.0, 0.6, 1.0])


def test_input_validation():
    probs, labels, confs, macs = make_outputs(5, n=20)
    with pytest.raises(ConstraintError):
        simulate(probs, labels, [0.5], macs)                    # one threshold short
    with pytest.raises(ConstraintError):
        simulate(probs, labels, [0.5, np.nan], macs)
    with pytest.raises(ConstraintError):
        simulate(probs, labels, [0.5, 0.5], macs[:2])
    with pytest.raises(ConstraintError, match="unknown exit rule"):
        simulate(probs, labels, [0.5, 0.5], macs, rule="maxprob")
    with pytest.raises(DataError):
        simulate(probs, labels[:-1], [0.5, 0.5], macs)
    with pytest.raises(DataError):
        simulate(probs, labels + 5, [0.5, 0.5], macs)
    with pytest.raises(DataError):
        simulate([probs[0], probs[1][:, :3], probs[2]], labels, [0.5, 0.5], macs)
    with pytest.raises(DataError, match="softmax"):
        simulate([np.log(p) for p in probs], labels, [0.5, 0.5], macs)   # logits, not probs
    with pytest.raises(DataError, match="confidences"):
        simulate(probs, labels, [0.5, 0.5], macs, rule="confidence")
    with pytest.raises(DataError):
        simulate(probs, labels, [0.5, 0.5], macs, rule="confidence", confidences=confs[:1])
    with pytest.raises(ConstraintError):
        calibrate(probs, labels, macs, max_macs=-1)
    with pytest.raises(ConstraintError):
        calibrate(probs, labels, macs, min_accuracy=1.5)
    with pytest.raises(ConstraintError):
        calibrate(probs, labels, macs, method="bayes")
    for err in (ConstraintError, DataError):
        assert issubclass(err, ValueError) and issubclass(err, NachosError)


# --------------------------------------------------------------------------------------- calibration

def _assert_curve_valid(cal, probs, labels, macs, rule, confs):
    c = cal.curve
    assert len(c) >= 2
    assert np.all(np.diff(c.macs) > 0) and np.all(np.diff(c.accuracy) > 0)   # non-dominated, sorted
    table = ExitTable(probs, labels, macs, rule, confs)
    for m, a, t, rates in zip(c.macs, c.accuracy, c.thresholds, c.exit_rates):
        r = table.simulate(t)
        assert r.expected_macs == m and r.accuracy == a             # exactly, bit for bit
        assert r.exit_rates.tolist() == rates.tolist()


@pytest.mark.parametrize("rule", RULES)
def test_pareto_curve_non_dominated_and_resimulates_exactly(rule):
    probs, labels, confs, macs = make_outputs(6, n=400)
    cal = calibrate(probs, labels, macs, rule, confs)
    _assert_curve_valid(cal, probs, labels, macs, rule, confs)
    assert cal.info["exact_on_candidates"]
    # no constraint: the most accurate point of the curve is picked
    assert cal.result.accuracy == cal.curve.accuracy.max()


def _brute_force_points(probs, labels, macs, rule, confs):
    """Every threshold vector over the distinct score values (+inf), simulated per sample."""
    n, n_early = len(labels), len(probs) - 1
    scores = [[reference_score(probs[k][i], rule, [confs[j][i] for j in range(k + 1)])
               for i in range(n)] for k in range(n_early)]
    cands = [sorted(set(s)) + [math.inf] for s in scores]
    preds = [[int(np.argmax(probs[k][i])) for i in range(n)] for k in range(n_early + 1)]
    pts = []
    for t in itertools.product(*cands):
        counts, right = [0] * (n_early + 1), 0
        for i in range(n):
            e = next((k for k in range(n_early) if scores[k][i] >= t[k]), n_early)
            counts[e] += 1
            right += preds[e][i] == labels[i]
        pts.append((sum(c * float(m) for c, m in zip(counts, macs)) / n, right / n))
    return pts


@pytest.mark.parametrize("rule,n_exits,n", [("max_softmax", 3, 30), ("confidence", 3, 30),
                                            ("entropy", 4, 14)])
def test_pareto_equals_brute_force(rule, n_exits, n):
    probs, labels, confs, macs = make_outputs(7, n=n, n_exits=n_exits)
    pts = np.array(_brute_force_points(probs, labels, macs, rule, confs))
    # the brute-force front (independent O(P^2) dominance check)
    front = {(m, a) for m, a in pts
             if not np.any((pts[:, 0] <= m) & (pts[:, 1] >= a) & ((pts[:, 0] < m) | (pts[:, 1] > a)))}
    cal = calibrate(probs, labels, macs, rule, confs)
    assert cal.info["exact_on_candidates"]
    got = {(m, a) for m, a in zip(cal.curve.macs, cal.curve.accuracy)}
    assert {(round(m, 6), a) for m, a in got} == {(round(m, 6), a) for m, a in front}
    for budget in np.linspace(macs[0], macs[-1], 7):
        ok = pts[pts[:, 0] <= budget + 1e-9]
        pick = calibrate(probs, labels, macs, rule, confs, max_macs=budget)
        assert pick.admissible
        assert pick.result.accuracy == ok[:, 1].max()
        cheapest_best = ok[ok[:, 1] == ok[:, 1].max(), 0].min()
        assert pick.result.expected_macs == pytest.approx(cheapest_best)


@pytest.mark.parametrize("rule,seed", [("max_softmax", 3), ("confidence", 4), ("entropy", 5)])
def test_tolerance_picks_the_cheapest_point_near_the_best(rule, seed):
    """`tolerance`: against every threshold vector enumerated by brute force, the pick is the cheapest
    point (under the budget and floor) at most `tolerance` less accurate than the most accurate one."""
    probs, labels, confs, macs = make_outputs(seed, n=40, n_exits=3)
    pts = np.array(_brute_force_points(probs, labels, macs, rule, confs))
    moved = 0
    for budget in np.linspace(macs[0], macs[-1], 5)[1:]:
        for tol in (0.0, 0.025, 0.05, 0.1):
            floor = 0.3
            ok = pts[(pts[:, 0] <= budget + 1e-9) & (pts[:, 1] >= floor)]
            pick = calibrate(probs, labels, macs, rule, confs, max_macs=budget, min_accuracy=floor, tolerance=tol)
            if not ok.size:
                assert not pick.admissible
                continue
            near = ok[ok[:, 1] >= ok[:, 1].max() - tol - 1e-12]
            cheapest = near[:, 0].min()
            assert pick.admissible
            assert pick.result.expected_macs == pytest.approx(cheapest)
            assert pick.result.accuracy == near[near[:, 0] <= cheapest + 1e-6, 1].max()
            assert pick.result.accuracy >= ok[:, 1].max() - tol - 1e-12
            moved += tol > 0 and cheapest < ok[ok[:, 1] == ok[:, 1].max(), 0].min() - 1e-6
    assert moved >= 3                 # the tolerance did change the pick: the check is not vacuous
    for bad in (-0.01, 1.0, float("nan"), True, "0.1"):
        with pytest.raises(ConstraintError):
            calibrate(probs, labels, macs, rule, confs, tolerance=bad)


@pytest.mark.parametrize("rule", ["max_softmax", "confidence", "margin"])
@pytest.mark.parametrize("n_exits", [3, 4])
def test_pareto_pick_at_least_as_accurate_as_nachos_grid(rule, n_exits):
    probs, labels, confs, macs = make_outputs(8 + n_exits, n=300, n_exits=n_exits)
    n_admissible = 0
    for budget in np.linspace(macs[0], macs[-1], 7)[1:-1]:
        grid = calibrate(probs, labels, macs, rule, confs, max_macs=budget, method="grid")
        par = calibrate(probs, labels, macs, rule, confs, max_macs=budget, max_candidates=512,
                        max_sweeps=512)
        if grid.admissible:
            n_admissible += 1
            assert par.admissible
            assert par.result.accuracy >= grid.result.accuracy
        if par.admissible:
            assert par.result.expected_macs <= budget
    assert n_admissible >= 2          # the comparison is not vacuous


def test_local_search_path_is_valid_and_locally_optimal():
    probs, labels, confs, macs = make_outputs(9, n=60, n_exits=4)
    cal = calibrate(probs, labels, macs, "max_softmax", max_sweeps=1200)
    assert cal.info["search"] == "local" and not cal.info["exact_on_candidates"]
    assert cal.info["local_search_converged"]
    _assert_curve_valid(cal, probs, labels, macs, "max_softmax", None)
    # no single-exit change of any curve point yields a point that dominates a curve point
    table = ExitTable(probs, labels, macs)
    c = cal.curve
    for t in c.thresholds:
        for k in range(3):
            for v in np.concatenate([np.unique(table.scores[k]), [np.inf]]):
                tt = t.copy()
                tt[k] = v
                r = table.simulate(tt)
                dom = ((c.macs >= r.expected_macs) & (c.accuracy <= r.accuracy)
                       & ((c.macs > r.expected_macs) | (c.accuracy < r.accuracy)))
                assert not dom.any()
    # and it beats (or ties) the exhaustive-but-coarse NACHOS grid under a budget
    budget = float(np.mean(macs[1:3]))
    grid = calibrate(probs, labels, macs, max_macs=budget, method="grid")
    par = calibrate(probs, labels, macs, max_macs=budget, max_sweeps=1200)
    if grid.admissible:
        assert par.result.accuracy >= grid.result.accuracy


def test_local_search_matches_exhaustive_on_same_grid():
    probs, labels, confs, macs = make_outputs(21, n=800, n_exits=4, classes=10)
    for budget in np.linspace(macs[0], macs[-1], 6)[1:-1]:
        exh = calibrate(probs, labels, macs, max_macs=budget, max_candidates=24)
        loc = calibrate(probs, labels, macs, max_macs=budget, max_candidates=24, max_sweeps=120)
        assert exh.info["search"] == "exhaustive" and loc.info["search"] == "local"
        assert loc.result.accuracy == exh.result.accuracy


def test_pareto_not_admissible_reports_misses():
    probs, labels, confs, macs = make_outputs(10, n=200)
    cheap = calibrate(probs, labels, macs, max_macs=macs[0] / 2)
    assert not cheap.admissible
    assert cheap.result.expected_macs == pytest.approx(macs[0])          # the cheapest possible
    assert cheap.macs_excess == pytest.approx(macs[0] / 2)
    assert cheap.accuracy_shortfall == 0.0
    best = cheap.curve.accuracy.max()
    strict = calibrate(probs, labels, macs, min_accuracy=1.0)
    if best < 1.0:
        assert not strict.admissible
        assert strict.result.accuracy == best
        assert strict.accuracy_shortfall == pytest.approx(1.0 - best)
    floor = calibrate(probs, labels, macs, min_accuracy=0.5 * best, prefer="macs")
    assert floor.admissible
    ok = floor.curve.accuracy >= 0.5 * best
    assert floor.result.expected_macs == floor.curve.macs[ok].min()


def _structured_grid_case():
    """Two early exits, 2 classes; exit scores on a 0.05 lattice, final exit always right."""
    rng = np.random.default_rng(11)
    n = 400
    labels = rng.integers(0, 2, n)
    probs = []
    for k in range(2):
        s = rng.choice(np.arange(0.55, 1.0, 0.05), n)          # max-softmax score
        right = rng.random(n) < 0.35 + 0.6 * s * (k + 1) / 2    # confident -> more often right
        top = np.where(right, labels, 1 - labels)
        p = np.empty((n, 2))
        p[np.arange(n), top] = s
        p[np.arange(n), 1 - top] = 1 - s
        probs.append(p)
    probs.append(np.eye(2)[labels])
    return probs, labels, np.array([100.0, 300.0, 1000.0])


def test_grid_repair_meets_budget_from_last_exit_backwards():
    probs, labels, macs = _structured_grid_case()
    free = calibrate(probs, labels, macs, method="grid")
    assert free.info["repair_steps"] == 0
    start = free.info["grid_pick"]
    budget = free.result.expected_macs * 0.97
    cal = calibrate(probs, labels, macs, method="grid", max_macs=budget)
    assert cal.info["grid_pick"] == start
    assert cal.admissible and cal.result.expected_macs <= budget
    eps = cal.info["normalized_thresholds"]
    assert eps[1] < start[1] and eps[0] == start[0]                 # last early exit lowered first
    assert all(abs(e * 10 - round(e * 10)) < 1e-9 for e in eps)     # on the 0.1 step lattice
    assert cal.thresholds == pytest.approx(eps)                     # max_softmax: raw == normalised
    # a budget only reachable by also lowering exit 0
    deep = calibrate(probs, labels, macs, method="grid", max_macs=macs[0] * 1.5)
    assert deep.info["normalized_thresholds"][0] < start[0]


def test_grid_repair_never_breaks_accuracy_floor():
    probs, labels, macs = _structured_grid_case()
    free = calibrate(probs, labels, macs, method="grid")
    table = ExitTable(probs, labels, macs)
    for drop in (0.0, 0.01, 0.03, 0.08):
        floor = free.result.accuracy - drop
        cal = calibrate(probs, labels, macs, method="grid", max_macs=macs[0] * 1.2, min_accuracy=floor)
        assert cal.result.accuracy >= floor
        assert cal.result.expected_macs <= free.result.expected_macs
        assert cal.admissible == (cal.result.expected_macs <= macs[0] * 1.2)
        if not cal.admissible:
            assert cal.macs_excess == pytest.approx(cal.result.expected_macs - macs[0] * 1.2)
            # the repair ended on exit 0: its next step would break the floor (or leave the lattice)
            eps = cal.info["normalized_thresholds"]
            if eps[0] - 0.1 >= 0.1 - 1e-9:
                assert table.simulate([eps[0] - 0.1, eps[1]]).accuracy < floor
    # a floor the grid pick already misses: NACHOS does not repair at all
    cal = calibrate(probs, labels, macs, method="grid", max_macs=200.0, min_accuracy=1.0)
    assert cal.info["repair_steps"] == 0 and not cal.admissible


def test_grid_entropy_uses_normalised_scale_and_final_only_model():
    probs, labels, confs, macs = make_outputs(12, n=100, classes=5)
    cal = calibrate(probs, labels, macs, "entropy", method="grid")
    eps = cal.info["normalized_thresholds"]
    assert cal.thresholds == pytest.approx([(e - 1) * math.log(5) for e in eps])
    one = calibrate(probs[-1:], labels, macs[-1:])
    assert one.thresholds.shape == (0,) and one.result.exit_rates.tolist() == [1.0]


def test_calibration_json_round_trip_and_evaluate():
    probs, labels, confs, macs = make_outputs(13, n=200)
    cal = calibrate(probs, labels, macs, max_macs=float(np.mean(macs[:2])))
    d = json.loads(json.dumps(cal.to_dict(), allow_nan=False))
    assert thresholds_from_json(d["thresholds"]).tolist() == cal.thresholds.tolist()
    assert thresholds_from_json(thresholds_to_json([np.inf, -np.inf, 0.25])).tolist() == [np.inf, -np.inf, 0.25]
    assert d["result"]["expected_macs"] == cal.result.expected_macs
    test_probs, test_labels, _, _ = make_outputs(14, n=200)
    r = cal.evaluate(test_probs, test_labels)
    assert r.thresholds.tolist() == cal.thresholds.tolist() and 0 <= r.accuracy <= 1
    assert isinstance(cal, Calibration)
