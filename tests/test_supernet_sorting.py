"""Importance sorting of the stem's and stages' output channels (elastic widths)."""
import keras
import numpy as np

import nachos_tf as nt
from nachos_tf.genome import Genome
from nachos_tf.supernet import Supernet
from nachos_tf.supernet.sorting import sort_widths, width_groups
from test_supernet import SHAPE, randomized_supernet


def _randomized(seed=0):
    return randomized_supernet(nt.SearchSpace.mcu(SHAPE, 4), seed)


def test_width_groups_of_the_default_space():
    """By hand from SearchSpace.mcu's widths and strides: the stem (8, 16) feeds a stride-2 block (no
    residual); stage 2 (stride 1, 12/16/20) can add stage 1's 12 or 16; stage 3 is stride 2; stages 4 and
    5 (stride 1) can add 20/24 and 24/32."""
    sn = Supernet(nt.SearchSpace.mcu((28, 28, 1), 10), seed=0)
    assert sn.spec.strides == (2, 1, 2, 1, 1)
    assert width_groups(sn.spec) == [[-1], [0, 1], [2, 3, 4]]


def _widths_on_boundaries(sn, genome, rng):
    """`genome` with every width set to the largest width of some space of its group: the stem and each
    stage to its own largest, or (when it is one of its choices) the largest of the space before it, so
    the first block's residual adds the two."""
    spec, p = sn.spec, dict(genome.params)
    p["stem_width"] = spec.stem_max
    for s in range(spec.n_stages):
        prev = spec.stem_max if s == 0 else spec.width_max(s - 1)
        choices = [spec.width_max(s)] + ([prev] if prev in spec.widths[s] and spec.strides[s] == 1 else [])
        p[f"s{s + 1}_width"] = int(rng.choice(choices))
    return Genome.make(p, genome.exits)


def test_sorting_widths_keeps_every_subnet_whose_widths_are_group_sizes():
    sn = _randomized()
    space, spec = sn.space, sn.spec
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6,) + SHAPE).astype("float32")
    kept = [sn.extreme_genome(True)] + [_widths_on_boundaries(sn, space.sample(seed=i), rng) for i in range(8)]
    assert any(g.params["s2_width"] == spec.width_max(0) for g in kept)        # a residual across spaces
    moved = [space.sample(seed=100 + i) for i in range(6)]
    before = [sn.subnet_predict(g, x) for g in kept + moved]
    assert sort_widths(sn.net) == 1 + spec.n_stages
    after = [sn.subnet_predict(g, x) for g in kept + moved]
    for a, b in zip(before[:len(kept)], after[:len(kept)]):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, atol=1e-4, rtol=1e-4)
    # narrower subnets now use other (the most important) channels: their outputs change
    assert any(not np.allclose(u, v, atol=1e-3) for a, b in zip(before[len(kept):], after[len(kept):])
               for u, v in zip(a, b))


def _reads(v, s):
    """L1 importance of stage s's output channels, summed over the weights that read them, written out
    independently of the sorting code: the stage's later blocks, the next stage's first block, the heads."""
    imp = v[f"s{s + 2}_b0_expand/kernel"].sum(axis=(0, 1, 3))
    for b in range(1, 10):
        if f"s{s + 1}_b{b}_expand/kernel" in v:
            imp = imp + v[f"s{s + 1}_b{b}_expand/kernel"].sum(axis=(0, 1, 3))
    imp = imp + v[f"p{s}_gap_dense_dense/kernel"].sum(axis=1) + v[f"p{s}_gap_dense_conf/kernel"].sum(axis=1)
    return imp + v[f"p{s}_conv_gap_dense_conv/kernel"].sum(axis=(0, 1, 3)) + v[f"p{s}_nachos_conv/kernel"].sum(axis=(0, 1, 3))


def test_sorted_channels_are_in_order_of_importance_and_a_second_sort_changes_nothing():
    sn = _randomized(seed=3)
    spec = sn.spec
    sort_widths(sn.net)
    v = {k: np.abs(w.numpy()) for k, w in sn.net.vars.items()}
    m0, m1 = spec.width_max(0), spec.width_max(1)         # stages 1 and 2 share one order (16 and 20 here)
    total = _reads(v, 1)
    total[:m0] += _reads(v, 0)
    assert np.all(np.diff(total[:m0]) <= 1e-4) and np.all(np.diff(total[m0:m1]) <= 1e-4)
    w = {k: x.numpy().copy() for k, x in sn.net.vars.items()}
    sort_widths(sn.net)
    assert all(np.array_equal(w[k], x.numpy()) for k, x in sn.net.vars.items())


def test_optimizer_slots_move_with_their_weights():
    sn = _randomized(seed=5)
    opt = keras.optimizers.Adam()
    opt.build(sn.net.trainable_variables)
    for var in sn.net.trainable_variables:          # slots equal to the weights, to see them move alike
        i = opt._get_variable_index(var)
        opt._momentums[i].assign(var)
        opt._velocities[i].assign(2 * var)
    stem = sn.net.vars["stem_conv/kernel"].numpy()
    sort_widths(sn.net, opt)
    assert not np.array_equal(stem, sn.net.vars["stem_conv/kernel"].numpy())
    for var in sn.net.trainable_variables:
        i = opt._get_variable_index(var)
        np.testing.assert_array_equal(opt._momentums[i].numpy(), var.numpy())
        np.testing.assert_array_equal(opt._velocities[i].numpy(), 2 * var.numpy())
