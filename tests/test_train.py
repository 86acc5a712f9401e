"""train_eenn: seeded determinism, early stopping, the two phases, callbacks, support set, MAC term effect."""
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from nachos_tf import errors as nt_errors
from nachos_tf.losses import LossConfig
from nachos_tf.support_set import balanced_support_indices, epoch_schedule, support_accuracy
from nachos_tf.train import predict_exits, train_eenn

C = 4
MACS = [100.0, 300.0]
BACKBONE = ("c1", "bn1", "c2", "final")
HEADS = ("exit_0", "exit_0_conf")


def tiny_eenn(seed=0, conf=True):
    """Two exits on 8x8x1 inputs, following the naming contract (exit_0, exit_0_conf, final)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    p0 = keras.layers.Identity(name="exit_0_point")(h)
    g = keras.layers.GlobalAveragePooling2D()(p0)
    outs = [keras.layers.Dense(C, name="exit_0")(g)]
    if conf:
        outs.append(keras.layers.Dense(1, activation="sigmoid", name="exit_0_conf")(g))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(p0)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outs.append(keras.layers.Dense(C, name="final")(h))
    return keras.Model(inp, outs)


def synthetic(n=320, n_val=80, seed=0):
    """Class c brightens rows 2c..2c+1 of an 8x8 noise image (raw 0..255 pixels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n + n_val)
    x = rng.uniform(0, 80, (n + n_val, 8, 8, 1)).astype("float32")
    for i, c in enumerate(y):
        x[i, 2 * c:2 * c + 2, :, 0] += 120
    return SimpleNamespace(x_train=x[:n], y_train=y[:n], x_val=x[n:], y_val=y[n:], x_test=None, y_test=None,
                           num_classes=C, input_shape=(8, 8, 1))


def weights_of(model, names):
    return {n: [w.copy() for w in model.get_layer(n).get_weights()] for n in names}


def same(a, b):
    return all(np.array_equal(x, y) for n in a for x, y in zip(a[n], b[n]))


KW = dict(batch_size=32, learning_rate=1e-2, exit_macs=MACS, verbose=0)


def test_same_seed_same_weights():
    data = synthetic()
    loss = LossConfig.nachos(150.0, calibration_warmup=1)
    runs = []
    for _ in range(2):
        m = tiny_eenn(seed=1)
        train_eenn(m, data, loss, epochs=0, head_epochs=2, augment="flip+shift", seed=3, **KW)
        runs.append(m.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_early_stopping_restores_best_weights():
    data = synthetic()
    data.y_val = (data.y_val + 1) % C  # validation disagrees with training: val loss rises as it learns
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([w.copy() for w in self.model.eenn.get_weights()])

    m = tiny_eenn()
    h = train_eenn(m, data, epochs=8, head_epochs=0, early_stopping_patience=1, callbacks=[Record()],
                   batch_size=32, learning_rate=3e-2, exit_macs=MACS, verbose=0)
    val = h.phases["backbone"]["val_loss"]
    best = int(np.argmin(val))
    assert h.stopped_early["backbone"] and len(val) < 8
    assert best < len(val) - 1
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), seen[best]))


def test_phases_freeze_what_they_should_and_call_user_callbacks():
    data = synthetic()
    m = tiny_eenn()
    calls = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append(epoch)

    before = weights_of(m, HEADS)
    train_eenn(m, data, epochs=1, head_epochs=0, callbacks=[Count()], **KW)
    assert same(before, weights_of(m, HEADS))  # backbone phase on the final exit: heads untouched
    before_bb, before_heads = weights_of(m, BACKBONE), weights_of(m, HEADS)
    h = train_eenn(m, data, LossConfig.nachos(150.0), epochs=0, head_epochs=2, freeze_backbone=True,
                   callbacks=[Count()], **KW)
    assert same(before_bb, weights_of(m, BACKBONE))  # incl. BatchNorm moving statistics
    assert not same(before_heads, weights_of(m, HEADS))
    assert all(l.trainable for l in m.layers)  # flags restored
    assert calls == [0, 0, 1]
    S = np.array(h.support_accuracy)  # warm-up 1 epoch, then the support set is used
    assert S.shape == (C, 1) and np.all((S >= 0) & (S <= 1))
    assert h.phases["heads"]["cal_loss"][0] == 0.0 and h.phases["heads"]["cal_loss"][1] > 0.0


def test_support_set_is_balanced_and_held_out():
    y = np.repeat(np.arange(C), [40, 30, 50, 40])
    rng = np.random.default_rng(0)
    sup = balanced_support_indices(y, 0.1, C, rng)
    assert np.all(np.bincount(y[sup], minlength=C) == 4)
    order, support = epoch_schedule(len(y), 3, rng, y, 0.1, C)
    assert order.shape == (3, len(y) - 16) and support.shape == (3, 16)
    for o, s in zip(order, support):
        assert not set(o) & set(s) and len(set(o) | set(s)) == len(y)
    probs = [np.eye(C)[[0, 1, 1, 3]]]
    np.testing.assert_allclose(support_accuracy(probs, np.array([0, 1, 2, 3]), C)[:, 0], [1, 1, 0, 1])


def test_predict_exits_and_model_without_confidences():
    data = synthetic(n=128, n_val=32)
    m = tiny_eenn(conf=False)
    train_eenn(m, data, LossConfig.nachos(150.0), epochs=0, head_epochs=1, **KW)  # b = max-softmax
    probs, confs = predict_exits(m, data.x_val, batch_size=16)
    assert confs is None and [p.shape for p in probs] == [(32, C), (32, C)]
    np.testing.assert_allclose(probs[0].sum(axis=1), 1.0, rtol=1e-5)
    probs, confs = predict_exits(tiny_eenn(), data.x_val)
    assert len(confs) == 1 and confs[0].shape == (32,)


def _expected_macs_confidence_rule(model, x, y, threshold):
    probs, confs = predict_exits(model, x)
    try:
        from nachos_tf.policy import simulate
        return simulate(probs, y, [threshold], MACS, rule="confidence", confidences=confs).expected_macs
    except ImportError:  # numpy simulation: leave at exit 0 when its confidence >= threshold
        leave0 = confs[0] >= threshold
        return float(np.mean(np.where(leave0, MACS[0], MACS[1])))


def test_mac_term_lowers_expected_macs():
    data = synthetic(n=256, n_val=128)
    budget = MACS[0]  # the strongest budget: everything should leave at exit 0
    out = {}
    for use in (False, True):
        m = tiny_eenn(seed=2)
        loss = LossConfig.nachos_np(budget, use_mac_term=use, w_mac=5.0)
        train_eenn(m, data, loss, epochs=0, head_epochs=3, seed=0, **KW)
        out[use] = _expected_macs_confidence_rule(m, data.x_val, data.y_val, 0.5)
    assert out[True] < out[False] - 20.0, out


@pytest.mark.slow
def test_with_builder_and_profiler():
    nt = pytest.importorskip("nachos_tf")
    try:
        from nachos_tf.builder import build_eenn
        from nachos_tf.macs import profile_macs
        from nachos_tf.space import SearchSpace
    except ImportError:
        pytest.skip("builder / profiler not available")
    space = SearchSpace.mcu(input_shape=(16, 16, 1), num_classes=C)
    m = build_eenn(space, space.sample(seed=0))
    rng = np.random.default_rng(0)
    data = SimpleNamespace(x_train=rng.uniform(0, 255, (64, 16, 16, 1)).astype("float32"),
                           y_train=rng.integers(0, C, 64), x_val=None, y_val=None, num_classes=C)
    macs = profile_macs(m).exit_macs
    h = train_eenn(m, data, LossConfig.nachos(0.5 * macs[-1]), epochs=0, head_epochs=1, batch_size=32,
                   verbose=0, train_limit=48)  # exit_macs come from the profiler
    assert h.exit_macs == [float(v) for v in macs] and "mac_loss" in h.phases["heads"]


def test_distillation_pulls_every_exit_towards_the_teacher():
    """A teacher that names class (y + 1) mod C: distilled strongly, both exits follow it; without it they
    follow the labels. The same seed and data otherwise."""
    data = synthetic(n=960)
    y = np.asarray(data.y_train)
    teacher = np.full((len(y), C), -6.0, np.float32)
    teacher[np.arange(len(y)), (y + 1) % C] = 6.0
    kw = dict(KW, epochs=4, head_epochs=6, seed=3)
    agree = {}
    for name, extra in (("plain", {}), ("kd", dict(teacher_logits=teacher, distill_weight=20.0))):
        model = tiny_eenn(seed=1)
        hist = train_eenn(model, data, loss=LossConfig.ce_sum(), **kw, **extra)
        probs, _ = predict_exits(model, data.x_train)
        agree[name] = [(float(np.mean(p.argmax(1) == y)), float(np.mean(p.argmax(1) == (y + 1) % C)))
                       for p in probs]
        assert ("kd_loss" in hist.phases["heads"]) == (name == "kd")
    for (lab_plain, t_plain), (lab_kd, t_kd) in zip(agree["plain"], agree["kd"]):
        assert lab_plain > t_plain + 0.2                              # without a teacher: the labels
        assert t_kd > 0.6 and t_kd > lab_kd + 0.5                     # distilled: the teacher, at every exit


def test_teacher_logits_are_checked():
    data = synthetic()
    with pytest.raises(Exception, match="teacher_logits must have shape"):
        train_eenn(tiny_eenn(), data, teacher_logits=np.zeros((5, C)), **dict(KW, epochs=1, head_epochs=0))
    bad = np.zeros((len(data.y_train), C), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(Exception, match="non-finite"):
        train_eenn(tiny_eenn(), data, teacher_logits=bad, **dict(KW, epochs=1, head_epochs=0))


def test_cosine_schedule_decays_each_phase_to_zero():
    """lr_schedule="cosine": the optimizer's rate at every step is 0.5 lr (1 + cos(pi t / T)) over each phase's
    own T steps (hand-computed here), and the weights follow it: the last update of a phase is a small fraction
    of its first (Adam's first step moves each weight by about lr)."""
    data = synthetic()
    m = tiny_eenn()
    rates, kernels = [], []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            kernels.append(m.get_layer("c2").get_weights()[0].copy())

    train_eenn(m, data, epochs=1, head_epochs=2, callbacks=[Watch()], lr_schedule="cosine", **KW)
    kernels.append(m.get_layer("c2").get_weights()[0].copy())
    lr, steps = KW["learning_rate"], 320 // 32
    want = [0.5 * lr * (1 + np.cos(np.pi * t / T)) for T in (steps, 2 * steps) for t in range(T)]
    np.testing.assert_allclose(rates, want, rtol=1e-5, atol=1e-9)
    moves = [np.abs(b - a).max() for a, b in zip(kernels[:steps + 1], kernels[1:steps + 1])]
    assert moves[-1] < 0.1 * moves[0]
    # the constant schedule keeps the rate (and differs from the cosine one from the second step on)
    rates.clear()
    train_eenn(tiny_eenn(), data, epochs=1, head_epochs=0, callbacks=[Watch()], **KW)
    assert rates == [pytest.approx(lr)] * steps
    with pytest.raises(nt_errors.ConstraintError, match="lr_schedule"):
        train_eenn(tiny_eenn(), data, epochs=1, lr_schedule="step", **KW)
