"""Each loss term computes what it says and moves what it should (tiny inputs, tf.GradientTape)."""
import numpy as np
import pytest
import tensorflow as tf

from nachos_tf.errors import ConstraintError
from nachos_tf.losses import (LossConfig, balanced_bce, calibration_term, ce_sum_term, classification_term,
                              confidence_prior_term, eenn_loss, exit_probabilities, expected_macs, mac_term,
                              max_softmax_confidences)

RNG = np.random.default_rng(0)
N, C = 6, 3
LOGITS = [RNG.normal(size=(N, C)).astype("float32") for _ in range(3)]  # exit_0, exit_1, final
Y = np.array([0, 1, 2, 0, 1, 2])
B = [RNG.uniform(0.1, 0.9, size=(N, 1)).astype("float32") for _ in range(2)]  # early-exit confidences
MACS = [100.0, 250.0, 400.0]


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_ce(z, y):
    return -np.log(np_softmax(z)[np.arange(len(y)), y])


def np_p(b):
    b0, b1 = b[0][:, 0], b[1][:, 0]
    return np.stack([b0, (1 - b0) * b1, (1 - b0) * (1 - b1)], axis=1)


def test_exit_probabilities_by_hand():
    p = exit_probabilities(B).numpy()
    np.testing.assert_allclose(p, np_p(B), rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_classification_term_equals_numpy():
    p = exit_probabilities(B)
    got = classification_term(LOGITS, Y, p).numpy()
    ce = np.stack([np_ce(z, Y) for z in LOGITS], axis=1)
    np.testing.assert_allclose(got, np.mean(np.sum(np_p(B) * ce, axis=1)), rtol=1e-5)


def test_classification_term_rewards_confidence_where_early_exit_is_better():
    # exit 0 is right and sure, the final exit is wrong: raising b_0 must lower the loss
    logits = [np.array([[5.0, 0.0]], "float32"), np.array([[0.0, 5.0]], "float32")]
    b = tf.Variable([[0.5]])
    with tf.GradientTape() as tape:
        loss = classification_term(logits, [0], exit_probabilities([b]))
    assert tape.gradient(loss, b).numpy()[0, 0] < 0


def test_balanced_bce_weights_by_hand():
    b = np.array([0.9, 0.8, 0.7, 0.2], "float32")
    t = np.array([1, 1, 1, 0], "float32")
    bce = -(t * np.log(b) + (1 - t) * np.log(1 - b))
    want = 0.5 * bce[:3].mean() + 0.5 * bce[3]  # each class weighs half, whatever its count
    np.testing.assert_allclose(balanced_bce(b, t).numpy(), want, rtol=1e-5)
    # only one class present: the plain mean
    np.testing.assert_allclose(balanced_bce(b[:3], t[:3]).numpy(), bce[:3].mean(), rtol=1e-5)


def test_confidence_prior_targets_are_exit_correctness():
    got = confidence_prior_term(LOGITS[:2], B, Y).numpy()
    want = 0.0
    for z, b in zip(LOGITS[:2], B):
        t = (z.argmax(1) == Y).astype("float32")
        want += balanced_bce(b[:, 0], t).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_calibration_mse_by_hand_and_pulls_b_towards_S():
    S = np.array([[0.9, 1.0], [0.1, 0.5], [0.4, 0.0]], "float32")
    got = calibration_term(B, Y, S).numpy()
    b = np.concatenate(B, axis=1)
    np.testing.assert_allclose(got, np.mean((b - S[Y]) ** 2), rtol=1e-5)
    bv = [tf.Variable(x) for x in B]
    with tf.GradientTape() as tape:
        loss = calibration_term(bv, Y, S)
    g = tape.gradient(loss, bv[0]).numpy()[:, 0]
    np.testing.assert_array_equal(np.sign(g), np.sign(B[0][:, 0] - S[Y, 0]))


def test_ce_sum_equals_manual_weighted_sum():
    w = [0.3, 0.5, 1.0]
    want = sum(wi * np_ce(z, Y).mean() for wi, z in zip(w, LOGITS))
    np.testing.assert_allclose(ce_sum_term(LOGITS, Y, w).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(ce_sum_term(LOGITS, Y).numpy(), sum(np_ce(z, Y).mean() for z in LOGITS), rtol=1e-5)
    total, terms = eenn_loss(LossConfig.ce_sum(w), Y, LOGITS, B)
    np.testing.assert_allclose(total.numpy(), want, rtol=1e-5)


def _mac_grad(budget, detached=False):
    bv = [tf.Variable(x) for x in B]
    with tf.GradientTape(persistent=True) as tape:
        term = mac_term(exit_probabilities(bv), MACS, budget, detached=detached)
    return term.numpy(), [tape.gradient(term, v) for v in bv]


def test_mac_term_value_by_hand():
    e = np.mean(np_p(B) @ np.array(MACS))
    np.testing.assert_allclose(expected_macs(exit_probabilities(B), MACS).numpy(), e, rtol=1e-5)
    val, _ = _mac_grad(150.0)
    np.testing.assert_allclose(val, max(0.0, e - 150.0) / (400.0 - 150.0), rtol=1e-5)


def test_mac_term_gradient_nonzero_over_budget():
    val, grads = _mac_grad(150.0)  # expected MACs (~250) > 150
    assert val > 0
    for g in grads:
        assert np.all(g.numpy() < 0)  # raising any confidence lowers expected MACs


def test_mac_term_gradient_zero_when_budget_met():
    val, grads = _mac_grad(390.0)  # the full net (400) is over, but the expected MACs meet the budget
    assert val == 0.0
    for g in grads:
        np.testing.assert_array_equal(g.numpy(), 0.0)
    val, grads = _mac_grad(1e6)  # the whole network fits: inactive
    assert val == 0.0
    for g in grads:
        np.testing.assert_array_equal(g.numpy(), 0.0)


def test_mac_term_detached_has_value_but_no_gradient():
    val, grads = _mac_grad(150.0, detached=True)
    assert val == pytest.approx(_mac_grad(150.0)[0])
    for g in grads:
        assert g is None or np.all(g.numpy() == 0)


def test_nachos_total_is_weighted_sum_and_ablations_switch_terms():
    S = np.full((C, 2), 0.5, "float32")
    cfg = LossConfig.nachos(150.0, w_cls=1.0, w_conf=0.5, w_mac=2.0, w_cal=3.0)
    total, t = eenn_loss(cfg, Y, LOGITS, B, exit_macs=MACS, support_accuracy=S)
    want = t["cls"] + 0.5 * t["conf"] + 2.0 * t["mac"] + 3.0 * t["cal"]
    np.testing.assert_allclose(total.numpy(), want.numpy(), rtol=1e-6)
    assert all(float(t[k]) > 0 for k in ("cls", "conf", "mac", "cal"))
    _, t_np = eenn_loss(LossConfig.nachos_np(150.0), Y, LOGITS, B, exit_macs=MACS, support_accuracy=S)
    assert float(t_np["cal"]) == 0.0 and float(t_np["mac"]) > 0
    _, t_nc = eenn_loss(LossConfig.nachos_nc(), Y, LOGITS, B, exit_macs=MACS, support_accuracy=S)
    assert float(t_nc["mac"]) == 0.0 and float(t_nc["cal"]) > 0
    _, t_off = eenn_loss(cfg, Y, LOGITS, B, exit_macs=MACS, support_accuracy=S, calibration_weight=0.0)
    assert float(t_off["cal"]) == 0.0  # before the warm-up ends


def test_no_confidence_outputs_use_max_softmax():
    cfg = LossConfig.nachos(150.0)
    total, _ = eenn_loss(cfg, Y, LOGITS, None, exit_macs=MACS)
    ms = max_softmax_confidences(LOGITS[:2])
    want, _ = eenn_loss(cfg, Y, LOGITS, ms, exit_macs=MACS)
    np.testing.assert_allclose(total.numpy(), want.numpy(), rtol=1e-6)
    zv = [tf.Variable(z) for z in LOGITS]
    with tf.GradientTape() as tape:
        _, t = eenn_loss(cfg, Y, zv, None, exit_macs=MACS)
        mac = t["mac"]
    assert np.any(tape.gradient(mac, zv[0]).numpy() != 0)  # the MAC term still acts, through the logits
    fallback, _ = eenn_loss(cfg.with_(no_confidence="ce_sum"), Y, LOGITS, None, exit_macs=MACS)
    np.testing.assert_allclose(fallback.numpy(), ce_sum_term(LOGITS, Y).numpy(), rtol=1e-6)


def test_config_validation_and_round_trip():
    with pytest.raises(ConstraintError):
        LossConfig.nachos(mac_budget=None)
    with pytest.raises(ConstraintError):
        LossConfig(kind="focal")
    with pytest.raises(ConstraintError):
        LossConfig.nachos_nc(w_cal=-1.0)
    with pytest.raises(ConstraintError):
        eenn_loss(LossConfig.nachos(150.0), Y, LOGITS, B)  # MAC term without exit_macs
    cfg = LossConfig.ce_sum([1, 2, 3])
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    assert LossConfig.nachos(1e6).needs_macs and not LossConfig.nachos_nc().needs_macs
    assert LossConfig.nachos(1e6).needs_support_set and not LossConfig.nachos_np(1e6).needs_support_set
