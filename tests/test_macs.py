"""Tests of nachos_tf.macs and tflite_export.flatbuffer.

Two independent checks: (1) MACs written out by hand as arithmetic (not taken from the code) on small
models; (2) the same staged per-exit MACs read back from the full-int8 .tflite flatbuffer, where the
converter has folded BatchNorm, fused activations and reordered the outputs.
"""
from __future__ import annotations

import json
import os
import sys

import keras
import pytest
from keras import layers

from nachos_tf.errors import ExportError, ProfileError
from nachos_tf.macs import load_and_profile, profile_macs
from nachos_tf.naming import exit_layout
from tflite_export import flatbuffer as fb

sys.path.insert(0, os.path.dirname(__file__))
from tflite_helpers import to_int8_tflite  # noqa: E402


def macs_of(report, name):
    return {r.name: r.macs for r in report.layers}[name]


# ------------------------------------------------------------------ (1) hand-computed MACs


def test_strided_valid_and_same_odd_convs():
    inp = keras.Input((11, 11, 3))
    x = layers.Conv2D(4, 3, strides=2, padding="valid", name="c_valid")(inp)        # 11 -> 5
    x = layers.Conv2D(6, (2, 3), strides=2, padding="same", name="c_same")(x)       # 5 -> 3
    inp2 = keras.Input((7, 9, 2))
    y = layers.Conv2D(5, 3, strides=2, padding="same", name="c_odd")(inp2)          # 7x9 -> 4x5
    r = profile_macs(keras.Model([inp, inp2], [x, y]))
    assert macs_of(r, "c_valid") == 5 * 5 * 4 * (3 * 3 * 3)
    assert macs_of(r, "c_same") == 3 * 3 * 6 * (2 * 3 * 4)
    assert macs_of(r, "c_odd") == 4 * 5 * 5 * (3 * 3 * 2)
    assert r.total == 2700 + 1296 + 1800
    assert r.exit_macs == [2700 + 1296, 2700 + 1296 + 1800]


def test_depthwise_separable_conv1d_dense3d_grouped_transpose_einsum():
    a = keras.Input((8, 8, 3))
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", name="dw")(a)  # 6x6x6
    b = keras.Input((8, 8, 4))
    sep = layers.SeparableConv2D(8, 3, strides=2, padding="same", name="sep")(b)     # 4x4x8
    grp = layers.Conv2D(8, 3, groups=2, padding="same", name="grp")(b)               # 8x8x8
    c = keras.Input((20, 3))
    c1 = layers.Conv1D(6, 5, padding="valid", name="c1d")(c)                         # 16x6
    d = keras.Input((7, 10))
    dense3 = layers.Dense(4, name="dense3")(d)                                       # 7x4
    ein = layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), name="ein")(d)    # 7x5
    e = keras.Input((5, 5, 6))
    tr = layers.Conv2DTranspose(4, 3, strides=2, name="tr")(e)                        # 11x11x4
    r = profile_macs(keras.Model([a, b, c, d, e], [dw, sep, grp, c1, dense3, ein, tr]))
    assert macs_of(r, "dw") == 6 * 6 * 3 * 2 * 3 * 3
    assert macs_of(r, "sep") == 4 * 4 * 4 * 3 * 3 + 4 * 4 * 4 * 8
    assert macs_of(r, "grp") == 3 * 3 * (4 // 2) * 8 * 8 * 8
    assert macs_of(r, "c1d") == 16 * 6 * 5 * 3
    assert macs_of(r, "dense3") == 7 * 4 * 10
    assert macs_of(r, "ein") == 7 * 5 * 10
    assert macs_of(r, "tr") == 5 * 5 * 6 * 4 * 3 * 3
    assert not any(row.zero_cost for row in r.layers)


def test_branches_merge_and_zero_cost_rows():
    inp = keras.Input((8, 8, 3))
    x = layers.Rescaling(1 / 255.0, name="scale")(inp)
    a = layers.Conv2D(4, 1, name="a")(x)
    b = layers.Conv2D(4, 3, padding="same", name="b")(x)
    s = layers.Add(name="add")([a, b])
    s = layers.BatchNormalization(name="bn")(s)
    s = layers.ReLU(name="relu")(s)
    cat = layers.Concatenate(name="cat")([s, a])
    y = layers.Conv2D(2, 1, name="y")(cat)
    y = layers.MaxPooling2D(2, name="pool")(y)                                       # 4x4x2
    y = layers.Reshape((16, 2), name="reshape")(y)
    y = layers.Dense(3, name="d3")(y)                                                # 16x3
    f = layers.Flatten(name="flat")(y)
    f = layers.Multiply(name="mul")([f, f])
    f = layers.Activation("softmax", name="softmax")(f)
    r = profile_macs(keras.Model(inp, f))
    expected = 8 * 8 * 4 * 3 + 8 * 8 * 4 * 27 + 8 * 8 * 2 * 8 + 16 * 3 * 2
    assert r.total == expected == r.exit_macs[0]
    zero = {"scale", "add", "bn", "relu", "cat", "pool", "reshape", "flat", "mul", "softmax"}
    assert set(r.zero_cost_layers) == zero
    for row in r.layers:
        assert (row.macs == 0) == (row.name in zero)
    assert {row.name: row.params for row in r.layers}["bn"] == 4 * 4
    assert {row.name: row.output_shape for row in r.layers}["y"] == (None, 8, 8, 2)
    table = r.table()
    assert "Zero-cost layers" in table and "bn" in table and "BatchNormalization" in table
    json.dumps(r.to_dict())


def _shared_trunk():
    inp = keras.Input((8, 8, 2))
    c1 = layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    g1 = layers.GlobalAveragePooling2D(name="g1")(c1)
    out_a = layers.Dense(3, name="head_a")(g1)
    c2 = layers.Conv2D(6, 3, strides=2, padding="same", name="c2")(c1)
    g2 = layers.GlobalAveragePooling2D(name="g2")(c2)
    out_b = layers.Dense(3, name="head_b")(layers.Concatenate(name="cat")([g1, g2]))
    out_c = layers.Dense(2, name="head_c")(g2)
    return inp, out_a, out_b, out_c


C1, C2 = 8 * 8 * 4 * 3 * 3 * 2, 4 * 4 * 6 * 3 * 3 * 4
HA, HB, HC = 4 * 3, 10 * 3, 6 * 2


def test_multi_output_shared_trunk_counts_union_once():
    inp, a, b, c = _shared_trunk()
    r = profile_macs(keras.Model(inp, [a, b, c]))
    assert r.exit_names == ["head_a", "head_b", "head_c"]
    assert r.exit_macs == [C1 + HA, C1 + HA + C2 + HB, C1 + HA + C2 + HB + HC]
    assert r.total == C1 + C2 + HA + HB + HC
    inp, a, b, c = _shared_trunk()
    r = profile_macs(keras.Model(inp, [c, a]))  # head_b unused: not in the graph at all
    assert r.exit_macs == [C1 + C2 + HC, C1 + C2 + HC + HA]
    assert r.total == r.exit_macs[-1]


def test_shared_layer_counts_each_call_params_once():
    inp = keras.Input((5,))
    d = layers.Dense(5, name="shared")
    r = profile_macs(keras.Model(inp, d(d(inp))))
    assert [(row.name, row.macs) for row in r.layers] == [("shared#0", 25), ("shared#1", 25)]
    assert r.total == 50 and r.total_params == 30


def _eenn(order=None):
    inp = keras.Input((10, 10, 1), name="image")
    x = layers.Rescaling(1 / 255.0)(inp)
    x = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="stem")(x)   # 5x5x4
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Identity(name="exit_0_point")(x)
    g = layers.GlobalAveragePooling2D()(x)
    e0 = layers.Dense(3, name="exit_0")(g)
    c0 = layers.Dense(1, activation="sigmoid", name="exit_0_conf")(g)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(8, 1, name="pw")(x)
    x = layers.Identity(name="exit_1_point")(x)
    f = layers.Flatten()(x)
    e1 = layers.Dense(3, name="exit_1")(f)
    c1 = layers.Dense(1, activation="sigmoid", name="exit_1_conf")(f)
    fin = layers.Dense(3, name="final")(layers.GlobalAveragePooling2D()(x))
    outs = {"exit_0": e0, "exit_0_conf": c0, "exit_1": e1, "exit_1_conf": c1, "final": fin}
    order = order or list(outs)
    return keras.Model(inp, [outs[n] for n in order])


EENN_STAGED = [
    5 * 5 * 4 * 9 + 4 * 3 + 4 * 1,
    5 * 5 * 4 * 9 + 4 * 3 + 4 * 1 + 5 * 5 * 4 * 9 + 5 * 5 * 8 * 4 + 200 * 3 + 200 * 1,
    5 * 5 * 4 * 9 + 4 * 3 + 4 * 1 + 5 * 5 * 4 * 9 + 5 * 5 * 8 * 4 + 200 * 3 + 200 * 1 + 8 * 3,
]


def test_eenn_naming_contract_groups_conf_with_its_exit():
    r = profile_macs(_eenn())
    assert r.exit_names == ["exit_0", "exit_1", "final"]
    assert r.exit_outputs == [["exit_0", "exit_0_conf"], ["exit_1", "exit_1_conf"], ["final"]]
    assert r.exit_macs == EENN_STAGED == [916, 3416, 3440]
    assert r.expected_macs([0.5, 0.25, 0.25]) == pytest.approx(0.5 * 916 + 0.25 * 3416 + 0.25 * 3440)
    assert r.expected_macs({"exit_0": 1.0}) == 916
    d = r.to_dict()
    assert [e["incremental_macs"] for e in d["exits"]] == [916, 2500, 24]
    json.dumps(d)
    # exits are found by name, not position
    r2 = profile_macs(_eenn(["final", "exit_1_conf", "exit_0", "exit_1", "exit_0_conf"]))
    assert r2.exit_names == r.exit_names and r2.exit_macs == r.exit_macs


def test_expected_macs_rejects_bad_rates():
    r = profile_macs(_eenn())
    for bad in ([0.5, 0.5], [0.5, 0.6, -0.1], [0.2, 0.2, 0.2], {"nope": 1.0}):
        with pytest.raises(ProfileError):
            r.expected_macs(bad)


def test_table_units():
    inp = keras.Input((64, 64, 3))
    x = layers.Conv2D(32, 3, padding="same", name="big")(inp)   # 64*64*32*27 = 3,538,944
    t = profile_macs(keras.Model(inp, x)).table()
    assert "3.54M" in t and "big" in t and "Exits" in t


class Scale(layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


@pytest.mark.parametrize("make", [
    lambda x: layers.LSTM(4, name="my_lstm")(x),
    lambda x: Scale(name="my_scale")(x),
    lambda x: layers.Dot(axes=2, name="my_dot")([x, x]),
    lambda x: keras.ops.matmul(x, keras.ops.transpose(x, (0, 2, 1))),  # a keras.ops node: 'matmul'
])
def test_unknown_layers_raise_with_name(make):
    inp = keras.Input((5, 3))
    out = make(inp)
    with pytest.raises(ProfileError, match="my_|matmul"):
        profile_macs(keras.Model(inp, out))


def test_embedding_is_deliberately_zero():
    inp = keras.Input((6,), dtype="int32")
    e = layers.Embedding(50, 4, name="emb")(inp)
    r = profile_macs(keras.Model(inp, layers.Dense(2, name="d")(e)))
    assert macs_of(r, "emb") == 0 and "emb" in r.zero_cost_layers and r.total == 6 * 2 * 4


def test_nested_model_is_flattened():
    i = keras.Input((8, 8, 3))
    inner = keras.Model(i, layers.Conv2D(4, 3, name="ic")(i), name="inner")
    o = keras.Input((8, 8, 3))
    out = layers.Dense(2, name="d")(layers.GlobalAveragePooling2D()(inner(o)))
    r = profile_macs(keras.Model(o, out))
    assert macs_of(r, "inner/ic") == 6 * 6 * 4 * 27 and r.total == 6 * 6 * 4 * 27 + 4 * 2
    seq = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="sd")], name="seq")
    o2 = keras.Input((4,))
    assert profile_macs(keras.Model(o2, seq(o2))).total == 12
    assert profile_macs(seq).total == 12


def test_unknown_dims_raise():
    inp = keras.Input((None, None, 3))
    with pytest.raises(ProfileError, match="unknown dimension"):
        profile_macs(keras.Model(inp, layers.Conv2D(2, 3, name="c")(inp)))
    i = keras.Input((None, None, 3))
    inner = keras.Model(i, layers.Conv2D(2, 3)(i), name="inner")
    o = keras.Input((8, 8, 3))
    with pytest.raises(ProfileError, match="inner"):
        profile_macs(keras.Model(o, inner(o)))


def test_load_and_profile(tmp_path):
    path = tmp_path / "m.keras"
    _eenn().save(path)
    assert load_and_profile(path).exit_macs == EENN_STAGED
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    (tmp_path / "bad.txt").write_text("hello")
    for p in (tmp_path / "missing.keras", tmp_path / "bad.keras", tmp_path / "bad.txt"):
        with pytest.raises(ProfileError):
            load_and_profile(p)


def test_flatbuffer_rejects_garbage(tmp_path):
    with pytest.raises(ExportError):
        fb.op_macs(b"\x00" * 64)
    with pytest.raises(ExportError):
        fb.signature_outputs(tmp_path / "missing.tflite")


# ------------------------------------------------------------------ (2) flatbuffer vs profiler


def _check_tflite(model):
    """Flatbuffer staged MACs (exits mapped through the SignatureDef) == profile_macs exit_macs."""
    b = to_int8_tflite(model)
    r = profile_macs(model)
    outs = fb.signature_outputs(b)
    assert [o.signature_name for o in outs] == [f"output_{i}" for i in range(len(model.outputs))]
    for o, t in zip(outs, model.outputs):
        assert len(o.shape) == len(t.shape) and o.dtype == "int8" and o.scale > 0
        assert all(a == k for a, k in zip(o.shape[1:], t.shape[1:]) if k is not None)
    assert fb.staged_macs(b, fb.exit_groups(exit_layout(model))) == r.exit_macs
    assert fb.total_macs(b) == r.total
    return b, r


def test_tflite_eenn_matches_profile_and_maps_reordered_outputs():
    inp = keras.Input((13, 13, 3))
    x = layers.Conv2D(6, 3, strides=2, padding="valid")(inp)                 # 6x6x6
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Identity(name="exit_0_point")(x)
    g = layers.GlobalAveragePooling2D()(x)
    e0 = layers.Dense(4, name="exit_0")(g)
    c0 = layers.Dense(1, activation="sigmoid", name="exit_0_conf")(g)
    a = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(x)   # 3x3x12
    s = layers.SeparableConv2D(12, 3, strides=2, padding="same")(x)                     # 3x3x12
    y = layers.BatchNormalization()(layers.Add()([a, s]))
    y = layers.Concatenate()([y, layers.Conv2D(4, 1)(y)])                               # 3x3x16
    y = layers.Identity(name="exit_1_point")(y)
    f = layers.Flatten()(y)
    e1 = layers.Dense(4, name="exit_1")(f)
    c1 = layers.Dense(1, activation="sigmoid", name="exit_1_conf")(f)
    z = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(y)
    fin = layers.Dense(4, name="final")(layers.GlobalAveragePooling2D()(z))
    model = keras.Model(inp, [e0, c0, e1, c1, fin])
    b, r = _check_tflite(model)
    stem = 6 * 6 * 6 * 27
    assert r.exit_macs[0] == stem + 6 * 4 + 6 * 1
    assert r.exit_macs[1] == r.exit_macs[0] + 3 * 3 * 12 * 9 + (3 * 3 * 6 * 9 + 3 * 3 * 6 * 12) \
        + 3 * 3 * 4 * 12 + 144 * 4 + 144
    assert r.exit_macs[2] == r.exit_macs[1] + 2 * 2 * 8 * 9 * 16 + 8 * 4
    # TFLM's get_output(i) is the subgraph position: recorded per signature output
    positions = [o.position for o in fb.signature_outputs(b)]
    assert sorted(positions) == list(range(5))
    assert fb.signature_inputs(b)[0].shape == (1, 13, 13, 3)


def test_tflite_conv1d_dense3d_transpose_einsum_match_profile():
    # batch_size=1: with a None batch, Dense on a rank-3 tensor converts to a dynamic-shape graph
    inp = keras.Input((20, 3), batch_size=1)
    s = layers.Conv1D(6, 5, strides=2, padding="same")(inp)                   # 10x6
    d = layers.Dense(4)(s)                                                    # 10x4
    ein = layers.EinsumDense("abc,cd->abd", output_shape=(None, 5))(d)        # 10x5
    img = layers.Reshape((5, 2, 4))(d)
    tr = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(img)       # 10x4x4
    out_t = layers.Dense(2)(layers.GlobalAveragePooling2D()(tr))
    _, r = _check_tflite(keras.Model(inp, [ein, layers.Flatten()(d), out_t]))
    assert r.exit_macs == [10 * 6 * 5 * 3 + 10 * 4 * 6 + 10 * 5 * 4, 10 * 6 * 5 * 3 + 10 * 4 * 6 + 10 * 5 * 4,
                           10 * 6 * 5 * 3 + 10 * 4 * 6 + 10 * 5 * 4 + 5 * 2 * 4 * 4 * 9 + 4 * 2]


def test_tflite_dynamic_shapes_refused():
    inp = keras.Input((6, 3))
    b = to_int8_tflite(keras.Model(inp, layers.Dense(4, name="d3")(inp)))
    with pytest.raises(ProfileError, match="batch size of 1"):
        fb.op_macs(b)


def _space():
    try:
        from nachos_tf.builder import build_eenn
        from nachos_tf.space import SearchSpace
    except ImportError as e:  # pragma: no cover - the builder lands separately
        pytest.skip(f"builder not available: {e}")
    return SearchSpace.mcu(input_shape=(28, 28, 1), num_classes=10), build_eenn


def _check_genomes(seeds, fast=True):
    """Per-exit staged MACs of built genomes: flatbuffer == profiler. ``fast`` conversion has no
    SignatureDef; its outputs come in Keras order (checked through the logits/confidence shapes)."""
    space, build_eenn = _space()
    for seed in seeds:
        model = build_eenn(space, space.sample(seed=seed))
        b = to_int8_tflite(model, n_samples=2, high=255.0, fast=fast)
        outs = fb.signature_outputs(b)
        assert [o.shape[1:] for o in outs] == [tuple(t.shape[1:]) for t in model.outputs]
        r = profile_macs(model)
        got = fb.staged_macs(b, fb.exit_groups(exit_layout(model)))
        assert got == r.exit_macs, f"seed {seed}: flatbuffer {got} != profile {r.exit_macs}"
        assert fb.total_macs(b) == r.total
        assert r.exit_macs == sorted(r.exit_macs) and len(r.exit_macs) == len(exit_layout(model))


def test_sampled_genomes_flatbuffer_matches_profile():
    _check_genomes(range(2))


@pytest.mark.slow
def test_sampled_genomes_flatbuffer_matches_profile_many():
    _check_genomes(range(2, 26))
    _check_genomes(range(26, 28), fast=False)  # the documented from_keras_model path


def test_paper_exit_macs_equal_single_exit_networks():
    """The NACHOS paper's per-exit cost (backbone + own head) equals, independently, the staged cost of
    the same genome built with only that exit (and, for the final exit, with no early exit at all)."""
    from nachos_tf.builder import build_eenn
    from nachos_tf.macs import head_macs, paper_exit_macs
    from nachos_tf.space import ExitGene, Genome, SearchSpace

    space = SearchSpace.mcu((28, 28, 1), 10)
    genome = next(g for g in (space.sample(s) for s in range(50)) if len(g.exit_positions) >= 2)
    report = profile_macs(build_eenn(space, genome))
    paper = paper_exit_macs(report)
    for k, pos in enumerate(genome.exit_positions):
        alone = Genome(genome.backbone, tuple(e if i == pos else ExitGene() for i, e in enumerate(genome.exits)))
        assert paper[k] == profile_macs(build_eenn(space, alone)).exit_macs[0]
    static = SearchSpace.mcu((28, 28, 1), 10, early_exits=False)
    assert paper[-1] == profile_macs(build_eenn(static, Genome(genome.backbone, ()))).exit_macs[-1]
    assert paper[0] == report.exit_macs[0] and all(p < m for p, m in zip(paper[1:], report.exit_macs[1:]))
    assert sum(head_macs(report)[:-1]) == report.exit_macs[-1] - paper[-1]


# ------------------------------------------------------------------ naming contract never drops an output (issue 14.18)

def _eenn_named(names):
    """The _eenn graph with its five outputs renamed: names maps role -> output layer name (or None: left out)."""
    inp = keras.Input((10, 10, 1), name="image")
    x = layers.Rescaling(1 / 255.0)(inp)
    x = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="stem")(x)   # 5x5x4
    x = layers.ReLU()(x)
    g = layers.GlobalAveragePooling2D()(x)
    outs = {"e0": layers.Dense(3, name=names.get("e0") or "unused_e0")(g),
            "c0": layers.Dense(1, activation="sigmoid", name=names.get("c0") or "unused_c0")(g)}
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(8, 1, name="pw")(x)
    f = layers.Flatten()(x)
    outs["e1"] = layers.Dense(3, name=names.get("e1") or "unused_e1")(f)
    outs["c1"] = layers.Dense(1, activation="sigmoid", name=names.get("c1") or "unused_c1")(f)
    outs["fin"] = layers.Dense(3, name=names.get("fin") or "unused_fin")(layers.GlobalAveragePooling2D()(x))
    roles = [r for r in ("e0", "c0", "e1", "c1", "fin") if names.get(r)]
    return keras.Model(inp, [outs[r] for r in roles]), roles


STEM, DW, PW = 5 * 5 * 4 * 9, 5 * 5 * 4 * 9, 5 * 5 * 8 * 4
ROLE_MACS = {"e0": 4 * 3, "c0": 4 * 1, "e1": 200 * 3, "c1": 200 * 1, "fin": 8 * 3}
NEEDS_TRUNK2 = {"e1", "c1", "fin"}


def _hand_staged(groups):
    """Staged MACs written out by hand: every output of exits 0..k, the trunk counted once."""
    out, paid = [], set()
    for g in groups:
        paid |= set(g)
        trunk = STEM + (DW + PW if paid & NEEDS_TRUNK2 else 0)
        out.append(trunk + sum(ROLE_MACS[r] for r in paid))
    return out


def test_outputs_outside_the_naming_contract_are_each_an_exit_in_model_order():
    # the case: 'e0' and 'final' was profiled as one exit 'final'
    m, _ = _eenn_named({"e0": "e0", "fin": "final"})
    r = profile_macs(m)
    assert r.exit_names == ["e0", "final"] and r.exit_outputs == [["e0"], ["final"]]
    assert r.exit_macs == _hand_staged([["e0"], ["fin"]]) == [912, 2636]
    assert "no output" not in r.naming and "'e0'" in r.naming and "names do not follow" in r.table()
    # a gap in the numbering, a confidence without its exit, a duplicate-free but foreign name, no final
    for names, why in (({"e0": "exit_0", "e1": "exit_2", "fin": "final"}, "not numbered"),
                       ({"c0": "exit_0_conf", "e1": "exit_0", "fin": "final"}, None),
                       ({"e0": "exit_0", "c0": "exit_1_conf", "fin": "final"}, "has no exit_1"),
                       ({"e0": "exit_0", "c0": "score", "fin": "final"}, "'score'"),
                       ({"e0": "exit_0", "e1": "exit_1"}, "no output is named 'final'")):
        m, roles = _eenn_named(names)
        r = profile_macs(m)
        if why is None:      # a complete contract set, mapped by name (confidence after its exit)
            assert r.naming == "" and r.exit_outputs == [["exit_0", "exit_0_conf"], ["final"]]
            continue
        assert why in r.naming
        assert r.exit_names == [names[x] for x in roles] and r.exit_outputs == [[names[x]] for x in roles]
        assert r.exit_macs == _hand_staged([[x] for x in roles])


def test_no_output_is_ever_dropped_whatever_the_names():
    import itertools
    import random

    pool = ["exit_0", "exit_1", "exit_2", "exit_0_conf", "exit_1_conf", "final", "e0", "aux", "logits"]
    rng = random.Random(0)
    cases = 0
    for n_out in (2, 3, 4, 5):
        for roles in itertools.combinations(["e0", "c0", "e1", "c1", "fin"], n_out):
            names = dict(zip(roles, rng.sample(pool, n_out)))
            m, used = _eenn_named(names)
            r = profile_macs(m)
            covered = sorted(o for outs in r.exit_outputs for o in outs)
            assert covered == sorted(names.values()), (names, r.exit_outputs)
            assert r.exit_macs[-1] == r.total == _hand_staged([used])[0]
            assert r.exit_macs == sorted(r.exit_macs)
            assert len(r.exit_macs) == len(exit_layout(m))
            cases += 1
    assert cases == 26


def test_bad_model_files_give_one_short_line(tmp_path):
    import zipfile

    inp = keras.Input((4,))
    lam = keras.Model(inp, layers.Dense(2)(layers.Lambda(lambda t: t * 2, name="lam")(inp)))
    lam.save(tmp_path / "lam.keras")
    with zipfile.ZipFile(tmp_path / "cls.keras", "w") as z:
        z.writestr("config.json", '{"class_name": "Functional", "config": {"layers": [{"class_name": "Nope", '
                                  '"config": {"x": "' + "y" * 500 + '"}}]}}')
        z.writestr("metadata.json", '{"keras_version": "3.15.0"}')
    with pytest.raises(ProfileError, match=r"lam\.keras: .*Lambda layer.*safe mode") as e:
        load_and_profile(tmp_path / "lam.keras")
    assert "\n" not in str(e.value)
    with pytest.raises(ProfileError, match=r"cls\.keras: cannot load") as e:
        load_and_profile(tmp_path / "cls.keras")
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_cmsis_nn_scratch_bound_follows_the_cmsis_nn_buffer_formulas():
    """Hand-computed CMSIS-NN scratch sizes (DSP vs MVE, whichever is larger) of a converted model: a 7x7
    depthwise layer on 40 channels asks 49 * max(2 * 40, 4 * 124) bytes, one on 300 channels 49 * 600, a 3x3
    convolution on 8 channels 4 * 8 * 9; the bound is the largest of them."""
    import keras
    import tensorflow as tf

    from tflite_export.flatbuffer import cmsis_nn_scratch_bound

    def convert(layers):
        m = keras.Sequential([keras.Input((12, 12, 8))] + layers)
        return tf.lite.TFLiteConverter.from_keras_model(m).convert()

    conv = keras.layers.Conv2D(40, 3, padding="same")
    assert cmsis_nn_scratch_bound(convert([conv])) == 4 * 8 * 9
    small = convert([keras.layers.Conv2D(40, 1), keras.layers.DepthwiseConv2D(7, padding="same")])
    assert cmsis_nn_scratch_bound(small) == 49 * 4 * 124
    wide = convert([keras.layers.Conv2D(300, 1), keras.layers.DepthwiseConv2D(7, padding="same")])
    assert cmsis_nn_scratch_bound(wide) == 49 * 2 * 300
    assert cmsis_nn_scratch_bound(convert([keras.layers.Flatten(), keras.layers.Dense(4)])) == 0
