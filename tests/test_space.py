"""Search space, genome, head kinds and backbone families: encoding, JSON, repair, rejection with reasons,
head MAC formulas against the profiler, keras-tuner bridge."""
import json

import keras
import numpy as np
import pytest

import nachos_tf as nt
from nachos_tf import heads
from nachos_tf.backbones import FAMILIES, BackboneFamily, HypermodelFamily, McuFamily
from nachos_tf.genome import ExitGene, Gene, Genome
from nachos_tf.space import SearchSpace


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


def test_hypermodel_family_caches_shapes_on_itself_and_rejects_json():
    space = SearchSpace.from_hypermodel(_user_build, (16, 16, 1), 5)
    fam = space.family
    assert isinstance(fam, HypermodelFamily) and space.kind == "hypermodel" and not fam.supports_supernet
    g = space.sample(0)
    # independent: trace the user's graph for these hyperparameters and read the ExitPoint shapes
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for name, value in g.backbone:
        hp.values[name] = value
    m = _user_build(hp)
    want = [tuple(l.output.shape[1:]) for l in m.layers if isinstance(l, nt.ExitPoint)]
    assert space.exit_feature_shapes(g) == want
    assert g.backbone in fam._shapes  # the cache lives on the family object, not in a module global
    other = SearchSpace.from_hypermodel(_user_build, (16, 16, 1), 5)
    assert other.family._shapes == {}
    with pytest.raises(nt.GenomeError, match="hypermodel space object"):
        SearchSpace.from_dict(space.to_dict())


def test_head_macs_formula_equals_the_profiler_for_every_head_kind():
    """heads.head_macs (analytic) == profile_macs (measured on the built Keras layers), per head kind."""
    for shape in ((7, 9, 12), (14, 14, 8), (3, 3, 40)):
        for head in heads.HEADS:
            for width, pool in ((8, 1), (32, 2), (16, 4)):
                for confidence in (True, False):
                    gene = ExitGene(True, head, width, pool)
                    inp = keras.Input(shape)
                    measured = nt.profile_macs(keras.Model(inp, heads.attach_exit_head(inp, 0, gene, 10,
                                                                                       confidence))).total
                    assert heads.head_macs(shape, gene, 10, confidence) == measured > 0, (shape, gene)
    # and on built EENNs: the space's figure for each exit equals the profiled exit_k* layers
    space = SearchSpace.mcu((28, 28, 1), 10)
    g = space.sample(1)
    report, shapes = nt.profile_macs(nt.build_eenn(space, g)), space.exit_feature_shapes(g)
    for k, pos in enumerate(g.exit_positions):
        measured = sum(r.macs for r in report.layers if r.name == f"exit_{k}" or r.name.startswith(f"exit_{k}_"))
        assert space.head_macs(shapes[pos], g.exits[pos]) == measured


def test_head_kinds_are_a_registry_and_unknown_kinds_are_rejected():
    assert set(heads.HEADS) <= set(heads.head_kinds())
    with pytest.raises(nt.GenomeError, match="unknown exit head kind"):
        SearchSpace(McuFamily.default((28, 28, 1)), (28, 28, 1), 10, heads=("gap_dense", "nope"))
    with pytest.raises(nt.GenomeError, match="unknown exit head kind"):
        heads.head_macs((7, 7, 8), ExitGene(True, "nope"), 10, True)
    # a new kind: registered once, then offered by a space, built and costed through the same door
    gmp = heads.register_head(heads.HeadKind(
        "test_gmp_dense", lambda x, p, gene: keras.layers.GlobalMaxPooling2D(name=f"{p}_gmp")(x),
        lambda shape, gene: (0, shape[2])))
    try:
        space = SearchSpace(McuFamily.default((28, 28, 1)), (28, 28, 1), 10, heads=heads.HEADS + (gmp.name,))
        g = space.sample(0)
        exits = tuple(ExitGene(True, gmp.name) if i == g.exit_positions[-1] else e for i, e in enumerate(g.exits))
        g = space.repair(Genome(g.backbone, exits))
        m = nt.build_eenn(space, g)
        k = len(g.exit_positions) - 1
        assert isinstance(m.get_layer(f"exit_{k}_gmp"), keras.layers.GlobalMaxPooling2D)
        shape = space.exit_feature_shapes(g)[g.exit_positions[-1]]
        assert space.head_macs(shape, g.exits[g.exit_positions[-1]]) == shape[2] * 11
    finally:
        heads._KINDS.pop(gmp.name)


def test_mcu_family_is_an_object_and_custom_families_round_trip_through_json():
    space = SearchSpace.mcu((28, 28, 1), 10)
    assert isinstance(space.family, BackboneFamily) and FAMILIES["mcu"] is McuFamily
    assert space.kind == "mcu" and space.family.supports_supernet
    assert space.backbone_genes is space.family.genes and space.settings is space.family.settings
    # a custom (tiny) mcu family: genes given in any order end up in the canonical encoding order
    genes = [Gene("resolution", (16, 12)), Gene("stem_width", (4, 8))]
    for s in range(1, 6):
        genes += [Gene(f"s{s}_depth", (1,)), Gene(f"s{s}_kernel", (3, 5)), Gene(f"s{s}_expand", (1, 2)),
                  Gene(f"s{s}_width", (4, 8)), Gene(f"s{s}_se", (False,)), Gene(f"s{s}_act", ("relu",))]
    settings = {"stem_stride": 2, "strides": [1, 2, 1, 2, 1]}
    tiny = SearchSpace(McuFamily(genes, 4, settings), (28, 28, 1), 10)
    shuffled = SearchSpace(McuFamily(genes[::-1], 4, settings), (28, 28, 1), 10)
    assert [g.name for g in shuffled.backbone_genes] == [g.name for g in genes]
    # config.json is written with sorted keys: the JSON must come back with the same encoding
    d = json.loads(json.dumps(tiny.to_dict(), sort_keys=True))
    back = SearchSpace.from_dict(d)
    assert back.to_dict() == tiny.to_dict()
    for seed in range(5):
        g = tiny.sample(seed)
        assert np.array_equal(back.encode(g), tiny.encode(g)) and back.sample(seed) == g
    with pytest.raises(nt.GenomeError, match="missing"):
        McuFamily(genes[:-1], 4, settings)
    with pytest.raises(nt.GenomeError, match="unknown backbone family"):
        SearchSpace.from_dict({**d, "kind": "nope"})
    with pytest.raises(nt.GenomeError, match="BackboneFamily"):
        SearchSpace((28, 28, 1), 10, genes, 4)


def test_default_space_json_is_the_pre_restructuring_json():
    """config.json "space" of runs written before the backbone families existed (keys and values)."""
    d = SearchSpace.mcu((28, 28, 1), 10).to_dict()
    assert list(d) == ["kind", "input_shape", "num_classes", "confidence", "n_exit_points", "backbone_genes",
                       "heads", "pools", "head_widths", "min_early_exits", "max_early_exits", "settings"]
    assert d["kind"] == "mcu" and d["settings"] == {"stem_stride": 2, "strides": [2, 1, 2, 1, 1]}
    assert d["heads"] == ["gap_dense", "conv_gap_dense", "nachos"] and d["pools"] == [1, 2, 4]
    assert d["head_widths"] == [8, 16, 32] and d["backbone_genes"]["resolution"] == [28, 24, 20]
    assert (d["min_early_exits"], d["max_early_exits"], d["n_exit_points"]) == (1, 4, 4)


def test_genome_is_ground_floor_and_the_space_imports_no_builder():
    """genome.py imports neither TensorFlow/Keras nor numpy; space/backbones/heads do not import builder."""
    import ast
    import pathlib

    root = pathlib.Path(nt.__file__).parent

    def imports(rel):
        tree = ast.parse((root / rel).read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                out.add("." * node.level + (node.module or ""))
        return out

    assert imports("genome.py") <= {"__future__", "json", "sys", "dataclasses", "typing", ".errors"}
    for rel in ("space.py", "heads.py", "backbones/__init__.py", "backbones/base.py", "backbones/mcu.py",
                "backbones/hypermodel.py"):
        assert not any(m.endswith("builder") or m.endswith("space") for m in imports(rel)), rel
    assert not (root / "tuner_bridge.py").exists()
