"""float_finetune: the float control of QAT trains like QAT (labels for classes, distilled confidences)
and leaves the caller's model alone."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tflite_export.qat import float_finetune  # noqa: E402


def _tiny(seed=0):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Identity(name="exit_0_point")(x)
    v = L.GlobalAveragePooling2D()(x)
    outs = [L.Dense(3, name="exit_0")(v), L.Dense(1, activation="sigmoid", name="exit_0_conf")(v)]
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    outs.append(L.Dense(3, name="final")(L.GlobalAveragePooling2D()(x)))
    return keras.Model(inp, outs)


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    x[np.arange(n), y * 2, y * 2, 0] += 3.0           # a learnable class signal
    return x, y


def _ce(logits, y):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_float_finetune_trains_a_clone_and_keeps_the_confidences():
    m = _tiny()
    x, y = _data()
    before = [w.copy() for w in m.get_weights()]
    ref = m.predict(x, verbose=0)
    tuned = float_finetune(m, x, y, epochs=3, batch_size=32, learning_rate=3e-3)
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights())), "caller's model untouched"
    got = tuned.predict(x, verbose=0)
    assert _ce(got[2], y) < _ce(ref[2], y) and _ce(got[0], y) < _ce(ref[0], y)   # class outputs learned
    # the confidence is distilled from the model's own: it moves far less than the class outputs do
    assert np.mean(np.abs(got[1] - ref[1])) < 0.1


def test_zero_epochs_returns_an_identical_clone():
    m = _tiny()
    x, y = _data(32)
    c = float_finetune(m, x, y, epochs=0)
    assert c is not m
    for a, b in zip(m.predict(x, verbose=0), c.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
