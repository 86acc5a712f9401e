"""Weight-sharing supernet: exact extraction, kernel windows, one traced step for every subnet, save/load."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import nachos_tf as nt
from nachos_tf.errors import NachosError, SupernetError
from nachos_tf.supernet import (Supernet, SupernetMismatchError, data_fingerprint, space_fingerprint,
                                train_supernet, window_offset)
from nachos_tf.supernet.extract import reestimate_bn

SHAPE = (16, 16, 1)


def _tiny_data(n=48, seed=0, shape=SHAPE, classes=4):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n,) + shape).astype("float32")
    y = (np.arange(n) % classes).astype("int32")
    return nt.data.Dataset(x, y, x[:16], y[:16], x[:16], y[:16], classes, shape, "tiny")


@pytest.fixture(scope="module")
def space():
    return nt.SearchSpace.mcu(SHAPE, 4)


def randomized_supernet(space, seed=0):
    """A supernet with random (non-trivial) BN statistics, BN affine weights and biases."""
    sn = Supernet(space, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for k, v in sn.net.vars.items():
        if k.endswith(("moving_mean", "beta", "bias")):
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
        elif k.endswith(("moving_variance", "gamma")):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
    return sn


@pytest.fixture(scope="module")
def randomized(space):
    return randomized_supernet(space)


def test_window_offset_reproduces_a_same_conv():
    """A kxk 'same' depthwise conv == the 7x7 one with the kxk kernel placed at the computed offset."""
    rng = np.random.default_rng(0)
    for n in range(1, 10):
        for stride in (1, 2):
            for k in (3, 5):
                x = tf.constant(rng.normal(size=(1, n, n + 1, 2)).astype("float32"))
                w = rng.normal(size=(k, k, 2, 1)).astype("float32")
                ref = tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], "SAME")
                big = np.zeros((7, 7, 2, 1), "float32")
                oh, ow = window_offset(n, k, 7, stride), window_offset(n + 1, k, 7, stride)
                big[oh:oh + k, ow:ow + k] = w
                got = tf.nn.depthwise_conv2d(x, big, [1, stride, stride, 1], "SAME")
                np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)


def _genomes(space, sn):
    gs = [space.sample(seed=i) for i in range(15)]
    gs += [sn.extreme_genome(True), sn.extreme_genome(False)]
    base = gs[0]  # the flatten head (one dense kernel per pooled size) at every pool factor
    for pool in space.pools:
        exits = (nt.ExitGene(True, "nachos", 16, pool),) + base.exits[1:]
        gs.append(space.repair(nt.Genome(base.backbone, exits)))
    return gs


def test_extracted_model_equals_the_supernet_forward_pass(space, randomized):
    gs = _genomes(space, randomized)
    seen = {"res": set(), "head": set(), "se": set(), "act": set(), "k_stride2": set(), "shallow": False}
    x = np.random.default_rng(2).uniform(0, 255, (6,) + SHAPE).astype("float32")
    for g in gs:
        p = g.params
        seen["res"].add(p["resolution"])
        seen["se"] |= {p[f"s{s}_se"] for s in range(1, 6)}
        seen["act"] |= {p[f"s{s}_act"] for s in range(1, 6)}
        seen["k_stride2"] |= {p["s1_kernel"], p["s3_kernel"]}
        seen["shallow"] |= any(p[f"s{s}_depth"] < 4 for s in range(1, 6))
        seen["head"] |= {(e.head, e.pool) for e in g.exits if e.enabled}
        model = randomized.extract(g)
        want = model(x, training=False)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = randomized.subnet_predict(g, x)
        assert len(got) == len(want)
        for a, b in zip(want, got):
            assert a.shape == b.shape
            np.testing.assert_allclose(np.asarray(a), b, atol=1e-5, rtol=1e-5)
        assert float(np.std(np.asarray(want[-1]))) > 1e-3  # not a degenerate (constant) output
    assert seen["res"] == set(space.backbone_genes[0].values)
    assert seen["se"] == {True, False} and seen["act"] == {"relu", "hard_swish"}
    assert seen["k_stride2"] >= {3, 5, 7} and seen["shallow"]
    assert {h for h, _ in seen["head"]} == set(space.heads)
    assert {p for h, p in seen["head"] if h == "nachos"} == set(space.pools)


def test_extraction_gives_builder_layers_and_outputs(space, randomized):
    g = space.sample(seed=3)
    m, ref = randomized.extract(g), nt.build_eenn(space, g)
    assert nt.naming.output_names(m) == nt.naming.output_names(ref)
    assert [(l.name, [tuple(w.shape) for w in l.weights]) for l in m.layers] == \
        [(l.name, [tuple(w.shape) for w in l.weights]) for l in ref.layers]


def test_bn_reestimation_sets_exact_statistics(space, randomized):
    g = space.sample(seed=4)
    m = randomized.extract(g)
    x = np.random.default_rng(3).uniform(0, 255, (64,) + SHAPE).astype("float32")
    assert reestimate_bn(m, x) > 0
    feat = keras.Model(m.inputs, m.get_layer("stem_conv").output)(x)
    mean = np.mean(np.asarray(feat), axis=(0, 1, 2))
    np.testing.assert_allclose(m.get_layer("stem_bn").moving_mean.numpy(), mean, atol=1e-4)
    assert m.get_layer("stem_bn").momentum == 0.99


def test_extracted_model_saves_loads_and_converts_to_int8(space, randomized, tmp_path):
    g = space.sample(seed=5)
    m = randomized.extract(g, bn_data=np.random.default_rng(0).uniform(0, 255, (32,) + SHAPE).astype("float32"))
    x = np.random.default_rng(4).uniform(0, 255, (4,) + SHAPE).astype("float32")
    m.save(tmp_path / "m.keras")
    m2 = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(m(x), m2(x)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    from tflite_helpers import to_int8_tflite

    blob = to_int8_tflite(m, low=0.0, high=255.0, fast=True)
    interp = tf.lite.Interpreter(model_content=blob)
    interp.allocate_tensors()
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert len(interp.get_output_details()) == len(m.outputs)


@pytest.mark.slow  # the sandwich step graph takes minutes to trace and optimise on 2 shared cores
def test_one_fit_step_serves_every_subnet_without_retracing(space):
    data = _tiny_data()
    init = Supernet(space, seed=0).net.numpy_weights()
    sn = train_supernet(space, data, epochs=1, warmup_epochs=0, batch_size=16, n_random=1, val_limit=0,
                        seed=0, verbose=0)
    assert sn.info["traces"] == 1  # 3 steps, 9 different subnets (3 resolutions), one trace
    after = sn.net.numpy_weights()
    changed = [k for k in init if not np.allclose(init[k], after[k])]
    assert any(k.startswith("s5_") for k in changed) and "final/kernel" in changed
    assert sn.info["epochs_done"] == 1


def test_save_load_round_trip_and_refusals(space, randomized, tmp_path):
    randomized.info["data_fingerprint"] = data_fingerprint(_tiny_data())
    randomized.save(tmp_path / "sn")
    man = json.loads((tmp_path / "sn" / "supernet.json").read_text())
    assert man["space_fingerprint"] == space_fingerprint(space) and "versions" in man
    back = Supernet.load(tmp_path / "sn", space, _tiny_data())
    for k, v in randomized.net.numpy_weights().items():
        np.testing.assert_array_equal(back.net.vars[k].numpy(), v)
    with pytest.raises(SupernetMismatchError):
        Supernet.load(tmp_path / "sn", nt.SearchSpace.mcu(SHAPE, 5))
    with pytest.raises(SupernetMismatchError):
        Supernet.load(tmp_path / "sn", space, _tiny_data(seed=9))
    with pytest.raises(SupernetError):
        Supernet.load(tmp_path / "missing", space)
    assert issubclass(SupernetMismatchError, NachosError)
    Supernet.load(randomized.save(tmp_path / "half", dtype="float16"), space)
    assert (tmp_path / "half" / "supernet.weights.h5").stat().st_size < \
        (tmp_path / "sn" / "supernet.weights.h5").stat().st_size


@pytest.mark.slow
def test_training_is_seeded_and_resumes(space, tmp_path):
    data = _tiny_data(64)
    kw = dict(epochs=2, warmup_epochs=1, batch_size=16, n_random=1, val_limit=0, seed=3, verbose=0)
    a = train_supernet(space, data, **kw).net.numpy_weights()
    train_supernet(space, data, folder=tmp_path / "r", **{**kw, "epochs": 2})
    state = json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())
    assert state["epochs_done"] == 2
    b = Supernet.load(tmp_path / "r", space).net.numpy_weights()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)
    # restarting a finished run does no work and gives the same weights
    c = train_supernet(space, data, folder=tmp_path / "r", **kw).net.numpy_weights()
    for k in a:
        np.testing.assert_allclose(a[k], c[k], atol=1e-6)
    with pytest.raises(SupernetMismatchError):
        train_supernet(space, data, folder=tmp_path / "r", **{**kw, "n_random": 2})
    # continuing from a supernet: a checkpoint made from other starting weights is not resumed
    cont = dict(kw, epochs=1, warmup_epochs=0)
    train_supernet(space, data, folder=tmp_path / "c", init_from=Supernet.load(tmp_path / "r", space), **cont)
    with pytest.raises(SupernetMismatchError, match="settings"):
        train_supernet(space, data, folder=tmp_path / "c", init_from=Supernet(space, seed=8), **cont)


def test_init_from_starts_from_those_weights_and_keeps_their_record(space, randomized, tmp_path):
    """`init_from` copies every weight of the given supernet (not the seeded initialisation), records its
    weights' sha256 in the settings and its training record under info["init_from"], whose seconds and
    epochs count in the total; another space or other data is refused."""
    from nachos_tf.supernet.store import training_record_epochs, training_record_seconds, weights_fingerprint

    data = _tiny_data(64)
    src = Supernet(space, seed=0, net=randomized.net, info={
        "epochs_done": 3, "history": [{"epoch": e, "seconds": 10.0 * e} for e in (1, 2, 3)],
        "data_fingerprint": data_fingerprint(data), "command": "stage 1"})
    sn = train_supernet(space, data, epochs=0, batch_size=16, folder=tmp_path / "c", seed=5, verbose=0,
                        init_from=src)
    fresh = Supernet(space, seed=5).net.numpy_weights()
    w = sn.net.numpy_weights()
    for k, v in randomized.net.numpy_weights().items():
        np.testing.assert_array_equal(w[k], v)
    assert any(not np.array_equal(w[k], fresh[k]) for k in w)
    sha = weights_fingerprint(randomized.net.numpy_weights())
    assert sn.info["settings"]["init_from"] == sha and sn.info["init_from"]["weights_sha256"] == sha
    saved = json.loads((tmp_path / "c" / "supernet.json").read_text())
    assert saved["init_from"]["command"] == "stage 1"
    # a continued supernet's cost is its own epochs plus those it started from (recursively)
    saved["history"] = [{"epoch": 1, "seconds": 7.5}]
    saved["epochs_done"] = 1
    assert training_record_seconds(saved) == pytest.approx(67.5)
    assert training_record_epochs(saved) == 4
    assert training_record_epochs({"epochs_done": 2, "init_from": saved}) == 6
    with pytest.raises(SupernetMismatchError, match="other data"):
        train_supernet(space, _tiny_data(64, seed=9), epochs=0, batch_size=16, verbose=0, init_from=src)
    with pytest.raises(SupernetMismatchError, match="search space"):
        train_supernet(nt.SearchSpace.mcu(SHAPE, 5), _tiny_data(64, classes=5), epochs=0, batch_size=16, verbose=0,
                       init_from=src)
    with pytest.raises(SupernetError, match="must be a Supernet"):
        train_supernet(space, data, epochs=0, batch_size=16, verbose=0, init_from=str(tmp_path / "c"))


@pytest.mark.slow
def test_largest_subnet_learns_fashion_mnist():
    data = nt.data.load("fashion_mnist").subset(train=3000, val=1000, test=10, seed=0)
    space = nt.SearchSpace.mcu(data.input_shape, data.num_classes)
    sn = train_supernet(space, data, epochs=2, warmup_epochs=1, batch_size=64, n_random=1, val_limit=0,
                        seed=0, verbose=0)
    m = sn.extract(sn.extreme_genome(True), bn_data=data, bn_images=1000)
    acc = float(np.mean(np.argmax(m.predict(data.x_val, verbose=0)[-1], -1) == data.y_val))
    assert acc > 0.5  # chance is 0.1


def test_shipped_preset_matches_the_default_space():
    from nachos_tf.supernet.store import preset_folder, read_manifest

    folder = preset_folder("fashion_mnist")
    if folder is None:
        pytest.skip("no preset shipped (scripts/train_default_supernet.py makes it)")
    man = read_manifest(folder)
    assert man["space_fingerprint"] == space_fingerprint(nt.SearchSpace.mcu((28, 28, 1), 10))
    assert (folder / "supernet.weights.h5").stat().st_size < 3 * 1024 * 1024


def test_channel_sorting_preserves_the_largest_subnet(space, randomized):
    from nachos_tf.supernet.sorting import sort_channels

    g = randomized.extreme_genome(True)
    x = np.random.default_rng(5).uniform(0, 255, (4,) + SHAPE).astype("float32")
    before = randomized.subnet_predict(g, x)
    w0 = randomized.net.vars["s2_b1_expand/kernel"].numpy()
    assert sort_channels(randomized.net) == sum(max(v) for v in randomized.spec.depths)
    imp = np.abs(randomized.net.vars["s2_b1_project/kernel"].numpy()).sum(axis=(0, 1, 3))
    assert np.all(np.diff(imp) <= 0) and not np.array_equal(w0, randomized.net.vars["s2_b1_expand/kernel"].numpy())
    for a, b in zip(before, randomized.subnet_predict(g, x)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_in_graph_bn_reestimation_equals_extract_then_reestimate(space, randomized):
    """The evaluator's fast path (BN re-estimated inside the supernet graph, nothing built) gives the
    outputs of the extracted model after `reestimate_bn`, and leaves the supernet's statistics as they were."""
    rng = np.random.default_rng(5)
    bn_x = rng.uniform(0, 255, (96,) + SHAPE).astype("float32")
    x = rng.uniform(0, 255, (8,) + SHAPE).astype("float32")
    before = {k: v.numpy().copy() for k, v in randomized.net.vars.items()}
    # seeds 41 and 45: flatten (nachos) heads at pool 2 and 1 and a conv head at pool 1, whose BN the head
    # variants of other pools share (the case a naive in-graph re-estimation gets wrong); 40: plain heads
    for g in [space.sample(seed=s) for s in (40, 41, 45)]:
        model = randomized.extract(g, bn_data=bn_x, bn_images=len(bn_x))
        want = model(x, training=False)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = randomized.subnet_predict(g, x, bn_x=bn_x)
        plain = randomized.subnet_predict(g, x)
        assert len(got) == len(want)
        for a, b in zip(want, got):
            np.testing.assert_allclose(np.asarray(a), b, atol=2e-4, rtol=2e-4)
        assert np.abs(np.asarray(want[-1]) - plain[-1]).max() > 1e-3   # re-estimation did change the outputs
    for k, v in randomized.net.vars.items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_exit_macs_by_arithmetic_equal_the_profiled_model():
    """SearchSpace.exit_macs (no model built) == profile_macs of the built model, for sampled genomes of two
    spaces (grey 28x28 with confidence, colour 32x32 without)."""
    for sp, n in ((nt.SearchSpace.mcu((28, 28, 1), 10), 6), (nt.SearchSpace.mcu((32, 32, 3), 7, confidence=False), 3)):
        kinds = set()
        for i in range(n):
            g = sp.sample(seed=900 + i)
            kinds |= {(e.head, e.pool) for e in g.exits if e.enabled}
            assert sp.exit_macs(g) == nt.profile_macs(nt.build_eenn(sp, g)).exit_macs
        assert len({h for h, _ in kinds}) >= 2
