"""Search space and genome: encoding, JSON, repair, rejection with reasons, keras-tuner bridge."""
import json

import keras
import numpy as np
import pytest

import nachos_tf as nt
from nachos_tf.space import ExitGene, Genome, SearchSpace


@pytest.fixture(scope="module")
def space():
    return SearchSpace.mcu((28, 28, 1), 10)


def test_mcu_space_follows_nachos_ofa_shape(space):
    genes = {g.name: g.values for g in space.backbone_genes}
    for s in range(1, 6):
        assert genes[f"s{s}_depth"] == (2, 3, 4)
        assert genes[f"s{s}_kernel"] == (3, 5, 7)
        assert genes[f"s{s}_expand"] == (3, 4, 6)
        assert genes[f"s{s}_act"] == ("relu", "hard_swish")
        assert genes[f"s{s}_se"] == (False, True)
    assert genes["resolution"][0] == 28 and len(genes["resolution"]) == 3
    assert space.n_exit_points == 4
    assert space.n_var == len(space.backbone_genes) + 16
    assert np.all(space.xl == 0) and np.all(space.xu >= 1)


def test_sample_is_deterministic_and_valid(space):
    for seed in range(30):
        g = space.sample(seed)
        assert g == space.sample(seed)
        assert space.problems(g) == []
        assert 1 <= len(g.exit_positions) <= 4
    assert len({space.sample(s) for s in range(30)}) > 25


def test_encode_decode_and_json_round_trip(space):
    for seed in range(20):
        g = space.sample(seed)
        x = space.encode(g)
        assert x.dtype.kind == "i" and np.all(x >= space.xl) and np.all(x <= space.xu)
        assert space.decode(x) == g
        again = Genome.from_dict(json.loads(json.dumps(g.to_dict())))
        assert again == g and hash(again) == hash(g) and again.key() == g.key()


def test_decode_rounds_and_clips_real_vectors(space):
    g = space.sample(3)
    x = space.encode(g).astype(float) + 0.3
    assert space.decode(x) == g
    huge = np.full(space.n_var, 99.0)
    assert space.problems(space.decode(huge)) == []


def test_repair_enables_an_exit_and_canonicalises_disabled_ones(space):
    g = space.sample(0)
    none = Genome(g.backbone, tuple(ExitGene(False, "nachos", 32, 4) for _ in g.exits))
    assert any("early exits enabled" in r for r in space.problems(none))
    fixed = space.repair(none)
    assert len(fixed.exit_positions) == 1
    assert all(e == ExitGene() for i, e in enumerate(fixed.exits) if i not in fixed.exit_positions)
    # two genomes that differ only in a disabled exit's genes are the same architecture after repair
    a = list(fixed.exits)
    off = [i for i in range(4) if i not in fixed.exit_positions][0]
    a[off] = ExitGene(False, "conv_gap_dense", 8, 2)
    assert space.repair(Genome(g.backbone, tuple(a))) == fixed


def test_invalid_genomes_are_rejected_with_a_reason(space):
    g = space.sample(1)
    bad = Genome.make({**g.params, "s2_kernel": 9}, g.exits)
    with pytest.raises(nt.GenomeError, match="s2_kernel"):
        nt.build_eenn(space, bad)
    with pytest.raises(nt.GenomeError, match="exit gene groups"):
        space.validate(Genome(g.backbone, g.exits[:2]))
    missing = dict(g.params)
    missing.pop("stem_width")
    with pytest.raises(nt.GenomeError, match="stem_width"):
        space.encode(Genome.make(missing, g.exits))
    with pytest.raises(nt.GenomeError, match="malformed"):
        Genome.from_dict({"backbone": {}})


def test_earlier_exit_head_never_costs_more_than_a_later_one(space):
    """The cost-aware pooling repair: after repair, head MACs are non-decreasing with depth."""
    for seed in range(60):
        g = space.sample(seed)
        shapes = space.exit_feature_shapes(g)
        costs = [space.head_macs(shapes[k], g.exits[k]) for k in g.exit_positions]
        for k, (a, b) in zip(g.exit_positions, zip(costs, costs[1:])):
            assert a <= b or g.exits[k].pool == max(space.pools)


def test_head_cost_repair_raises_pooling():
    space = SearchSpace.mcu((28, 28, 1), 10)
    g = space.sample(0)
    exits = [ExitGene(True, "nachos", 32, 1), ExitGene(True, "gap_dense", 8, 1), ExitGene(), ExitGene()]
    repaired = space.repair(Genome(g.backbone, tuple(exits)))
    assert repaired.exits[0].pool == 4  # a 3x3 conv head at 14x14 is far costlier than a GAP head


def test_space_json_round_trip(space):
    d = json.loads(json.dumps(space.to_dict()))
    assert SearchSpace.from_dict(d).to_dict() == space.to_dict()
    static = SearchSpace.mcu((28, 28, 1), 10, early_exits=False)
    assert static.n_exit_points == 0 and static.sample(0).exit_positions == []


def _user_build(hp):
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    for s in range(3):
        x = keras.layers.Conv2D(hp.Choice(f"w{s}", [4, 8]), 3, strides=2 if s else 1, padding="same",
                                activation="relu")(x)
        if hp.Boolean(f"extra{s}"):
            x = keras.layers.Conv2D(hp.get(f"w{s}"), 3, padding="same", activation="relu")(x)
        x = nt.ExitPoint()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(5)(x))


def test_keras_tuner_bridge_searches_user_hyperparameters_and_exit_points():
    space = SearchSpace.from_hypermodel(_user_build, (16, 16, 1), 5)
    names = sorted(g.name for g in space.backbone_genes)
    assert names == ["extra0", "extra1", "extra2", "w0", "w1", "w2"]
    assert space.n_exit_points == 3
    seen = set()
    for seed in range(6):
        g = space.sample(seed)
        m = nt.build_eenn(space, g)
        outs = nt.naming.output_names(m)
        k = len(g.exit_positions)
        assert outs[-1] == "final" and outs.count("final") == 1
        assert [o for o in outs if o.startswith("exit_") and not o.endswith("_conf")] == \
            [f"exit_{i}" for i in range(k)]
        convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D) and not l.name.startswith("exit_")]
        expected = 3 + sum(g.params[f"extra{s}"] for s in range(3))
        assert len(convs) == expected
        assert convs[0].filters == g.params["w0"]
        assert not any(isinstance(l, nt.ExitPoint) for l in m.layers)  # standard layers only
        seen.add(tuple(g.exit_positions))
    assert len(seen) > 1


def test_keras_tuner_hypermodel_class_is_accepted():
    kt = pytest.importorskip("keras_tuner")

    class HM(kt.HyperModel):
        def build(self, hp):
            return _user_build(hp)

    space = SearchSpace.from_hypermodel(HM(), (16, 16, 1), 5)
    assert space.n_exit_points == 3


def test_hypermodel_without_exit_points_is_rejected():
    def build(hp):
        inp = keras.Input((8, 8, 1))
        x = keras.layers.Flatten()(inp)
        return keras.Model(inp, keras.layers.Dense(hp.Choice("u", [2, 4]))(x))

    with pytest.raises(nt.GenomeError, match="ExitPoint"):
        SearchSpace.from_hypermodel(build, (8, 8, 1), 2)
