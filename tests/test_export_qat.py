"""QAT through tensorflow-model-optimization in a child process, PTQ/QAT accuracy report, and a staged
export of a searched MCU-space architecture (MBConv, squeeze-excite, hard-swish, resizing). Slow."""
import gzip
import os
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from nachos_tf import naming  # noqa: E402
from tflite_export import qat, quantize, tflm  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.slow


def _idx(split, n):
    p = "train" if split == "train" else "t10k"
    if not (FMNIST / f"{p}-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")
    with gzip.open(FMNIST / f"{p}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    with gzip.open(FMNIST / f"{p}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return x.astype(np.float32), y.astype(np.int64)


def _small_eenn():
    L = keras.layers
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0, name="rescale")(inp)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="c1")(x)
    x = L.ReLU(name="r1")(L.BatchNormalization(momentum=0.9, name="bn1")(x))
    x = L.Identity(name="exit_0_point")(x)
    v = L.Flatten(name="e0_flat")(L.AveragePooling2D(2, name="e0_pool")(x))
    outs = [L.Dense(10, name="exit_0")(v), L.Dense(1, activation="sigmoid", name="exit_0_conf")(v)]
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw2")(x)
    x = L.ReLU(name="r2")(L.BatchNormalization(momentum=0.9, name="bn2")(x))
    x = L.Conv2D(32, 1, use_bias=False, name="pw2")(x)
    x = L.ReLU(name="r2b")(L.BatchNormalization(momentum=0.9, name="bn2b")(x))
    v = L.GlobalAveragePooling2D(name="f_gap")(x)
    outs.append(L.Dense(10, name="final")(v))
    return keras.Model(inp, outs)


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(1)
    x, y = _idx("train", 2000)
    xt, yt = _idx("test", 300)
    m = _small_eenn()
    names = naming.output_names(m)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    m.compile(keras.optimizers.Adam(3e-3), [("binary_crossentropy" if "conf" in n else ce) for n in names])
    m.fit(x, [((y < 5).astype(np.float32)[:, None] if "conf" in n else y) for n in names], epochs=1,
          batch_size=32, verbose=0)
    return m, x, y, xt, yt


def test_qat_runs_in_a_child_and_keeps_keras3_here(small):
    m, x, y, xt, yt = small
    before = [w.copy() for w in m.get_weights()]
    q = qat.qat_finetune(m, x[:1000], y[:1000], epochs=1)
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    assert keras.__version__.startswith("3.") and isinstance(q, keras.Model)
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights())), "caller's model untouched"
    for name in ("c1", "dw2", "pw2", "exit_0", "final", "bn1"):   # kernels too, not only BatchNorm
        a, b = m.get_layer(name).get_weights()[0], q.get_layer(name).get_weights()[0]
        assert not np.array_equal(a, b), f"QAT fine-tuning did not change {name}"
    ref, got = m.predict(xt, verbose=0), q.predict(xt, verbose=0)
    for i in (0, 2):
        a = np.mean(np.argmax(ref[i], 1) == yt)
        b = np.mean(np.argmax(got[i], 1) == yt)
        assert b >= a - 0.05, (i, a, b)


def test_compare_quantization_reports_float_ptq_qat(small):
    m, x, y, xt, yt = small
    res = quantize.compare_quantization(m, x[:200], xt, yt, qat_epochs=1, train_xy=(x[:1000], y[:1000]),
                                        limit=200)
    assert set(res) == {"float", "ptq", "qat"}
    for exit_name in ("exit_0", "final"):
        print(exit_name, {k: round(v[exit_name], 3) for k, v in res.items()})
        assert abs(res["ptq"][exit_name] - res["float"][exit_name]) <= 0.05
        assert res["qat"][exit_name] >= res["float"][exit_name] - 0.05   # QAT also trains: may gain


def test_export_with_qat_and_evaluate(small, tmp_path):
    from tflite_export.c_export import export_eenn

    m, x, y, xt, yt = small
    man = export_eenn(m, tmp_path, x[:200], "confidence", [0.6], None, qat_epochs=1,
                      train_xy=(x[:1000], y[:1000]))
    assert man["quantization"] == "qat" and man["qat_epochs"] == 1
    res = tflm.evaluate_staged(tmp_path, xt, yt)
    assert res["accuracy"] > 0.4 and res["stage_invocations"][0] == len(xt)


def test_searched_mcu_architecture_exports_and_runs(tmp_path):
    """A genome of SearchSpace.mcu, BatchNorm statistics set from data (no training needed)."""
    import nachos_tf as nt

    x, y = _idx("train", 300)
    xt, yt = _idx("test", 50)
    space = nt.SearchSpace.mcu((28, 28, 1), 10)
    m = nt.build_eenn(space, space.sample(0))
    names = naming.output_names(m)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0        # one zero-learning-rate step copies the batch statistics
    m.compile(keras.optimizers.SGD(0.0), [("binary_crossentropy" if "conf" in n else
                                           keras.losses.SparseCategoricalCrossentropy(from_logits=True))
                                          for n in names])
    m.fit(x[:256], [(np.ones((256, 1)) if "conf" in n else y[:256]) for n in names], batch_size=256, verbose=0)
    from tflite_export.c_export import export_eenn

    n_early = len(naming.exit_layout(m)) - 1
    man = export_eenn(m, tmp_path, x[:100], "margin", [0.3] * n_early, None)
    assert man["stage_macs_cumulative"] == [int(v) for v in man["exit_macs"]]
    res = tflm.evaluate_staged(tmp_path, xt, yt)
    assert res["n"] == 50 and sum(res["exit_counts"]) == 50
