"""LeanAdam: the same weights as keras.optimizers.Adam, bit for bit, through its own fast path."""
from __future__ import annotations

import types

import keras
import numpy as np
import pytest

from nachos_tf import train as T
from nachos_tf.builder import build_eenn
from nachos_tf.optim import LeanAdam
from nachos_tf.space import SearchSpace


def _fit_dense(opt, x, y):
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("kw", [{}, {"beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-5}, {"amsgrad": True}])
def test_lean_adam_gives_keras_adams_weights_bit_for_bit(kw, monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
    fallback = []
    orig = keras.optimizers.Adam._backend_update_step

    def spy(self, *a):
        fallback.append(type(self).__name__)
        return orig(self, *a)

    monkeypatch.setattr(keras.optimizers.Adam, "_backend_update_step", spy)
    ref = _fit_dense(keras.optimizers.Adam(0.01, **kw), x, y)
    fallback.clear()
    got = _fit_dense(LeanAdam(0.01, **kw), x, y)
    assert bool(fallback) == bool(kw.get("amsgrad"))      # its own path unless AMSGrad (Keras' path then)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    assert not np.array_equal(ref[0], _fit_dense(keras.optimizers.Adam(0.02, **kw), x, y)[0])   # it trains


def test_train_eenn_with_lean_adam_gives_keras_adams_eenn(monkeypatch):
    """Both NACHOS phases of a sampled EENN (backbone, then exits with the NACHOS loss): the same weights as
    with keras.optimizers.Adam."""
    space = SearchSpace.mcu((12, 12, 1), 4)
    rng = np.random.default_rng(1)
    data = types.SimpleNamespace(x_train=rng.random((96, 12, 12, 1)).astype("float32"),
                                 y_train=rng.integers(0, 4, 96), num_classes=4)
    weights = []
    for opt in (keras.optimizers.Adam, LeanAdam):
        monkeypatch.setattr(T, "LeanAdam", opt)
        keras.utils.set_random_seed(2)
        model = build_eenn(space, space.sample(5))
        T.train_eenn(model, data, epochs=1, head_epochs=1, batch_size=32, learning_rate=3e-3, seed=5, verbose=0)
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
