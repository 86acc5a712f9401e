"""OFA's kernel transformation in the supernet (nachos_tf.supernet.kernels): hand-computed kernels, exact
extraction with transformed kernels, identity start, save/load, training from a supernet without them."""
import json

import numpy as np
import pytest

import nachos_tf as nt
from nachos_tf.errors import SupernetError
from nachos_tf.supernet import Supernet, train_supernet
from nachos_tf.supernet.kernels import dw_kernel_np, is_transform, transform_name

from test_supernet import SHAPE, _tiny_data, randomized_supernet


@pytest.fixture(scope="module")
def space():
    return nt.SearchSpace.mcu(SHAPE, 4)


def _with_transforms(space, base, scale=0.3, seed=5):
    """A supernet with transformation matrices, every other weight copied from `base`; the matrices are the
    identity plus noise of `scale` (0: the identity)."""
    sn = Supernet(space, kernel_transform=True)
    rng = np.random.default_rng(seed)
    w = base.net.numpy_weights()
    for k, v in sn.net.vars.items():
        if is_transform(k):
            n = v.shape[0]
            v.assign((np.eye(n) + scale * rng.normal(size=(n, n)) / np.sqrt(n)).astype("float32"))
        else:
            v.assign(w[k])
    return sn


def test_transformed_kernels_by_hand():
    rng = np.random.default_rng(0)
    c = 3
    big = rng.normal(size=(7, 7, c, 1)).astype("float32")
    t5, t3 = rng.normal(size=(25, 25)), rng.normal(size=(9, 9))
    weights = {"s1_b0_dw/kernel": big, transform_name("s1_b0", 5): t5, transform_name("s1_b0", 3): t3}
    k5 = np.zeros((5, 5, c, 1))
    k3 = np.zeros((3, 3, c, 1))
    for ch in range(c):                                  # row-major taps, one channel at a time
        v5 = [big[1 + i, 1 + j, ch, 0] for i in range(5) for j in range(5)]
        u5 = [sum(v5[a] * t5[a, b] for a in range(25)) for b in range(25)]
        for b in range(25):
            k5[b // 5, b % 5, ch, 0] = u5[b]
        v3 = [k5[1 + i, 1 + j, ch, 0] for i in range(3) for j in range(3)]
        for b in range(9):
            k3[b // 3, b % 3, ch, 0] = sum(v3[a] * t3[a, b] for a in range(9))
    np.testing.assert_allclose(dw_kernel_np(weights, "s1_b0", 5, (3, 5, 7)), k5, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw_kernel_np(weights, "s1_b0", 3, (3, 5, 7)), k3, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dw_kernel_np(weights, "s1_b0", 7, (3, 5, 7)), big)
    plain = {"s1_b0_dw/kernel": big}                     # without matrices: the centre
    np.testing.assert_array_equal(dw_kernel_np(plain, "s1_b0", 3, (3, 5, 7)), big[2:5, 2:5])


@pytest.fixture(scope="module")
def pair(space):
    """A plain supernet and one with transformation matrices, every other weight the same (each traced once by
    its first `subnet_predict`, which is most of these tests' time)."""
    base = randomized_supernet(space, seed=2)
    return base, _with_transforms(space, base)


def test_identity_matrices_change_nothing(space, pair):
    base, sn = pair
    saved = {k: v.numpy() for k, v in sn.net.vars.items() if is_transform(k)}
    x = np.random.default_rng(1).uniform(0, 255, (5,) + SHAPE).astype("float32")
    try:
        for k, v in saved.items():
            sn.net.vars[k].assign(np.eye(v.shape[0], dtype="float32"))
        for g in [space.sample(seed=i) for i in range(3)]:
            for a, b in zip(base.subnet_predict(g, x), sn.subnet_predict(g, x)):
                np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    finally:
        for k, v in saved.items():
            sn.net.vars[k].assign(v)


def test_extraction_with_transformed_kernels_equals_the_supernet_forward_pass(space, pair):
    base, sn = pair
    assert sn.kernel_transform and not base.kernel_transform
    x = np.random.default_rng(2).uniform(0, 255, (6,) + SHAPE).astype("float32")
    kernels, differs = set(), 0
    for g in [space.sample(seed=i) for i in range(5)] + [sn.extreme_genome(True), sn.extreme_genome(False)]:
        kernels |= {g.params[f"s{s}_kernel"] for s in range(1, 6)}
        want = sn.extract(g)(x, training=False)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = sn.subnet_predict(g, x)
        assert len(got) == len(want)
        for a, b in zip(want, got):
            np.testing.assert_allclose(np.asarray(a), b, atol=1e-5, rtol=1e-5)
        small = any(g.params[f"s{s}_kernel"] < 7 for s in range(1, 6))
        plain = base.subnet_predict(g, x)[-1]
        if small:
            differs += not np.allclose(plain, got[-1], atol=1e-4)
        else:                                            # only smaller kernels are transformed
            np.testing.assert_allclose(plain, got[-1], atol=1e-5, rtol=1e-5)
    assert kernels == {3, 5, 7} and differs >= 3


def test_save_load_keeps_the_matrices(space, pair, tmp_path):
    sn = pair[1]
    sn.save(tmp_path / "kt")
    back = Supernet.load(tmp_path / "kt", space)
    assert back.kernel_transform
    w, v = sn.net.numpy_weights(), back.net.numpy_weights()
    assert set(w) == set(v) and any(is_transform(k) for k in v)
    for k in w:
        np.testing.assert_array_equal(w[k], v[k])
    assert not Supernet.load(_saved(space, tmp_path), space).kernel_transform


def _saved(space, tmp_path):
    return Supernet(space, seed=0).save(tmp_path / "plain")


def test_training_adds_identity_matrices_to_a_supernet_without(space, tmp_path):
    data = _tiny_data(64)
    base = randomized_supernet(space, seed=3)
    kw = dict(epochs=0, warmup_epochs=0, batch_size=16, n_random=2, val_limit=0, seed=1, verbose=0,
              elastic=["kernel"])
    sn = train_supernet(space, data, init_from=base, kernel_transform=True, folder=tmp_path / "kt", **kw)
    mats = {k: v for k, v in sn.net.numpy_weights().items() if is_transform(k)}
    sp = sn.spec                                        # two matrices (5x5, 3x3) per block: kernels 3, 5, 7
    assert all(set(k) == {3, 5, 7} for k in sp.kernels)
    assert len(mats) == 2 * sum(sp.depth_max(s) for s in range(sp.n_stages))
    for m in mats.values():
        np.testing.assert_array_equal(m, np.eye(m.shape[0]))
    w = base.net.numpy_weights()
    assert all(np.array_equal(v, w[k]) for k, v in sn.net.numpy_weights().items() if not is_transform(k))
    manifest = json.loads((tmp_path / "kt" / "supernet.json").read_text())
    assert manifest["settings"]["kernel_transform"] is True
    again = train_supernet(space, data, init_from=sn, **kw)         # kernel_transform None: as init_from
    assert again.kernel_transform
    with pytest.raises(SupernetError, match="kernel_transform"):
        train_supernet(space, data, init_from=sn, kernel_transform=False, **kw)


def test_gradients_reach_the_matrices_of_the_kernels_a_subnet_uses(space):
    import tensorflow as tf

    sn = _with_transforms(space, randomized_supernet(space, seed=6))
    g = sn.extreme_genome(True)
    p = dict(g.params, s1_kernel=3, s2_kernel=5)                    # stages 3-5 keep their 7x7 kernels
    g = space.repair(nt.Genome.make(p, g.exits))
    code, _ = sn.spec.encode(g)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4,) + SHAPE).astype("float32"))
    names = sorted(k for k in sn.net.vars if is_transform(k))
    with tf.GradientTape() as tape:
        out = sn.net.forward(x, tf.constant(code), mode="batch")
        loss = tf.reduce_sum(tf.square(out["final"]))
    grads = dict(zip(names, tape.gradient(loss, [sn.net.vars[k] for k in names])))

    def moved(k):
        return grads[k] is not None and float(tf.reduce_max(tf.abs(grads[k]))) > 0

    assert moved(transform_name("s1_b0", 5)) and moved(transform_name("s1_b0", 3))
    assert moved(transform_name("s2_b0", 5)) and not moved(transform_name("s2_b0", 3))
    assert not any(moved(k) for k in names if k.startswith(("s3_", "s4_", "s5_")))
