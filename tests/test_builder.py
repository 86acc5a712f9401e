"""Builder: flat standard-layer Keras models that follow the naming contract and convert to int8 TFLite."""
import numpy as np
import keras
import pytest

import nachos_tf as nt
from tflite_helpers import to_int8_tflite
from nachos_tf import naming
from nachos_tf.backbones import FAMILIES, BackboneFamily
from nachos_tf.genome import ExitGene, Gene, Genome
from nachos_tf.heads import attach_exit_head, head_macs
from nachos_tf.space import SearchSpace


@pytest.fixture(scope="module")
def space():
    return SearchSpace.mcu((28, 28, 1), 10)


def _blocks(model, stage):
    return {l.name.split("_")[1] for l in model.layers if l.name.startswith(f"s{stage}_b")}


def test_outputs_follow_the_naming_contract(space):
    for seed in range(6):
        g = space.sample(seed)
        m = nt.build_eenn(space, g)
        names = naming.output_names(m)
        k = len(g.exit_positions)
        expected = []
        for i in range(k):
            expected += [f"exit_{i}", f"exit_{i}_conf"]
        assert names == expected + ["final"]
        assert naming.contract_names(k, space.confidence) == names       # what the supernet evaluator assumes
        assert [s.name for s in naming.exit_layout(m)] == [f"exit_{i}" for i in range(k)] + ["final"]
        assert all(m.get_layer(f"exit_{i}_point").__class__ is keras.layers.Identity for i in range(k))
        assert isinstance(m.layers[1], keras.layers.Rescaling)
        assert not any(isinstance(l, keras.Model) for l in m.layers)  # flat


def test_architecture_matches_the_genes(space):
    g = space.sample(5)
    p = g.params
    m = nt.build_eenn(space, g)
    for s in range(1, 6):
        assert len(_blocks(m, s)) == p[f"s{s}_depth"]
        dw = m.get_layer(f"s{s}_b0_dw")
        assert dw.kernel_size == (p[f"s{s}_kernel"],) * 2
        assert m.get_layer(f"s{s}_b0_project").filters == p[f"s{s}_width"]
        assert (f"s{s}_b0_se_scale" in [l.name for l in m.layers]) == p[f"s{s}_se"]
    assert m.get_layer("stem_conv").filters == p["stem_width"]
    has_resize = any(isinstance(l, keras.layers.Resizing) for l in m.layers)
    assert has_resize == (p["resolution"] != 28)


def test_same_genome_same_architecture_and_exit_heads(space):
    g = space.sample(7)
    a, b = nt.build_eenn(space, g), nt.build_eenn(space, g)
    cfg = lambda m: [(l.__class__.__name__, l.name, tuple(w.shape for w in l.weights)) for l in m.layers]
    assert cfg(a) == cfg(b)
    exits = [ExitGene(True, "nachos", 16, 4), ExitGene(), ExitGene(True, "conv_gap_dense", 8, 2), ExitGene()]
    g2 = space.repair(Genome(g.backbone, tuple(exits)))
    m = nt.build_eenn(space, g2)
    names = [l.name for l in m.layers]
    assert "exit_0_flatten" in names and "exit_1_gap" in names and "exit_0_pool" in names
    assert m.get_layer("exit_0_conv").kernel_size == (3, 3) and m.get_layer("exit_1_conv").kernel_size == (1, 1)


def test_static_space_has_only_the_final_classifier():
    space = SearchSpace.mcu((28, 28, 1), 10, early_exits=False)
    m = nt.build_eenn(space, space.sample(0))
    assert naming.output_names(m) == ["final"] == naming.contract_names(0, True)


def test_save_and_load_with_plain_keras(space, tmp_path):
    m = nt.build_eenn(space, space.sample(2))
    x = np.random.default_rng(0).uniform(0, 255, (3, 28, 28, 1)).astype("float32")
    m.save(tmp_path / "m.keras")
    m2 = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(m.predict(x, verbose=0), m2.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_seeded_builds_have_identical_weights(space):
    """Same genome + same Keras seed -> the same weights in the same order (what a resume relies on)."""
    g = space.sample(3)
    got = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        got.append(nt.build_eenn(space, g).get_weights())
    assert len(got[0]) == len(got[1]) and all(np.array_equal(a, b) for a, b in zip(*got))


class _TinyFamily(BackboneFamily):
    """A backbone family written from scratch in a test: one conv, one candidate exit point."""

    kind = "test_tiny"

    def __init__(self):
        self.genes, self.n_exit_points, self.settings = [Gene("w", (4, 8))], 1, {}

    @classmethod
    def from_dict(cls, d):
        return cls()

    def exit_feature_shapes(self, space, genome):
        return [(4, 4, genome.params["w"])]

    def build(self, space, genome, name):
        inp = keras.Input(space.input_shape, name="image")
        x = keras.layers.Conv2D(genome.params["w"], 3, strides=2, padding="same", name="conv")(inp)
        outs = []
        if genome.exits[0].enabled:
            x = keras.layers.Identity(name=naming.point_name(0))(x)
            outs += attach_exit_head(x, 0, genome.exits[0], space.num_classes, space.confidence)
        v = keras.layers.GlobalAveragePooling2D(name="final_gap")(x)
        return keras.Model(inp, outs + [keras.layers.Dense(space.num_classes, name=naming.FINAL)(v)], name=name)


def test_a_new_backbone_family_is_one_class():
    try:
        space = SearchSpace(_TinyFamily(), (8, 8, 1), 3)
        assert space.kind == "test_tiny" and space.n_var == 1 + 4 and not space.family.supports_supernet
        g = space.repair(Genome.make({"w": 8}, [ExitGene(True, "conv_gap_dense", 16, 2)]))
        m = nt.build_eenn(space, g)
        assert naming.output_names(m) == ["exit_0", "exit_0_conf", "final"]
        report = nt.profile_macs(m)
        conv = 4 * 4 * 9 * 1 * 8  # the family's own conv, counted by hand
        assert report.exit_macs[0] == conv + head_macs((4, 4, 8), g.exits[0], 3, True)
        assert SearchSpace.from_dict(space.to_dict()).to_dict() == space.to_dict()
    finally:
        FAMILIES.pop("test_tiny", None)


def _check_converts_and_runs_on_tflm(space, seed):
    from tflite_micro.python.tflite_micro import runtime

    g = space.sample(seed)
    m = nt.build_eenn(space, g)
    blob = to_int8_tflite(m, n_samples=8, high=255.0)
    interp = runtime.Interpreter.from_bytes(blob)
    assert interp.get_input_details(0)["dtype"] == np.int8
    interp.set_input(np.zeros((1,) + space.input_shape, np.int8), 0)
    interp.invoke()
    shapes = sorted(interp.get_output(i).shape[-1] for i in range(len(m.outputs)))
    assert shapes == sorted(int(t.shape[-1]) for t in m.outputs)


def test_a_sampled_genome_converts_to_full_int8_the_same_without_the_savedmodel_export(space):
    """A whole sampled EENN with squeeze-excite, hard-swish and several exits converts to full int8 (input and every
    output int8) and runs on TFLM; `tflite_export.quantize.to_int8_tflite` (a concrete function of the inference
    call) gives the same model as Keras' SavedModel export through `from_keras_model` (operators, weights,
    SignatureDef, TFLM outputs). The slow test below converts 24 more sampled genomes."""
    from tflite_export import flatbuffer as fb
    from tflite_export.quantize import to_int8_tflite as convert
    from tflite_helpers import assert_same_int8_model

    def varied(g):
        p = g.params
        return any(p[k] for k in p if k.endswith("_se")) and "hard_swish" in p.values() and len(g.exit_positions) > 1

    g = next(g for g in map(space.sample, range(200, 400)) if varied(g))
    m = nt.build_eenn(space, g)
    x = np.random.default_rng(0).uniform(0, 255, (16,) + space.input_shape).astype(np.float32)
    new = convert(m, x)
    assert_same_int8_model(new, to_int8_tflite(m, samples=x), x, len(m.outputs))
    outs = fb.signature_outputs(new)
    assert all(o.dtype == "int8" for o in outs) and fb.signature_inputs(new)[0].dtype == "int8"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 124))
def test_many_sampled_genomes_convert_to_full_int8(space, seed):
    _check_converts_and_runs_on_tflm(space, seed)
