"""policy.crossfit_calibrate: out-of-fold figures of a calibrated exit policy, checked against a per-sample
reference loop, and the selection bias of in-sample figures it removes; the budget / CLI setting."""
import numpy as np
import pytest

from nachos_tf.errors import ConstraintError
from nachos_tf.policy import calibrate, crossfit_calibrate, softmax
from test_policy import make_outputs

try:
    from reference_sim import reference_simulate
except ImportError:  # tests/ imported as a package
    from tests.reference_sim import reference_simulate


@pytest.mark.parametrize("rule,folds,seed", [("max_softmax", 2, 0), ("confidence", 3, 5), ("entropy", 4, 1)])
def test_out_of_fold_figures_match_a_reference_loop(rule, folds, seed):
    """Each fold scored by a per-sample loop at thresholds `calibrate` fits on the other folds (same seeded
    split); the counts add up to the result's figures. Thresholds and curve stay the all-sample ones."""
    probs, labels, confs, macs = make_outputs(seed, n=360, n_exits=4)
    confs = confs if rule == "confidence" else None
    kw = dict(rule=rule, confidences=confs, max_macs=0.8 * macs[-1], min_accuracy=0.3)
    cf = crossfit_calibrate(probs, labels, macs, folds=folds, seed=seed, **kw)
    parts = np.array_split(np.random.default_rng(seed).permutation(len(labels)), folds)
    correct, counts = 0, np.zeros(len(probs))
    for k, held in enumerate(parts):
        fit = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k]))
        t = calibrate([p[fit] for p in probs], labels[fit], macs, rule=rule,
                      confidences=None if confs is None else [c[fit] for c in confs],
                      max_macs=kw["max_macs"], min_accuracy=0.3).thresholds
        ref = reference_simulate([p[held] for p in probs], labels[held], t, macs, rule,
                                 None if confs is None else [c[held] for c in confs])
        correct += sum(ref["correct"])
        counts += np.bincount(ref["exit_index"], minlength=len(probs))
    n = len(labels)
    assert cf.result.accuracy == pytest.approx(correct / n, abs=1e-12)
    np.testing.assert_allclose(cf.result.exit_rates, counts / n, atol=1e-12)
    assert cf.result.expected_macs == pytest.approx(float(counts @ macs) / n, rel=1e-12)
    full = calibrate(probs, labels, macs, **kw)
    np.testing.assert_array_equal(cf.thresholds, full.thresholds)
    assert cf.info["crossfit"]["in_sample"]["accuracy"] == full.result.accuracy
    assert len(cf.info["crossfit"]["fold_thresholds"]) == folds
    assert cf.admissible == (cf.result.expected_macs <= kw["max_macs"] and cf.result.accuracy >= 0.3)


def test_removes_the_optimism_of_fitting_thresholds_on_the_images_it_reports():
    """Outputs that carry no information (random labels): every policy is at chance on new images. The
    most accurate point of the curve fitted on the same images claims better than chance (the more exits,
    the more so); its cross-fitted figure does not."""
    ins, cross = [], []
    for s in range(6):
        rng = np.random.default_rng(s)
        labels = rng.integers(0, 10, 1000)
        probs = [softmax(rng.normal(0.0, 1.5, (1000, 10))) for _ in range(5)]
        cf = crossfit_calibrate(probs, labels, np.cumsum(np.full(5, 1e5)), folds=2, seed=0)
        ins.append(cf.info["crossfit"]["in_sample"]["accuracy"])
        cross.append(cf.result.accuracy)
    assert np.mean(ins) > 0.11                    # chance is 0.10
    assert abs(np.mean(cross) - 0.10) < 0.015
    assert np.mean(ins) - np.mean(cross) > 0.015


def test_same_split_same_figures_and_exact_when_nothing_is_fitted():
    probs, labels, _, macs = make_outputs(3, n=200, n_exits=3)
    a = crossfit_calibrate(probs, labels, macs, folds=2, seed=7)
    b = crossfit_calibrate(probs, labels, macs, folds=2, seed=7)
    assert a.result.accuracy == b.result.accuracy and a.result.expected_macs == b.result.expected_macs
    # without early exits there is nothing to fit: out-of-fold = in-sample = the final exit's accuracy
    one = crossfit_calibrate(probs[-1:], labels, macs[-1:], folds=4, seed=1)
    assert one.result.accuracy == pytest.approx(np.mean(probs[-1].argmax(1) == labels))


@pytest.mark.parametrize("folds,n", [(1, 200), (0, 200), (True, 200), (2.0, 200), (3, 29)])
def test_rejects_bad_folds(folds, n):
    probs, labels, _, macs = make_outputs(0, n=n, n_exits=2)
    with pytest.raises(ConstraintError):
        crossfit_calibrate(probs, labels, macs, folds=folds)


def test_budget_crossfit_is_off_or_at_least_two_folds():
    from nachos_tf.nas import Budget

    assert Budget().crossfit == 0 and Budget(crossfit=5).crossfit == 5
    for bad in (1, -2, True, 2.5):
        with pytest.raises(ConstraintError, match="crossfit"):
            Budget(crossfit=bad)
    assert Budget.from_dict({k: v for k, v in Budget().to_dict().items() if k != "crossfit"}).crossfit == 0
