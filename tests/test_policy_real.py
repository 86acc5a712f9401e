"""policy.simulate against the independent per-sample reference simulation, on REAL per-exit outputs.

A small EENN from the ``mcu`` space is trained for one epoch on a real Fashion-MNIST subset (with the
NACHOS loss, so its confidence branches are trained too); one forward pass gives every exit's softmax
and confidence on 500 real test images. For every exit rule and a set of threshold vectors (the
calibrated ones, thresholds placed exactly on observed scores, quantiles, +-inf) the vectorised
``nachos_tf.policy.simulate`` must make exactly the decisions of ``tests/reference_sim.py``.
"""
import numpy as np
import pytest

try:
    from reference_sim import reference_score, reference_simulate
except ImportError:  # tests/ imported as a package
    from tests.reference_sim import reference_score, reference_simulate

N_TRAIN, N_TEST = 2000, 500


def _small_genome(space):
    from nachos_tf.space import ExitGene, Genome

    widths = (8, 12, 16, 20, 24)
    bb = {"resolution": 20, "stem_width": 8}
    for s in range(5):
        bb.update({f"s{s + 1}_depth": 2, f"s{s + 1}_kernel": 3, f"s{s + 1}_expand": 3,
                   f"s{s + 1}_width": widths[s], f"s{s + 1}_se": False, f"s{s + 1}_act": "relu"})
    exits = [ExitGene(True, "gap_dense", 16, 1), ExitGene(),
             ExitGene(True, "gap_dense", 16, 1), ExitGene()]
    g = Genome.make(bb, exits)
    space.validate(g)
    return g


def _reestimate_batchnorm(model, x):
    """Set every BatchNormalization's moving statistics to those of one large training batch.

    One epoch on 2000 images is ~60 steps: with momentum 0.99 the moving averages are still about
    half their initial values, and in inference mode every exit then predicts one class. Re-estimating
    them (standard after short training) gives a model whose exits really classify."""
    import keras

    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in bns]
    for l in bns:
        l.momentum = 0.0
    try:
        model(x[:1000], training=True)
    finally:
        for l, m in zip(bns, saved):
            l.momentum = m


@pytest.fixture(scope="module")
def real_outputs():
    import keras

    from nachos_tf import data as nt_data
    from nachos_tf.builder import build_eenn
    from nachos_tf.errors import DataError
    from nachos_tf.losses import LossConfig
    from nachos_tf.macs import profile_macs
    from nachos_tf.space import SearchSpace
    from nachos_tf.train import predict_exits, train_eenn

    try:
        ds = nt_data.load("fashion_mnist")
    except DataError as exc:  # pragma: no cover - the dataset ships with the environment
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    sub = ds.subset(train=N_TRAIN, val=0, test=N_TEST, seed=0)
    space = SearchSpace.mcu(sub.input_shape, sub.num_classes)
    keras.utils.set_random_seed(0)
    model = build_eenn(space, _small_genome(space))
    exit_macs = [float(m) for m in profile_macs(model).exit_macs]
    train_eenn(model, sub, LossConfig.nachos_np(0.6 * exit_macs[-1]), epochs=0, head_epochs=1,
               batch_size=32, learning_rate=3e-3, exit_macs=exit_macs, seed=0, verbose=0)
    _reestimate_batchnorm(model, sub.x_train)
    probs, confs = predict_exits(model, sub.x_test)
    return probs, confs, np.asarray(sub.y_test), np.asarray(exit_macs)


def _threshold_vectors(rule, probs, confs, labels, macs, rng):
    """Calibrated thresholds plus vectors that stress the decision boundary on these outputs."""
    from nachos_tf.policy import calibrate, exit_scores

    conf = confs if rule == "confidence" else None
    full = float(macs[-1])
    out = []
    for budget in (0.35 * full, 0.6 * full, 0.85 * full):
        out.append(calibrate(probs, labels, macs, rule, conf, max_macs=budget, method="pareto").thresholds)
    out.append(calibrate(probs, labels, macs, rule, conf, max_macs=0.6 * full, method="grid").thresholds)
    out.append(calibrate(probs, labels, macs, rule, conf, max_macs=0.6 * full, min_accuracy=0.5,
                         method="pareto", prefer="macs").thresholds)
    scores = exit_scores(probs, rule, conf)
    ref_scores = [np.array([reference_score(probs[k][i], rule,
                                            [confs[j][i] for j in range(k + 1)] if rule == "confidence" else None)
                            for i in range(len(labels))]) for k in range(len(scores))]
    # thresholds exactly on observed scores: those samples must exit (score >= threshold). Only values
    # on which both implementations put every sample on the same side are used: the entropy sums of
    # numpy and of the Python loop can differ in the last ulps (see test below), which makes a
    # threshold placed exactly on such a score ambiguous
    exact = []
    for s, r in zip(scores, ref_scores):
        vals = np.unique(s)
        exact.append(vals[[bool(np.all((s >= v) == (r >= v))) for v in vals]])
    for q in (0.1, 0.5, 0.9):
        out.append(np.array([np.quantile(s, q) for s in scores]))
        out.append(np.array([v[int(q * (len(v) - 1))] for v in exact]))
    for _ in range(4):  # observed scores picked at random, per exit
        out.append(np.array([v[rng.integers(len(v))] for v in exact]))
    e = len(scores)
    out += [np.full(e, np.inf), np.full(e, -np.inf), np.array([np.inf] + [-np.inf] * (e - 1)),
            np.array([-np.inf] + [np.inf] * (e - 1))]
    return out, scores, ref_scores


def test_real_outputs_are_not_degenerate(real_outputs):
    probs, confs, labels, macs = real_outputs
    assert len(probs) == 3 and confs is not None and len(confs) == 2
    assert all(p.shape == (N_TEST, 10) for p in probs)
    assert np.all(np.diff(macs) > 0)
    for p in probs:  # per-sample outputs really differ, so the threshold sweeps are meaningful
        assert len(np.unique(p.max(axis=1))) > N_TEST // 2
        assert np.mean(p.argmax(axis=1) == labels) > 0.2  # and the exits do classify (chance: 0.1)
    for c in confs:
        assert len(np.unique(c)) > N_TEST // 4


@pytest.mark.parametrize("rule", ["max_softmax", "margin", "entropy", "confidence"])
def test_simulate_matches_reference_on_real_outputs(real_outputs, rule):
    from nachos_tf.policy import RULES, simulate

    assert rule in RULES
    probs, confs, labels, macs = real_outputs
    conf = confs if rule == "confidence" else None
    vectors, scores, ref_scores = _threshold_vectors(rule, probs, confs, labels, macs,
                                                     np.random.default_rng(RULES.index(rule)))
    # the scores themselves agree: bit for bit, except the entropy (numpy's vectorised log and
    # summation order vs a sequential Python sum differ by a few ulps on some samples)
    for s, r in zip(scores, ref_scores):
        if rule == "entropy":
            np.testing.assert_allclose(s, r, rtol=0, atol=8 * np.finfo(np.float64).eps)
        else:
            np.testing.assert_array_equal(s, r)
    mixed = 0
    for t in vectors:
        got = simulate(probs, labels, t, macs, rule, conf)
        ref = reference_simulate(probs, labels, list(t), list(macs), rule, conf)
        assert got.exit_index.tolist() == ref["exit_index"], f"thresholds {t}"
        assert got.correct.tolist() == ref["correct"]
        assert got.exit_counts.tolist() == ref["exit_counts"]
        assert got.exit_rates.tolist() == ref["exit_rates"]
        assert got.accuracy == ref["accuracy"]
        np.testing.assert_allclose(got.expected_macs, ref["expected_macs"], rtol=1e-9, atol=0)
        assert abs(sum(got.exit_rates) - 1.0) < 1e-12
        mixed += int(np.count_nonzero(got.exit_counts) > 1)
    assert mixed >= 5  # most vectors really split the samples between exits
